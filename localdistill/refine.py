"""Stages 3 and 4: the teacher refines the failed attempts, and each refinement is verified.

For every failed attempt, the teacher gets prompts/refine.jinja: the task, the student's own code
and the execution feedback, and answers with a corrected function that stays close to the
student's. The refinement runs against the task's hidden tests; one that passes is verified, one
that fails goes round again with its own feedback, up to `rounds` rounds in all.

A small teacher often hands the student's code back unchanged, which can only fail again. Such an
answer is not executed: the teacher is asked again, sampling (temperature `retry_temperature`,
new seeds), up to `unchanged_retries` times, and the last answer is kept.

refinements.jsonl holds every round's outcome (key "<attempt key>@<round>"); all model answers and
verdicts go through the run's cache, so a rerun redoes nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from localdistill import manifest
from localdistill.attempt import tasks_for
from localdistill.backends import request_for
from localdistill.cache import generate, judge
from localdistill.execute import Limits, program_for
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec, get_model
from localdistill.progress import Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task


def shown_code(task: Task, completion: str) -> str:
    """The student's code as the teacher should read it: its own function, or the prompt's
    header with its body when it wrote only the body."""
    if f"def {task.entry_point}(" in completion:
        return completion.strip("\n")
    return task.program(completion).strip("\n")


def same_code(a: str, b: str) -> bool:
    """Whether two programs are the same code (comments and layout aside)."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError):
        return " ".join(a.split()) == " ".join(b.split())


@dataclass(frozen=True)
class _Item:
    """One failed attempt, in the round being run: the code to refine and its feedback."""

    attempt_key: str
    task: Task
    code: str
    feedback: str


def refine(tasks: Sequence[Task], teacher: ModelSpec | str, run: RunDir, rounds: int = 2,
           temperature: float | None = None, max_tokens: int | None = None,
           limits: Limits = Limits(), workers: int | None = None, unchanged_retries: int = 2,
           retry_temperature: float = 0.8, progress: Progress | None = None) -> StageReport:
    """Refine and verify every failed attempt of the run -> refinements.jsonl."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    with manifest.stage(run, "refine + verify") as report:
        spec = get_model(teacher) if isinstance(teacher, str) else teacher
        attempts = {a["key"]: a for a in run.records("attempts")}
        failed = [e for e in run.records("executions") if not e["passed"] and e["key"] in attempts]
        by_id = tasks_for(failed, tasks, run)
        todo = [_Item(e["key"], by_id[e["task_id"]],
                      shown_code(by_id[e["task_id"]], attempts[e["key"]]["completion"]),
                      e["feedback"]) for e in failed]
        records = []
        settings = {"temperature": temperature, "max_tokens": max_tokens,
                    "unchanged_retries": unchanged_retries, "retry_temperature": retry_temperature}
        for round_ in range(1, rounds + 1):
            if not todo:
                break
            done = _round(run, spec, todo, round_, settings, limits, workers, progress, report)
            records += done
            by_key = {r["attempt_key"]: r for r in done}
            todo = [_Item(i.attempt_key, i.task, shown_code(i.task, by_key[i.attempt_key]
                                                            ["completion"]),
                          by_key[i.attempt_key]["feedback"])
                    for i in todo if not by_key[i.attempt_key]["passed"]]
        run.write("refinements", records)
        table = verified_by_round(run)
        report.counts = {"failed attempts": len(failed)}
        for round_, (tried, verified) in table.items():
            report.counts[f"round {round_}: verified / tried"] = f"{verified} / {tried}"
        report.counts["refinements verified"] = sum(r["passed"] for r in records)
        report.counts["answers unchanged after retries"] = sum(r["unchanged"] for r in records)
        return report.finish()


def _round(run, spec, todo, round_, settings, limits, workers, progress, report) -> list[dict]:
    answers = {}  # attempt key -> (answer, completion, tries)
    pending = list(todo)
    for retry in range(settings["unchanged_retries"] + 1):
        if not pending:
            break
        label = f"refine r{round_}" + (f" retry {retry}" if retry else "")
        requests = [_request(spec, item, round_, retry, settings) for item in pending]
        got = generate(run, spec, requests, "refine", bar(progress, label, len(requests)))
        report.teacher_tokens += sum(a.completion_tokens for a in got.values())
        report.count_answers(got.values())
        unchanged = []
        for item, request in zip(pending, requests, strict=True):
            answer = got[request.key]
            completion = extract_completion(answer.text, item.task)
            answers[item.attempt_key] = (answer, completion, retry)
            if same_code(shown_code(item.task, completion), item.code):
                unchanged.append(item)
        pending = unchanged
    programs = [program_for(item.task, answers[item.attempt_key][1], key=item.attempt_key)
                for item in todo]
    verdicts = judge(run, programs, limits, workers,
                     bar(progress, f"verify r{round_}", len(programs)))
    records = []
    for item in todo:
        answer, completion, retries = answers[item.attempt_key]
        verdict = verdicts[item.attempt_key]
        records.append({
            "key": f"{item.attempt_key}@{round_}", "attempt_key": item.attempt_key,
            "task_id": item.task.task_id, "round": round_, "teacher": spec.name,
            "request_hash": answer.request_hash, "answer": answer.text, "completion": completion,
            "refined_from": item.code, "feedback_given": item.feedback,
            "unchanged_retries": retries, "unchanged": item in pending,
            "passed": verdict["passed"], "status": verdict["status"],
            "feedback": verdict["feedback"]})
    return records


def _request(spec, item: _Item, round_: int, retry: int, settings: dict):
    messages = render("refine", prompt=item.task.prompt, description=item.task.description,
                      attempt=item.code, feedback=item.feedback)
    key = f"{item.attempt_key}@{round_}"
    if retry == 0:
        return request_for(spec, messages=messages, temperature=settings["temperature"],
                           max_tokens=settings["max_tokens"], key=key)
    return request_for(spec, messages=messages, max_tokens=settings["max_tokens"],
                       temperature=max(settings["temperature"] if settings["temperature"]
                                       is not None else spec.sampling.temperature,
                                       settings["retry_temperature"]),
                       seed=retry, key=f"{key}~{retry}")


def verified_by_round(run: RunDir) -> dict[int, tuple[int, int]]:
    """{round: (refinements tried, verified)} as refinements.jsonl holds them."""
    table: dict[int, list[int]] = {}
    for record in run.records("refinements"):
        tried_verified = table.setdefault(record["round"], [0, 0])
        tried_verified[0] += 1
        tried_verified[1] += bool(record["passed"])
    return {k: (v[0], v[1]) for k, v in sorted(table.items())}
