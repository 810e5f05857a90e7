"""`localdistill eval` (pass@k, single-step and self-rectifying) and `report` (runs compared)."""

from __future__ import annotations

from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.cli.options import ConfigCommand, config_option
from localdistill.cli.pipeline import (
    limit_option,
    reuse_option,
    run_option,
    sandbox_options,
    tasks_argument,
)
from localdistill.cli.tasks import SpecHelp

EVAL = "localdistill.stages.evaluate:EvalConfig"


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in value.split(",") if k.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected numbers like 1,5,10") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"{value!r}: every k must be 1 or more")
    return ks


class _EvalCommand(SpecHelp, ConfigCommand):
    pass


@cli.command("eval", cls=_EvalCommand)
@tasks_argument
@click.option("--model", "model_name", required=True,
              help="A name in models.toml (NAME+DIR: with the adapter `train` wrote to DIR).")
@click.option("--adapter", type=click.Path(exists=True, path_type=Path), default=None,
              help="A `localdistill train` output (or an adapter) to put on the model.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Score the answers recorded in this file (an earlier evaluation's "
                   "cache/requests.jsonl) instead of asking the model: to judge again answers "
                   "whose model or adapter is gone. --adapter then names the training output "
                   "(train.json) of the adapter that wrote them.")
@run_option
@reuse_option
@config_option(EVAL, "samples", "-n", "--samples", min=1)
@config_option(EVAL, "temperature", min=0)
@config_option(EVAL, "max_tokens", min=1)
@config_option(EVAL, "seed")
@config_option(EVAL, "steps", min=0)
@config_option(EVAL, "ks", "-k", parse=_ks)
@config_option(EVAL, "plus", min=0)
@config_option(EVAL, "plus_second", type=click.Path(exists=True, file_okay=False))
@limit_option
@sandbox_options
def eval_command(spec: str, model_name: str, adapter: Path | None, replay: Path | None,
                 run_dir: Path, reuse: tuple[Path, ...], limit: int | None,
                 workers: int | None, timeout: float, **settings) -> None:
    """pass@k of a model on TASKS."""
    from rich.console import Console

    from localdistill.backends import get_model, replayed, with_trained_adapter
    from localdistill.progress import Progress
    from localdistill.rundir import RunDir
    from localdistill.sandbox import Limits
    from localdistill.stages.evaluate import EvalConfig, evaluate
    from localdistill.tasks import load_tasks

    model = get_model(model_name)
    if replay is not None:
        model = replayed(model, replay, adapter)
    elif adapter is not None:
        if model.adapter:
            raise click.BadParameter(f"{model_name} already has an adapter",
                                     param_hint="--adapter")
        model = with_trained_adapter(model, adapter, f"{model_name}+{adapter}")
    tasks = load_tasks(spec)[:limit]
    config = EvalConfig(**settings)
    with RunDir(run_dir, reuse) as run, Progress(Console(stderr=True)) as progress:
        summary = evaluate(tasks, model, run, config, Limits(test_timeout=timeout), workers,
                           progress, benchmark=spec)
    Console(highlight=False).print(summary["report"].table())
    click.echo(f"samples in {run_dir / 'samples.jsonl'}, summary in {run_dir / 'summary.json'}")


@cli.command("report")
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("report"), show_default=True,
              help="Where report.json and the plots go.")
def report_command(runs: tuple[Path, ...], out: Path) -> None:
    """Evaluation runs side by side: a table, report.json and PNG plots (pass@1 by method and
    step, pass@1 against training-set size, the paired differences); the paper's claims read off
    the paired comparisons (claims.json)."""
    from rich.console import Console

    from localdistill.stages.report import report, tables

    entries, plots = report(list(runs), out)
    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: keep the table's rows whole
        console.width = 200
    for shown in tables(entries):
        console.print(shown)
    for path in plots:
        click.echo(f"plot: {path}")
