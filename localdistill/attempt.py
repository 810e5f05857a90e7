"""Stages 1 and 2 of the loop: the student attempts every task, and every attempt is executed.

attempt: for each task and sample, the student gets the `attempt` prompt (prompts/attempt.jinja);
its answer and the code extracted from it go to the run directory's attempts.jsonl.
execute: every attempt runs in the sandbox against the task's hidden tests; pass/fail and the
execution feedback go to executions.jsonl. Both go through the run's memory (answers.py,
verdicts.py): a rerun asks the model and the sandbox only what they were never asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.answers import generate
from localdistill.backends import request_for
from localdistill.execute import Limits, program_for
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec, get_model
from localdistill.progress import Progress, StageReport, bar
from localdistill.records import (
    attempt_key,
    attempt_messages,
    check_tasks_have_tests,
    tasks_for,
)
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task
from localdistill.verdicts import judge


def attempt(tasks: Sequence[Task], model: ModelSpec | str, run: RunDir, samples: int = 1,
            temperature: float | None = None, max_tokens: int | None = None, seed: int = 0,
            progress: Progress | None = None) -> StageReport:
    """The student's attempts at every task, `samples` each (seed + sample number); the run's
    attempts.jsonl is rewritten to hold exactly these."""
    with manifest.stage(run, "attempt") as report:
        spec = get_model(model) if isinstance(model, str) else model
        check_tasks_have_tests(tasks)
        requests = [request_for(spec, messages=attempt_messages(task), temperature=temperature,
                                max_tokens=max_tokens, seed=seed + i,
                                key=attempt_key(task.task_id, i))
                    for task in tasks for i in range(samples)]
        answers = generate(run, spec, requests, "attempt",
                           bar(progress, "attempt", len(requests)))
        records = []
        for task in tasks:
            for i in range(samples):
                answer = answers[attempt_key(task.task_id, i)]
                records.append({
                    "key": answer.key, "task_id": task.task_id, "sample": i, "model": spec.name,
                    "request_hash": answer.request_hash, "answer": answer.text,
                    "completion": extract_completion(answer.text, task),
                    "finish_reason": answer.finish_reason,
                    "completion_tokens": answer.completion_tokens,
                    "prompt_tokens": answer.prompt_tokens})
        run.write("attempts", records)
        cut_off = sum(r["finish_reason"] == "length" for r in records)
        report.counts = {"tasks": len(tasks), "attempts": len(records),
                         "cut off at max_tokens": cut_off}
        report.student_tokens = sum(a.completion_tokens for a in answers.values())
        report.count_answers(answers.values())
        return report.finish()






def execute_attempts(tasks: Sequence[Task], run: RunDir, limits: Limits = Limits(),
                     workers: int | None = None,
                     progress: Progress | None = None) -> StageReport:
    """Every attempt of attempts.jsonl judged on its task's hidden tests -> executions.jsonl."""
    with manifest.stage(run, "execute") as report:
        attempts = list(run.records("attempts"))
        by_id = tasks_for(attempts, tasks, run)
        programs = [program_for(by_id[a["task_id"]], a["completion"], key=a["key"])
                    for a in attempts]
        verdicts = judge(run, programs, limits, workers, bar(progress, "execute", len(programs)))
        records = [{"key": a["key"], "task_id": a["task_id"], **_verdict(verdicts[a["key"]])}
                   for a in attempts]
        run.write("executions", records)
        solved = {r["task_id"] for r in records if r["passed"]}
        report.counts = {"attempts executed": len(records),
                         "attempts passed": sum(r["passed"] for r in records),
                         "attempts failed": sum(not r["passed"] for r in records),
                         "tasks solved by some attempt": len(solved),
                         "tasks with a failed attempt":
                             len({r["task_id"] for r in records if not r["passed"]})}
        return report.finish()


def _verdict(verdict: dict) -> dict:
    return {k: verdict[k] for k in ("passed", "status", "feedback", "outcomes", "runtime")}
