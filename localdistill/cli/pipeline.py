"""The pipeline's commands: each stage on its own, and `collect` for all of them.

Every command takes the task set and a run directory; rerunning a command redoes nothing that
finished (the run's cache), so a killed run is resumed by running the same command again.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.cli.options import ConfigCommand, config_option

# The settings each stage shares with `collect` and the run config: their defaults and help live
# in these dataclasses (cli/options.py makes the options from them).
COLLECT = "localdistill.collect:CollectConfig"
SANDBOX = "localdistill.experiment:SandboxConfig"
GEN_TESTS = "localdistill.stages.gentests:GenTestsConfig"
PROBE = "localdistill.stages.refine.probe:ProbeConfig"
RUN_HELP = "The run directory (created if missing; resumed if it exists)."


def _options(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


tasks_argument = click.argument("spec", metavar="TASKS")
run_option = click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path),
                          required=True, help=RUN_HELP)
reuse_option = click.option(
    "--reuse", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
    help="Another run directory (or a folder of them) whose model answers to the very same "
         "requests (same weights, prompt and settings) are taken instead of asking again; "
         "repeatable. Read only; this run keeps its own copy.")
limit_option = click.option("--limit", type=click.IntRange(1), default=None,
                            help="Only the first N tasks.")
sandbox_options = _options(config_option(SANDBOX, "workers", min=1),
                           config_option(SANDBOX, "timeout", min=0.1))


@contextmanager
def _stage(spec: str, run_dir: Path, limit: int | None = None, reuse: tuple[Path, ...] = ()):
    """Load the tasks, open the run directory, show progress on stderr; yields (tasks, run,
    progress, show) where show(report) records a stage's report and prints its table."""
    from rich.console import Console

    from localdistill import manifest
    from localdistill.progress import Progress
    from localdistill.rundir import RunDir
    from localdistill.tasks import load_tasks

    tasks = load_tasks(spec)[:limit]
    out = Console(highlight=False)

    def show(report, record: bool = True) -> None:
        if record:
            manifest.record(run, report=report)
        out.print(report.table())

    with RunDir(run_dir, reuse) as run, Progress(Console(stderr=True)) as progress:
        yield tasks, run, progress, show


@cli.command("attempt", cls=ConfigCommand)
@tasks_argument
@config_option(COLLECT, "student", "--model")
@run_option
@reuse_option
@config_option(COLLECT, "samples", "-n", "--samples", min=1)
@config_option(COLLECT, "temperature", min=0)
@config_option(COLLECT, "max_tokens", min=1)
@limit_option
@config_option(COLLECT, "seed")
def attempt_command(spec: str, student: str, run_dir: Path, reuse: tuple[Path, ...],
                    samples: int,
                    temperature: float | None, max_tokens: int | None, limit: int | None,
                    seed: int) -> None:
    """Stage 1: the student attempts every task -> RUN/attempts.jsonl."""
    from localdistill.stages.attempt import attempt

    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        show(attempt(tasks, student, run, samples, temperature, max_tokens, seed, progress))


@cli.command("execute", cls=ConfigCommand)
@tasks_argument
@run_option
@sandbox_options
def execute_command(spec: str, run_dir: Path, workers: int | None, timeout: float) -> None:
    """Stage 2: every attempt against its task's tests, in the sandbox -> RUN/executions.jsonl."""
    from localdistill.sandbox import Limits
    from localdistill.stages.execute import execute_attempts

    with _stage(spec, run_dir) as (tasks, run, progress, show):
        show(execute_attempts(tasks, run, Limits(test_timeout=timeout), workers, progress))


refine_options = _options(
    config_option(COLLECT, "rounds", min=1),
    config_option(COLLECT, "unchanged_retries", min=0),
    config_option(COLLECT, "strategy"))
# A stage that only asks the teacher calls its settings --temperature and --max-tokens.
teacher_options = _options(
    config_option(COLLECT, "teacher"),
    config_option(COLLECT, "teacher_temperature", "--temperature", min=0),
    config_option(COLLECT, "teacher_max_tokens", "--max-tokens", min=1))


