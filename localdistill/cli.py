"""The `localdistill` command: thin Click wrappers over library functions.

Exit codes: 0 success, 1 the work failed (e.g. reference solutions fail their tests), 2 bad usage or
bad input. Errors are one line (what, where, how to fix) unless --debug.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from localdistill import __version__


class WorkFailed(click.ClickException):
    """The command ran but the work it checked failed (exit 1)."""

    exit_code = 1


class BadInput(click.ClickException):
    exit_code = 2


class _Group(click.Group):
    """Turns known errors into one line and an exit code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's one place for this
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _as_click_error(exc) from exc


def _as_click_error(exc: Exception) -> click.ClickException:
    from localdistill.execute.limits import SandboxError
    from localdistill.models.demo import ModelNotInstalled

    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, SandboxError | ModelNotInstalled):
        return WorkFailed(message)
    if isinstance(exc, ValueError | OSError | KeyError):
        return BadInput(message)
    return WorkFailed(f"{type(exc).__name__}: {message} (run with --debug for the traceback)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


@cli.group(cls=_Group)
def tasks() -> None:
    """Inspect, check and convert task sets (HumanEval, MBPP, your own JSONL)."""


TASKS_HELP = (
    "Task set: 'humaneval', 'mbpp:SPLIT=PATH' (SPLIT: test, train, validation, prompt, all), "
    "a .jsonl file, or a saved Hugging Face dataset directory."
)


@tasks.command("info")
@click.argument("spec", metavar="TASKS")
def tasks_info(spec: str) -> None:
    """How many tasks, tests and seen tests a task set has. TASKS: see `tasks --help`."""
    from rich.console import Console
    from rich.table import Table

    from localdistill.tasks import load_tasks

    loaded = load_tasks(spec)
    console = Console()
    console.print(f"{spec}: {len(loaded)} tasks", soft_wrap=True, highlight=False)
    table = Table()
    for column in ("tasks", "hidden tests", "with seen tests", "seen tests", "with reference"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(loaded)),
        str(sum(len(t.tests) for t in loaded)),
        str(sum(bool(t.seen_tests) for t in loaded)),
        str(sum(len(t.seen_tests) for t in loaded)),
        str(sum(t.reference is not None for t in loaded)),
    )
    console.print(table)


@tasks.command("check")
@click.argument("spec", metavar="TASKS")
@click.option("--seen", is_flag=True, help="Check the seen tests instead of the hidden ones.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Parallel sandboxes.")
@click.option("--timeout", type=click.FloatRange(0.1), default=3.0, show_default=True,
              help="Seconds per test.")
def tasks_check(spec: str, seen: bool, workers: int | None, timeout: float) -> None:
    """Run every task's reference solution in the sandbox: are the tests right?"""
    from rich.console import Console
    from rich.table import Table

    from localdistill.execute import Limits, program_for, run_many
    from localdistill.tasks import load_tasks

    loaded = [t for t in load_tasks(spec) if t.reference is not None]
    if not loaded:
        raise BadInput(f"{spec}: no task has a reference solution to check")
    programs = [program_for(t, t.reference, seen_only=seen) for t in loaded if
                (t.seen_tests if seen else t.tests)]
    failures = []
    for program, result in run_many(programs, Limits(test_timeout=timeout), workers,
                                    progress=True, total=len(programs)):
        if not result.passed:
            failures.append((program.key, result.feedback))
    console = Console()
    if failures:
        table = Table(title=f"{len(failures)} reference solutions fail their tests")
        table.add_column("task")
        table.add_column("first failure")
        for key, feedback in sorted(failures):
            table.add_row(key, feedback)
        console.print(table)
        raise WorkFailed(f"{len(failures)} of {len(programs)} reference solutions failed")
    console.print(f"all {len(programs)} reference solutions pass their "
                  f"{'seen' if seen else 'hidden'} tests")


@tasks.command("export")
@click.argument("spec", metavar="TASKS")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .jsonl file, or a directory for a Hugging Face dataset (save_to_disk).")
def tasks_export(spec: str, output: Path) -> None:
    """Write a task set as JSONL or as a Hugging Face dataset."""
    from localdistill.tasks import load_tasks, save_jsonl, tasks_to_dataset

    loaded = load_tasks(spec)
    if output.suffix == ".jsonl":
        save_jsonl(loaded, output)
    else:
        tasks_to_dataset(loaded).save_to_disk(str(output))
    click.echo(f"wrote {len(loaded)} tasks to {output}")


tasks.help = f"{tasks.help}\n\n{TASKS_HELP}"


def main() -> None:
    cli(prog_name="localdistill")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
