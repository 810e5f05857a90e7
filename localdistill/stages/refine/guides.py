"""The correct solution a strategy shows the teacher before it refines (its guide), and the one
every refinement's personalisation is measured against (its baseline: the same solution, whether
or not it was shown)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from localdistill.extract import shown_code
from localdistill.records import Direct
from localdistill.stages.refine.strategies import Strategy, StrategyError
from localdistill.tasks.record import Task


@dataclass(frozen=True)
class Guide:
    shown: str | None  # the code shown to the teacher (None: refined blind)
    source: str | None  # "reference" | "teacher" | None, of `shown`
    baseline: str | None  # the correct solution the refinement must be closer to the attempt than


def teacher_solutions(direct: Iterable[Direct]) -> dict[str, str]:
    """The teacher's first verified answer from scratch per task (direct.jsonl), as completions."""
    found: dict[str, str] = {}
    for answer in direct:
        if answer.passed:
            found.setdefault(answer.task_id, answer.completion)
    return found


def shows_teacher(strategy: Strategy, task: Task) -> bool:
    """Whether the strategy's guide for `task` is the teacher's own verified answer: always for
    "teacher", and for "auto" where the task has no reference. The rule every caller reads (the
    collect asks the teacher for these answers before refining)."""
    return strategy.guide == "teacher" or (strategy.guide == "auto" and task.reference is None)


def guides_for(strategy: Strategy, tasks: Sequence[Task],
               teacher_answers: dict[str, str]) -> dict[str, Guide]:
    """Each task's guide under `strategy`; StrategyError (before any model is asked) when the
    strategy shows references and a task has none."""

    if strategy.guide == "reference":
        lacking = [t.task_id for t in tasks if t.reference is None]
        if lacking:
            raise StrategyError(
                f"strategy {strategy.name!r} shows each task's reference solution, and "
                f"{len(lacking)} task(s) have none (first: {lacking[0]}); choose a strategy whose "
                "guide is 'teacher' or 'auto', or add references to the task file")
    guides = {}
    for task in tasks:
        reference = shown_code(task, task.reference) if task.reference is not None else None
        teacher = (shown_code(task, teacher_answers[task.task_id])
                   if task.task_id in teacher_answers else None)
        baseline = reference or teacher
        if strategy.guide == "none":
            guides[task.task_id] = Guide(None, None, baseline)
        elif shows_teacher(strategy, task):
            guides[task.task_id] = Guide(teacher, "teacher" if teacher else None, teacher or
                                         baseline)
        else:  # the reference ("reference", or "auto" with one)
            guides[task.task_id] = Guide(reference, "reference", baseline)
    return guides
