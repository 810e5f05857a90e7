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


def score_refinements(tasks: Sequence[Task], run: RunDir, student: ModelSpec | str,
                      teacher: ModelSpec | str, out: Path, top_k: int = DEFAULTS.top_k,
                      max_length: int = DEFAULTS.max_length, progress: Progress | None = None,
                      context: str = DEFAULTS.context) -> StageReport:
    """Score the student's attempt behind every verified refinement of `run` -> OUT/ (a data
    set) and OUT.jsonl; `context`: what the teacher reads first (CONTEXTS)."""
    from localdistill.backends import check_can_score, open_scorer
    from localdistill.backends.hf import from_pretrained_args
    from localdistill.models import weights_path

    student = get_model(student) if isinstance(student, str) else student
    teacher = get_model(teacher) if isinstance(teacher, str) else teacher
    if context not in CONTEXTS:
        raise BadInput(f"unknown scoring context {context!r} (expected: {', '.join(CONTEXTS)})")
    check_can_score(teacher)  # before the student's tokenizer is loaded
    with manifest.stage(run, STAGE) as report:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(**from_pretrained_args(weights_path(student)),
                                                  local_files_only=True)
        items = _items(tasks, run, CONTEXTS[context])
        if not items:
            raise BadInput(f"{run.path}: no verified refinement to score (run `collect` first)")
        scorer, backend = open_scorer(teacher, max(max_length * 2, 2048))
        try:
            check_vocabularies(scorer.token_texts(), tokenizer)
            identity = digest({"teacher": teacher.name, "path": str(weights_path(teacher)),
                               "top_k": top_k})
            cached = {r["key"]: r for r in run.records(SCORES)}
            rows, too_long = [], 0
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
                    rows.append({**{k: item[k] for k in ("task_id", "attempt_key", "messages")},
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
        _write(rows, out)
        report.count_all({"context": context, "refinements (verified)": len(items),
                          "scored": len(rows),
                         "left out (longer than max_length)": too_long, "top k": top_k,
                         "answer tokens scored": sum(len(r["rest"]) for r in rows)})
        return report.finish()


def _items(tasks: Sequence[Task], run: RunDir, template: str = CONTEXTS["privileged"]
           ) -> list[dict]:
    """Per verified refinement: the student's chat (its attempt prompt, its own answer) and the
    teacher's prompt (`template`: privileged, or the task alone)."""
    by_id = {t.task_id: t for t in tasks}
    attempts = {a.key: a for a in read(run, Attempt)}
    feedback = {e.key: e.feedback for e in executions(run)}  # a refuted pass's input too
    items = []
    for refinement in read(run, Refinement):
        if not refinement.passed or refinement.attempt_key not in attempts:
            continue
        task = by_id.get(refinement.task_id)
        if task is None:
            raise BadInput(f"{run.path}: a refinement of task {refinement.task_id}, which is not "
                           "in the task set given")
        attempt = attempts[refinement.attempt_key]
        answer = attempt.answer or attempt.completion  # the very text the student wrote
        items.append({
            "task_id": task.task_id, "attempt_key": attempt.key,
            "messages": [*attempt_messages(task), {"role": "assistant", "content": answer}],
            "teacher_prompt": render(template, prompt=task.prompt,
                                     description=task.description,
                                     feedback=feedback.get(attempt.key, ""),
                                     solution=shown_code(task, refinement.completion))})
    return items


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


__all__ = ["CONTEXTS", "STAGE", "ScoreConfig", "VocabularyMismatch", "check_vocabularies",
           "score_refinements"]
