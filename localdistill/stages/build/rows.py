"""How a data set's rows are made from a collect run's records: the helpers the declarations
in methods.py use (a new method's rows are usually a few lines built from these).

Every row has the columns of build.COLUMNS, whatever the method; the token-level sets' rows
have SCORE_COLUMNS too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from localdistill.extract import shown_code
from localdistill.records import Attempt, Direct, Execution, Refinement, attempt_messages
from localdistill.tasks.record import Task


@dataclass
class Inputs:
    """What a collect run holds for building rows: its verified answers and their context."""

    tasks: dict[str, Task]
    attempts: dict[str, Attempt]
    executions: dict[str, Execution]
    refinements: list[Refinement]  # verified (copies of the guide left out if asked)
    direct: list[Direct]  # verified
    student: str | None
    distill_round: int
    counts: dict[str, int] = field(default_factory=dict)  # a method's own figures, shown
    scored: Callable[[str], list[dict]] = lambda role: []  # RUN/scores/ROLE.jsonl's rows

    @cached_property
    def failed_tasks(self) -> set[str]:
        return {e.task_id for e in self.executions.values() if not e.passed}


RowsOf = Callable[[str], list[dict]]  # another method's rows (built once, on demand)


def answer_text(code: str) -> str:
    """What the student should answer: the whole function in one python block."""
    return f"```python\n{code.strip()}\n```"


def row(method: str, task: Task, messages: list[dict], code: str, *, id_: str, teacher: str,
        student: str | None, teacher_round: int, distill_round: int, attempt_key=None,
        attempt=None, feedback=None) -> dict:
    completion = answer_text(code)
    user = next(m["content"] for m in messages if m["role"] == "user")
    return {"id": f"{method}/{id_}", "method": method, "prompt": user, "completion": completion,
            "messages": [*messages, {"role": "assistant", "content": completion}],
            "task_id": task.task_id, "source": task.source, "student": student,
            "attempt_key": attempt_key, "attempt": attempt, "feedback": feedback,
            "teacher": teacher, "teacher_round": teacher_round, "distill_round": distill_round}


def unique(rows: list[dict]) -> list[dict]:
    """One row per (prompt, completion): samples that led to the same code teach nothing twice."""
    seen, out = set(), []
    for r in rows:
        key = (json.dumps(r["messages"][:-1]), r["completion"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def renamed(rows: list[dict], method: str) -> list[dict]:
    """Another method's rows under this method's name."""
    return [{**r, "method": method, "id": f"{method}/{r['id']}"} for r in rows]


def direct_rows(method: str, inputs: Inputs, answers: list[Direct]) -> list[dict]:
    return unique([row(method, inputs.tasks[a.task_id], attempt_messages(inputs.tasks[a.task_id]),
                       shown_code(inputs.tasks[a.task_id], a.completion), teacher=a.teacher,
                       student=inputs.student, teacher_round=0,
                       distill_round=inputs.distill_round, id_=a.key)
                   for a in answers])


def refinement_rows(method: str, inputs: Inputs, prompt: Callable[[Task, dict], list[dict]]
                     ) -> list[dict]:
    """A row per verified refinement: the refined code, as the answer to `prompt`."""
    rows = []
    for refinement in inputs.refinements:
        task = inputs.tasks[refinement.task_id]
        attempt = inputs.attempts[refinement.attempt_key]
        provenance = {"teacher": refinement.teacher, "student": attempt.model,
                      "teacher_round": refinement.round,
                      "distill_round": inputs.distill_round, "attempt_key": attempt.key,
                      "attempt": shown_code(task, attempt.completion),
                      "feedback": inputs.executions[attempt.key].feedback}
        rows.append(row(method, task, prompt(task, provenance),
                        shown_code(task, refinement.completion), id_=refinement.key,
                        **provenance))
    return unique(rows)


def matched(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
    """InpD restricted to PERsD's tasks: the teacher's verified answers to them, or the task's
    reference where it has none.

    Training on the same tasks as PERsD leaves the answers as the only difference between the
    two sets, which is the comparison the paper makes. Where the teacher never answered a task
    correctly from scratch its refinement still did, so the reference stands in (better than
    dropping the task and shrinking the set below PERsD's)."""
    rows, by_reference, left_out = [], 0, 0
    for task_id in dict.fromkeys(r["task_id"] for r in rows_of("persd")):
        task = inputs.tasks[task_id]
        answers = [d for d in inputs.direct if d.task_id == task_id]
        rows += direct_rows("inpd-matched", inputs, answers)
        if answers:
            continue
        if task.reference is None:
            left_out += 1
            continue
        by_reference += 1
        rows.append(row("inpd-matched", task, attempt_messages(task),
                        shown_code(task, task.reference), teacher="reference",
                        student=inputs.student, teacher_round=0,
                        distill_round=inputs.distill_round, id_=f"{task_id}#reference"))
    inputs.counts["inpd-matched tasks without a teacher answer (reference used)"] = by_reference
    inputs.counts["inpd-matched tasks left out (no teacher answer, no reference)"] = left_out
    return unique(rows)


SCORE_COLUMNS = ("input_ids", "prompt_tokens", "token_logprob", "top_ids", "top_logprobs",
                 "rest")


def scored_rows(method: str, inputs: Inputs, role: str) -> list[dict]:
    """A row per scored attempt (RUN/scores/ROLE.jsonl): the student's own answer with the
    scorer's top-k at each of its tokens. Training moves the student towards the scorer's
    distribution on these tokens (stages/train/token_distill.py); it never learns them by
    cross-entropy (they are the student's, often wrong)."""
    rows, passed = [], 0
    for scored in inputs.scored(role):
        task = inputs.tasks[scored["task_id"]]
        attempt = inputs.attempts[scored["attempt_key"]]
        messages = scored["messages"]
        passed += bool(scored.get("passed"))
        rows.append({
            "id": f"{method}/{attempt.key}", "method": method,
            "prompt": next(m["content"] for m in messages if m["role"] == "user"),
            "completion": messages[-1]["content"], "messages": messages,
            "task_id": task.task_id, "source": task.source, "student": attempt.model,
            "attempt_key": attempt.key, "attempt": shown_code(task, attempt.completion),
            "feedback": inputs.executions[attempt.key].feedback, "teacher": scored["teacher"],
            "teacher_round": 0, "distill_round": inputs.distill_round,
            **{c: scored[c] for c in SCORE_COLUMNS}})
    inputs.counts[f"{method}: attempts scored (passed / failed)"] = f"{passed} / " \
        f"{len(rows) - passed}"
    return rows


THIRD_SEED = 0


def a_third(task_ids: list[str]) -> set[str]:
    """A seeded random third of `task_ids` (rounded to the nearest task; the same tasks for the
    same ids, whatever their order)."""
    import random

    ids = sorted(set(task_ids))
    return set(random.Random(THIRD_SEED).sample(ids, round(len(ids) / 3)))


def standd_third(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
    """StanD on a seeded random third of its tasks: the from-scratch baseline at the cost of a
    third of the data, against which PERsD's claim (better with a third of StanD's data) is
    read the other way round, at equal data."""
    chosen = a_third([d.task_id for d in inputs.direct])
    inputs.counts["standd-third tasks (of StanD's)"] = len(chosen)
    return renamed([r for r in rows_of("standd") if r["task_id"] in chosen], "standd-third")


def personal(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
    """PERsD's rows whose refinement is not a copy of the guide (stages/refine/similarity.py)."""
    copies = {r.key for r in inputs.refinements if r.copied}
    inputs.counts["persd-personal: copies of the guide left out"] = len(copies)
    return renamed([r for r in rows_of("persd") if r["id"].split("/", 1)[1] not in copies],
                   "persd-personal")
