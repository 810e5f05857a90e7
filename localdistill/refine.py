"""Stages 3 and 4: the teacher refines the failed attempts, and each refinement is verified.

For every failed attempt, the teacher gets prompts/refine.jinja: the task, the student's own code
and the execution feedback, and answers with a corrected function that stays close to the
student's. The refinement runs against the task's hidden tests; one that passes is verified, one
that fails goes round again with its own feedback, up to `rounds` rounds in all. Every round's
outcome is recorded in refinements.jsonl (key "<attempt key>@<round>"), so a run resumes, and the
number of refinements verified at each round can be read back.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill.attempt import tasks_for
from localdistill.backends import open_backend, request_for
from localdistill.execute import Limits, program_for, run_many
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec, get_model
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task


def shown_code(task: Task, completion: str) -> str:
    """The student's code as the teacher should read it: its own function, or the prompt's
    header with its body when it wrote only the body."""
    if f"def {task.entry_point}(" in completion:
        return completion.strip("\n")
    return task.program(completion).strip("\n")


def refine(tasks: Sequence[Task], teacher: ModelSpec | str, run: RunDir, rounds: int = 2,
           temperature: float | None = None, max_tokens: int | None = None,
           limits: Limits = Limits(), workers: int | None = None) -> dict[int, tuple[int, int]]:
    """Refine and verify the failed attempts the run does not have refinements for yet.

    Returns {round: (refinements tried, verified)} for what this call did.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    spec = get_model(teacher) if isinstance(teacher, str) else teacher
    attempts = {a["key"]: a for a in run.records("attempts")}
    failed = [e for e in run.records("executions") if not e["passed"] and e["key"] in attempts]
    by_id = tasks_for(failed, tasks, run)
    counts: dict[int, tuple[int, int]] = {}
    backend = None
    try:
        for round_ in range(1, rounds + 1):
            previous = {r["key"]: r for r in run.records("refinements")}
            todo = []  # (attempt key, task, code to refine, its feedback)
            for execution in failed:
                key = execution["key"]
                if f"{key}@{round_}" in previous:
                    continue
                task = by_id[execution["task_id"]]
                if round_ == 1:
                    code = shown_code(task, attempts[key]["completion"])
                    todo.append((key, task, code, execution["feedback"]))
                else:
                    before = previous.get(f"{key}@{round_ - 1}")
                    if before is not None and not before["passed"]:
                        todo.append((key, task, shown_code(task, before["completion"]),
                                     before["feedback"]))
            if not todo:
                continue
            backend = backend or open_backend(spec)
            counts[round_] = _round(backend, spec, run, todo, round_, temperature, max_tokens,
                                    limits, workers)
    finally:
        if backend is not None:
            backend.close()
    return counts


def _round(backend, spec, run, todo, round_, temperature, max_tokens, limits, workers):
    requests = [request_for(spec, messages=render("refine", prompt=task.prompt,
                                                  description=task.description, attempt=code,
                                                  feedback=feedback),
                            temperature=temperature, max_tokens=max_tokens,
                            key=f"{key}@{round_}")
                for key, task, code, feedback in todo]
    tasks = {f"{key}@{round_}": (key, task) for key, task, _, _ in todo}
    answers = {}
    for result in backend.generate(requests):
        key, task = tasks[result.request.key]
        answers[result.request.key] = (result.samples[0].text,
                                       extract_completion(result.samples[0].text, task))
    programs = [program_for(tasks[k][1], answers[k][1], key=k) for k in answers]
    records = []
    for program, result in run_many(programs, limits, workers):
        attempt_key, task = tasks[program.key]
        answer, completion = answers[program.key]
        records.append({"key": program.key, "attempt_key": attempt_key, "task_id": task.task_id,
                        "round": round_, "teacher": spec.name, "answer": answer,
                        "completion": completion, "passed": result.passed,
                        "feedback": result.feedback})
    run.append("refinements", sorted(records, key=lambda r: r["key"]))
    return len(records), sum(r["passed"] for r in records)


def verified_by_round(run: RunDir) -> dict[int, tuple[int, int]]:
    """{round: (refinements tried, verified)} over everything the run holds."""
    table: dict[int, list[int]] = {}
    for record in run.records("refinements"):
        tried_verified = table.setdefault(record["round"], [0, 0])
        tried_verified[0] += 1
        tried_verified[1] += bool(record["passed"])
    return {k: (v[0], v[1]) for k, v in sorted(table.items())}
