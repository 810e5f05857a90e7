"""The data-set methods, each declared once: PERsD, its variants and the baselines (the paper's),
and the token-level sets that go beyond it.

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
    scored_by     "teacher" or "student": its rows need the student's attempts scored token by
                  token by that model (stages/score.py; collect runs the scoring stage first)
    context       what the scorer reads before the student's answer (stages/score.py,
                  CONTEXTS): "privileged" (the task, the feedback, a correct solution) or
                  "plain" (the task alone); each (scored_by, context) is one scoring stage
    default       built when no `--methods` is given (the ablations are built when asked for)

Every row has the columns of build.COLUMNS, whatever the method; rows.py has the helpers that
make rows from a collect run's records (Inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.prompts import render
from localdistill.records import attempt_messages
from localdistill.rundir import load_json, read_records
from localdistill.stages.build.rows import (  # noqa: F401 - a method's helpers, named here too
    SCORE_COLUMNS,
    Inputs,
    RowsOf,
    a_third,
    answer_text,
    direct_rows,
    matched,
    personal,
    refinement_rows,
    renamed,
    row,
    scored_rows,
    standd_third,
    unique,
)
from localdistill.stages.direct import STAGE as DIRECT_STAGE
from localdistill.stages.refine import STAGE as REFINE_STAGE


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
    scored_by: str | None = None
    context: str = "privileged"
    default: bool = True
    help: str = ""

    def __post_init__(self) -> None:
        if self.teacher not in (None, "all", "failed"):
            raise BadInput(f"method {self.name!r}: teacher must be 'all', 'failed' or None")
        if self.scored_by not in (None, "teacher", "student"):
            raise BadInput(f"method {self.name!r}: scored_by must be 'teacher', 'student' or "
                           "None")
        from localdistill.stages.score import CONTEXTS

        if self.context not in CONTEXTS:
            raise BadInput(f"method {self.name!r}: context must be one of "
                           f"{', '.join(map(repr, CONTEXTS))}")


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
    rows=lambda inputs, rows_of: direct_rows("standd", inputs, inputs.direct),
    help="the teacher's verified answers to every task"))
register(Method(
    "inpd", "InpD", teacher="failed", cost=_failed_tasks_cost,
    rows=lambda inputs, rows_of: direct_rows(
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
    rows=matched, follows_student=True, counted_with=("persd",),
    help="InpD on exactly PERsD's tasks (the paper's controlled comparison): the teacher's "
         "verified answer to each task persd has rows for, or the task's reference solution "
         "where the teacher has none (teacher \"reference\"); a task with neither is left out"))
register(Method(
    "persd", "PERsD", cost=_refine_cost, personalised=True, follows_student=True,
    cost_per_example=REFINE_STAGE, rows=lambda inputs, rows_of: refinement_rows(
        "persd", inputs, lambda task, provenance: attempt_messages(task)),
    help="task -> the teacher's verified refinement of the student's failed attempt"))
register(Method(
    "persd-refine", "PERsD-refine", cost=_refine_cost, personalised=True,
    follows_student=True,
    rows=lambda inputs, rows_of: refinement_rows(
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
    follows_student=True, default=False, rows=personal, counted_with=("persd",),
    help="persd without the refinements that are copies of the guide (what the teacher wrote "
         "compared, stages/refine/similarity.py): is it the personalisation or the reference "
         "code that teaches?"))
register(Method(
    "standd-third", "StanD (a third)", teacher="all", cost=_third_cost, default=False,
    rows=standd_third, counted_with=("standd",),
    help="standd on a seeded random third of its tasks: StanD at the data PERsD's claim "
         "(better than StanD with 3x the data) sets it against"))


def _scoring_cost(role: str, context: str = "privileged") -> Callable[[RunFiles], int | None]:
    """The refinements (the solutions the scorer was shown), and the teacher's scoring."""
    from localdistill.stages.score import stage_name

    def cost(files: RunFiles) -> int | None:
        refined = _refine_cost(files)
        scoring = files.stages.get(stage_name(role, context), {}).get("teacher_tokens")
        if refined is None or scoring is None:
            return None
        return refined + (scoring if role == "teacher" else 0)
    return cost


def _scorer_key(role: str, context: str) -> str:
    from localdistill.stages.score import scorer_key

    return scorer_key(role, context)


# --- token-level distillation (stages/score.py, stages/train/token_distill.py) ----------------
# Not the paper's: its teacher was a closed API, which cannot score the student's tokens.

register(Method(
    "tokd", "TokD", cost=_scoring_cost("teacher"), follows_student=True, scored_by="teacher",
    default=False, rows=lambda inputs, rows_of: scored_rows("tokd", inputs, "teacher"),
    help="the student's own attempts, passed and failed, scored token by token by the teacher "
         "given the task, the feedback and a correct solution (the verified refinement, else "
         "the reference); trained by token-level distillation (train's distill settings)"))
register(Method(
    "persd+tokd", "PERsD + TokD", cost=_scoring_cost("teacher"), personalised=True,
    follows_student=True, scored_by="teacher", default=False, counted_with=("persd", "tokd"),
    rows=lambda inputs, rows_of: renamed(rows_of("persd") + rows_of("tokd"), "persd+tokd"),
    help="persd's rows (cross-entropy) and tokd's (distillation) together, the distillation "
         "loss weighted by train's distill_weight"))
register(Method(
    "tokd-plain", "TokD (plain)", cost=_scoring_cost("teacher", "plain"), follows_student=True,
    scored_by="teacher", context="plain", default=False, counted_with=("tokd",),
    rows=lambda inputs, rows_of: scored_rows("tokd-plain", inputs,
                                             _scorer_key("teacher", "plain")),
    help="tokd with the teacher given the task alone (prompts/score_plain.jinja: no feedback, no "
         "correct solution), on the same attempts: what the privileged context adds"))
register(Method(
    "tokd-self", "TokD (self)", cost=_scoring_cost("student"), follows_student=True,
    scored_by="student", default=False,
    rows=lambda inputs, rows_of: scored_rows("tokd-self", inputs, "student"),
    help="tokd with the student itself as the scorer, given the same privileged context "
         "(self-distillation: no larger model needed to score)"))


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

