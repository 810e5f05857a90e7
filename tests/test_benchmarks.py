"""A benchmark is declared once, in its own module (tasks/benchmark.py): a throwaway one, written
as one new module, is read by task specs, the CLI's help, `doctor`, `mine`'s decontamination and
the docs' table, with nothing else edited."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from localdistill import tasks
from localdistill.doctor import benchmark_checks
from localdistill.stages.mine.decontaminate import decontaminate, evaluation_sets
from localdistill.tasks import (
    Benchmark,
    Task,
    TaskSpecError,
    benchmarks,
    benchmarks_reference,
    decontamination_specs,
    load_tasks,
    spec_help,
)

REPO = Path(__file__).resolve().parents[1]

# The whole of a new benchmark: its reader and its declaration, in one module.
TOY_MODULE = '''
import json

from localdistill.tasks.benchmark import Benchmark
from localdistill.tasks.record import Task


def load_toy(path, split):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    return [Task(row["id"], row["prompt"], row["entry_point"], (row["test"],), source="toy")
            for row in rows if split in ("all", row["split"])]


BENCHMARK = Benchmark("toy", "Toy", "three functions for a test", load=load_toy,
                      splits=("easy", "hard", "all"), default_split="easy",
                      data_file="toy.jsonl", decontaminate=("hard",))
'''


def _row(task_id: str, split: str, name: str, doc: str) -> dict:
    return {"id": task_id, "split": split, "entry_point": name,
            "prompt": f'def {name}(first, second, third):\n    """{doc}"""\n',
            "test": f"assert {name}(1, 2, 3) is not None"}


TOY_ROWS = [
    _row("toy/1", "easy", "add_three_numbers", "Return the sum of the three numbers given."),
    _row("toy/2", "easy", "largest_of_three", "Return the largest of the three numbers given."),
    _row("toy/3", "hard", "median_of_three", "Return the median of the three numbers given."),
]


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """The toy benchmark's module on the tasks package's path, its data under
    $LOCALDISTILL_DATA; all of it gone afterwards."""
    package = tmp_path / "more_tasks"
    package.mkdir()
    (package / "toy.py").write_text(TOY_MODULE)
    data = tmp_path / "data"
    data.mkdir()
    (data / "toy.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TOY_ROWS))
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(package)])
    monkeypatch.delitem(sys.modules, "localdistill.tasks.toy", raising=False)
    monkeypatch.setenv("LOCALDISTILL_DATA", str(data))
    benchmarks.cache_clear()
    try:
        yield data / "toy.jsonl"
    finally:
        monkeypatch.undo()
        sys.modules.pop("localdistill.tasks.toy", None)
        benchmarks.cache_clear()
    assert "toy" not in benchmarks()


def _ids(loaded: list[Task]) -> list[str]:
    return [task.task_id for task in loaded]


def test_a_benchmark_declared_in_its_module_is_read_by_task_specs(toy, tmp_path, monkeypatch):
    assert _ids(load_tasks("toy")) == ["toy/1", "toy/2"]  # its default split
    assert _ids(load_tasks("toy:all")) == ["toy/1", "toy/2", "toy/3"]
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(json.dumps(_row("other/9", "hard", "f", "Elsewhere.")) + "\n")
    assert _ids(load_tasks(f"toy:hard={elsewhere}")) == ["other/9"]
    assert _ids(load_tasks("toy:hard,toy")) == ["toy/3", "toy/1", "toy/2"]

    with pytest.raises(TaskSpecError) as caught:
        load_tasks("toy:medium")
    assert str(caught.value) == \
        "unknown Toy split 'medium' in 'toy:medium': expected easy, hard, all"
    with pytest.raises(TaskSpecError, match="^no such Toy file: nowhere.jsonl$"):
        load_tasks("toy=nowhere.jsonl")
    monkeypatch.delenv("LOCALDISTILL_DATA")
    with pytest.raises(TaskSpecError) as caught:
        load_tasks("toy:hard")
    assert str(caught.value) == ("Toy needs its data file: use toy[:split]=PATH, or set "
                                 "LOCALDISTILL_DATA to the folder that holds toy.jsonl")


def test_a_new_benchmark_is_in_the_help_the_docs_table_and_doctor(toy):
    row = ("toy[:SPLIT][=PATH]", "Toy: three functions for a test; "
           "SPLIT: easy (default), hard, all")
    assert row in spec_help()
    for command in (["tasks", "--help"], ["eval", "--help"]):
        shown = CliRunner().invoke(_cli(), command, terminal_width=200)
        assert shown.exit_code == 0, shown.output
        assert re.search(r"\n  toy\[:SPLIT\]\[=PATH\] +Toy: three functions for a test",
                         shown.output), shown.output
    info = CliRunner().invoke(_cli(), ["tasks", "info", "toy:all"])
    assert info.exit_code == 0 and "toy:all: 3 tasks" in info.output

    assert ("| `toy[:SPLIT][=PATH]` | Toy: three functions for a test | `easy` (default), "
            "`hard`, `all` | `$LOCALDISTILL_DATA/toy.jsonl` | `hard` |") in benchmarks_reference()
    checks = {check.name: check for check in benchmark_checks()}
    assert (checks["Toy"].ok, checks["Toy"].detail) == (True, str(toy))
    toy.unlink()
    assert not next(c for c in benchmark_checks() if c.name == "Toy").ok


def test_mine_drops_near_copies_of_the_splits_a_benchmark_declares(toy):
    assert "toy:hard" in decontamination_specs() and "toy:easy" not in decontamination_specs()
    against, _ = evaluation_sets()
    assert "toy/3" in _ids(against) and "toy/1" not in _ids(against)
    mined = [Task(f"mined/{task.entry_point}", task.prompt, task.entry_point, task.tests,
                  source="mined") for task in load_tasks("toy:all")]
    kept, dropped = decontaminate(mined, against)
    assert _ids(kept) == ["mined/add_three_numbers", "mined/largest_of_three"]
    assert (dropped["mined/median_of_three"].task_id,
            dropped["mined/median_of_three"].source) == ("toy/3", "toy")


def test_docs_tasks_md_holds_the_table_made_from_the_declarations():
    table = benchmarks_reference()
    assert table in (REPO / "docs" / "tasks.md").read_text()
    for benchmark in benchmarks().values():
        assert f"| `{benchmark.usage}` | {benchmark.title}: " in table


def test_the_shipped_declarations():
    assert {"humaneval", "mbpp", "alpaca"} <= set(benchmarks())
    # mine checked these two before they were declared; the declarations keep them
    assert decontamination_specs() == ["humaneval", "mbpp:test"]
    with pytest.raises(TaskSpecError) as caught:
        load_tasks("humaneva")
    for benchmark in benchmarks().values():  # the error lists every spec a user can give
        assert benchmark.usage in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"splits": ("a",), "default_split": "b", "data_file": "t.jsonl"}, "default_split"),
        ({"data_file": "t.jsonl", "package": "toy-data"}, "one of data_file and package"),
        ({"data_file": "t.jsonl", "decontaminate": ("test",)}, "a split it does not have"),
        ({"splits": ("a",), "default_split": "a", "data_file": "t.jsonl",
          "decontaminate": True}, "name the splits"),
    ],
)
def test_a_declaration_that_cannot_work_fails_when_it_is_read(settings, problem):
    with pytest.raises(ValueError, match=problem):
        Benchmark("toy", "Toy", "a test", load=list, **settings)


def _cli():
    from localdistill.cli import cli

    return cli
