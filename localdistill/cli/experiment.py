"""`localdistill run CONFIG.toml`: collect, train, evaluate and report in one command."""

from __future__ import annotations

from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.cli.pipeline import reuse_option


@cli.command("run")
@click.argument("config_file", metavar="CONFIG.toml",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run directory (default: runs/<config name>); resumed if it exists.")
@reuse_option
def run_command(config_file: Path, run_dir: Path | None, reuse: tuple[Path, ...]) -> None:
    """The whole loop: collect -> train one adapter per method -> evaluate the base student and
    every adapter -> report. Run it again after any interruption: it picks up where it stopped."""
    from rich.console import Console

    from localdistill.experiment import load_config, run_loop
    from localdistill.progress import Progress

    config = load_config(config_file)
    run_dir = run_dir or Path("runs") / config_file.stem
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 200
    with Progress(Console(stderr=True)) as progress:
        run_loop(config, run_dir, progress, say=out.print, reuse=reuse)
    click.echo(f"everything is in {run_dir}; the report in {run_dir / 'report'}")
