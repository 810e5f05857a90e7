"""Paired comparisons over tasks and the paper's claims read off them.

Two models evaluated on the same tasks are compared task by task: the mean difference with its 95%
interval, and an exact two-sided sign test over the tasks where they differ (McNemar's test with
one sample per task). Each claim (`CLAIMS`: method pairs) is "holds" or "does not hold" only at
p < 0.05, "cannot tell" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from localdistill.stages.build.methods import METHODS
from localdistill.stages.report.entries import Entry, short


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
        result.add_row(short(c.benchmark), str(c.step), c.a, c.b, f"{100 * c.difference:+.1f}",
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
    # Beyond the paper: what this tool adds, read off the same pairs.
    Claim("ours: training without the rows differential checking refutes helps",
          (("inpd-matched-unrefuted", "inpd-matched"), ("standd-unrefuted", "standd"),
           ("inpd-unrefuted", "inpd"))),
    Claim("ours: token-level distillation from the teacher's log-probabilities helps",
          (("tokd", "base"), ("tokd", "persd"), ("tokd", "inpd-matched"),
           ("persd+tokd", "persd"), ("persd+tokd", "inpd-matched"), ("tokd-self", "base"),
           ("tokd", "tokd-self"), ("tokd", "tokd-plain"))),
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

    table_ = Table(title="the claims (the paper's, then ours), paired by task: a - b in pass@1 "
                         "points (95% interval; won / lost: tasks where a / b is better; p: "
                         f"exact sign test; called at p < {SIGNIFICANT})", title_justify="left")
    for name in ("claim", "benchmark", "step", "a", "b", "a - b", "95% interval", "won / lost",
                 "p", "verdict"):
        table_.add_column(name, justify="left" if name in ("claim", "benchmark", "a", "b",
                                                           "verdict") else "right")
    for r in results:
        c = r.comparison
        table_.add_row(r.claim, short(c.benchmark), str(c.step), c.a, c.b,
                       f"{100 * c.difference:+.1f}", _interval_text(c),
                       f"{c.a_better} / {c.b_better}", _p_text(c.p_value), r.verdict)
    return table_


def claims_markdown(results: list[ClaimResult]) -> str:
    """The claims table as Markdown (docs/results.md)."""
    lines = ["| claim | benchmark | step | a | b | a - b (points) | 95% interval | won / lost "
             "| p | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.comparison
        lines.append(f"| {r.claim} | {short(c.benchmark)} | {c.step} | {c.a} | {c.b} | "
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
