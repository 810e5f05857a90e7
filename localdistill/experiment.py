"""`localdistill run CONFIG.toml`: the whole loop in one resumable run directory.

collect (the student's attempts, the teacher's refinements and answers, the data sets) -> train
one adapter per method -> evaluate the base student and every adapter on every benchmark (one
evaluation with `steps` repair steps gives the single-step numbers too: its step 0) -> report.

The run directory:

    RUN/config.toml          the configuration this run was started with
    RUN/collect/             the data pipeline's run (data sets in RUN/collect/data/)
    RUN/train/METHOD/        each adapter (`localdistill train` output)
    RUN/collect-roundK/METHOD/, RUN/train/METHOD-roundK/
                             further distillation rounds (`distill_rounds`), PERsD family and
                             inpd-matched only
    RUN/eval/MODEL/BENCH/    each evaluation (`localdistill eval` run)
    RUN/report/              report.json and the plots

Every step resumes by itself (the run cache, training checkpoints), so running the same command
again after any interruption redoes nothing that finished. Run it with a changed configuration
and only what depends on the change is redone (the earlier configuration is kept beside it).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.collect import CollectConfig
from localdistill.errors import BadInput
from localdistill.sandbox import Limits
from localdistill.stages.build.methods import METHODS, get_method
from localdistill.stages.evaluate import EvalConfig
from localdistill.stages.train.config import TrainConfig
from localdistill.tomlconfig import Mismatch, key_table, same_as, type_name, typed


class ConfigError(BadInput):
    pass


@dataclass(frozen=True)
class LoopConfig:
    """The [run] table: who learns from whom, and what to compare."""

    student: str = same_as(CollectConfig, "student")
    teacher: str = same_as(CollectConfig, "teacher")
    tasks: tuple[str, ...] = field(metadata={
        "help": "training task sets (humaneval, mbpp:train=PATH, a task file...)"})
    methods: tuple[str, ...] = field(default=("standd", "inpd", "persd"), metadata={
        "help": f"data sets to train an adapter on, any of {', '.join(METHODS)}"})
    limit: int | None = field(default=None, metadata={"help": "only the first N training tasks"})
    distill_rounds: int = field(default=1, metadata={
        "help": "distillation rounds: in round k+1 each PERsD-family (and inpd-matched) student "
                "of round k attempts the tasks again, what it still fails is refined, and a new "
                "adapter is trained on both rounds' rows"})
    models: str | None = field(default=None, metadata={
        "help": "a models.toml to use (relative to this file); default: the usual search"})

    def __post_init__(self) -> None:
        for name in self.methods:
            try:
                get_method(name)
            except BadInput as e:
                raise BadInput(f"methods: {e}") from None
        if self.limit is not None and self.limit < 1:
            raise BadInput("limit must be at least 1")
        if self.distill_rounds < 1:
            raise BadInput("distill_rounds must be at least 1")


@dataclass(frozen=True)
class BenchConfig:
    """The [eval] table: where every model is measured."""

    benchmarks: tuple[str, ...] = field(default=("humaneval",), metadata={
        "help": "task sets to evaluate on (humaneval, mbpp:test=PATH, a task file...)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N tasks of each"})
    samples: int = same_as(EvalConfig, "samples")
    temperature: float | None = same_as(EvalConfig, "temperature")
    max_tokens: int | None = same_as(EvalConfig, "max_tokens")
    seed: int = same_as(EvalConfig, "seed")
    # The loop measures self-rectification unless told not to: one repair step gives the
    # single-step numbers too (its step 0). `localdistill eval` answers once unless given --steps.
    steps: int = same_as(EvalConfig, "steps", default=1)
    ks: tuple[int, ...] = same_as(EvalConfig, "ks")
    plus: int = same_as(EvalConfig, "plus")
    plus_second: str | None = same_as(EvalConfig, "plus_second")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise BadInput("limit must be at least 1")
        if self.temperature is not None and self.temperature < 0:
            raise BadInput("temperature must be 0 (greedy) or more")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BadInput("max_tokens must be at least 1")


@dataclass(frozen=True)
class SandboxConfig:
    workers: int | None = field(default=None, metadata={
        "help": "parallel sandboxes (default: one per core)"})
    timeout: float = field(default=Limits.test_timeout, metadata={"help": "seconds per test"})

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise BadInput("workers must be at least 1")
        if self.timeout <= 0:
            raise BadInput("timeout must be more than 0 seconds")


@dataclass(frozen=True)
class RunConfig:
    loop: LoopConfig
    collect: CollectConfig
    train: TrainConfig
    eval: BenchConfig
    sandbox: SandboxConfig
    source: Path  # the file it was read from

    @property
    def model_names(self) -> list[str]:
        return [self.loop.student, self.loop.teacher]


# Keys of [collect] that come from elsewhere in the file.
_COLLECT_SET_ELSEWHERE = ("student", "teacher", "methods", "test_timeout", "workers",
                          "student_adapter", "previous")
_TABLES = {"run": LoopConfig, "collect": CollectConfig, "train": TrainConfig,
           "eval": BenchConfig, "sandbox": SandboxConfig}


def load_config(path: Path | str) -> RunConfig:
    """Parse and check CONFIG.toml; ConfigError names the file, the key and what was expected."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - set(_TABLES))
    if unknown:
        raise ConfigError(f"{path}: unknown table [{unknown[0]}] "
                          f"(known: {', '.join(f'[{t}]' for t in _TABLES)})")
    if "run" not in data:
        raise ConfigError(f"{path}: missing table [run] (student, teacher, tasks)")
    run = _typed(path, "run", LoopConfig, data["run"])
    sandbox = _typed(path, "sandbox", SandboxConfig, data.get("sandbox", {}))
    collect = _typed(path, "collect", CollectConfig, data.get("collect", {}),
                     skip=_COLLECT_SET_ELSEWHERE,
                     given={"student": run.student, "teacher": run.teacher,
                            "methods": _data_sets(run.methods),
                            "test_timeout": sandbox.timeout, "workers": sandbox.workers})
    train = _typed(path, "train", TrainConfig, data.get("train", {}))
    bench = _typed(path, "eval", BenchConfig, data.get("eval", {}))
    try:
        EvalConfig(samples=bench.samples, steps=bench.steps, ks=bench.ks)
    except ValueError as e:
        raise ConfigError(f"{path}: [eval]: {e}") from None
    if not run.tasks or not bench.benchmarks:
        raise ConfigError(f"{path}: [run] tasks and [eval] benchmarks must name something")
    here = path.parent
    run = dataclasses.replace(
        run, tasks=tuple(_near(spec, here) for spec in run.tasks),
        models=str((here / run.models).resolve()) if run.models else None)
    bench = dataclasses.replace(bench, benchmarks=tuple(_near(s, here) for s in bench.benchmarks))
    return RunConfig(run, collect, train, bench, sandbox, path)


