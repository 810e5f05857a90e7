"""The pipeline's commands: each stage on its own, and `collect` for all of them.

Every command takes the task set and a run directory; rerunning a command redoes nothing that
finished (the run's cache), so a killed run is resumed by running the same command again.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from localdistill.cli.base import cli

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
sandbox_options = _options(
    click.option("--workers", type=click.IntRange(1), default=None,
                 help="Parallel sandboxes (default: one per core)."),
    click.option("--timeout", type=click.FloatRange(0.1), default=3.0, show_default=True,
                 help="Seconds per test."))


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


@cli.command("attempt")
@tasks_argument
@click.option("--model", "model_name", required=True, help="The student, a name in models.toml.")
@run_option
@reuse_option
@click.option("-n", "--samples", type=click.IntRange(1), default=1, show_default=True)
@click.option("--temperature", type=click.FloatRange(0), default=None, help="Default: models.toml.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default: models.toml.")
@limit_option
@click.option("--seed", type=int, default=0, show_default=True)
def attempt_command(spec: str, model_name: str, run_dir: Path, reuse: tuple[Path, ...],
                    samples: int,
                    temperature: float | None, max_tokens: int | None, limit: int | None,
                    seed: int) -> None:
    """Stage 1: the student attempts every task -> RUN/attempts.jsonl."""
    from localdistill.attempt import attempt

    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        show(attempt(tasks, model_name, run, samples, temperature, max_tokens, seed, progress))


@cli.command("execute")
@tasks_argument
@run_option
@sandbox_options
def execute_command(spec: str, run_dir: Path, workers: int | None, timeout: float) -> None:
    """Stage 2: every attempt against its task's tests, in the sandbox -> RUN/executions.jsonl."""
    from localdistill.attempt import execute_attempts
    from localdistill.execute import Limits

    with _stage(spec, run_dir) as (tasks, run, progress, show):
        show(execute_attempts(tasks, run, Limits(test_timeout=timeout), workers, progress))


# Static help: listing the registry here would import the refine stage with every command.
strategy_option = click.option(
    "--strategy", default=None,
    help="How the teacher refines: a strategy of localdistill/refine/strategies.py (default: "
         "its DEFAULT; the list and the measurements: docs/refinement.md; `localdistill probe` "
         "compares them on your own failures).")
teacher_options = _options(
    click.option("--teacher", required=True, help="The teacher, a name in models.toml."),
    click.option("--temperature", type=click.FloatRange(0), default=None,
                 help="Default: models.toml."),
    click.option("--max-tokens", type=click.IntRange(1), default=None,
                 help="Default: models.toml."))


@cli.command("refine")
@tasks_argument
@run_option
@reuse_option
@teacher_options
@click.option("--rounds", type=click.IntRange(1), default=2, show_default=True,
              help="Refinement rounds in all (the first, plus retries with new feedback).")
@click.option("--unchanged-retries", type=click.IntRange(0), default=2, show_default=True,
              help="Re-asks (sampling) when the teacher returns the student's code unchanged.")
@strategy_option
@sandbox_options
def refine_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], teacher: str,
                   temperature: float | None, max_tokens: int | None, rounds: int,
                   unchanged_retries: int, strategy: str | None, workers: int | None,
                   timeout: float) -> None:
    """Stages 3-4: the teacher refines failed attempts, each verified -> RUN/refinements.jsonl."""
    from localdistill.execute import Limits
    from localdistill.refine import DEFAULT, get_strategy, refine

    chosen = get_strategy(strategy or DEFAULT)
    with _stage(spec, run_dir, reuse=reuse) as (tasks, run, progress, show):
        show(refine(tasks, teacher, run, rounds, temperature, max_tokens,
                    Limits(test_timeout=timeout), workers, unchanged_retries,
                    progress=progress, strategy=chosen))


@cli.command("direct")
@tasks_argument
@run_option
@reuse_option
@teacher_options
@click.option("--only-failed", is_flag=True,
              help="Only tasks the student failed (enough for InpD; StanD needs all).")
