"""The data-set methods, each declared once: PERsD, its variants and the baselines (the paper's).

A method is one `register(Method(...))` here (or in a user's own module):

    name          its data set's name (RUN/data/<name>/, `--methods`, `[run] methods`)
    label         the paper's name, in tables
    rows          how its rows are built from the run's records (build.py writes them)
    teacher       the teacher's own answers it needs from the direct stage: "all" tasks, the
                  tasks the student "failed", or None (the refinement stage always runs)
    personalised  its answers are the teacher's refinements of the student's own code: the sets
                  the report compares against the from-scratch baselines
    follows_student
                  its task set moves with the student's attempts, so each further distillation
                  round collects it again (its round-k student attempting) and retrains it; its
                  teacher cost adds up over the rounds whose rows it holds
    cost          the teacher tokens its rows took, from a collect run's files (report.py)
    counted_with  other sets whose sizes are shown beside it (a comparison read side by side)
    cost_per_example
                  the stage whose teacher tokens and minutes the build table shows per example
                  of this set (one set stands for each kind of teacher work: PERsD for the
                  refinements, StanD for the answers from scratch)
    default       built when no `--methods` is given (the ablations are built when asked for)

Every row has the columns of build.COLUMNS, whatever the method.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.extract import shown_code
from localdistill.prompts import render
from localdistill.records import Attempt, Direct, Execution, Refinement, attempt_messages
from localdistill.rundir import load_json, read_records
from localdistill.stages.direct import STAGE as DIRECT_STAGE
from localdistill.stages.refine import STAGE as REFINE_STAGE
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

    @cached_property
    def failed_tasks(self) -> set[str]:
        return {e.task_id for e in self.executions.values() if not e.passed}


RowsOf = Callable[[str], list[dict]]  # another method's rows (built once, on demand)


@dataclass(frozen=True)
class RunFiles:
    """A collect run's files, as the report reads them to cost a data set."""

    manifest: dict
    read: Callable[[str], list[dict]]  # a JSONL file of the run by name ("direct.jsonl", ...)

    @property
    def stages(self) -> dict:
        return self.manifest.get("stages", {})

    def direct_tokens(self, tasks: set[str] | None) -> int | None:
        """Teacher tokens of its direct answers (to `tasks`, or all); None if it gave none."""
        direct = self.read("direct.jsonl")
        if not direct:  # the teacher answered nothing from scratch in this collect run:
            return None  # the cost is unknown here, not zero
        hashes = {r["request_hash"] for r in direct if tasks is None or r["task_id"] in tasks}
        return sum(r["completion_tokens"] for r in self.read("cache/requests.jsonl")
                   if r["key"] in hashes)


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    rows: Callable[[Inputs, RowsOf], list[dict]]
    cost: Callable[[RunFiles], int | None]
    teacher: str | None = None
    personalised: bool = False
    follows_student: bool = False
    counted_with: tuple[str, ...] = ()
    cost_per_example: str | None = None
    default: bool = True
    help: str = ""

    def __post_init__(self) -> None:
        if self.teacher not in (None, "all", "failed"):
            raise BadInput(f"method {self.name!r}: teacher must be 'all', 'failed' or None")


METHODS: dict[str, Method] = {}


def default_methods() -> tuple[str, ...]:
    """The data sets built when none are named."""
    return tuple(name for name, method in METHODS.items() if method.default)


def register(method: Method) -> Method:
    """Make `method` buildable by its name (a later declaration of a name replaces it)."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise BadInput(f"unknown data set {name!r} (expected: {', '.join(METHODS)})") from None


# --- rows ------------------------------------------------------------------------------------


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


def _direct_rows(method: str, inputs: Inputs, answers: list[Direct]) -> list[dict]:
    return unique([row(method, inputs.tasks[a.task_id], attempt_messages(inputs.tasks[a.task_id]),
                       shown_code(inputs.tasks[a.task_id], a.completion), teacher=a.teacher,
                       student=inputs.student, teacher_round=0,
                       distill_round=inputs.distill_round, id_=a.key)
                   for a in answers])


def _refinement_rows(method: str, inputs: Inputs, prompt: Callable[[Task, dict], list[dict]]
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


def _matched(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
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
        rows += _direct_rows("inpd-matched", inputs, answers)
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


THIRD_SEED = 0


def a_third(task_ids: list[str]) -> set[str]:
    """A seeded random third of `task_ids` (rounded to the nearest task; the same tasks for the
    same ids, whatever their order)."""
    import random

    ids = sorted(set(task_ids))
    return set(random.Random(THIRD_SEED).sample(ids, round(len(ids) / 3)))


def _standd_third(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
    """StanD on a seeded random third of its tasks: the from-scratch baseline at the cost of a
    third of the data, against which PERsD's claim (better with a third of StanD's data) is
    read the other way round, at equal data."""
    chosen = a_third([d.task_id for d in inputs.direct])
    inputs.counts["standd-third tasks (of StanD's)"] = len(chosen)
    return renamed([r for r in rows_of("standd") if r["task_id"] in chosen], "standd-third")


def _personal(inputs: Inputs, rows_of: RowsOf) -> list[dict]:
    """PERsD's rows whose refinement is not a copy of the guide (stages/refine/similarity.py)."""
    copies = {r.key for r in inputs.refinements if r.copied}
    inputs.counts["persd-personal: copies of the guide left out"] = len(copies)
    return renamed([r for r in rows_of("persd") if r["id"].split("/", 1)[1] not in copies],
                   "persd-personal")


