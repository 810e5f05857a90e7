"""`report`: evaluation runs side by side, as a table and as plots.

Each evaluation run (`localdistill eval --run DIR`) holds summary.json. From the adapter it names,
the report finds the training run (OUT/train.json: the data set and its size, the training time)
and from the data set the collect run that built it (its manifest: the teacher tokens spent).
Every figure carries its provenance: nothing is entered by hand.

pass@1 comes with a 95% confidence interval over tasks (normal approximation of the mean of the
per-task pass@1 values). Two models evaluated on the same tasks are also compared pair-wise, task
by task (`compare`): the mean difference with its 95% interval, and an exact two-sided sign test
over the tasks where they differ (McNemar's test when there is one sample per task). The paired
comparison is much sharper than overlapping intervals, since both models face the same tasks.

The paper's claims (`CLAIMS`, each a list of method pairs) are read off the same paired
comparisons (`claims`): "holds" or "does not hold" only at p < 0.05, "cannot tell" otherwise;
OUT/claims.json and OUT/paired_differences.png (each difference with its interval) show them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.passk import label
from localdistill.progress import StageReport, duration
from localdistill.rundir import load_json
from localdistill.stages.build.methods import METHODS
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
                                for step in summary["pass_at_k"]])
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
    entry.teacher_tokens = teacher_tokens(data_set, entry.method)
    manifest = data_set.parent.parent / "manifest.json"
    if data_set.parent.name == "data" and manifest.is_file():
        entry.distill_round = int(load_json(manifest).get("distill_round", 1))


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
    for name in ("teacher tokens", "train time", "eval time"):
        result.add_column(name, justify="right")
    for e in entries:
        last = e.pass_at_k[f"step {e.steps}"]
        cells = [e.label, e.model.split("+", 1)[0], e.method, _number(e.examples),
                 _short(e.benchmark), f"{e.tasks} × {e.samples}"]
        cells += [(f"{e.pass_at_k[f'step {s}']['pass@1']:.1%}" + _plus_minus(e.pass1_interval[s])
                   if s <= e.steps else "") for s in range(steps + 1)]
        cells += [f"{last[label(k)]:.1%}" if label(k) in last else "" for k in ks]
        trained = "-" if e.train_seconds is None else duration(e.train_seconds)
        evaluated = ("replayed" if "replayed_from" in e.extra else "cached" if e.extra.get("cached")
                     else duration(e.eval_seconds))
        cells += [_number(e.teacher_tokens), trained, evaluated]
        result.add_row(*cells)
    return result


@dataclass(frozen=True)
class Comparison:
    """`a` against `b` on the same tasks at one step: a's pass@1 minus b's, paired by task."""

    benchmark: str
    step: int
    a: str
    b: str
    tasks: int
    difference: float
    half_width: float  # 95%, normal approximation of the mean per-task difference
    a_better: int  # tasks where a's pass@1 is higher
    b_better: int
    p_value: float  # exact two-sided sign test over the tasks that differ


def compare(entries: list[Entry]) -> list[Comparison]:
    """Every trained student against the base student, and each PERsD variant against the
    from-scratch baselines (StanD, InpD, InpD on PERsD's tasks): the paper's claims, per
    benchmark and step."""
    pairs = []
    for benchmark in dict.fromkeys(e.benchmark for e in entries):
        group = {e.label: e for e in entries if e.benchmark == benchmark}
        base = [e for e in group.values() if e.method == "base"]
        for e in group.values():
            if base and e is not base[0]:
                pairs.append((e, base[0]))
        for e in group.values():
            if _personalised(e):  # a PERsD variant against each from-scratch baseline
                pairs += [(e, other) for other in group.values() if _personalised(other) is False]
    result = []
    for a, b in pairs:
        for step in range(min(a.steps, b.steps) + 1):
            if not a.per_task or a.per_task[step].keys() != b.per_task[step].keys():
                continue  # not the same tasks: no pairing
            result.append(_paired(a, b, step))
    return result


def _personalised(entry: Entry) -> bool | None:
    """Whether the entry's data set is personalised (methods.py); None: not a data-set method
    (the base student, an adapter trained elsewhere)."""
    method = METHODS.get(entry.method)
    return None if method is None else method.personalised


def _paired(a: Entry, b: Entry, step: int) -> Comparison:
    diffs = [a.per_task[step][t] - b.per_task[step][t] for t in a.per_task[step]]
    n = len(diffs)
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else float("nan")
    up, down = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return Comparison(a.benchmark, step, a.label, b.label, n, mean,
                      1.96 * math.sqrt(variance / n) if n > 1 else float("nan"), up, down,
                      sign_test(up, down))


def sign_test(up: int, down: int) -> float:
    """Exact two-sided p-value of `up` successes against `down` under a fair coin."""
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(up, down) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def comparison_table(comparisons: list[Comparison]):
    from rich.table import Table

    result = Table(title="paired by task: a - b (pass@1 points; p: exact sign test over the "
                         "tasks where they differ)", title_justify="left")
    for name in ("benchmark", "step", "a", "b", "a - b", "95% interval", "a better", "b better",
                 "p"):
        result.add_column(name, justify="left" if name in ("benchmark", "a", "b") else "right")
    for c in comparisons:
        result.add_row(_short(c.benchmark), str(c.step), c.a, c.b, f"{100 * c.difference:+.1f}",
                       _interval_text(c), str(c.a_better), str(c.b_better), f"{c.p_value:.3f}")
    return result


# --- the paper's claims ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, read as paired comparisons of data-set methods ("base": the
    student itself): `a` better than `b`, at `steps` (None: every step both runs have)."""

    text: str
    pairs: tuple[tuple[str, str], ...]
    steps: tuple[int, ...] | None = None


CLAIMS = (
    Claim("distillation lifts the student",
          tuple((m, "base") for m in ("persd", "persd-refine", "persd-combine", "persd-personal",
                                      "inpd-matched", "inpd", "standd", "standd-third"))),
    Claim("PERsD beats StanD with a third of StanD's data",
          (("persd-personal", "standd"), ("persd", "standd"), ("persd", "standd-third"))),
    Claim("PERsD beats InpD on the same tasks", (("persd", "inpd-matched"),)),
    Claim("PERsD-refine improves multi-step repair",
          (("persd-refine", "persd"), ("persd-refine", "base")), steps=(1,)),
    Claim("PERsD-combine is best",
          tuple(("persd-combine", m) for m in ("persd", "persd-refine", "persd-personal",
                                               "inpd-matched", "standd", "standd-third"))),
    Claim("the copies of the reference teach (PERsD with them against without)",
          (("persd", "persd-personal"), ("inpd-matched", "persd-personal"))),
)
SIGNIFICANT = 0.05


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    comparison: Comparison
    a_method: str
    b_method: str

    @property
    def verdict(self) -> str:
        """As the numbers say: p < 0.05 over the tasks that differ calls it either way."""
        c = self.comparison
        if c.p_value >= SIGNIFICANT or c.a_better == c.b_better:
            return "cannot tell"
        return "holds" if c.a_better > c.b_better else "does not hold"


def claims(entries: list[Entry], declared: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    """Each declared claim's comparisons that these runs can make (both methods evaluated on the
    same tasks of one benchmark), in the order declared, per benchmark and step."""
    results = []
    for claim in declared:
        for benchmark in dict.fromkeys(e.benchmark for e in entries):
            by_method: dict[str, Entry] = {}
            for e in entries:
                if e.benchmark == benchmark and e.distill_round == 1:
                    by_method.setdefault(e.method, e)
            for a_method, b_method in claim.pairs:
                a, b = by_method.get(a_method), by_method.get(b_method)
                if a is None or b is None:
                    continue
                for step in range(min(a.steps, b.steps) + 1):
                    if claim.steps is not None and step not in claim.steps:
                        continue
                    if a.per_task[step].keys() != b.per_task[step].keys():
                        continue  # not the same tasks: no pairing
                    results.append(ClaimResult(claim.text, _paired(a, b, step), a_method,
                                               b_method))
    return results


def claims_table(results: list[ClaimResult]):
    from rich.table import Table

    table_ = Table(title="the paper's claims, paired by task: a - b in pass@1 points (95% "
                         "interval; won / lost: tasks where a / b is better; p: exact sign test; "
                         f"called at p < {SIGNIFICANT})", title_justify="left")
    for name in ("claim", "benchmark", "step", "a", "b", "a - b", "95% interval", "won / lost",
                 "p", "verdict"):
        table_.add_column(name, justify="left" if name in ("claim", "benchmark", "a", "b",
                                                           "verdict") else "right")
    for r in results:
        c = r.comparison
        table_.add_row(r.claim, _short(c.benchmark), str(c.step), c.a, c.b,
                       f"{100 * c.difference:+.1f}", _interval_text(c),
                       f"{c.a_better} / {c.b_better}", _p_text(c.p_value), r.verdict)
    return table_


def claims_markdown(results: list[ClaimResult]) -> str:
    """The claims table as Markdown (docs/results.md)."""
    lines = ["| claim | benchmark | step | a | b | a - b (points) | 95% interval | won / lost "
             "| p | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.comparison
        lines.append(f"| {r.claim} | {_short(c.benchmark)} | {c.step} | {c.a} | {c.b} | "
                     f"{100 * c.difference:+.1f} | {_interval_text(c)} | "
                     f"{c.a_better} / {c.b_better} | {_p_text(c.p_value)} | {r.verdict} |")
    return "\n".join(lines) + "\n"


def _interval_text(c: Comparison) -> str:
    if math.isnan(c.half_width):
        return "-"
    return (f"{100 * (c.difference - c.half_width):+.1f} .. "
            f"{100 * (c.difference + c.half_width):+.1f}")


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def plot_differences(comparisons: list[Comparison], out: Path) -> Path | None:
    """Each paired difference with its 95% interval, one panel per benchmark: what pairing over
    tasks can tell, which two models' own intervals hide."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    unique_ = list({(c.benchmark, c.step, c.a, c.b): c for c in comparisons}.values())
    if not unique_:
        return None
    benchmarks = list(dict.fromkeys(c.benchmark for c in unique_))
    tallest = max(sum(c.benchmark == b for c in unique_) for b in benchmarks)
    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(6.5 * len(benchmarks), 1.2 + 0.32 * tallest))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [c for c in unique_ if c.benchmark == benchmark][::-1]  # first on top
        ys = range(len(group))
        values = [100 * c.difference for c in group]
        halves = [0.0 if math.isnan(c.half_width) else 100 * c.half_width for c in group]
        colours = ["tab:green" if c.p_value < SIGNIFICANT and c.a_better > c.b_better else
                   "tab:red" if c.p_value < SIGNIFICANT and c.a_better < c.b_better else "0.4"
                   for c in group]
        for y, value, half, colour in zip(ys, values, halves, colours, strict=True):
            panel.errorbar([value], [y], xerr=[[half], [half]], fmt="o", color=colour,
                           capsize=3)
        panel.axvline(0, color="0.2", linewidth=1)
        panel.set_yticks(list(ys), [f"{c.a} - {c.b}, step {c.step}" for c in group],
                         fontsize=8)
        panel.set_xlabel("paired difference in pass@1 (points), 95% interval")
        panel.set_title(f"{_short(benchmark)}: a - b over the same tasks\n(green / red: "
                        f"a better / worse at p < {SIGNIFICANT}, sign test)", fontsize=10)
        panel.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, out / "paired_differences.png", pyplot)


# --- where a model wins and loses against the base student --------------------------------------

KINDS = ("wrong answer", "exception", "timeout", "syntax error", "not run")


def failure_kind(sample: dict) -> str | None:
    """How a judged sample failed, in the words of the table (None: it passed)."""
    if sample.get("passed"):
        return None
    status, feedback = sample.get("status"), sample.get("feedback") or ""
    if status == "timeout":
        return "timeout"
    if status == "error":
        name = feedback.lstrip().split("\n", 1)[0].split(":", 1)[0].strip()
        return "syntax error" if name in ("SyntaxError", "IndentationError", "TabError") \
            else "exception"
    if status == "failed":
        return "wrong answer"
    return "not run"


@dataclass(frozen=True)
class Moves:
    """`model` against `base` on one benchmark at one step, by how the base student failed: per
    kind, the tasks the base failed that way and how many of them the model passes; and the
    tasks the base passed that the model fails, by how the model failed them."""

    benchmark: str
    step: int
    model: str
    base: str
    base_failed: dict[str, int]
    now_passing: dict[str, int]
    lost: dict[str, int]


def _first_samples(run: Path, step: int) -> dict[str, dict] | None:
    """Each task's first sample at `step` (samples.jsonl; None where the run has none)."""
    path = run / "samples.jsonl"
    if not path.is_file():
        return None
    samples: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        sample = json.loads(line)
        if sample.get("step", 0) == step and sample.get("sample", 0) == 0:
            samples.setdefault(sample["task_id"], sample)
    return samples


def moves(entries: list[Entry]) -> list[Moves]:
    """Every model against the base student of its benchmark, at each step both have."""
    result = []
    for benchmark in dict.fromkeys(e.benchmark for e in entries if "plus_oracle" not in e.extra):
        group = [e for e in entries if e.benchmark == benchmark]
        base = next((e for e in group if e.method == "base"), None)
        if base is None:
            continue
        for e in group:
            if e is base:
                continue
            for step in range(min(e.steps, base.steps) + 1):
                ours, theirs = _first_samples(e.run, step), _first_samples(base.run, step)
                if ours is None or theirs is None or ours.keys() != theirs.keys():
                    continue
                failed = {k: 0 for k in KINDS}
                passing = {k: 0 for k in KINDS}
                lost = {k: 0 for k in KINDS}
                for task, sample in theirs.items():
                    kind, now = failure_kind(sample), failure_kind(ours[task])
                    if kind is not None:
                        failed[kind] += 1
                        passing[kind] += now is None
                    elif now is not None:
                        lost[now] += 1
                result.append(Moves(benchmark, step, e.label, base.label, failed, passing, lost))
    return result


def moves_table(rows: list[Moves]):
    from rich.table import Table

    kinds = [k for k in KINDS if any(r.base_failed[k] or r.lost[k] for r in rows)]
    table_ = Table(title="where each model wins and loses against the base student, by how the "
                         "base failed (won: now passing / the base's failures of that kind) and "
                         "how the model fails the tasks the base passed (lost)",
                   title_justify="left")
    for name in ("benchmark", "step", "model", *(f"won: {k}" for k in kinds),
                 *(f"lost: {k}" for k in kinds)):
        table_.add_column(name, justify="left" if name in ("benchmark", "model") else "right")
    for r in rows:
        table_.add_row(_short(r.benchmark), str(r.step), r.model,
                       *(f"{r.now_passing[k]} / {r.base_failed[k]}" for k in kinds),
                       *(str(r.lost[k]) for k in kinds))
    return table_


def side_by_side(entries: list[Entry], per_model: int = 2) -> str:
    """Markdown: for each model against the base student (one step), the first `per_model`
    tasks it won and lost, each with both answers and the losing one's feedback."""
    parts = []
    for benchmark in dict.fromkeys(e.benchmark for e in entries if "plus_oracle" not in e.extra):
        group = [e for e in entries if e.benchmark == benchmark]
        base = next((e for e in group if e.method == "base"), None)
        theirs = _first_samples(base.run, 0) if base is not None else None
        for e in group:
            ours = _first_samples(e.run, 0) if e is not base else None
            if theirs is None or ours is None or ours.keys() != theirs.keys():
                continue
            for verb, wanted in (("won", (False, True)), ("lost", (True, False))):
                tasks = [t for t in theirs if (theirs[t]["passed"], ours[t]["passed"]) == wanted]
                for task in tasks[:per_model]:
                    parts.append(f"### {_short(benchmark)} {task}: {e.label} {verb} against "
                                 f"{base.label}\n")
                    for who, sample in ((base.label, theirs[task]), (e.label, ours[task])):
                        verdict = "passed" if sample["passed"] else \
                            f"{failure_kind(sample)}: {(sample.get('feedback') or '')[:300]}"
                        parts.append(f"**{who}** ({verdict})\n\n```python\n"
                                     f"{(sample.get('completion') or '').strip()}\n```\n")
    return "\n".join(parts)


def _plus_minus(half_width: float) -> str:
    """` ± 12.3%`, or nothing when one task leaves no spread to measure."""
    return "" if math.isnan(half_width) else f" ± {half_width:.1%}"


def _short(benchmark: str) -> str:
    """`mbpp:test=/long/path/mbpp.jsonl` -> `mbpp:test`; a task file by its name."""
    if benchmark.endswith("+"):  # the "+" results of `eval --plus`
        return _short(benchmark[:-1]) + "+"
    name = benchmark.split("=", 1)[0]
    return Path(name).name if "/" in name else name


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def plot(entries: list[Entry], out: Path) -> list[Path]:
    """The two figures people look at first; one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    out.mkdir(parents=True, exist_ok=True)
    benchmarks = sorted({e.benchmark for e in entries})
    written = []

    widest = max(sum(e.benchmark == b for e in entries) for b in benchmarks)
    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(max(6.0, 1.6 * widest) * len(benchmarks), 4.5))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [e for e in entries if e.benchmark == benchmark]
        steps = max(e.steps for e in group)
        width = 0.8 / (steps + 1)
        for step in range(steps + 1):
            # a run evaluated with fewer steps has no bar there (not a bar at zero)
            shown = [(i, e) for i, e in enumerate(group) if step <= e.steps]
            xs = [i + (step - steps / 2) * width for i, _ in shown]
            values = [100 * e.pass_at_k[f"step {step}"]["pass@1"] for _, e in shown]
            bars = panel.bar(xs, values, width, label="one step" if step == 0 else
                             f"after {step} repair step{'s' if step > 1 else ''}")
            lows, highs = zip(*(_interval(e, step) for _, e in shown), strict=True)
            panel.errorbar(xs, values, yerr=[lows, highs], fmt="none", ecolor="0.3",
                           elinewidth=1, capsize=3)
            for bar_, value in zip(bars, values, strict=True):
                panel.annotate(f"{value:.1f}", (bar_.get_x() + bar_.get_width() / 2, value),
                               xytext=(0, 2), textcoords="offset points", ha="center",
                               va="bottom", fontsize=8,
                               bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                     "alpha": 0.8})
        panel.set_xticks(range(len(group)), [e.label for e in group])
        panel.set_ylabel("pass@1 (%)")
        panel.set_xlabel("student: base model or adapter trained on the data set")
        panel.set_title(f"{_short(benchmark)}: pass@1 by method and repair step\n"
                        "(bars: 95% interval over tasks)", fontsize=11)
        panel.set_ylim(0, 118)  # the band above 100% holds the legend, clear of the bars
        panel.set_yticks(range(0, 101, 20))
        panel.grid(axis="y", alpha=0.3)
        panel.legend(fontsize=8, loc="upper center", ncol=steps + 1, frameon=False)
    figure.tight_layout()
    written.append(_save(figure, out / "pass_at_1_by_method.png", pyplot))

    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(6.5 * len(benchmarks), 4.5))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [e for e in entries if e.benchmark == benchmark]
        for e in group:
            size = e.examples or 0
            value = 100 * e.pass_at_k["step 0"]["pass@1"]
            low, high = _interval(e, 0)
            panel.errorbar([size], [value], yerr=[[low], [high]], fmt="o", capsize=3)
            panel.annotate(e.label, (size, value), textcoords="offset points", xytext=(6, 4),
                           fontsize=9)
        panel.set_xlabel("training examples (0: the base student)")
        panel.set_ylabel("pass@1, one step (%)")
        panel.set_title(f"{_short(benchmark)}: pass@1 against training-set size\n"
                        "(bars: 95% interval over tasks)", fontsize=11)
        largest = max([e.examples or 0 for e in group] + [10])
        panel.set_xlim(-0.05 * largest, 1.15 * largest)
        panel.set_ylim(0, 105)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    figure.tight_layout()
    written.append(_save(figure, out / "pass_at_1_by_size.png", pyplot))
    return written


def _interval(e: Entry, step: int) -> tuple[float, float]:
    """The 95% interval of pass@1 (in points below and above the value), clipped to 0-100%."""
    if step > e.steps or math.isnan(e.pass1_interval[step]):
        return 0.0, 0.0
    value, half = 100 * e.pass_at_k[f"step {step}"]["pass@1"], 100 * e.pass1_interval[step]
    return min(half, value), min(half, 100 - value)


def _save(figure, path: Path, pyplot) -> Path:
    staging = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(staging, dpi=110)
    pyplot.close(figure)
    staging.replace(path)
    return path


def tables(entries: list[Entry]) -> list:
    """What `report` and `run` print: the table, then the paired comparisons, the claims and
    where each model wins and loses, each when there is something to show."""
    shown = [table(entries)]
    for rows, render in ((compare(entries), comparison_table), (claims(entries), claims_table),
                         (moves(entries), moves_table)):
        if rows:
            shown.append(render(rows))
    return shown


def report(runs: list[Path], out: Path) -> tuple[list[Entry], list[Path]]:
    """Load the runs, write OUT/report.json and the plots; (entries, plot files)."""
    entries = load_entries(runs)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"run": str(e.run), "label": e.label, "model": e.model, "method": e.method,
             "data_set": e.data_set, "examples": e.examples, "benchmark": e.benchmark,
             "tasks": e.tasks, "samples": e.samples, "pass_at_k": e.pass_at_k,
             "pass1_95_half_width": [None if math.isnan(x) else x
                                     for x in e.pass1_interval], "teacher_tokens": e.teacher_tokens,
             "train_seconds": e.train_seconds, "eval_seconds": e.eval_seconds, **e.extra}
            for e in entries]
    from localdistill.rundir import write_atomic

    write_atomic(out / "report.json", (json.dumps(rows, indent=2) + "\n").encode())
    paired = [{k: None if isinstance(v, float) and math.isnan(v) else v
               for k, v in dataclasses.asdict(c).items()} for c in compare(entries)]
    write_atomic(out / "comparisons.json", (json.dumps(paired, indent=2) + "\n").encode())
    results = claims(entries)
    rows = [{"claim": r.claim, "verdict": r.verdict, "a_method": r.a_method,
             "b_method": r.b_method, **{k: None if isinstance(v, float) and math.isnan(v) else v
                                        for k, v in dataclasses.asdict(r.comparison).items()}}
            for r in results]
    write_atomic(out / "claims.json", (json.dumps(rows, indent=2) + "\n").encode())
    write_atomic(out / "moves.json", (json.dumps([dataclasses.asdict(m) for m in moves(entries)],
                                                 indent=2) + "\n").encode())
    examples = side_by_side(entries)
    if examples:
        write_atomic(out / "side_by_side.md", ("# Tasks won and lost against the base student "
                                               "(one step)\n\n" + examples).encode())
    plots = plot(entries, out)
    differences = plot_differences([*compare(entries), *(r.comparison for r in results)], out)
    return entries, plots + ([differences] if differences else [])
