"""The records that flow between the stages, typed, and the helpers every stage shares.

Each stage writes one JSONL file of the run directory and later stages read it back:

    attempts.jsonl     Attempt      stage 1: the student's answer to a task (one per sample)
    executions.jsonl   Execution    stage 2: that attempt run on the task's hidden tests
    direct.jsonl       Direct       the teacher's own answer to a task, verified (StanD, InpD)
    refinements.jsonl  Refinement   stages 3-4: a round's refinement of a failed attempt, verified

The files keep every field (later stages and users' tools may read more than is typed here);
the classes name the fields the stages rely on, so a stage reads `attempt.task_id`, not a key
parsed back out of a composite string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from localdistill.errors import BadInput
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task

# Every compound key of a run is built here, so that a stage never parses one back.

def attempt_key(task_id: str, sample: int) -> str:
    """The key of a task's sample (an attempt, a teacher's answer): `task_id#sample`."""
    return candidate_key(task_id, sample)


def round_key(key: str, round_: int) -> str:
    """An answer's descendant at a round: a refinement of an attempt (`attempt@round`), an
    evaluation sample after `round_` repair steps."""
    return f"{key}@{round_}"


def candidate_key(key: str, i: int) -> str:
    """The i-th of several answers or programs for one key (`key#i`)."""
    return f"{key}#{i}"


def retry_key(key: str, retry: int) -> str:
    """A request asked again, sampling, because the first answers handed the code back."""
    return f"{key}~{retry}"


def checked_key(key: str) -> str:
    """A program judged again on the generated inputs (the differential check)."""
    return f"{key}+"


def part_key(key: str, part: str) -> str:
    """One of several programs judged for one answer (its hidden tests, its seen tests...)."""
    return f"{key}/{part}"


def kind_key(kind: str, key: str) -> str:
    """An answer's key among answers of several kinds (attempt, direct)."""
    return f"{kind}:{key}"


# Each record's fields are in the order its file keeps them; a stage writes the record it
# defines (`write`) and every later stage reads it back typed (`read`).

@dataclass(frozen=True)
class Attempt:
    """The student's answer to a task (stages/attempt.py)."""

    key: str  # attempt_key(task_id, sample)
    task_id: str
    sample: int = 0
    model: str = ""
    request_hash: str = ""
    answer: str = ""
    completion: str = ""  # the code extracted from `answer`
    finish_reason: str = ""
    completion_tokens: int = 0
    prompt_tokens: int = 0


@dataclass(frozen=True)
class Execution:
    """An attempt run on its task's hidden tests (stages/execute.py)."""

    key: str  # the attempt's
    task_id: str
    passed: bool
    status: str = ""
    feedback: str = ""
    outcomes: tuple[str, ...] = ()  # each test's status
    runtime: float = 0.0

    @classmethod
    def from_record(cls, record: dict) -> Execution:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in record.items() if k in names}
        return cls(**{**fields, "outcomes": tuple(fields.get("outcomes", ()))})

    def as_record(self) -> dict:
        return {**dataclasses.asdict(self), "outcomes": list(self.outcomes)}


@dataclass(frozen=True)
class Direct:
    """The teacher's own answer to a task, verified (stages/direct.py)."""

    key: str
    task_id: str
    sample: int = 0
    teacher: str = ""
    request_hash: str = ""
    answer: str = ""
    completion: str = ""
    passed: bool = False
    status: str = ""
    feedback: str = ""


@dataclass(frozen=True)
class Candidate:
    """One of a round's k answers to a failed attempt, verified (stages/refine/rounds.py)."""

    request_hash: str
    answer: str
    completion: str  # the code extracted from `answer`
    retry: int = 0  # 0: asked first; n: the n-th re-ask after answers that changed nothing
    unchanged: bool = False  # hands the code it was given back
    similarity: float = 0.0  # to the student's own attempt (refine/similarity.py)
    copied: bool = False  # a copy of the guide
    no_code: bool = False
    cut_off: bool = False  # ran into the token limit
    tokens: int = 0
    passed: bool = False
    status: str = ""
    feedback: str = ""
    refuted: bool | None = None  # on the generated inputs; None: not checked

    def as_record(self) -> dict:
        """As a refinement's record keeps it: without the answer and feedback (the chosen
        candidate's are the record's own), `refuted` only when it was checked."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("answer", "feedback") and (k != "refuted" or v is not None)}


@dataclass(frozen=True)
class Refinement:
    """A round's refinement of a failed attempt: the candidate kept, its verdict, and how
    personal it is (stages/refine/rounds.py writes it; the fields in the file's order)."""

    key: str  # round_key(attempt key, round)
    attempt_key: str
    task_id: str
    round: int
    teacher: str
    strategy: str = ""
    request_hash: str = ""
    answer: str = ""
    completion: str = ""
    refined_from: str = ""  # the code the teacher was shown (the attempt, or the last round's)
    feedback_given: str = ""
    unchanged_retries: int = 0
    unchanged: bool = False  # every answer, retries included, handed the code back
    passed: bool = False
    status: str = ""
    feedback: str = ""
    attempt: str = ""  # the student's own code
    guide: str | None = None
    guide_source: str | None = None
    similarity: float = 0.0
    guide_similarity: float | None = None  # the guide's similarity to the attempt
    personalised: bool | None = None  # None: no guide to compare with
    copied: bool = False
    candidates_verified: int = 0
    candidates: tuple[Candidate, ...] = ()

    @classmethod
    def from_record(cls, record: dict) -> Refinement:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in record.items() if k in names}
        kept = {f.name for f in dataclasses.fields(Candidate)}
        fields["candidates"] = tuple(Candidate(**{"answer": "", **{k: v for k, v in c.items()
                                                                  if k in kept}})
                                     for c in record.get("candidates", ()))
        return cls(**fields)

    def as_record(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "candidates": [c.as_record() for c in self.candidates]}


