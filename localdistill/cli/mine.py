"""`localdistill mine`: a task set (and the user's own evaluation set) from a Python repository."""

from __future__ import annotations

from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.cli.options import ConfigCommand, config_option
from localdistill.cli.pipeline import GEN_TESTS, RUN_HELP, sandbox_options
from localdistill.errors import BadInput

MINE = "localdistill.stages.mine:MineConfig"


@cli.command("mine", cls=ConfigCommand)
@click.argument("repo", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The task file to write (.jsonl); the held-out tasks go beside it, to "
                   "<name>.heldout.jsonl.")
@click.option("--teacher", required=True, help="The model that proposes inputs (models.toml).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help=RUN_HELP)
@config_option(GEN_TESTS, "count", min=1)
@config_option(GEN_TESTS, "min_tests", min=1)
@config_option(MINE, "held_out", min=0, max=1, max_open=True)
@click.option("--decontaminate", "against", multiple=True, metavar="TASKS",
              help="Another evaluation set mined tasks must not copy (a task file or spec), "
                   "besides HumanEval and MBPP's test split; repeatable.")
@config_option(GEN_TESTS, "temperature", min=0)
@config_option(GEN_TESTS, "max_tokens", min=1)
@config_option(GEN_TESTS, "per_behaviour", min=0)
@click.option("--site-packages", is_flag=True,
              help="Mine functions that import installed third-party packages too (the sandbox "
                   "then lets them import them).")
@config_option(MINE, "limit", min=1)
@sandbox_options
def mine_command(repo: Path, output: Path, teacher: str, run_dir: Path, count: int,
                 min_tests: int, held_out: float, against: tuple[str, ...],
                 temperature: float | None, max_tokens: int | None, per_behaviour: int,
                 site_packages: bool, limit: int | None, workers: int | None,
                 timeout: float) -> None:
    """Tasks from the functions of a Python repository: the teacher proposes inputs, the real
    function gives the expected outputs; near-copies of evaluation tasks are dropped and a share
    is held out as your own evaluation set. Nothing is sent anywhere but the teacher."""
    from rich.console import Console

    from localdistill import manifest
    from localdistill.progress import Progress
    from localdistill.rundir import RunDir
    from localdistill.sandbox import Limits
    from localdistill.stages.mine import evaluation_sets, mine, python_files
    from localdistill.tasks import save_jsonl

    if not repo.is_dir():
        raise BadInput(f"{repo}: not a directory; give the repository's folder")
    if output.suffix != ".jsonl":
        raise click.BadParameter("expected a .jsonl file", param_hint="--output")
    if not python_files(repo):
        raise BadInput(f"{repo}: no Python files (tests, virtual environments and what "
                       ".gitignore ignores are left out)")
    evaluation, notes = evaluation_sets(against)
    out = Console(highlight=False)
    with RunDir(run_dir) as run, Progress(Console(stderr=True)) as progress:
        report = mine(repo, teacher, run, against=evaluation, held_out=held_out, count=count,
                      min_tests=min_tests,
                      limits=Limits(test_timeout=timeout, site_packages=site_packages),
                      limit=limit, workers=workers, temperature=temperature,
                      max_tokens=max_tokens, progress=progress, per_behaviour=per_behaviour)
        for stage in (report.stats.stage_report(), report.decontamination_report(),
                      report.gen_tests.stage_report()):
            manifest.record(run, report=stage)
            out.print(stage.table())
    held_path = output.with_name(f"{output.stem}.heldout.jsonl")
    output.parent.mkdir(parents=True, exist_ok=True)
    for tasks, path in ((report.tasks, output), (report.held_out, held_path)):
        staging = path.with_name(f".{path.name}.tmp")
        save_jsonl(tasks, staging)
        staging.replace(path)
    for note in notes:
        out.print(f"note: {note}", soft_wrap=True)
    shown = [*report.contaminated.items()][:10]
    for task_id, match in shown:
        out.print(f"dropped {task_id}: {match.reason}", soft_wrap=True)
    for task_id, reason in list(report.gen_tests.skipped.items())[:10]:
        out.print(f"no tests {task_id}: {reason}", soft_wrap=True)
    out.print(f"every function's fate: {run_dir / 'mine.jsonl'}", soft_wrap=True)
    tests = sum(len(t.tests) for t in report.tasks)
    held_tests = sum(len(t.tests) for t in report.held_out)
    out.print(f"wrote {len(report.tasks)} tasks with {tests} tests to {output}", soft_wrap=True)
    out.print(f"wrote {len(report.held_out)} held-out tasks with {held_tests} tests to "
              f"{held_path}", soft_wrap=True)
