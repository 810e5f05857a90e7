"""Stages 3 and 4: the teacher refines the failed attempts, and each refinement is verified.

For every failed attempt the teacher gets the chosen strategy's prompt (refine/strategies.py):
the task, the student's own code and the execution feedback, and, for a guided strategy, a
correct solution first (the task's reference or the teacher's own verified answer). It answers
with the student's code corrected; k candidates (the strategy's) run against the task's hidden
tests and the verified one closest to the student's attempt is kept (refine/rounds.py). One that
fails goes round again with its own feedback, up to `rounds` rounds in all.

Every kept refinement carries its personalisation (refine/similarity.py): its similarity to the
student's attempt, the guide's (the baseline it must beat), whether it is a copy of the guide.

refinements.jsonl holds every round's outcome (key "<attempt key>@<round>"); all model answers and
verdicts go through the run's cache, so a rerun redoes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.backends import get_model
from localdistill.errors import BadInput
from localdistill.extract import shown_code
from localdistill.models import ModelSpec
from localdistill.progress import Count, Measure, Parts, PerExample, Progress, StageReport
from localdistill.records import (
    Attempt,
    Refinement,
    executions,
    read,
    tasks_for,
    verified_direct,
)
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits
from localdistill.stages.refine.guides import guides_for, teacher_solutions
from localdistill.stages.refine.rounds import (
    RETRY_TEMPERATURE,
    ROUNDS,
    UNCHANGED_RETRIES,
    FailedAttempt,
    Settings,
    run_round,
)
from localdistill.stages.refine.strategies import (
    DEFAULT,
    STRATEGIES,
    Strategy,
    StrategyError,
    get_strategy,
    register,
)
from localdistill.tasks.record import Task

STAGE = "refine + verify"  # its name in the stage table and the manifest


def failed_attempts(run: RunDir, tasks: Sequence[Task], strategy: Strategy,
                    teacher_answers: dict[str, str] | None = None) -> list[FailedAttempt]:
    """The run's failed attempts, each with its task, code, feedback and guide.
    `teacher_answers`: the teacher's verified answers by task (default: the run's direct.jsonl)."""
    attempts = {a.key: a for a in read(run, Attempt)}
    failed = [e for e in executions(run) if not e.passed and e.key in attempts]
    by_id = tasks_for(failed, tasks, run)
    if teacher_answers is None:
        # read whatever the guide: the teacher's answer is also the baseline of unguided ones
        teacher_answers = teacher_solutions(verified_direct(run))
    guides = guides_for(strategy, [by_id[i] for i in dict.fromkeys(e.task_id for e in failed)],
                        teacher_answers)
    items = []
    for e in failed:
        task, guide = by_id[e.task_id], guides[e.task_id]
        code = shown_code(task, attempts[e.key].completion)
        items.append(FailedAttempt(e.key, task, code, e.feedback, code, guide.shown,
                                   guide.source, guide.baseline))
    return items


def refine(tasks: Sequence[Task], teacher: ModelSpec | str, run: RunDir, rounds: int = ROUNDS,
           temperature: float | None = None, max_tokens: int | None = None,
           limits: Limits = Limits(), workers: int | None = None,
           unchanged_retries: int = UNCHANGED_RETRIES,
           retry_temperature: float = RETRY_TEMPERATURE, progress: Progress | None = None,
           strategy: str | Strategy = DEFAULT,
           differential: tuple[int, int] | None = None) -> StageReport:
    """Refine and verify every failed attempt of the run -> refinements.jsonl.
    `differential` (inputs, seed): a candidate that passes its task's tests is also run on the
    generated inputs on which the reference and the teacher's verified answer agree
    (stages/differential.py), and refuted if it fails one."""
    if rounds < 1:
        raise BadInput(f"rounds must be at least 1, got {rounds}")
    strategy = get_strategy(strategy)
    with manifest.stage(run, STAGE) as report:
        spec = get_model(teacher) if isinstance(teacher, str) else teacher
        todo = failed_attempts(run, tasks, strategy)
        failed = len(todo)
        agreed = _agreed(run, tasks, todo, differential, limits, workers) if differential \
            else {}
        settings = Settings(temperature, max_tokens, unchanged_retries, retry_temperature,
                            agreed)
        records: list[Refinement] = []
        for round_ in range(1, rounds + 1):
            if not todo:
                break
            done = run_round(run, spec, strategy, todo, round_, settings, limits, workers,
                             progress, report)
            records += done
            by_key = {r.attempt_key: r for r in done}
            todo = [FailedAttempt(i.attempt_key, i.task,
                                  shown_code(i.task, by_key[i.attempt_key].completion),
                                  by_key[i.attempt_key].feedback, i.attempt, i.guide,
                                  i.guide_source, i.baseline)
                    for i in todo if not by_key[i.attempt_key].passed]
        run.write("refinements", [r.as_record() for r in records])
        report.count_all({"strategy": strategy.name, "failed attempts": failed,
                          **round_counts(records),
                          "refinements verified": sum(r.passed for r in records),
                          "answers unchanged after retries": sum(r.unchanged
                                                                 for r in records)})
        report.finish()
        report.count_all(cost_counts(records, report))
        return report


def _agreed(run: RunDir, tasks: Sequence[Task], todo: Sequence[FailedAttempt],
            differential: tuple[int, int], limits: Limits, workers: int | None
            ) -> dict[str, tuple[str, ...]]:
    """Per failed task: the generated tests its reference and the teacher's verified (not
    refuted) answer agree on."""
    from localdistill.stages.differential import agreed_tests, oracles_for

    inputs, seed = differential
    teacher = teacher_solutions(verified_direct(run))
    wanted = [i.task for i in {i.task.task_id: i for i in todo}.values()
              if i.task.task_id in teacher]
    oracles = oracles_for(wanted, run, inputs, seed, limits, workers)
    return agreed_tests(run, [(t.task_id, t, teacher[t.task_id], oracles[t.task_id])
                              for t in wanted], limits, workers)


def round_counts(records: Sequence[Refinement]) -> dict[str, Count]:
    """Per round: tried, verified, unchanged, copied, personalised, and the answers that held no
    code or ran into the token limit (a teacher that explains or loops)."""
    counts: dict[str, Count] = {}
    for round_ in sorted({r.round for r in records}):
        mine = [r for r in records if r.round == round_]
        answers = [c for r in mine for c in r.candidates]
        verified = [r for r in mine if r.passed]
        counts[f"round {round_}: verified / tried"] = Parts((len(verified), len(mine)))
        counts[f"round {round_}: unchanged"] = sum(r.unchanged for r in mine)
        counts[f"round {round_}: copied (verified, a copy of the guide)"] = sum(
            bool(r.copied) for r in verified)
        counts[f"round {round_}: personalised (closer to the attempt than the guide)"] = sum(
            bool(r.personalised) for r in verified)
        checked = [c for c in answers if c.refuted is not None]
        if checked:
            counts[f"round {round_}: answers checked on generated inputs / refuted"] = Parts(
                (len(checked), sum(c.refuted for c in checked)))
        counts[f"round {round_}: answers with no code / cut off"] = Parts(
            (sum(c.no_code for c in answers), sum(c.cut_off for c in answers)))
    return counts


def cost_counts(records: Sequence[Refinement], report: StageReport) -> dict[str, Count]:
    verified = sum(r.passed for r in records)
    gains = [r.similarity - r.guide_similarity for r in records
             if r.passed and r.guide_similarity is not None]
    return {
        "mean similarity to the attempt (verified)": _mean([r.similarity for r in records
                                                            if r.passed]),
        "mean personalisation gain (verified)": _mean(gains, signed=True),
        "teacher tokens per verified example": PerExample(report.teacher_tokens, verified, 0),
        "seconds per verified example": report.per_example(report.seconds, verified)}


def _mean(values: Sequence[float], signed: bool = False) -> Measure:
    return Measure(sum(values) / len(values) if values else None, "+.3f" if signed else ".3f")


def verified_by_round(run: RunDir) -> dict[int, tuple[int, int]]:
    """{round: (refinements tried, verified)} as refinements.jsonl holds them."""
    table: dict[int, list[int]] = {}
    for record in read(run, Refinement):
        tried_verified = table.setdefault(record.round, [0, 0])
        tried_verified[0] += 1
        tried_verified[1] += bool(record.passed)
    return {k: (v[0], v[1]) for k, v in sorted(table.items())}


__all__ = ["DEFAULT", "ROUNDS", "STRATEGIES", "UNCHANGED_RETRIES", "FailedAttempt", "Strategy",
           "StrategyError", "failed_attempts", "get_strategy", "refine", "register",
           "verified_by_round"]
