"""`report`, the last stage: evaluation runs side by side, as tables and plots.

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

entries.py reads the runs, claims.py compares them in pairs and reads the paper's claims off the
comparisons, moves.py says which tasks moved, plots.py draws them; this module writes them all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from localdistill.stages.report.claims import (
    CLAIMS,
    SIGNIFICANT,
    Claim,
    ClaimResult,
    Comparison,
    claims,
    claims_markdown,
    claims_table,
    compare,
    comparison_table,
    sign_test,
)
from localdistill.stages.report.entries import (
    Entry,
    ReportError,
    load_entries,
    load_entry,
    table,
    teacher_tokens,
)
from localdistill.stages.report.moves import (
    KINDS,
    Moves,
    failure_kind,
    moves,
    moves_table,
    side_by_side,
)
from localdistill.stages.report.plots import plot, plot_differences

__all__ = ["CLAIMS", "Claim", "ClaimResult", "Comparison", "Entry", "KINDS", "Moves",
           "ReportError", "SIGNIFICANT", "claims", "claims_markdown", "claims_table",
           "compare", "comparison_table", "failure_kind", "load_entries", "load_entry",
           "moves", "moves_table", "plot", "plot_differences", "report", "side_by_side",
           "sign_test", "table", "tables", "teacher_tokens"]


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
             "train_seconds": e.train_seconds, "eval_seconds": e.eval_seconds,
             "train_peak_gib": e.train_peak_gib, "eval_peak_gib": e.eval_peak_gib, **e.extra}
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
