"""`localdistill examples RUN`: a collect run's personalised examples, read side by side."""

from __future__ import annotations

from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.errors import BadInput


@cli.command("examples")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--all", "include_failed", is_flag=True,
              help="Include the refinements that failed their tests (default: verified only).")
@click.option("--task", "task_id", metavar="ID", default=None,
              help="Only the refinements of this task id.")
@click.option("--limit", type=click.IntRange(1), metavar="N", default=None,
              help="At most N refinements.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write them to this Markdown file.")
@click.option("--tasks", "spec", metavar="TASKS", default=None,
              help="The run's task set, to show a refinement written as a bare function body "
                   "under its prompt's header (default: the set the run's manifest names).")
def examples_command(run_dir: Path, include_failed: bool, task_id: str | None,
                     limit: int | None, output: Path | None, spec: str | None) -> None:
    """A run's personalised examples: each attempt beside its refinement.

    For each verified refinement of RUN_DIR: the student's attempt and the teacher's refinement
    side by side, the attempt's execution feedback, the guide the teacher was shown, the
    similarity figures and a diff. Only reads the run: it may be looked at while a collect is
    still writing it."""
    from rich.console import Console
    from rich.markup import escape

    from localdistill.stages.build import examples as view
    from localdistill.tasks import load_tasks

    try:
        view.refinements_file(run_dir)  # before the tasks are loaded: this error comes first
        tasks, why_not = (load_tasks(spec), None) if spec else view.run_tasks(run_dir)
        examples, total = view.load_examples(run_dir, include_failed=include_failed,
                                             task_id=task_id, limit=limit, tasks=tasks)
    except view.NoRefinements as error:
        raise BadInput(str(error)) from None
    console = Console(highlight=False)
    for renderable in view.renderables(examples):
        console.print(renderable)
    kind = "refinement" if include_failed else "verified refinement"
    console.print(f"{len(examples)} {kind}{'' if len(examples) == 1 else 's'} shown, of "
                  f"{total} refinements in {run_dir}{', task ' + task_id if task_id else ''}",
                  soft_wrap=True, markup=False)
    if why_not:
        console.print(f"[dim]refinements are shown as extracted: {escape(why_not)} (pass "
                      "--tasks)[/]", soft_wrap=True)
    if output is not None:
        console.print(f"wrote {view.write_markdown(examples, run_dir, output)}", soft_wrap=True,
                      markup=False)