def _near(spec: str, here: Path) -> str:
    """A task spec with its file path read relative to the config file (when it is there)."""
    name, sep, where = spec.partition("=")
    if sep:
        candidate = here / where
        return f"{name}={candidate.resolve()}" if not Path(where).is_absolute() and \
            candidate.exists() else spec
    candidate = here / spec
    return str(candidate.resolve()) if not Path(spec).is_absolute() and candidate.exists() \
        else spec


def _data_sets(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The data sets collect must build for these methods (all of them are cheap once the
    teacher has answered; building fewer saves the teacher's direct answers)."""
    return tuple(m for m in METHODS if m in methods)


def _typed(path: Path, table: str, kind: type, values: object, skip: tuple[str, ...] = (),
           given: dict | None = None):
    """`kind` made from [table] (tomlconfig.typed), or ConfigError naming the file, the table, the
    key and what was expected."""
    try:
        return typed(kind, values, skip, given)
    except Mismatch as m:
        raise ConfigError(f"{path}: [{table}]{_in_words(m)}") from None


def _in_words(m: Mismatch) -> str:
    match m.problem:
        case "not a table":
            return " must be a table"
        case "unknown key":
            return f" unknown key {m.key!r} (known: {', '.join(m.known)})"
        case "missing key":
            return f" missing key {m.key!r} ({m.help})"
        case "wrong type":
            expected = " or ".join(type_name(t) for t in m.expected)
            return f" {m.key} = {m.value!r}: expected {expected} ({m.help})"
    return f": {m.error}"


# --- the loop ------------------------------------------------------------------------------------

def slug(name: str) -> str:
    """A directory name for a task set or model spec (`mbpp:test=/x/mbpp.jsonl` -> `mbpp-test`)."""
    name = name.split("=", 1)[0]
    name = Path(name).name if "/" in name else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.removesuffix(".jsonl")).strip("-") or "tasks"


def run_loop(config: RunConfig, run_dir: Path, progress=None,
             say: Callable[[object], None] = print, reuse: tuple[Path, ...] = ()) -> list:
    """Every step of the loop, each resumed where it stopped; returns the report's entries.
    `reuse`: other run directories whose answers to the same requests are taken (`--reuse`)."""
    import os

    from localdistill.backends import get_model
    from localdistill.rundir import DirectoryLock

    if config.loop.models:
        os.environ["LOCALDISTILL_MODELS"] = config.loop.models
    for name in config.model_names:  # a wrong name fails now, not after an hour of collecting
        get_model(name)
    from localdistill.stages.train import choose_backend, unsloth_backend

    if choose_backend(config.train) == "unsloth":  # before any stage loads transformers
        unsloth_backend.import_first()
    with DirectoryLock(run_dir):  # a second `run` here is refused before it touches anything
        return _run_loop(config, run_dir, progress, say, reuse)


def _run_loop(config: RunConfig, run_dir: Path, progress, say: Callable[[object], None],
              reuse: tuple[Path, ...]) -> list:
    from localdistill.backends import get_model, with_trained_adapter
    from localdistill.collect import collect
    from localdistill.rundir import RunDir
    from localdistill.sandbox import Limits
    from localdistill.stages.evaluate import evaluate
    from localdistill.stages.report import report, tables
    from localdistill.tasks import load_tasks

    _keep_config(config, run_dir, say)

    task_spec = ",".join(config.loop.tasks)  # one spec: a task in two of the sets is an error
    tasks = load_tasks(task_spec)[:config.loop.limit]
    benchmarks = {spec: load_tasks(spec)[:config.eval.limit] for spec in config.eval.benchmarks}
    with RunDir(run_dir / "collect", reuse) as collect_run:
        collect(tasks, config.collect, collect_run, task_spec, progress,
                on_stage=lambda r: say(r.table()))

    students = {"base": get_model(config.loop.student)}
    for method in config.loop.methods:
        adapter = _train_one(config, method, run_dir / "collect" / "data" / method,
                             run_dir / "train" / method, progress, say)
        if adapter:
            students[method] = with_trained_adapter(students["base"], adapter,
                                                    f"{config.loop.student}+{method}")
    for distill_round in range(2, config.loop.distill_rounds + 1):
        for method in [m for m in config.loop.methods if METHODS[m].follows_student]:
            before = _label(method, distill_round - 1)
            if before not in students:
                continue  # no adapter in the round before (an empty data set)
            where = run_dir / f"collect-round{distill_round}" / method
            earlier = (run_dir / "collect" if distill_round == 2 else
                       run_dir / f"collect-round{distill_round - 1}" / method)
            round_config = dataclasses.replace(
                config.collect, methods=(method,), previous=str(earlier),
                student_adapter=str(run_dir / "train" / before))
            say(f"distillation round {distill_round}: the {before} student attempts again")
            with RunDir(where, reuse) as collect_run:
                collect(tasks, round_config, collect_run, ",".join(config.loop.tasks), progress,
                        on_stage=lambda r: say(r.table()))
            label = _label(method, distill_round)
            adapter = _train_one(config, label, where / "data" / method,
                                 run_dir / "train" / label, progress, say)
            if adapter:
                students[label] = with_trained_adapter(students["base"], adapter,
                                                       f"{config.loop.student}+{label}")

    settings = EvalConfig(samples=config.eval.samples, temperature=config.eval.temperature,
                          max_tokens=config.eval.max_tokens, seed=config.eval.seed,
                          steps=config.eval.steps, ks=config.eval.ks,
                          plus=config.eval.plus, plus_second=config.eval.plus_second)
    limits = Limits(test_timeout=config.sandbox.timeout)
    evaluations = []
    for label, model in students.items():
        for spec, bench_tasks in benchmarks.items():
            where = run_dir / "eval" / label / slug(spec)
            with RunDir(where, reuse) as eval_run:
                summary = evaluate(bench_tasks, model, eval_run, settings, limits,
                                   config.sandbox.workers, progress, benchmark=spec)
            say(summary["report"].table())
            evaluations.append(where)
    entries, plots = report(evaluations, run_dir / "report")
    for shown in tables(entries):
        say(shown)
    for path in plots:
        say(f"plot: {path}")
    return entries




def _label(method: str, distill_round: int) -> str:
    return method if distill_round == 1 else f"{method}-round{distill_round}"


def _train_one(config: RunConfig, label: str, data_set: Path, out: Path, progress,
               say: Callable[[object], None]) -> Path | None:
    """The adapter trained on `data_set` (kept when trained before on the same data and
    settings), or None when the data set is empty."""
    import shutil

    from localdistill.stages.train import train

    if _trained(out, data_set, config.train):
        say(f"train {label}: done before, kept")
    elif not data_set.with_suffix(".jsonl").read_text().strip():
        say(f"train {label}: the data set is empty, no adapter (and no evaluation)")
        return None
    else:
        if (out / "train.json").exists():  # other settings or data: start that one over
            shutil.rmtree(out)
        report = train(data_set, config.loop.student, out, config.train, progress).report
        say(report.table())
        if report.value("warning"):
            say(f"warning: train {label}: {report.value('warning')}")
    return out


def _trained(out: Path, data_set: Path, config: TrainConfig) -> bool:
    import json

    try:
        done = json.loads((out / "train.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    # how many processes trained it does not change the adapter (stages/train/distributed.py)
    def model_settings(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in ("processes", "launch_config")}

    if "data_digest" in done:  # the same rows, wherever the run directory now is
        from localdistill.stages.train.data import load_rows, rows_digest

        try:
            same_data = done["data_digest"] == rows_digest(load_rows(data_set))
        except ValueError:  # gone, or empty now
            same_data = False
    else:  # trained before train.json kept the digest
        same_data = done.get("data_set") == str(data_set)
    if "settings" in done:  # the settings as given (some left open to the set's size)
        recorded = done["settings"]
    else:  # trained before train.json kept them: the settings it resolved, for its examples
        recorded = done.get("config") or {}
        examples = (done.get("report") or {}).get("counts", {}).get("examples")
        if isinstance(examples, int):
            config = config.for_examples(examples)
    return same_data and model_settings(recorded) == model_settings(json.loads(json.dumps(
        dataclasses.asdict(config))))


def _keep_config(config: RunConfig, run_dir: Path, say: Callable[[object], None]) -> None:
    """RUN/config.toml is the configuration of the latest run; an earlier, different one is kept
    beside it. Every step's work is keyed by what determines it (the caches, the training
    fingerprint), so after a change only what depends on the change is redone."""
    import time

    from localdistill.rundir import write_atomic

    kept = run_dir / "config.toml"
    new = config.source.read_bytes()
    if kept.exists() and tomllib.loads(kept.read_text(encoding="utf-8")) != tomllib.loads(
            new.decode("utf-8")):
        earlier = run_dir / f"config.{time.strftime('%Y%m%d-%H%M%S')}.toml"
        kept.replace(earlier)
        say(f"the configuration changed since this run directory was last used (the earlier one "
            f"is {earlier.name}): only what depends on the change is redone")
    if not kept.exists():
        write_atomic(kept, new)


def config_reference() -> str:
    """Every table and key of CONFIG.toml with its type, default and help (docs/run.md)."""
    lines = []
    for table, kind in _TABLES.items():
        skip = _COLLECT_SET_ELSEWHERE if kind is CollectConfig else ()
        lines += [f"### [{table}]", "", *key_table(kind, skip), ""]
    return "\n".join(lines)