@cli.command("refine", cls=ConfigCommand)
@tasks_argument
@run_option
@reuse_option
@teacher_options
@refine_options
@sandbox_options
def refine_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], teacher: str,
                   teacher_temperature: float | None, teacher_max_tokens: int | None,
                   rounds: int, unchanged_retries: int, strategy: str, workers: int | None,
                   timeout: float) -> None:
    """Stages 3-4: the teacher refines failed attempts, each verified -> RUN/refinements.jsonl."""
    from localdistill.sandbox import Limits
    from localdistill.stages.refine import refine

    with _stage(spec, run_dir, reuse=reuse) as (tasks, run, progress, show):
        show(refine(tasks, teacher, run, rounds, teacher_temperature, teacher_max_tokens,
                    Limits(test_timeout=timeout), workers, unchanged_retries,
                    progress=progress, strategy=strategy))


@cli.command("direct", cls=ConfigCommand)
@tasks_argument
@run_option
@reuse_option
@teacher_options
@click.option("--only-failed", is_flag=True,
              help="Only tasks the student failed (enough for InpD; StanD needs all).")
@limit_option
@sandbox_options
def direct_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], teacher: str,
                   teacher_temperature: float | None, teacher_max_tokens: int | None,
                   only_failed: bool, limit: int | None, workers: int | None,
                   timeout: float) -> None:
    """The baselines' data: the teacher answers tasks from scratch, verified -> RUN/direct.jsonl."""
    from localdistill.records import failed_task_ids
    from localdistill.sandbox import Limits
    from localdistill.stages.direct import direct_answers

    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        if only_failed:
            failed = failed_task_ids(run)
            tasks = [t for t in tasks if t.task_id in failed]
        show(direct_answers(tasks, teacher, run, 1, teacher_temperature, teacher_max_tokens, 0,
                            Limits(test_timeout=timeout), workers, progress))


def _methods(value: str) -> tuple[str, ...]:
    from localdistill.stages.build.methods import METHODS

    chosen = tuple(m.strip().lower() for m in value.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        got = f"unknown data set {unknown[0]!r}; " if unknown else ""
        raise click.BadParameter(f"{got}expected a comma-separated list of {', '.join(METHODS)}",
                                 param_hint="--methods")
    return chosen


methods_option = config_option(COLLECT, "methods", parse=_methods)
previous_option = config_option(
    COLLECT, "previous", type=click.Path(file_okay=False, exists=True, path_type=Path))


@cli.command("build", cls=ConfigCommand)
@tasks_argument
@run_option
@methods_option
@previous_option
def build_command(spec: str, run_dir: Path, methods: tuple[str, ...],
                  previous: Path | None) -> None:
    """Stage 5: the data sets -> RUN/data/<method>/ (Hugging Face) and RUN/data/<method>.jsonl."""
    from localdistill.stages.build import build

    with _stage(spec, run_dir) as (tasks, run, _, show):
        round_ = run.read_json("manifest").get("distill_round", 1)
        show(build(tasks, run, methods, previous, round_))


@cli.command("collect", cls=ConfigCommand)
@tasks_argument
@config_option(COLLECT, "student")
@config_option(COLLECT, "teacher")
@run_option
@reuse_option
@limit_option
@config_option(COLLECT, "samples", "-n", "--samples", min=1)
@config_option(COLLECT, "temperature", min=0)
@config_option(COLLECT, "max_tokens", min=1)
@config_option(COLLECT, "teacher_temperature", min=0)
@config_option(COLLECT, "teacher_max_tokens", min=1)
@refine_options
@config_option(COLLECT, "keep_copies", "--keep-copies/--drop-copies")
@methods_option
@config_option(COLLECT, "seed")
@config_option(COLLECT, "differential_inputs", min=0)
@config_option(COLLECT, "student_adapter", type=click.Path(exists=True))
@previous_option
@sandbox_options
def collect_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], limit: int | None,
                    previous: Path | None, workers: int | None, timeout: float,
                    **settings) -> None:
    """The whole data pipeline: attempt, execute, teacher answers, differential check, refine +
    verify, build."""
    from localdistill.collect import CollectConfig, collect

    config = CollectConfig(test_timeout=timeout, workers=workers,
                           previous=str(previous) if previous else None, **settings)
    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        collect(tasks, config, run, spec, progress,
                on_stage=lambda report: show(report, record=False))
    click.echo(f"data sets in {run_dir / 'data'}")


