"""Tasks as a Hugging Face `datasets.Dataset`, and back, losslessly.

The schema is fixed whatever the tasks hold: `metadata` travels as a JSON string, so tasks with
different metadata keys share one Arrow schema. `datasets` is imported only when used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from localdistill.errors import BadInput
from localdistill.tasks.jsonl import OPTIONAL, REQUIRED, task_to_row
from localdistill.tasks.record import Task

if TYPE_CHECKING:
    import datasets


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "the `datasets` package is needed for Hugging Face datasets: "
            "pip install 'localdistill[cpu]' (or pip install datasets)"
        ) from None
    return datasets


def task_features() -> datasets.Features:
    """The Arrow schema of a task dataset."""
    hf = _datasets()
    text = hf.Value("string")
    return hf.Features(
        {
            "task_id": text,
            "prompt": text,
            "entry_point": text,
            "tests": hf.Sequence(text),
            "seen_tests": hf.Sequence(text),
            "test_setup": text,
            "reference": text,  # null when a task has none
            "source": text,
            "description": text,
            "metadata": text,  # JSON
        }
    )


def tasks_to_dataset(tasks: Iterable[Task]) -> datasets.Dataset:
    """A dataset with one row per task (save it with `.save_to_disk(path)`)."""
    features = task_features()
    columns: dict[str, list] = {name: [] for name in features}  # by column: works for no tasks
    for task in tasks:
        row = task_to_row(task)
        row["metadata"] = json.dumps(task.metadata, ensure_ascii=False, sort_keys=True)
        for name, value in row.items():
            columns[name].append(value)
    return _datasets().Dataset.from_dict(columns, features=features)


def tasks_from_dataset(dataset: datasets.Dataset) -> list[Task]:
    """The tasks of a dataset written by `tasks_to_dataset`."""
    columns = set(dataset.column_names)
    missing = [name for name in REQUIRED if name not in columns]
    unknown = sorted(columns - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise BadInput(
            f"not a task dataset: missing columns {missing}, unknown columns {unknown}; "
            f"expected {', '.join(REQUIRED + OPTIONAL)}"
        )
    tasks = []
    for row in dataset:
        row = dict(row)
        row["metadata"] = json.loads(row.get("metadata") or "{}")
        tasks.append(Task(**row))
    return tasks


def load_dataset_dir(path: Path | str) -> list[Task]:
    """Tasks from a directory written by `tasks_to_dataset(...).save_to_disk(path)`."""
    return tasks_from_dataset(_datasets().load_from_disk(str(path)))
