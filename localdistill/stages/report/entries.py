"""The evaluation runs a report reads: each run's summary, with its adapter's training record and
the collect run that built its data set (provenance, never entered by hand)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.passk import label
from localdistill.progress import PEAK, StageReport, duration
from localdistill.rundir import load_json
from localdistill.stages.build.methods import teacher_tokens as method_teacher_tokens


class ReportError(BadInput):
    pass


@dataclass
class Entry:
    """One evaluation run, with what the report knows about how its model came to be."""

    run: Path
    label: str
    model: str
    benchmark: str
    tasks: int
    samples: int
    pass_at_k: dict[str, dict[str, float]]  # "step s" -> {"pass@k": value}
    pass1_interval: list[float]  # 95% half-width of pass@1 per step
    eval_seconds: float
    ks: tuple[int, ...] = (1,)  # the k of each pass@k measured
    per_task: list[dict[str, float]] = field(default_factory=list)  # pass@1 of each task, by step
    method: str = "base"  # the data set's name (persd, standd...) or "base"
    data_set: str | None = None
    examples: int | None = None  # training-set size
    train_seconds: float | None = None
    teacher_tokens: int | None = None
    train_peak_gib: float | None = None  # memory.py's peak: training's, the evaluation's
    eval_peak_gib: float | None = None
    distill_round: int = 1  # of the data set (rows of earlier rounds included)
    extra: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.pass_at_k) - 1


def load_entry(run: Path) -> Entry:
    summary_file = run / "summary.json"
    try:
        summary = json.loads(summary_file.read_text())
    except FileNotFoundError:
        raise ReportError(f"{run}: not an evaluation run (no summary.json); make one with "
                          "`localdistill eval --run DIR`") from None
    except ValueError as e:
        raise ReportError(f"{summary_file}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_file}: expected a JSON object, as `localdistill eval` "
                          "writes; it was edited or damaged")
    try:
        entry = Entry(run=run, label=run.name, model=summary["model"],
                      benchmark=summary["benchmark"], tasks=summary["tasks"],
                      samples=summary["samples"], pass_at_k=summary["pass_at_k"],
                      pass1_interval=[_half_width(summary["correct_per_task"][step],
                                                  summary["samples"])
                                      for step in summary["pass_at_k"]],
                      eval_seconds=summary.get("wall_seconds", summary.get("seconds", 0.0)),
                      ks=tuple(sorted(k for k in summary.get("ks", [1])  # as `eval` measured
                                      if k <= summary["samples"])),
                      per_task=[{task: c / summary["samples"] for task, c in
                                 summary["correct_per_task"][step].items()}
                                for step in summary["pass_at_k"]],
                      eval_peak_gib=summary.get("peak_memory_gib"))
    except (KeyError, TypeError) as e:
        raise ReportError(f"{summary_file}: missing or wrong field {e}") from None
    if summary.get("replayed_from"):  # `eval --replay`: its wall time is the judging only
        entry.extra["replayed_from"] = summary["replayed_from"]
    elif summary.get("model_calls") == 0:  # every answer from a cache: so is its wall time
        entry.extra["cached"] = True
    if summary.get("adapter"):
        _add_training(entry, Path(summary["adapter"]))
    if isinstance(summary.get("pass_at_k_plus"), dict):  # `eval --plus`: its own entry, later
        entry.extra["plus"] = {"pass_at_k": summary["pass_at_k_plus"],
                               "correct_per_task": summary.get("correct_per_task_plus", {}),
                               "oracle": (summary.get("plus") or {}).get("oracle")}
    return entry


def _plus_entry(entry: Entry) -> Entry:
    """The "+" results of an evaluation (`eval --plus`) as an entry of their own, on the
    benchmark named with a "+" (pass@1 on the tests and the generated inputs)."""
    plus = entry.extra["plus"]
    correct = plus["correct_per_task"]
    return dataclasses.replace(
        entry, benchmark=f"{entry.benchmark}+", pass_at_k=plus["pass_at_k"],
        pass1_interval=[_half_width(correct[step], entry.samples) for step in plus["pass_at_k"]],
        per_task=[{task: c / entry.samples for task, c in correct[step].items()}
                  for step in plus["pass_at_k"]],
        extra={k: v for k, v in entry.extra.items() if k != "plus"} | {
            "plus_oracle": plus["oracle"]})


def _half_width(correct: dict[str, int], samples: int) -> float:
    """95% half-width of the mean per-task pass@1 (normal approximation)."""
    values = [c / samples for c in correct.values()]
    if len(values) < 2:
        return float("nan")
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return 1.96 * math.sqrt(variance / len(values))


def _add_training(entry: Entry, adapter: Path) -> None:
    """Data set, its size, training time and teacher cost, from the training output."""
    out = adapter.parent if adapter.name in ("adapter", "adapter.gguf") else adapter
    entry.method = "adapter"
    train_file = out / "train.json"
    if not train_file.is_file():
        return
    trained = load_json(train_file)
    data_set = Path(trained["data_set"])
    entry.data_set = str(data_set)
    entry.method = data_set.name.removesuffix(".jsonl")
    if "report" in trained:
        entry.examples = StageReport.from_dict(trained["report"]).value("examples")
    entry.train_seconds = trained.get("report", {}).get("seconds")
    entry.train_peak_gib = _train_peak(trained.get("report", {}))
    entry.teacher_tokens = teacher_tokens(data_set, entry.method)
    manifest = data_set.parent.parent / "manifest.json"
    if data_set.parent.name == "data" and manifest.is_file():
        entry.distill_round = int(load_json(manifest).get("distill_round", 1))


def _train_peak(report: dict) -> float | None:
    """Training's peak memory from its report (train.json written before reports had a peak
    field: the count it showed)."""
    if report.get("peak_memory_gib") is not None:
        return report["peak_memory_gib"]
    try:
        return float(report.get("counts", {})[PEAK])
    except (KeyError, TypeError, ValueError):
        return None


def teacher_tokens(data_set: Path, method: str) -> int | None:
    """The teacher tokens it took to make a data set built by `collect` (None: unknown): as its
    method declares (methods.py), over every distillation round whose rows it holds."""
    run = data_set.parent.parent
    if data_set.parent.name != "data" or not (run / "manifest.json").is_file():
        return None
    return method_teacher_tokens(method, run, lambda previous: teacher_tokens(
        previous / "data" / data_set.name, method))


def load_entries(runs: list[Path]) -> list[Entry]:
    if not runs:
        raise ReportError("no evaluation runs given")
    entries = []
    for run in runs:
        entry = load_entry(Path(run))
        entries.append(entry)
    entries += [_plus_entry(e) for e in entries if "plus" in e.extra]
    for entry in entries:
        entry.extra.pop("plus", None)
    for entry in entries:
        entry.label = entry.method if entry.method != "adapter" else entry.run.name
        if entry.distill_round > 1:
            entry.label += f"-round{entry.distill_round}"
    shared = [sum((e.label, e.benchmark) == (entry.label, entry.benchmark) for e in entries) > 1
              for entry in entries]  # decided before any label changes
    for entry, clash in zip(entries, shared, strict=True):  # a shared method: the run names it
        if clash:
            entry.label = entry.run.name
    return entries


def table(entries: list[Entry]):
    from rich.table import Table

    steps = max(e.steps for e in entries)
    ks = sorted({k for e in entries for k in e.ks} - {1})
    result = Table(title="localdistill report", title_justify="left")
    for name in ("run", "model", "data set", "examples", "benchmark", "tasks × n"):
        result.add_column(name, justify="right" if name in ("examples", "tasks × n") else "left")
    for step in range(steps + 1):
        result.add_column(f"pass@1 step {step}" if steps else "pass@1", justify="right")
    for k in ks:
        result.add_column(f"{label(k)} (last step)", justify="right")
    for name in ("teacher tokens", "train time", "eval time", "peak GiB train / eval"):
        result.add_column(name, justify="right")
    for e in entries:
        last = e.pass_at_k[f"step {e.steps}"]
        cells = [e.label, e.model.split("+", 1)[0], e.method, _number(e.examples),
                 short(e.benchmark), f"{e.tasks} × {e.samples}"]
        cells += [(f"{e.pass_at_k[f'step {s}']['pass@1']:.1%}" + _plus_minus(e.pass1_interval[s])
                   if s <= e.steps else "") for s in range(steps + 1)]
        cells += [f"{last[label(k)]:.1%}" if label(k) in last else "" for k in ks]
        trained = "-" if e.train_seconds is None else duration(e.train_seconds)
        evaluated = ("replayed" if "replayed_from" in e.extra else "cached" if e.extra.get("cached")
                     else duration(e.eval_seconds))
        peaks = " / ".join("-" if p is None else f"{p:.1f}"
                           for p in (e.train_peak_gib, e.eval_peak_gib))
        cells += [_number(e.teacher_tokens), trained, evaluated, peaks]
        result.add_row(*cells)
    return result


def _plus_minus(half_width: float) -> str:
    """` ± 12.3%`, or nothing when one task leaves no spread to measure."""
    return "" if math.isnan(half_width) else f" ± {half_width:.1%}"


def short(benchmark: str) -> str:
    """`mbpp:test=/long/path/mbpp.jsonl` -> `mbpp:test`; a task file by its name."""
    if benchmark.endswith("+"):  # the "+" results of `eval --plus`
        return short(benchmark[:-1]) + "+"
    name = benchmark.split("=", 1)[0]
    return Path(name).name if "/" in name else name


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
