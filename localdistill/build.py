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

The six sets (the paper's names):
  standd         the teacher's verified answers to every task
  inpd           the same, only for tasks where the student failed an attempt
  inpd-matched   InpD on exactly PERsD's tasks (the paper's controlled comparison): the teacher's
                 verified answer to each task persd has rows for, or the task's reference
                 solution where the teacher has none (teacher "reference"); a task with neither
                 is left out
  persd          task -> the teacher's verified refinement of the student's failed attempt
  persd-refine   task + the student's attempt + its feedback (prompts/self_repair.jinja, the
                 prompt of multi-step inference) -> the refinement
  persd-combine  persd and persd-refine together
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from localdistill.attempt import attempt_messages, tasks_for
from localdistill.progress import StageReport
from localdistill.prompts import render
from localdistill.refine import shown_code
from localdistill.rundir import RunDir, write_atomic
from localdistill.tasks.record import Task

METHODS = ("standd", "inpd", "inpd-matched", "persd", "persd-refine", "persd-combine")
COLUMNS = ("id", "method", "prompt", "completion", "messages", "task_id", "source", "student",
           "attempt_key", "attempt", "feedback", "teacher", "teacher_round", "distill_round")


def features():
    from datasets import Features, Value

    return Features({
        "id": Value("string"), "method": Value("string"), "prompt": Value("string"),
        "completion": Value("string"),
        "messages": [{"role": Value("string"), "content": Value("string")}],
        "task_id": Value("string"), "source": Value("string"), "student": Value("string"),
        "attempt_key": Value("string"), "attempt": Value("string"), "feedback": Value("string"),
        "teacher": Value("string"), "teacher_round": Value("int32"),
        "distill_round": Value("int32")})


def answer_text(code: str) -> str:
    """What the student should answer: the whole function in one python block."""
    return f"```python\n{code.strip()}\n```"


