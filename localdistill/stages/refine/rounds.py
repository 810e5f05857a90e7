"""One refinement round: k candidates per failed attempt, each verified, the closest kept.

For every failed attempt the teacher is asked the strategy's prompt `candidates` times (one
request with k = 1, as before strategies existed; seeds 0..k-1 when sampling). When every
candidate hands the code back unchanged, the teacher is asked again, sampling, up to
`unchanged_retries` times. All candidates run against the task's hidden tests; among the verified
ones the one most similar to the student's own attempt is kept (refine/similarity.py), so that
the data is as personal as the teacher could make it. A round's record keeps every candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from localdistill.answers import generate
from localdistill.backends import request_for
from localdistill.extract import extract_completion, has_code, same_code, shown_code
from localdistill.prompts import render
from localdistill.records import (
    Candidate,
    Refinement,
    candidate_key,
    checked_key,
    retry_key,
    round_key,
)
from localdistill.sandbox import program_for
from localdistill.stages.refine.similarity import is_copy, is_personalised, similarity
from localdistill.stages.refine.strategies import Strategy
from localdistill.tasks.record import Task
from localdistill.verdicts import judge


@dataclass(frozen=True)
class FailedAttempt:
    """A failed attempt in the round being run: the code to refine now and its feedback (the
    student's own in round 1, the last refinement's after), and what stays fixed."""

    attempt_key: str
    task: Task
    code: str
    feedback: str
    attempt: str  # the student's own code: personalisation is measured against it
    guide: str | None = None
    guide_source: str | None = None
    baseline: str | None = None


ROUNDS = 2  # refinement rounds in all: the first, plus retries with the new feedback
UNCHANGED_RETRIES = 2  # re-asks, sampling, when the teacher hands the student's code back
RETRY_TEMPERATURE = 0.8  # at least this temperature for those re-asks


@dataclass(frozen=True)
class Settings:
    temperature: float | None = None  # the run's teacher temperature (None: models.toml)
    max_tokens: int | None = None
    unchanged_retries: int = UNCHANGED_RETRIES
    retry_temperature: float = RETRY_TEMPERATURE
    # task id -> generated tests on which the reference and the teacher's own verified answer
    # agree (stages/differential.py): a candidate that passes the task's tests and fails one of
    # these is refuted, not verified. Empty: no differential check.
    agreed: dict[str, tuple[str, ...]] = field(default_factory=dict)


def run_round(run, spec, strategy: Strategy, todo: Sequence[FailedAttempt], round_: int,
              settings: Settings, limits, workers, progress, report) -> list[Refinement]:
    """One round for every attempt in `todo` -> one record each (see module docstring)."""
    from localdistill.progress import bar

    answers: dict[str, list] = {item.attempt_key: [] for item in todo}  # key -> [(answer, retry)]
    pending = list(todo)
    for retry in range(settings.unchanged_retries + 1):
        if not pending:
            break
        label = f"refine r{round_}" + (f" retry {retry}" if retry else "")
        asked = {item.attempt_key: _requests(spec, strategy, item, round_, retry, settings)
                 for item in pending}
        requests = [r for rs in asked.values() for r in rs]
        got = generate(run, spec, requests, "refine", bar(progress, label, len(requests)))
        report.teacher_tokens += sum(a.completion_tokens for a in got.values())
        report.count_answers(got.values())
        still = []
        for item in pending:
            mine = [got[r.key] for r in asked[item.attempt_key]]
            answers[item.attempt_key] += [(a, retry) for a in mine]
            if all(same_code(shown_code(item.task, extract_completion(a.text, item.task)),
                             item.code) for a in mine):
                still.append(item)
        pending = still
    candidates = {item.attempt_key: [_candidate(item, answer, retry)
                                     for answer, retry in answers[item.attempt_key]]
                  for item in todo}
    programs = [program_for(item.task, c.completion, key=candidate_key(item.attempt_key, i))
                for item in todo for i, c in enumerate(candidates[item.attempt_key])]
    verdicts = judge(run, programs, limits, workers,
                     bar(progress, f"verify r{round_}", len(programs)))
    checks = []  # the candidates that passed, on the generated inputs (Settings.agreed)
    for item in todo:
        tests = settings.agreed.get(item.task.task_id)
        for i, c in enumerate(candidates[item.attempt_key]):
            key = candidate_key(item.attempt_key, i)
            if tests and verdicts[key].passed:
                program = program_for(item.task, c.completion, key=checked_key(key))
                checks.append(dataclasses.replace(program, tests=tests))
    differential = judge(run, checks, limits, workers) if checks else {}
    records = []
    for item in todo:
        mine = candidates[item.attempt_key]
        for i, c in enumerate(mine):
            verdict = verdicts[candidate_key(item.attempt_key, i)]
            c = replace(c, passed=verdict.passed, status=verdict.status, feedback=verdict.feedback)
            check = differential.get(checked_key(candidate_key(item.attempt_key, i)))
            if check is not None:
                c = replace(c, refuted=not check.passed)
                if c.refuted:
                    c = replace(c, passed=False, status="refuted", feedback=check.feedback)
            mine[i] = c
        retries = max(r for _, r in answers[item.attempt_key])
        records.append(_record(item, round_, spec.name, strategy.name, mine, item in pending,
                               retries))
    return records


def _requests(spec, strategy: Strategy, item: FailedAttempt, round_: int, retry: int,
              settings: Settings) -> list:
    messages = render(strategy.template, prompt=item.task.prompt,
                      description=item.task.description, attempt=item.code,
                      feedback=item.feedback, guide=item.guide or "")
    key = round_key(item.attempt_key, round_)
    stop = (*spec.sampling.stop, *strategy.stop) if strategy.stop else None
    max_tokens = settings.max_tokens or strategy.max_tokens
    temperature = strategy.temperature if strategy.temperature is not None else \
        settings.temperature
    k = strategy.candidates
    if retry == 0:
        return [request_for(spec, messages=messages, temperature=temperature,
                            max_tokens=max_tokens, stop=stop, seed=None if k == 1 else c,
                            key=key if c == 0 else candidate_key(key, c)) for c in range(k)]
    base = temperature if temperature is not None else spec.sampling.temperature
    return [request_for(spec, messages=messages, max_tokens=max_tokens, stop=stop,
                        temperature=max(base, settings.retry_temperature),
                        seed=retry if k == 1 else k - 1 + retry, key=retry_key(key, retry))]


def _candidate(item: FailedAttempt, answer, retry: int) -> Candidate:
    completion = extract_completion(answer.text, item.task)
    code = shown_code(item.task, completion)
    return Candidate(answer.request_hash, answer.text, completion, retry,
                     unchanged=same_code(code, item.code),
                     similarity=round(similarity(code, item.attempt), 4),
                     copied=is_copy(code, item.guide, item.attempt, item.task.entry_point),
                     no_code=not has_code(answer.text, item.task),
                     cut_off=answer.finish_reason == "length", tokens=answer.completion_tokens)


def _chosen(candidates: list[Candidate]) -> Candidate:
    """The verified candidate closest to the student's attempt; failing that, the closest that
    changed the code (the next round then refines something new); failing that, the last."""
    for pool in ([i for i, c in enumerate(candidates) if c.passed],
                 [i for i, c in enumerate(candidates) if not c.unchanged]):
        if pool:
            return candidates[max(pool, key=lambda i: (candidates[i].similarity, -i))]
    return candidates[-1]


def _record(item: FailedAttempt, round_: int, teacher: str, strategy: str,
            candidates: list[Candidate], unchanged: bool, retries: int) -> Refinement:
    chosen = _chosen(candidates)
    baseline = (round(similarity(item.baseline, item.attempt), 4)
                if item.baseline is not None else None)
    passed = chosen.passed
    return Refinement(
        key=round_key(item.attempt_key, round_), attempt_key=item.attempt_key,
        task_id=item.task.task_id, round=round_, teacher=teacher, strategy=strategy,
        request_hash=chosen.request_hash, answer=chosen.answer, completion=chosen.completion,
        refined_from=item.code, feedback_given=item.feedback, unchanged_retries=retries,
        unchanged=unchanged, passed=passed, status=chosen.status, feedback=chosen.feedback,
        attempt=item.attempt, guide=item.guide, guide_source=item.guide_source,
        similarity=chosen.similarity, guide_similarity=baseline,
        personalised=(passed and not chosen.copied
                      and is_personalised(shown_code(item.task, chosen.completion),
                                          item.baseline, item.attempt, item.task.entry_point)
                      if item.baseline is not None else None),
        copied=passed and chosen.copied,
        candidates_verified=sum(c.passed for c in candidates),
        candidates=tuple(candidates))
