"""Code-Alpaca tasks (the PERsD paper's public task set): a reference solution, but no tests.

Each row is `task_id` ("alpaca/N"), `prompt` (a docstring holding the instruction, then the `def`
line) and `reference_completion` (the function's body, written by a large model). The tasks come
with empty `tests`: `localdistill gen-tests` (stages/gentests) makes tests for them from the
reference before any other stage can use them.
"""

from __future__ import annotations

import re
from pathlib import Path

from localdistill.tasks.benchmark import Benchmark
from localdistill.tasks.errors import TaskFileError
from localdistill.tasks.record import Task
from localdistill.tasks.rows import TEXT, check_fields, json_rows

ALPACA_FILE = "code_alpaca_tasks.jsonl"
_FIELDS = {"task_id": TEXT, "prompt": TEXT, "reference_completion": TEXT}
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def load_alpaca(path: Path | str) -> list[Task]:
    """The Code-Alpaca tasks of `path`, with their references and no tests."""
    tasks = [alpaca_task(path, number, row) for number, row in json_rows(path)]
    if not tasks:
        raise TaskFileError(path, 1, "file", "no tasks; expected one JSON object per line")
    return tasks


def alpaca_task(path: Path | str, number: int, row: dict) -> Task:
    check_fields(path, number, row, _FIELDS, "Code-Alpaca")
    # The prompt ends with the header of the function to write: the last `def` in it.
    names = _DEF.findall(row["prompt"])
    if not names:
        raise TaskFileError(path, number, "prompt", "no `def` line; expected the function header")
    return Task(
        task_id=row["task_id"],
        prompt=row["prompt"],
        entry_point=names[-1],
        tests=(),
        reference=row["reference_completion"],
        source="alpaca",
    )


# Not decontaminated against: its tasks are for training, never for judging a model.
BENCHMARK = Benchmark(
    "alpaca", "Code-Alpaca",
    "3,248 instructions with a reference solution but no tests (make them with `gen-tests`)",
    load=load_alpaca, data_file=ALPACA_FILE,
)