@limit_option
@sandbox_options
def direct_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], teacher: str,
                   temperature: float | None, max_tokens: int | None, only_failed: bool,
                   limit: int | None, workers: int | None, timeout: float) -> None:
    """The baselines' data: the teacher answers tasks from scratch, verified -> RUN/direct.jsonl."""
    from localdistill.direct import direct_answers
    from localdistill.execute import Limits

    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        if only_failed:
            failed = {e["task_id"] for e in run.records("executions") if not e["passed"]}
            tasks = [t for t in tasks if t.task_id in failed]
        show(direct_answers(tasks, teacher, run, 1, temperature, max_tokens, 0,
                            Limits(test_timeout=timeout), workers, progress))


def _methods(value: str) -> tuple[str, ...]:
    from localdistill.build import METHODS

    chosen = tuple(m.strip().lower() for m in value.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        got = f"unknown data set {unknown[0]!r}; " if unknown else ""
        raise click.BadParameter(f"{got}expected a comma-separated list of {', '.join(METHODS)}",
                                 param_hint="--methods")
    return chosen


def _all_methods() -> str:
    from localdistill.build import METHODS

    return ",".join(METHODS)


methods_option = click.option("--methods", default=_all_methods, show_default="all of them",
                              help="The data sets to build.")
previous_option = click.option(
    "--previous", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
    help="The previous distillation round's run directory: its rows are carried over.")


@cli.command("build")
@tasks_argument
@run_option
@methods_option
@previous_option
def build_command(spec: str, run_dir: Path, methods: str, previous: Path | None) -> None:
    """Stage 5: the data sets -> RUN/data/<method>/ (Hugging Face) and RUN/data/<method>.jsonl."""
    from localdistill.build import build

    chosen = _methods(methods)
    with _stage(spec, run_dir) as (tasks, run, _, show):
        round_ = run.read_json("manifest").get("distill_round", 1)
        show(build(tasks, run, chosen, previous, round_))


@cli.command("collect")
@tasks_argument
@click.option("--student", required=True, help="The student, a name in models.toml.")
@click.option("--teacher", required=True, help="The teacher, a name in models.toml.")
@run_option
@reuse_option
@limit_option
@click.option("-n", "--samples", type=click.IntRange(1), default=1, show_default=True,
              help="Student attempts per task.")
@click.option("--temperature", type=click.FloatRange(0), default=None,
              help="Student temperature (default: models.toml).")
@click.option("--max-tokens", type=click.IntRange(1), default=None,
              help="Student tokens per answer (default: models.toml).")
@click.option("--teacher-temperature", type=click.FloatRange(0), default=None,
              help="Default: models.toml.")
@click.option("--teacher-max-tokens", type=click.IntRange(1), default=None,
              help="Default: models.toml.")
@click.option("--rounds", type=click.IntRange(1), default=2, show_default=True,
              help="Refinement rounds in all (the first, plus retries with new feedback).")
@click.option("--unchanged-retries", type=click.IntRange(0), default=2, show_default=True,
              help="Re-asks (sampling) when the teacher returns the student's code unchanged.")
@strategy_option
@click.option("--drop-copies", "keep_copies", flag_value=False, default=None,
              help="Leave refinements that copy the guide out of the PERsD sets.")
@methods_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--student-adapter", type=click.Path(exists=True), default=None,
              help="The student's LoRA adapter (from the previous distillation round).")
@previous_option
@sandbox_options
def collect_command(spec: str, run_dir: Path, reuse: tuple[Path, ...], limit: int | None,
                    methods: str,
                    previous: Path | None, timeout: float, **settings) -> None:
    """The whole data pipeline: attempt, execute, refine + verify, teacher answers, build."""
    from localdistill.collect import CollectConfig, collect

    given = {k: v for k, v in settings.items() if v is not None}  # the rest: CollectConfig's
    config = CollectConfig(methods=_methods(methods), test_timeout=timeout,
                           previous=str(previous) if previous else None, **given)
    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        collect(tasks, config, run, spec, progress,
                on_stage=lambda report: show(report, record=False))
    click.echo(f"data sets in {run_dir / 'data'}")


