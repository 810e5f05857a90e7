"""`collect`: the whole data pipeline in order, attempt -> execute -> teacher answers ->
differential check -> refine + verify -> build, in one resumable run directory.

Multi-round distillation: round k+1 is another `collect` whose student is the one trained in
round k (its adapter) and whose `previous` is round k's run directory; the new student attempts
every task, only what it still fails is refined, and round k's rows are carried into the new sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localdistill import manifest
from localdistill.backends import get_model, with_trained_adapter
from localdistill.errors import BadInput
from localdistill.models import ModelSpec
from localdistill.progress import Measure, PerExample, Progress, StageReport
from localdistill.records import failed_task_ids
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits
from localdistill.stages.attempt import attempt
from localdistill.stages.build import STAGE as BUILD_STAGE
from localdistill.stages.build import build
from localdistill.stages.build.methods import METHODS, default_methods, get_method
from localdistill.stages.differential import DEFAULT_INPUTS as DIFFERENTIAL_INPUTS
from localdistill.stages.differential import STAGE as DIFFERENTIAL_STAGE
from localdistill.stages.differential import differential_check
from localdistill.stages.direct import direct_answers
from localdistill.stages.execute import execute_attempts
from localdistill.stages.refine import (
    DEFAULT,
    ROUNDS,
    UNCHANGED_RETRIES,
    get_strategy,
    refine,
)
from localdistill.stages.refine import STAGE as REFINE_STAGE
from localdistill.stages.refine.guides import shows_teacher
from localdistill.stages.score import check_pair, score_in_run
from localdistill.tasks.record import Task


@dataclass(frozen=True)
class CollectConfig:
    """Everything that decides what `collect` produces (recorded in the run's manifest)."""

    student: str = field(metadata={"help": "the student, a name in models.toml"})
    teacher: str = field(metadata={"help": "the teacher, a name in models.toml"})
    samples: int = field(default=1, metadata={"help": "student attempts per task"})
    temperature: float | None = field(default=None, metadata={
        "help": "student sampling temperature (default: models.toml)"})
    max_tokens: int | None = field(default=None, metadata={
        "help": "tokens per student answer (default: models.toml)"})
    teacher_temperature: float | None = field(default=None, metadata={
        "help": "teacher temperature (default: models.toml)"})
    teacher_max_tokens: int | None = field(default=None, metadata={
        "help": "tokens per teacher answer (default: models.toml)"})
    rounds: int = field(default=ROUNDS, metadata={
        "help": "refinement rounds in all: the first, plus retries with the new feedback"})
    unchanged_retries: int = field(default=UNCHANGED_RETRIES, metadata={
        "help": "re-asks, sampling, when the teacher hands the student's code back unchanged"})
    strategy: str = field(default=DEFAULT, metadata={
        "help": "how the teacher refines (stages/refine/strategies.py; `localdistill probe` "
                "compares them)"})
    keep_copies: bool = field(default=True, metadata={
        "help": "whether verified refinements that are copies of the guide enter the PERsD sets"})
    methods: tuple[str, ...] = field(default=default_methods(), metadata={
        "help": "data sets to build"})
    seed: int = field(default=0, metadata={"help": "seed of the first sample"})
    differential_inputs: int = field(default=DIFFERENTIAL_INPUTS, metadata={
        "help": "inputs generated per task from its tests' calls, on which answers that pass "
                "the tests must agree with the reference where a second verified solution "
                "does (stages/differential.py); 0: no differential check. A run made before "
                "the check existed keeps running without it"})
    test_timeout: float = field(default=Limits.test_timeout, metadata={"help": "seconds per test"})
    workers: int | None = field(default=None, metadata={"help": "parallel sandboxes"})
    student_adapter: str | None = field(default=None, metadata={
        "help": "a LoRA adapter for the student (the one trained in the previous round)"})
    previous: str | None = field(default=None, metadata={
        "help": "the previous distillation round's run directory: its rows are carried over"})

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # an unknown name: BadInput, one line
        get_strategy(self.strategy)  # an unknown name: StrategyError, one line
        if self.samples < 1 or self.rounds < 1 or self.unchanged_retries < 0:
            raise BadInput("samples and rounds must be at least 1, unchanged_retries >= 0")
        for name in ("temperature", "teacher_temperature"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise BadInput(f"{name} must be 0 (greedy) or more")
        if self.differential_inputs < 0:
            raise BadInput("differential_inputs must be 0 (no differential check) or more")
        for name in ("max_tokens", "teacher_max_tokens", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1")


def collect(tasks: Sequence[Task], config: CollectConfig, run: RunDir, tasks_spec: str = "",
            progress: Progress | None = None,
            on_stage: Callable[[StageReport], None] | None = None) -> list[StageReport]:
    """Run every stage; each stage's report goes to the manifest and to `on_stage`."""
    student, teacher = _student(config), get_model(config.teacher)
    # a pair that cannot score is refused now, not after hours of refining
    for role in sorted({role for role, _ in scorers(config.methods)}):
        check_pair(student, student if role == "student" else teacher)
    distill_round = _distill_round(config)
    config = _as_made(config, run)
    manifest.record(run, config=dataclasses.asdict(config), tasks=manifest.tasks_entry(
        tasks_spec, tasks), student=manifest.model_entry(student),
        teacher=manifest.model_entry(teacher), distill_round=distill_round)
    limits = Limits(test_timeout=config.test_timeout)
    reports: list[StageReport] = []

    def done(report: StageReport) -> None:
        manifest.record(run, report=report)
        reports.append(report)
        if on_stage:
            on_stage(report)

    done(attempt(tasks, student, run, config.samples, config.temperature, config.max_tokens,
                 config.seed, progress))
    done(execute_attempts(tasks, run, limits, config.workers, progress))
    # The teacher's own answers come first: a strategy may show them as guides.
    failed = failed_task_ids(run)
    needs = {METHODS[m].teacher for m in config.methods} - {None}  # "all" or "failed" tasks
    if needs or _guided_by_teacher(config.strategy, [t for t in tasks if t.task_id in failed]):
        wanted = tasks if "all" in needs else [t for t in tasks if t.task_id in failed]
        done(direct_answers(wanted, teacher, run, 1, config.teacher_temperature,
                            config.teacher_max_tokens, config.seed, limits, config.workers,
                            progress))
    else:
        run.write("direct", [])
    differential = None
    if config.differential_inputs:
        differential = (config.differential_inputs, config.seed)
        done(differential_check(tasks, run, config.differential_inputs, config.seed, limits,
                                config.workers, progress))
    done(refine(tasks, teacher, run, config.rounds, config.teacher_temperature,
                config.teacher_max_tokens, limits, config.workers, config.unchanged_retries,
                progress=progress, strategy=config.strategy, differential=differential))
    for role, context in scorers(config.methods):  # the token-level methods' scores
        done(score_in_run(tasks, run, student, student if role == "student" else teacher, role,
                          progress, context))
    built = build(tasks, run, config.methods,
                  Path(config.previous) if config.previous else None, distill_round,
                  config.keep_copies)
    done(_with_costs(built, reports, run.read_json("manifest").get("history", [])))
    return reports


def scorers(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Who must score the student's attempts for these data sets ("teacher", "student"), and
    with which context (stages/score.py, CONTEXTS)."""
    return sorted({(METHODS[m].scored_by, METHODS[m].context) for m in methods
                   if METHODS[m].scored_by is not None})


def _with_costs(built: StageReport, reports: list[StageReport],
                history: list[dict]) -> StageReport:
    """The paper's cost figure (4-6 dollars of ChatGPT for 2.5-3K examples), in our currency:
    the teacher's tokens and minutes per verified example. Minutes are summed over every run of
    the stage (`history`), so a resumed collect still counts the work done before an
    interruption (Ctrl-C or SIGTERM; the time of a run killed by SIGKILL is lost)."""
    by_stage = {r.stage: r for r in reports}  # each stage module's STAGE

    def minutes(stage: str) -> float:
        return sum(h["seconds"] for h in history if h.get("stage") == stage) / 60

    for method in (m for m in METHODS.values() if m.cost_per_example):
        name, stage = method.label, method.cost_per_example
        report, examples = by_stage.get(stage), built.value(f"examples:{method.name}")
        if report is None or examples is None:
            continue
        built.count_all({
            f"teacher tokens per {name} example": PerExample(report.teacher_tokens, examples, 0),
            f"teacher minutes per {name} example": report.per_example(minutes(stage), examples,
                                                                      digits=2)})
    built.count_all({
        "teacher tokens in all": sum(r.teacher_tokens for r in reports),
        "student tokens in all": sum(r.student_tokens for r in reports),
        "minutes of all stages, all runs": Measure(sum(h["seconds"] for h in history) / 60,
                                                   ".1f")})
    return built


def _as_made(config: CollectConfig, run: RunDir) -> CollectConfig:
    """The configuration a resumed run keeps: a run whose verdicts were made without the
    differential check goes on without one, so resuming or rebuilding it never changes its
    verdicts or asks the teacher anything new. Told by what ran, not by what was configured: a
    recorded configuration without `differential_inputs` (made before the check existed), or a
    refine or build stage that finished with no differential check before it."""
    earlier = run.read_json("manifest") if (run.path / "manifest.json").is_file() else {}
    made = earlier.get("config") or {}
    ran = [entry.get("stage") for entry in earlier.get("history") or []]
    checked = DIFFERENTIAL_STAGE in ran
    first_check = ran.index(DIFFERENTIAL_STAGE) if checked else len(ran)
    judged_without = any(stage in (REFINE_STAGE, BUILD_STAGE) for stage in ran[:first_check])
    if ran and ("differential_inputs" not in made or judged_without):
        return dataclasses.replace(config, differential_inputs=0)
    return config


def _guided_by_teacher(strategy: str, failed: Sequence[Task]) -> bool:
    """Whether the strategy shows the teacher's own answers to (some of) the failed tasks."""
    chosen = get_strategy(strategy)
    return any(shows_teacher(chosen, task) for task in failed)


def _student(config: CollectConfig) -> ModelSpec:
    spec = get_model(config.student)
    if config.student_adapter:
        adapter = Path(config.student_adapter)
        spec = with_trained_adapter(spec, adapter, f"{spec.name}+{adapter.name}")
    return spec


def _distill_round(config: CollectConfig) -> int:
    if not config.previous:
        return 1
    previous = Path(config.previous)
    if not (previous / "manifest.json").is_file():
        raise BadInput(f"--previous: {previous} is not a localdistill run directory "
                       "(no manifest.json)")
    with RunDir(previous) as earlier:
        return int(earlier.read_json("manifest").get("distill_round", 1)) + 1