def build(tasks: Sequence[Task], run: RunDir, methods: Sequence[str] = METHODS,
          previous: Path | None = None, distill_round: int = 1,
          keep_copies: bool = True) -> StageReport:
    """Write the data sets named in `methods` to RUN/data/<method>/ and RUN/data/<method>.jsonl.

    `previous`: the run directory of the previous distillation round; its rows are kept (with
    their round number) and this run's rows are added as round `distill_round`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown data set {unknown[0]!r} (expected: {', '.join(METHODS)})")
    report = StageReport("build")
    attempts = {a["key"]: a for a in run.records("attempts")}
    executions = {e["key"]: e for e in run.records("executions")}
    refinements = [r for r in run.records("refinements") if r["passed"]
                   and (keep_copies or not r.get("copied"))]
    direct = [d for d in run.records("direct") if d["passed"]]
    by_id = tasks_for([*attempts.values(), *direct], tasks, run)
    student = next((a["model"] for a in attempts.values()), None)
    failed_tasks = {e["task_id"] for e in executions.values() if not e["passed"]}

    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    for answer in direct:
        task = by_id[answer["task_id"]]
        row = _row("standd", task, attempt_messages(task),
                   shown_code(task, answer["completion"]), teacher=answer["teacher"],
                   student=student, teacher_round=0, distill_round=distill_round,
                   id_=answer["key"])
        rows["standd"].append(row)
        if task.task_id in failed_tasks:
            rows["inpd"].append({**row, "method": "inpd", "id": f"inpd/{answer['key']}"})
    for refinement in refinements:
        task = by_id[refinement["task_id"]]
        attempt = attempts[refinement["attempt_key"]]
        code = shown_code(task, refinement["completion"])
        provenance = {"teacher": refinement["teacher"], "student": attempt.get("model"),
                      "teacher_round": refinement["round"], "distill_round": distill_round,
                      "attempt_key": attempt["key"],
                      "attempt": shown_code(task, attempt["completion"]),
                      "feedback": executions[attempt["key"]]["feedback"]}
        rows["persd"].append(_row("persd", task, attempt_messages(task), code,
                                  id_=refinement["key"], **provenance))
        repair = render("self_repair", prompt=task.prompt, description=task.description,
                        attempt=provenance["attempt"], feedback=provenance["feedback"])
        rows["persd-refine"].append(_row("persd-refine", task, repair, code,
                                         id_=refinement["key"], **provenance))
    for method in ("standd", "inpd", "persd", "persd-refine"):
        rows[method] = _unique(rows[method])
    rows["persd-combine"] = [{**r, "method": "persd-combine", "id": f"persd-combine/{r['id']}"}
                             for r in rows["persd"] + rows["persd-refine"]]
    rows["inpd-matched"], by_reference, left_out = _matched(
        rows["persd"], direct, by_id, student, distill_round)
    # The matched comparison is read from the two sizes side by side, so persd's is counted
    # even when only inpd-matched is written.
    counted = list(methods)
    if "inpd-matched" in counted and "persd" not in counted:
        counted.insert(counted.index("inpd-matched") + 1, "persd")
    if previous is not None:
        for method in counted:
            earlier = _previous_rows(Path(previous), method, required=method in methods)
            rows[method] = _unique(earlier + rows[method])

    data = run.path / "data"
    for method in counted:
        if method in methods:
            write_dataset(rows[method], data / method)
        report.counts[f"{method} examples"] = len(rows[method])
        if method == "inpd-matched":
            report.counts["inpd-matched tasks without a teacher answer (reference used)"] = \
                by_reference
            report.counts["inpd-matched tasks left out (no teacher answer, no reference)"] = \
                left_out
    return report.finish()


def _matched(persd: list[dict], direct: list[dict], by_id: dict[str, Task],
             student: str | None, distill_round: int) -> tuple[list[dict], int, int]:
    """InpD restricted to PERsD's tasks: (rows, tasks given the reference, tasks left out).

    Training on the same tasks as PERsD leaves the answers as the only difference between the
    two sets, which is the comparison the paper makes. Where the teacher never answered a task
    correctly from scratch its refinement still did, so the reference stands in (better than
    dropping the task and shrinking the set below PERsD's)."""
    rows, by_reference, left_out = [], 0, 0
    for task_id in dict.fromkeys(r["task_id"] for r in persd):
        task = by_id[task_id]
        answers = [d for d in direct if d["task_id"] == task_id]
        for answer in answers:
            rows.append(_row("inpd-matched", task, attempt_messages(task),
                             shown_code(task, answer["completion"]), teacher=answer["teacher"],
                             student=student, teacher_round=0, distill_round=distill_round,
                             id_=answer["key"]))
        if answers:
            continue
        if task.reference is None:
            left_out += 1
            continue
        by_reference += 1
        rows.append(_row("inpd-matched", task, attempt_messages(task),
                         shown_code(task, task.reference), teacher="reference",
                         student=student, teacher_round=0, distill_round=distill_round,
                         id_=f"{task_id}#reference"))
    return _unique(rows), by_reference, left_out


def _row(method: str, task: Task, messages: list[dict], code: str, *, id_: str, teacher: str,
         student: str | None, teacher_round: int, distill_round: int, attempt_key=None,
         attempt=None, feedback=None) -> dict:
    completion = answer_text(code)
    user = next(m["content"] for m in messages if m["role"] == "user")
    return {"id": f"{method}/{id_}", "method": method, "prompt": user, "completion": completion,
            "messages": [*messages, {"role": "assistant", "content": completion}],
            "task_id": task.task_id, "source": task.source, "student": student,
            "attempt_key": attempt_key, "attempt": attempt, "feedback": feedback,
            "teacher": teacher, "teacher_round": teacher_round, "distill_round": distill_round}


def _unique(rows: list[dict]) -> list[dict]:
    """One row per (prompt, completion): samples that led to the same code teach nothing twice."""
    seen, out = set(), []
    for row in rows:
        key = (json.dumps(row["messages"][:-1]), row["completion"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _previous_rows(previous: Path, method: str, required: bool = True) -> list[dict]:
    path = previous / "data" / f"{method}.jsonl"
    if not path.is_file():
        if not required:  # only counted here (persd beside inpd-matched): this round's rows
            return []
        raise ValueError(f"{path}: the previous round has no {method} data set; build it there "
                         "first (or leave --previous out)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_dataset(rows: list[dict], target: Path) -> None:
    """target/ (datasets.save_to_disk) and target.jsonl, each replaced whole."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()  # ours are the stage bars; theirs would clutter logs
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({c: r[c] for c in COLUMNS}, ensure_ascii=False) + "\n"
                    for r in rows)
    write_atomic(target.with_suffix(".jsonl"), lines.encode())
    staging = target.with_name(f".{target.name}.new")
    old = target.with_name(f".{target.name}.old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    # one shard even when empty: with none, load_from_disk fails on the empty set
    Dataset.from_dict(columns, features=features()).save_to_disk(
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
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