# --- teacher cost ------------------------------------------------------------------------------


def _refine_cost(files: RunFiles) -> int | None:
    """Every refinement round, failed ones included."""
    return files.stages.get(REFINE_STAGE, {}).get("teacher_tokens")


def _direct_cost(files: RunFiles) -> int | None:
    return files.stages.get(DIRECT_STAGE, {}).get("teacher_tokens")


def _failed_tasks_cost(files: RunFiles) -> int | None:
    """The direct answers to the tasks the student failed."""
    return files.direct_tokens({r["task_id"] for r in files.read("executions.jsonl")
                                if not r["passed"]})


def _third_cost(files: RunFiles) -> int | None:
    """The direct answers to standd-third's tasks."""
    return files.direct_tokens(a_third([r["task_id"] for r in files.read("direct.jsonl")
                                        if r["passed"]]))


def _persd_tasks_cost(files: RunFiles) -> int | None:
    """The direct answers to PERsD's tasks (those a refinement was verified for); its rows that
    are reference solutions cost the teacher only its failed answers to them."""
    return files.direct_tokens({r["task_id"] for r in files.read("refinements.jsonl")
                                if r["passed"]})


# --- the methods (the paper's six; two ablations built when asked for) --------------------------

register(Method(
    "standd", "StanD", teacher="all", cost=_direct_cost, cost_per_example=DIRECT_STAGE,
    rows=lambda inputs, rows_of: _direct_rows("standd", inputs, inputs.direct),
    help="the teacher's verified answers to every task"))
register(Method(
    "inpd", "InpD", teacher="failed", cost=_failed_tasks_cost,
    rows=lambda inputs, rows_of: _direct_rows(
        "inpd", inputs, [d for d in inputs.direct if d.task_id in inputs.failed_tasks]),
    help="the same, only for tasks where the student failed an attempt"))
# inpd-matched follows the student although its answers are the teacher's own: its tasks are those
# whose failed attempts the teacher's refinements repaired, so its task set moves with the student
# as PERsD's does. In a further round it follows its own round-k student (not persd's): what it
# isolates is personalised task selection with the teacher's generic answers, against PERsD's
# personalised selection and answers, and that holds in every round only if each picks its own
# failures.
register(Method(
    "inpd-matched", "InpD (PERsD's tasks)", teacher="failed", cost=_persd_tasks_cost,
    rows=_matched, follows_student=True, counted_with=("persd",),
    help="InpD on exactly PERsD's tasks (the paper's controlled comparison): the teacher's "
         "verified answer to each task persd has rows for, or the task's reference solution "
         "where the teacher has none (teacher \"reference\"); a task with neither is left out"))
register(Method(
    "persd", "PERsD", cost=_refine_cost, personalised=True, follows_student=True,
    cost_per_example=REFINE_STAGE, rows=lambda inputs, rows_of: _refinement_rows(
        "persd", inputs, lambda task, provenance: attempt_messages(task)),
    help="task -> the teacher's verified refinement of the student's failed attempt"))
register(Method(
    "persd-refine", "PERsD-refine", cost=_refine_cost, personalised=True,
    follows_student=True,
    rows=lambda inputs, rows_of: _refinement_rows(
        "persd-refine", inputs, lambda task, provenance: render(
            "self_repair", prompt=task.prompt, description=task.description,
            attempt=provenance["attempt"], feedback=provenance["feedback"])),
    help="task + the student's attempt + its feedback (prompts/self_repair.jinja, the prompt "
         "of multi-step inference) -> the refinement"))
register(Method(
    "persd-combine", "PERsD-combine", cost=_refine_cost, personalised=True,
    follows_student=True,
    rows=lambda inputs, rows_of: renamed(rows_of("persd") + rows_of("persd-refine"),
                                         "persd-combine"),
    help="persd and persd-refine together"))
register(Method(
    "persd-personal", "PERsD w/o copies", cost=_refine_cost, personalised=True,
    follows_student=True, default=False, rows=_personal, counted_with=("persd",),
    help="persd without the refinements that are copies of the guide (what the teacher wrote "
         "compared, stages/refine/similarity.py): is it the personalisation or the reference "
         "code that teaches?"))
register(Method(
    "standd-third", "StanD (a third)", teacher="all", cost=_third_cost, default=False,
    rows=_standd_third, counted_with=("standd",),
    help="standd on a seeded random third of its tasks: StanD at the data PERsD's claim "
         "(better than StanD with 3x the data) sets it against"))


def teacher_tokens(method: str, run: Path, previous: Callable[[Path], int | None]
                   ) -> int | None:
    """The teacher tokens of `method`'s data set in collect run `run`; `previous(run)` adds
    the earlier rounds' for a method that follows the student."""
    files = RunFiles(load_json(run / "manifest.json"),
                     lambda name: list(read_records(run / name)))
    spent = METHODS[method].cost(files) if method in METHODS else None
    earlier = (files.manifest.get("config") or {}).get("previous")
    if spent is None or not earlier or not METHODS[method].follows_student:
        return spent
    before = previous(Path(earlier))
    return None if before is None else spent + before

