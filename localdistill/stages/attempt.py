"""Stage 1 of the loop: the student attempts every task.

For each task and sample, the student gets the `attempt` prompt (prompts/attempt.jinja); its
answer and the code extracted from it go to the run directory's attempts.jsonl. The answers go
through the run's memory (answers.py): a rerun asks the model only what it was never asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.answers import generate
from localdistill.backends import get_model, request_for
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport, bar
from localdistill.records import (
    Attempt,
    attempt_key,
    attempt_messages,
    check_tasks_have_tests,
    write,
)
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task


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
                records.append(Attempt(
                    answer.key, task.task_id, i, spec.name, answer.request_hash, answer.text,
                    extract_completion(answer.text, task), answer.finish_reason,
                    answer.completion_tokens, answer.prompt_tokens))
        write(run, Attempt, records)
        cut_off = sum(r.finish_reason == "length" for r in records)
        report.count_all({"tasks": len(tasks), "attempts": len(records),
                         "cut off at max_tokens": cut_off})
        report.student_tokens = sum(a.completion_tokens for a in answers.values())
        report.count_answers(answers.values())
        return report.finish()
