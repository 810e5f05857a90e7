"""Tasks: the coding problems every stage works on, from benchmarks or from users' own files.

`load_tasks(spec)` reads any of them:

    NAME[:SPLIT][=PATH]        a benchmark, declared once in its own module of this package
                               (`BENCHMARK = Benchmark(...)`, tasks/benchmark.py): HumanEval,
                               MBPP, Code-Alpaca... `spec_help()` lists them, docs/tasks.md has
                               their table. PATH defaults to its packaged data file, or to its
                               file under $LOCALDISTILL_DATA
    PATH.jsonl                 your own tasks (the schema: docs/tasks.md)
    DIRECTORY                  a dataset saved by tasks_to_dataset(...).save_to_disk(DIRECTORY)
    SPEC,SPEC,...              several of the above, in order (mbpp:train,mbpp:validation); a
                               task id in two of them is an error
"""

from __future__ import annotations

import re
from pathlib import Path

from localdistill.tasks.alpaca import load_alpaca
from localdistill.tasks.benchmark import (
    Benchmark,
    benchmarks,
    benchmarks_reference,
    decontamination_specs,
    spec_help,
    spec_names,
)
from localdistill.tasks.errors import TaskFileError, TaskSpecError
from localdistill.tasks.hfdataset import load_dataset_dir, tasks_from_dataset, tasks_to_dataset
from localdistill.tasks.humaneval import HUMANEVAL_PATH, load_humaneval, seen_test_coverage
from localdistill.tasks.jsonl import load_jsonl, save_jsonl
from localdistill.tasks.mbpp import MBPP_SPLITS, load_mbpp
from localdistill.tasks.record import Task

__all__ = [
    "HUMANEVAL_PATH",
    "MBPP_SPLITS",
    "Benchmark",
    "Task",
    "TaskFileError",
    "TaskSpecError",
    "benchmarks",
    "benchmarks_reference",
    "decontamination_specs",
    "load_alpaca",
    "load_dataset_dir",
    "load_humaneval",
    "load_jsonl",
    "load_mbpp",
    "load_tasks",
    "save_jsonl",
    "seen_test_coverage",
    "spec_help",
    "tasks_from_dataset",
    "tasks_to_dataset",
]

# NAME[:SPLIT][=PATH]; a NAME no benchmark declares is read as a file or directory instead.
_BENCHMARK = re.compile(r"^(?P<name>\w+)(?::(?P<split>\w+))?(?:=(?P<path>.+))?$")


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
    benchmark = benchmarks().get(match["name"]) if match else None
    if benchmark is not None:
        return benchmark.tasks(spec, match["split"], match["path"])
    path = Path(spec)
    if path.suffix == ".jsonl":
        if path.is_dir():
            raise TaskSpecError(f"{spec}: a directory, not a task file (one JSON object a line)")
        if not path.is_file():
            raise TaskSpecError(f"no such task file: {spec}")
        return load_jsonl(path)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return load_dataset_dir(path)
    raise TaskSpecError(f"unknown task spec {spec!r}: expected {spec_names()}")

