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
from dataclasses import dataclass

from localdistill.hashing import digest
from localdistill.progress import Bar
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, Program, run_many

EXECUTIONS = "cache/executions"


@dataclass(frozen=True)
class Verdict:
    """A program run on its tests, as the run's memory keeps it (one line of EXECUTIONS)."""

    key: str  # the hash of the program, its tests and the limits
    passed: bool
    status: str  # the sandbox's: passed, failed, error, timeout, syntax_error, ...
    feedback: str = ""  # execution feedback in the PERsD format; "" when it passed
    outcomes: tuple[str, ...] = ()  # each test's status, in the tests' order
    runtime: float = 0.0

    @classmethod
    def from_record(cls, record: dict) -> Verdict:
        return cls(record["key"], record["passed"], record["status"], record.get("feedback", ""),
                   tuple(record.get("outcomes", ())), record.get("runtime", 0.0))

    def as_record(self) -> dict:
        return {**dataclasses.asdict(self), "outcomes": list(self.outcomes)}


def judge(run: RunDir, programs: Sequence[Program], limits: Limits = Limits(),
          workers: int | None = None, bar: Bar | None = None) -> dict[str, Verdict]:
    """Verdicts for all programs (by `program.key`), running only those the cache lacks."""
    bar = bar or Bar()
    limits_identity = dataclasses.asdict(limits)
    hashes = {p.key: digest({"program": p.program, "tests": p.tests, "entry": p.entry_point,
                              "setup": p.setup, "limits": limits_identity}) for p in programs}
    wanted = set(hashes.values())
    cached = {rec["key"]: Verdict.from_record(rec) for rec in run.records(EXECUTIONS)
              if rec["key"] in wanted}
    verdicts: dict[str, Verdict] = {}
    missing: dict[str, Program] = {}
    waiting: dict[str, list[str]] = {}
    for program in programs:
        h = hashes[program.key]
        if h in cached:
            verdicts[program.key] = cached[h]
            bar.advance(passed=cached[h].passed)
        else:
            missing.setdefault(h, dataclasses.replace(program, key=h))
            waiting.setdefault(h, []).append(program.key)
    if not missing:
        return verdicts
    with run.appender(EXECUTIONS) as out:
        for program, result in run_many(list(missing.values()), limits, workers):
            verdict = Verdict(program.key, result.passed, result.status, result.feedback,
                              tuple(o.status for o in result.outcomes), round(result.runtime, 4))
            out.add(verdict.as_record())
            for key in waiting[program.key]:
                verdicts[key] = verdict
                bar.advance(passed=verdict.passed)
    return verdicts
