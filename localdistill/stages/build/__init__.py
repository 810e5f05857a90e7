"""Stage 5: the training sets, as Hugging Face datasets (save_to_disk) and JSONL.

Every row has the same columns, whatever the method:
  prompt, completion   the user message the student sees, and the answer to learn (the whole
                       function in one ```python block, as the attempt prompt asks for)
  messages             the chat to train on: exactly the messages the student is sent at
                       inference (system + user), then the completion as the assistant's turn
  method, id, task_id, source, student, attempt_key, attempt, feedback, teacher, teacher_round,
  distill_round        where the row comes from (attempt/feedback are empty for StanD/InpD rows;
                       teacher_round is 0 for the teacher's own answers and for the reference
                       solutions of inpd-matched, whose teacher is then "reference")

The sets themselves (PERsD, its variants, the StanD and InpD baselines) are declared in
methods.py, one declaration each; this module builds the ones asked for and writes them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.progress import StageReport
from localdistill.records import Attempt, Refinement, executions, read, tasks_for, verified_direct
from localdistill.rundir import RunDir, load_jsonl, write_atomic
from localdistill.stages.build.methods import (
    METHODS,
    SCORE_COLUMNS,
    Inputs,
    default_methods,
    get_method,
    unique,
)
from localdistill.tasks.record import Task

STAGE = "build"  # its name in the stage table and the manifest

COLUMNS = ("id", "method", "prompt", "completion", "messages", "task_id", "source", "student",
           "attempt_key", "attempt", "feedback", "teacher", "teacher_round", "distill_round")


def features(scored: bool = False):
    """The columns of a data set; `scored`: a token-level set's too (methods.SCORE_COLUMNS, empty
    in its ordinary rows)."""
    from datasets import Features, Sequence, Value

    extra = {"input_ids": Sequence(Value("int32")), "prompt_tokens": Value("int32"),
             "token_logprob": Sequence(Value("float64")),
             "top_ids": Sequence(Sequence(Value("int32"))),
             "top_logprobs": Sequence(Sequence(Value("float64"))),
             "rest": Sequence(Value("float64"))} if scored else {}
    return Features({
        "id": Value("string"), "method": Value("string"), "prompt": Value("string"),
        "completion": Value("string"),
        "messages": [{"role": Value("string"), "content": Value("string")}],
        "task_id": Value("string"), "source": Value("string"), "student": Value("string"),
        "attempt_key": Value("string"), "attempt": Value("string"), "feedback": Value("string"),
        "teacher": Value("string"), "teacher_round": Value("int32"),
        "distill_round": Value("int32"), **extra})


def build(tasks: Sequence[Task], run: RunDir, methods: Sequence[str] | None = None,
          previous: Path | None = None, distill_round: int = 1,
          keep_copies: bool = True) -> StageReport:
    """Write the data sets named in `methods` to RUN/data/<method>/ and RUN/data/<method>.jsonl.

    `previous`: the run directory of the previous distillation round; its rows are kept (with
    their round number) and this run's rows are added as round `distill_round`. `methods`:
    None builds the default sets (methods.default_methods).
    """
    methods = default_methods() if methods is None else methods
    for name in methods:
        get_method(name)  # an unknown name: one line, before anything is written
    report = StageReport(STAGE)
    attempts = {a.key: a for a in read(run, Attempt)}
    direct = verified_direct(run)
    inputs = Inputs(
        tasks=tasks_for([*attempts.values(), *direct], tasks, run), attempts=attempts,
        executions={e.key: e for e in executions(run)},
        refinements=[r for r in read(run, Refinement) if r.passed
                     and (keep_copies or not r.copied)],
        direct=direct, student=next((a.model for a in attempts.values()), None),
        distill_round=distill_round, scored=lambda role: _scored(run, role))
    rows: dict[str, list[dict]] = {}

    def rows_of(name: str) -> list[dict]:
        if name not in rows:
            rows[name] = METHODS[name].rows(inputs, rows_of)
        return rows[name]

    # A comparison read from sizes side by side (inpd-matched beside persd) counts the other set
    # even when only one is written.
    counted = list(methods)
    for name in methods:
        for other in METHODS[name].counted_with:
            if other not in counted:
                counted.insert(counted.index(name) + 1, other)
    built = {name: rows_of(name) for name in counted}
    if previous is not None:
        for name in counted:
            earlier = _previous_rows(Path(previous), name, required=name in methods)
            built[name] = unique(earlier + built[name])

    data = run.path / "data"
    for name in counted:
        if name in methods:
            write_dataset(built[name], data / name)
        report.count(f"examples:{name}", len(built[name]), f"{name} examples")
    report.count_all(inputs.counts)  # the methods' own figures (methods.Inputs.counts)
    return report.finish()


def _scored(run: RunDir, role: str) -> list[dict]:
    """The rows the scoring stage wrote for `role` (stages/score.py); BadInput if it has not
    run."""
    from localdistill.stages.score import SCORED

    path = run.path / f"{SCORED.format(role=role)}.jsonl"
    if not path.is_file():
        raise BadInput(f"{path}: no such file; the token-level methods need the scoring stage "
                       "(`localdistill collect` runs it when they are asked for)")
    return load_jsonl(path)


def _previous_rows(previous: Path, method: str, required: bool = True) -> list[dict]:
    path = previous / "data" / f"{method}.jsonl"
    if not path.is_file():
        if not required:  # only counted here (persd beside inpd-matched): this round's rows
            return []
        raise BadInput(f"{path}: the previous round has no {method} data set; build it there "
                       "first (or leave --previous out)")
    return load_jsonl(path)


def write_dataset(rows: list[dict], target: Path) -> None:
    """target/ (datasets.save_to_disk) and target.jsonl, each replaced whole."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()  # ours are the stage bars; theirs would clutter logs
    target.parent.mkdir(parents=True, exist_ok=True)
    scored = any("top_ids" in r for r in rows)  # a token-level set (methods.SCORE_COLUMNS)
    lines = "".join(json.dumps({c: r[c] for c in COLUMNS + SCORE_COLUMNS if c in r},
                               ensure_ascii=False) + "\n" for r in rows)
    write_atomic(target.with_suffix(".jsonl"), lines.encode())
    staging = target.with_name(f".{target.name}.new")
    old = target.with_name(f".{target.name}.old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    columns = {c: [r.get(c) for r in rows] for c in COLUMNS + (SCORE_COLUMNS if scored else ())}
    # one shard even when empty: with none, load_from_disk fails on the empty set
    Dataset.from_dict(columns, features=features(scored)).save_to_disk(
        str(staging), num_shards=None if rows else 1)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)


def load_dataset_rows(path: Path) -> list[dict]:
    """The rows of a data set written by `build` (its directory or its JSONL)."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        return list(load_from_disk(str(path)))
    return load_jsonl(path)
