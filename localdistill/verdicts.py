"""How every stage runs code: through the run's memory of sandbox verdicts.

A verdict is keyed by a hash of the program, its tests and the limits, so a rerun executes only
what was never executed, and kill -9 at any moment loses nothing that finished. (Model answers are
remembered the same way: answers.py.)

File, in the run directory:
  cache/executions.jsonl  one verdict per line (append-only; `key` is the program hash)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from localdistill.hashing import digest
from localdistill.progress import Bar
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, Program, run_many

EXECUTIONS = "cache/executions"


def judge(run: RunDir, programs: Sequence[Program], limits: Limits = Limits(),
          workers: int | None = None, bar: Bar | None = None) -> dict[str, dict]:
    """Verdicts for all programs (by `program.key`), running only those the cache lacks.

    A verdict: {"passed", "status", "feedback", "outcomes" (each test's status), "runtime"}.
    """
    bar = bar or Bar()
    limits_identity = dataclasses.asdict(limits)
    hashes = {p.key: digest({"program": p.program, "tests": p.tests, "entry": p.entry_point,
                              "setup": p.setup, "limits": limits_identity}) for p in programs}
    wanted = set(hashes.values())
    cached = {rec["key"]: rec for rec in run.records(EXECUTIONS) if rec["key"] in wanted}
    verdicts: dict[str, dict] = {}
    missing: dict[str, Program] = {}
    waiting: dict[str, list[str]] = {}
    for program in programs:
        h = hashes[program.key]
        if h in cached:
            verdicts[program.key] = cached[h]
            bar.advance(passed=cached[h]["passed"])
        else:
            missing.setdefault(h, dataclasses.replace(program, key=h))
            waiting.setdefault(h, []).append(program.key)
    if not missing:
        return verdicts
    with run.appender(EXECUTIONS) as out:
        for program, result in run_many(list(missing.values()), limits, workers):
            record = {"key": program.key, "passed": result.passed, "status": result.status,
                      "feedback": result.feedback,
                      "outcomes": [o.status for o in result.outcomes],
                      "runtime": round(result.runtime, 4)}
            out.add(record)
            for key in waiting[program.key]:
                verdicts[key] = record
                bar.advance(passed=record["passed"])
    return verdicts
