"""The `localdistill` command: thin Click wrappers over library functions."""

from __future__ import annotations

import sys

import click

from localdistill import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localdistill")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Personalised distillation of small code models, entirely on this machine."""
    ctx.obj = {"debug": debug}


@cli.command()
def doctor() -> None:
    """Report what is installed and usable here: backends, accelerators, sandbox, models."""
    from rich.console import Console
    from rich.markup import escape

    from localdistill.doctor import checks

    console = Console(highlight=False)
    marks = {True: "[green]ok[/]  ", False: "[red]no[/]  ", None: "[yellow]--[/]  "}
    for check in checks():
        console.print(
            f"{marks[check.ok]}{escape(check.name)}: {escape(check.detail)}", soft_wrap=True
        )


def main() -> None:
    cli(prog_name="localdistill")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