@dataclass(frozen=True)
class Check:
    """A passing answer (a student attempt or a teacher's answer) run on the generated inputs
    its reference and a second solution agree on (stages/differential.py)."""

    key: str  # the answer's
    kind: str  # "attempt" | "direct"
    task_id: str
    checked: bool = False
    refuted: bool = False
    feedback: str = ""  # the first input it disagrees on, in the PERsD format
    reason: str = ""  # why it was not checked


R = TypeVar("R")
DIFFERENTIAL = "differential"  # stages/differential.py's records
FILES = {Attempt: "attempts", Execution: "executions", Direct: "direct",
         Refinement: "refinements", Check: DIFFERENTIAL}


def write(run: RunDir, kind: type[R], records: Sequence[R]) -> None:
    """A stage's records of `kind`, as its file (FILES[kind]) keeps them."""
    run.write(FILES[kind], [r.as_record() if hasattr(r, "as_record") else dataclasses.asdict(r)
                            for r in records])


def read(run: RunDir, kind: type[R]) -> list[R]:
    """The run's records of one kind (its stage's file), typed."""
    if hasattr(kind, "from_record"):
        return [kind.from_record(record) for record in run.records(FILES[kind])]
    names = {f.name for f in dataclasses.fields(kind)}
    return [kind(**{k: v for k, v in record.items() if k in names})
            for record in run.records(FILES[kind])]


def refuted(run: RunDir, kind: str) -> dict[str, str]:
    """{key: feedback} of the answers of `kind` ("attempt" | "direct") that passed their task's
    tests and were refuted on generated inputs (stages/differential.py); empty when the run made
    no differential check."""
    return {c.key: c.feedback for c in read(run, Check) if c.kind == kind and c.refuted}


def executions(run: RunDir) -> list[Execution]:
    """The attempts' verdicts as every later stage reads them: an attempt that passed its tests
    and was refuted on generated inputs is a failed one, with the failing input as feedback."""
    wrong = refuted(run, "attempt")
    return [dataclasses.replace(e, passed=False, feedback=wrong[e.key], status="refuted")
            if e.key in wrong else e for e in read(run, Execution)]


def verified_direct(run: RunDir) -> list[Direct]:
    """The teacher's answers from scratch that passed their tests and were not refuted."""
    wrong = refuted(run, "direct")
    return [d for d in read(run, Direct) if d.passed and d.key not in wrong]


def failed_task_ids(run: RunDir) -> set[str]:
    """The tasks with a failed (or refuted) attempt."""
    return {e.task_id for e in executions(run) if not e.passed}


def tasks_for(records: Iterable, tasks: Sequence[Task], run: RunDir) -> dict[str, Task]:
    """The tasks by id, checking that every record's task (a typed record or its dict) is among
    them."""
    by_id = {task.task_id: task for task in tasks}
    ids = {r["task_id"] if isinstance(r, dict) else r.task_id for r in records}
    unknown = sorted(ids - by_id.keys())
    if unknown:
        raise BadInput(f"{run.path}: attempts of tasks that are not in the task set given "
                       f"(first: {unknown[0]}); pass the same tasks as to `attempt`")
    return by_id


def check_tasks_have_tests(tasks: Sequence[Task]) -> None:
    untested = [t.task_id for t in tasks if not t.tests]
    if untested:
        raise BadInput(f"{len(untested)} tasks have no tests (first: {untested[0]}); "
                       "give them tests with `localdistill gen-tests` first")


def attempt_messages(task: Task) -> list[dict[str, str]]:
    """What the student sees for a task: at attempt time, at inference, and in training rows."""
    return render("attempt", prompt=task.prompt, description=task.description)
