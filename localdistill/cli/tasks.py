"""`localdistill tasks ...`: inspect, check and convert task sets."""

from __future__ import annotations

from pathlib import Path

import click

from localdistill.cli.base import WorkFailed, _Group, cli
from localdistill.errors import BadInput


class SpecHelp:
    """Mixed into a command whose help ends with what TASKS may name: `spec_help()`, from the
    benchmarks' declarations. It is read only when the help is shown, as reading it imports
    every task module, which would slow the start of every command."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from localdistill.tasks import spec_help

        super().format_help_text(ctx, formatter)
        with formatter.section("TASKS (one set, or several joined by commas)"):
            formatter.write_dl(spec_help())


class _TasksGroup(SpecHelp, _Group):
    pass


@cli.group(cls=_TasksGroup)
def tasks() -> None:
    """Inspect, check and convert task sets: benchmarks, or your own JSONL."""


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

    from localdistill.progress import Progress
    from localdistill.sandbox import Limits, program_for, run_many
    from localdistill.tasks import load_tasks

    loaded = [t for t in load_tasks(spec) if t.reference is not None]
    if not loaded:
        raise BadInput(f"{spec}: no task has a reference solution to check")
    programs = [program_for(t, t.reference, seen_only=seen) for t in loaded if
                (t.seen_tests if seen else t.tests)]
    failures = []
    with Progress(Console(stderr=True)) as progress:
        for program, result in run_many(programs, Limits(test_timeout=timeout), workers,
                                        progress.bar("checking", len(programs))):
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
