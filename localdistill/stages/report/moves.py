"""Where an adapter wins and loses against the base student: the tasks that moved, by the failure
the base student had there, and a few of them side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from localdistill.stages.report.entries import Entry, short

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
        table_.add_row(short(r.benchmark), str(r.step), r.model,
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
                    parts.append(f"### {short(benchmark)} {task}: {e.label} {verb} against "
                                 f"{base.label}\n")
                    for who, sample in ((base.label, theirs[task]), (e.label, ours[task])):
                        verdict = "passed" if sample["passed"] else \
                            f"{failure_kind(sample)}: {(sample.get('feedback') or '')[:300]}"
                        parts.append(f"**{who}** ({verdict})\n\n```python\n"
                                     f"{(sample.get('completion') or '').strip()}\n```\n")
    return "\n".join(parts)
