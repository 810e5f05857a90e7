"""Teacher scoring: the student's own failed answers, read by the teacher with privileged context.

For every verified refinement of a collect run (PERsD's examples) the student's failed attempt is
the continuation to score: the teacher is given the task, the attempt's execution feedback and a
correct solution (the refinement; prompts/score_privileged.jinja), and at each token of the
student's answer returns the log-probability of that token, its top-k tokens and the rest
(backends/llamacpp_score.py). Training (`train --distill`) then moves the student's
distribution, on its own context and its own tokens, towards the teacher's: PERsD at the
granularity of a token, and on-policy distillation with a teacher that knows what went wrong.

Both sequences are tokenised with the *student's* tokenizer, so the scores are indexed by the
ids the student trains on; the teacher's vocabulary must agree with it id by id over their
shared size (larger models pad their tables), checked before anything is scored. The result is
a data set (Hugging Face datasets, and JSONL) that training reads without the teacher:

    messages        the student's chat: its attempt prompt, then its own answer
    input_ids       the student's tokens of that chat; prompt_tokens of them carry no loss
    top_ids, top_logprobs, rest, token_logprob
                    per answer token: the teacher's top-k, the rest bucket, the written token's
    task_id, attempt_key, teacher

Scores are cached by a hash of the teacher's identity, its tokens and k (RUN/cache/scores.jsonl),
so a killed scoring resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localdistill import manifest
from localdistill.backends import get_model
from localdistill.errors import BadInput
from localdistill.extract import shown_code
from localdistill.hashing import digest
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.records import Attempt, Refinement, attempt_messages, executions, read
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task

STAGE = "teacher scoring"
SCORES = "cache/scores"
CONTEXTS = {"privileged": "score_privileged", "plain": "score_plain"}  # name -> its template


@dataclass(frozen=True)
class ScoreConfig:
    """What `score` asks of the teacher."""

    top_k: int = field(default=20, metadata={
        "help": "teacher tokens kept per position (the rest is one bucket)"})
    max_length: int = field(default=1024, metadata={
        "help": "student tokens of prompt + answer; longer ones are left out"})
    context: str = field(default="privileged", metadata={
        "choices": tuple(CONTEXTS),
        "help": "what the teacher reads before the student's answer: the task, the feedback "
                "and a correct solution (privileged), or the task alone (plain, to compare)"})


DEFAULTS = ScoreConfig()


class VocabularyMismatch(BadInput):
    pass


def check_vocabularies(teacher_texts: Sequence[str], student_tokenizer) -> None:
    """One line naming the first id whose token differs, over the shared size."""
    from localdistill.stages.train.token_distill import first_difference

    size = min(len(teacher_texts), len(student_tokenizer))
    student_texts = student_tokenizer.convert_ids_to_tokens(list(range(size)))
    found = first_difference(list(teacher_texts[:size]), [t or "" for t in student_texts])
    if found is not None:
        i, theirs, ours = found
        raise VocabularyMismatch(f"the teacher and the student do not share a tokenizer: token "
                                 f"{i} is {theirs!r} for the teacher and {ours!r} for the "
                                 "student; token-level distillation needs one vocabulary")


WHICH = {
    "refined": "the student's failed attempts behind the verified refinements (PERsD's)",
    "attempts": "every attempt, passed or failed, that a correct solution is known for",
}
ROLES = {"teacher": STAGE, "student": "self scoring"}  # who scores -> the stage's name
SCORED = "scores/{role}"  # a collect run's scored rows (RUN/scores/teacher.jsonl ...)


def scorer_key(role: str, context: str = DEFAULTS.context) -> str:
    """The name of a scoring in a collect run: its rows' file (RUN/scores/KEY.jsonl) and, with
    stage_name, its stage. With the default (privileged) context, the role alone: "teacher",
    "student"; otherwise "teacher-plain" and so on."""
    return role if context == DEFAULTS.context else f"{role}-{context}"


def stage_name(role: str, context: str = DEFAULTS.context) -> str:
    """The manifest stage of the scoring by `role` with `context`."""
    return ROLES[role] if context == DEFAULTS.context else f"{ROLES[role]} ({context} context)"


def score_refinements(tasks: Sequence[Task], run: RunDir, student: ModelSpec | str,
                      teacher: ModelSpec | str, out: Path, top_k: int = DEFAULTS.top_k,
                      max_length: int = DEFAULTS.max_length, progress: Progress | None = None,
                      context: str = DEFAULTS.context, which: str = "refined") -> StageReport:
    """Score the student's attempts of `run` (`which`: WHICH) -> OUT/ (a data set) and
    OUT.jsonl; `context`: what the teacher reads first (CONTEXTS)."""
    with manifest.stage(run, STAGE) as report:
        rows = _score(tasks, run, student, teacher, report, top_k, max_length, progress,
                      context, which)
        _write(rows, out)
        return report.finish()


def score_in_run(tasks: Sequence[Task], run: RunDir, student: ModelSpec, scorer: ModelSpec,
                 role: str, progress: Progress | None = None,
                 context: str = DEFAULTS.context) -> StageReport:
    """The collect stage of the token-level methods (methods.py, `scored_by`, `context`): every
    attempt of the run that a correct solution is known for, scored by `scorer` (the teacher, or
    the student itself: `role`) with `context` -> RUN/scores/KEY.jsonl (scorer_key), read by
    build."""
    with manifest.stage(run, stage_name(role, context)) as report:
        rows = _score(tasks, run, student, scorer, report, DEFAULTS.top_k, DEFAULTS.max_length,
                      progress, context, "attempts", required=False)
        if role == "student":  # the student's own compute, not the teacher's
            report.student_tokens, report.teacher_tokens = report.teacher_tokens, 0
        run.write(SCORED.format(role=scorer_key(role, context)), rows)
        return report.finish()


def check_pair(student: ModelSpec, scorer: ModelSpec) -> None:
    """BadInput, in one line, unless `scorer` can score in process and shares the student's
    vocabulary (loads both tokenizers' token texts: seconds, before hours of other work)."""
    from localdistill.backends import check_can_score, open_scorer

    check_can_score(scorer)
    tokenizer = _tokenizer(student)
    scoring, backend = open_scorer(scorer, 512)
    try:
        check_vocabularies(scoring.token_texts(), tokenizer)
    finally:
        scoring.close()
        backend.close()


def _tokenizer(student: ModelSpec):
    from transformers import AutoTokenizer

    from localdistill.backends.hf import from_pretrained_args
    from localdistill.models import weights_path

    return AutoTokenizer.from_pretrained(**from_pretrained_args(weights_path(student)),
                                         local_files_only=True)


def _score(tasks: Sequence[Task], run: RunDir, student: ModelSpec | str,
           teacher: ModelSpec | str, report: StageReport, top_k: int, max_length: int,
           progress: Progress | None, context: str, which: str, required: bool = True
           ) -> list[dict]:
    """The scored rows of `run`'s attempts (`which`), each score from the run's cache or the
    scorer; counted in `report`."""
    from localdistill.backends import check_can_score, open_scorer
    from localdistill.models import adapter_path, weights_path

    student = get_model(student) if isinstance(student, str) else student
    teacher = get_model(teacher) if isinstance(teacher, str) else teacher
    if context not in CONTEXTS:
        raise BadInput(f"unknown scoring context {context!r} (expected: {', '.join(CONTEXTS)})")
    if which not in WHICH:
        raise BadInput(f"unknown set of attempts {which!r} (expected: {', '.join(WHICH)})")
    check_can_score(teacher)  # before the student's tokenizer is loaded
    tokenizer = _tokenizer(student)
    items, without = _items(tasks, run, CONTEXTS[context], which)
    if not items and required:
        raise BadInput(f"{run.path}: no verified refinement to score (run `collect` first)")
    rows, too_long = [], 0
    if items:
        scorer, backend = open_scorer(teacher, max(max_length * 2, 2048))
        try:
            check_vocabularies(scorer.token_texts(), tokenizer)
            adapter = adapter_path(teacher)
            identity = digest({"teacher": teacher.name, "path": str(weights_path(teacher)),
                               "top_k": top_k} | ({"adapter": str(adapter)} if adapter else {}))
            cached = {r["key"]: r for r in run.records(SCORES)}
            progress_bar = bar(progress, "score", len(items))
            with run.appender(SCORES) as out_cache:
                for item in items:
                    student_ids, start = _ids(tokenizer, item["messages"])
                    if len(student_ids) > max_length:
                        too_long += 1
                        progress_bar.advance()
                        continue
                    teacher_ids, _ = _ids(tokenizer, [*item["teacher_prompt"],
                                                      item["messages"][-1]])
                    teacher_start = len(teacher_ids) - (len(student_ids) - start)
                    key = digest({"identity": identity, "ids": teacher_ids,
                                  "start": teacher_start})
                    if key not in cached:
                        positions = scorer.score(teacher_ids, teacher_start, top_k)
                        cached[key] = {"key": key, "positions": [
                            [p.token, p.logprob, list(p.top_ids), list(p.top_logprobs), p.rest]
                            for p in positions]}
                        out_cache.add(cached[key])
                        report.teacher_tokens += len(teacher_ids)
                    positions = cached[key]["positions"]
                    rows.append({**{k: item[k] for k in ("task_id", "attempt_key", "messages",
                                                         "passed", "solution_from")},
                                 "teacher": teacher.name, "input_ids": student_ids,
                                 "prompt_tokens": start,
                                 "token_logprob": [p[1] for p in positions],
                                 "top_ids": [p[2] for p in positions],
                                 "top_logprobs": [p[3] for p in positions],
                                 "rest": [p[4] for p in positions]})
                    progress_bar.advance()
        finally:
            scorer.close()
            backend.close()
    report.count_all({"context": context, "attempts": WHICH[which], "to score": len(items),
                      "left out (no correct solution known)": without,
                      "scored": len(rows), "left out (longer than max_length)": too_long,
                      "top k": top_k,
                      "answer tokens scored": sum(len(r["rest"]) for r in rows)})
    return rows


def _items(tasks: Sequence[Task], run: RunDir, template: str = CONTEXTS["privileged"],
           which: str = "refined") -> tuple[list[dict], int]:
    """Per attempt to score (`which`): the student's chat (its attempt prompt, its own answer)
    and the teacher's prompt (`template`: privileged, or the task alone); and how many attempts
    were left out for want of a correct solution.

    The correct solution shown is, for an attempt behind a verified refinement, that refinement
    (the first verified); for any other attempt ("attempts"), the task's reference; for an
    attempt that passed and has no reference, the attempt itself (it passed: verified)."""
    by_id = {t.task_id: t for t in tasks}
    attempts = {a.key: a for a in read(run, Attempt)}
    results = {e.key: e for e in executions(run)}  # a refuted pass counts as failed
    refined: dict[str, Refinement] = {}
    for refinement in read(run, Refinement):
        if refinement.passed and refinement.attempt_key in attempts:
            refined.setdefault(refinement.attempt_key, refinement)
    keys = list(refined) if which == "refined" else list(attempts)
    items, without = [], 0
    for key in keys:
        attempt = attempts[key]
        task = by_id.get(attempt.task_id)
        if task is None:
            raise BadInput(f"{run.path}: an attempt at task {attempt.task_id}, which is not in "
                           "the task set given")
        execution = results.get(key)
        if execution is None:
            continue  # not run yet
        if key in refined:
            solution, source = refined[key].completion, "refinement"
        elif task.reference is not None:
            solution, source = task.reference, "reference"
        elif execution.passed:
            solution, source = attempt.completion, "attempt"
        else:
            without += 1
            continue
        answer = attempt.answer or attempt.completion  # the very text the student wrote
        items.append({
            "task_id": task.task_id, "attempt_key": attempt.key,
            "passed": execution.passed, "solution_from": source,
            "messages": [*attempt_messages(task), {"role": "assistant", "content": answer}],
            "teacher_prompt": render(template, prompt=task.prompt,
                                     description=task.description,
                                     feedback=execution.feedback or "",
                                     solution=shown_code(task, solution))})
    return items, without


def _ids(tokenizer, messages: list[dict]) -> tuple[list[int], int]:
    """The chat's tokens as training makes them (stages/train/data.py), and where the answer
    starts."""
    from localdistill.stages.train.data import tokenize

    [example], _ = tokenize([{"messages": messages}], tokenizer, 10**9)
    return list(example.input_ids), example.prompt_tokens


def _write(rows: list[dict], out: Path) -> None:
    """OUT/ (datasets.save_to_disk) and OUT.jsonl, each replaced whole."""
    import shutil

    import datasets
    from datasets import Dataset

    from localdistill.rundir import write_atomic

    datasets.disable_progress_bars()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".jsonl"),
                 "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    Dataset.from_list(rows).save_to_disk(str(staging))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


__all__ = ["CONTEXTS", "ROLES", "SCORED", "STAGE", "WHICH", "ScoreConfig", "VocabularyMismatch",
           "check_pair", "check_vocabularies", "score_in_run", "score_refinements", "scorer_key",
           "stage_name"]
