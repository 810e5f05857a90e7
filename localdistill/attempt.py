"""Stages 1 and 2 of the loop: the student attempts every task, and every attempt is executed.

attempt: for each task and sample, the student gets the `attempt` prompt (prompts/attempt.jinja);
its answer and the code extracted from it are recorded in the run directory's attempts.jsonl.
execute: every recorded attempt runs in the sandbox against the task's hidden tests; pass/fail and
the execution feedback go to executions.jsonl. Both resume: what a run directory already holds is
never generated or run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from localdistill.backends import open_backend, request_for
from localdistill.execute import Limits, program_for, run_many
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec, get_model
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task


def attempt_key(task_id: str, sample: int) -> str:
    return f"{task_id}#{sample}"


def attempt(tasks: Sequence[Task], model: ModelSpec | str, run: RunDir, samples: int = 1,
            temperature: float | None = None, max_tokens: int | None = None,
            seed: int = 0) -> int:
    """Record the student's attempts that the run does not have yet; returns how many were new.

    Each sample is its own request (seed + sample number), so a resumed run regenerates nothing.
    """
    spec = get_model(model) if isinstance(model, str) else model
    done = run.done_keys("attempts")
    todo = [(task, i) for task in tasks for i in range(samples)
            if attempt_key(task.task_id, i) not in done]
    if not todo:
        return 0
    by_key = {attempt_key(task.task_id, i): task for task, i in todo}
    requests = (request_for(spec, messages=render("attempt", prompt=task.prompt,
                                                  description=task.description),
                            temperature=temperature, max_tokens=max_tokens, seed=seed + i,
                            key=attempt_key(task.task_id, i))
                for task, i in todo)
    backend = open_backend(spec)
    try:
        return run.append("attempts", _attempt_records(backend.generate(requests), by_key, spec))
    finally:
        backend.close()


def _attempt_records(results, by_key: dict[str, Task], spec: ModelSpec) -> Iterator[dict]:
    for result in results:
        key = result.request.key
        task = by_key[key]
        sample = result.samples[0]
        yield {"key": key, "task_id": task.task_id, "sample": int(key.rsplit("#", 1)[1]),
               "model": spec.name, "answer": sample.text,
               "completion": extract_completion(sample.text, task),
               "finish_reason": sample.finish_reason, "completion_tokens": sample.completion_tokens,
               "prompt_tokens": result.prompt_tokens}


def tasks_for(records: Sequence[dict], tasks: Sequence[Task], run: RunDir) -> dict[str, Task]:
    """The tasks by id, checking that every record's task is among them."""
    by_id = {task.task_id: task for task in tasks}
    unknown = sorted({r["task_id"] for r in records} - by_id.keys())
    if unknown:
        raise ValueError(f"{run.path}: attempts of tasks that are not in the task set given "
                         f"(first: {unknown[0]}); pass the same tasks as to `attempt`")
    return by_id


def execute_attempts(tasks: Sequence[Task], run: RunDir, limits: Limits = Limits(),
                     workers: int | None = None, progress: bool = False) -> int:
    """Run every recorded attempt not yet executed; returns how many were run."""
    done = run.done_keys("executions")
    pending = [a for a in run.records("attempts") if a["key"] not in done]
    by_id = tasks_for(pending, tasks, run)
    programs = (program_for(by_id[a["task_id"]], a["completion"], key=a["key"]) for a in pending)
    results = run_many(programs, limits, workers, progress=progress, total=len(pending))
    return run.append("executions", ({
        "key": program.key, "task_id": program.key.rsplit("#", 1)[0], "passed": result.passed,
        "status": result.status, "feedback": result.feedback,
        "outcomes": [o.status for o in result.outcomes], "runtime": round(result.runtime, 4),
    } for program, result in results))