@cli.command("probe")
@tasks_argument
@click.option("--from", "source_dir", type=click.Path(file_okay=False, exists=True,
                                                      path_type=Path), required=True,
              help="A run directory with the student's attempts executed (a collect run, or "
                   "`attempt` + `execute`); only read.")
@click.option("--teacher", required=True, help="The teacher, a name in models.toml.")
@run_option
@reuse_option
@click.option("--strategies", default=None,
              help="Comma-separated strategies to compare (default: all declared).")
@click.option("--sample", "size", type=click.IntRange(1), default=60, show_default=True,
              help="Failed attempts to try every strategy on (the same for all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option("--temperature", type=click.FloatRange(0), default=None,
              help="Teacher temperature for strategies that set none (default: models.toml).")
@click.option("--max-tokens", type=click.IntRange(1), default=None,
              help="Default: the strategy's, else models.toml.")
@sandbox_options
def probe_command(spec: str, source_dir: Path, teacher: str, run_dir: Path,
                  reuse: tuple[Path, ...], strategies: str | None, size: int, seed: int,
                  temperature: float | None, max_tokens: int | None, workers: int | None,
                  timeout: float) -> None:
    """Compare refinement strategies on one seeded sample of a run's failed attempts: one table
    of verified, personalised, copied and unchanged refinements and their cost."""
    from rich.console import Console

    from localdistill.execute import Limits
    from localdistill.probe import probe, table
    from localdistill.refine import STRATEGIES, get_strategy
    from localdistill.rundir import RunDir

    names = [n.strip() for n in strategies.split(",") if n.strip()] if strategies else list(
        STRATEGIES)
    for name in names:
        get_strategy(name)
    if source_dir.resolve() == run_dir.resolve():
        raise click.BadParameter("the probe writes its own run directory; give another --run",
                                 param_hint="--run")
    with _stage(spec, run_dir, reuse=(*reuse, source_dir)) as (tasks, run, progress, _):
        with RunDir(source_dir) as source:
            rows = probe(tasks, teacher, source, run, names, size, seed, temperature,
                         max_tokens, Limits(test_timeout=timeout), workers, progress)
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 170  # a log or a pipe: the whole table, not 80 columns of wrapped names
    out.print(table(rows))
    click.echo(f"records in {run_dir}/probe-<strategy>.jsonl, the table in {run_dir}/probe.json")


@cli.command("gen-tests")
@tasks_argument
@click.option("--teacher", required=True, help="The model that proposes inputs (models.toml).")
@run_option
@reuse_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The task file to write (.jsonl), the tasks with their new tests.")
@click.option("--count", type=click.IntRange(1), default=10, show_default=True,
              help="Inputs to ask the teacher for, per task.")
@click.option("--min-tests", type=click.IntRange(1), default=3, show_default=True,
              help="Tasks left with fewer tests are reported and skipped.")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="Default: models.toml.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default: models.toml.")
@click.option("--site-packages", is_flag=True,
              help="Let the reference import installed third-party packages (numpy...).")
@limit_option
@sandbox_options
def gen_tests_command(spec: str, teacher: str, run_dir: Path, reuse: tuple[Path, ...],
                      output: Path, count: int,
                      min_tests: int, temperature: float | None, max_tokens: int | None,
                      site_packages: bool, limit: int | None, workers: int | None,
                      timeout: float) -> None:
    """Tests for tasks that have a reference but no tests: the teacher proposes inputs, the
    reference (in the sandbox, run twice) gives the expected outputs."""
    from rich.console import Console

    from localdistill.execute import Limits
    from localdistill.gentests import generate_tests
    from localdistill.tasks import save_jsonl

    if output.suffix != ".jsonl":
        raise click.BadParameter("expected a .jsonl file", param_hint="--output")
    with _stage(spec, run_dir, limit, reuse) as (tasks, run, progress, show):
        report = generate_tests(tasks, teacher, run, count, min_tests,
                                Limits(test_timeout=timeout, site_packages=site_packages),
                                workers, temperature, max_tokens, progress)
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
