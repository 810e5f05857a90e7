"""Stage 2 of the loop: every attempt is executed against its task's hidden tests.

Each attempt of attempts.jsonl runs in the sandbox (localdistill/sandbox/); pass/fail and the
execution feedback (which input, what came out, what was expected, or the error) go to
executions.jsonl. The verdicts go through the run's memory (verdicts.py): a rerun runs only what
was never run.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.progress import Progress, StageReport, bar
from localdistill.records import Attempt, Execution, read, tasks_for, write
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, program_for
from localdistill.tasks.record import Task
from localdistill.verdicts import Verdict, judge


def execute_attempts(tasks: Sequence[Task], run: RunDir, limits: Limits = Limits(),
                     workers: int | None = None,
                     progress: Progress | None = None) -> StageReport:
    """Every attempt of attempts.jsonl judged on its task's hidden tests -> executions.jsonl."""
    with manifest.stage(run, "execute") as report:
        attempts = read(run, Attempt)
        by_id = tasks_for(attempts, tasks, run)
        programs = [program_for(by_id[a.task_id], a.completion, key=a.key) for a in attempts]
        verdicts = judge(run, programs, limits, workers, bar(progress, "execute", len(programs)))
        records = [_execution(a, verdicts[a.key]) for a in attempts]
        write(run, Execution, records)
        solved = {r.task_id for r in records if r.passed}
        report.count_all({"attempts executed": len(records),
                         "attempts passed": sum(r.passed for r in records),
                         "attempts failed": sum(not r.passed for r in records),
                         "tasks solved by some attempt": len(solved),
                         "tasks with a failed attempt":
                             len({r.task_id for r in records if not r.passed})})
        return report.finish()


def _execution(attempt: Attempt, verdict: Verdict) -> Execution:
    return Execution(attempt.key, attempt.task_id, verdict.passed, verdict.status,
                     verdict.feedback, verdict.outcomes, verdict.runtime)