@cli.command("probe", cls=ConfigCommand)
@tasks_argument
@click.option("--from", "source_dir", type=click.Path(file_okay=False, exists=True,
                                                      path_type=Path), required=True,
              help="A run directory with the student's attempts executed (a collect run, or "
                   "`attempt` + `execute`); only read.")
@config_option(COLLECT, "teacher")
@run_option
@reuse_option
@config_option(PROBE, "strategies")
@config_option(PROBE, "size", "--sample", min=1)
@config_option(PROBE, "seed")
@config_option(PROBE, "temperature", min=0)
@config_option(PROBE, "max_tokens", min=1)
@sandbox_options
def probe_command(spec: str, source_dir: Path, teacher: str, run_dir: Path,
                  reuse: tuple[Path, ...], strategies: tuple[str, ...] | None, size: int,
                  seed: int,
                  temperature: float | None, max_tokens: int | None, workers: int | None,
                  timeout: float) -> None:
    """Compare refinement strategies on one seeded sample of a run's failed attempts: one table
    of verified, personalised, copied and unchanged refinements and their cost."""
    from rich.console import Console

    from localdistill.rundir import RunDir
    from localdistill.sandbox import Limits
    from localdistill.stages.refine.probe import probe, table

    if source_dir.resolve() == run_dir.resolve():
        raise click.BadParameter("the probe writes its own run directory; give another --run",
                                 param_hint="--run")
    with _stage(spec, run_dir, reuse=(*reuse, source_dir)) as (tasks, run, progress, _):
        with RunDir(source_dir) as source:
            rows = probe(tasks, teacher, source, run, strategies, size, seed, temperature,
                         max_tokens, Limits(test_timeout=timeout), workers, progress)
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 170  # a log or a pipe: the whole table, not 80 columns of wrapped names
    out.print(table(rows))
    click.echo(f"records in {run_dir}/probe-<strategy>.jsonl, the table in {run_dir}/probe.json")


@cli.command("gen-tests", cls=ConfigCommand)
@tasks_argument
@click.option("--teacher", required=True, help="The model that proposes inputs (models.toml).")
@run_option
@reuse_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The task file to write (.jsonl), the tasks with their new tests.")
@config_option(GEN_TESTS, "count", min=1)
@config_option(GEN_TESTS, "min_tests", min=1)
@config_option(GEN_TESTS, "temperature", min=0)
@config_option(GEN_TESTS, "max_tokens", min=1)
@config_option(GEN_TESTS, "per_behaviour", min=0)
@click.option("--site-packages", is_flag=True,
              help="Let the reference import installed third-party packages (numpy...).")
@limit_option
@sandbox_options
def gen_tests_command(spec: str, teacher: str, run_dir: Path, reuse: tuple[Path, ...],
                      output: Path, count: int,
                      min_tests: int, temperature: float | None, max_tokens: int | None,
                      per_behaviour: int, site_packages: bool, limit: int | None,
                      workers: int | None, timeout: float) -> None:
    """Tests for tasks that have a reference but no tests: the teacher proposes inputs, the
    reference (in the sandbox, run twice) gives the expected outputs."""
    from rich.console import Console

    from localdistill.sandbox import Limits
    from localdistill.stages.gentests import generate_tests
    from localdistill.tasks import save_jsonl

    if output.suffix != ".jsonl":
        raise click.BadParameter("expected a .jsonl file", param_hint="--output")
    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        report = generate_tests(tasks, teacher, run, count, min_tests,
                                Limits(test_timeout=timeout, site_packages=site_packages),
                                workers, temperature, max_tokens, progress, per_behaviour)
        show(report.stage_report())
    staging = output.with_name(f".{output.name}.tmp")
    save_jsonl(report.tasks, staging)
    staging.replace(output)
    out = Console(highlight=False)
    for task_id, reason in list(report.skipped.items())[:10]:
        out.print(f"skipped {task_id}: {reason}", soft_wrap=True)
    if len(report.skipped) > 10:
        out.print(f"... and {len(report.skipped) - 10} more (all in {run_dir}/gen_tests.jsonl)")
    out.print(f"wrote {len(report.tasks)} tasks with {report.kept} tests to {output}")
