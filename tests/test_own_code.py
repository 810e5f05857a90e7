"""The whole loop on the user's own code: `mine` a small repository with the tiny teacher, then
`run` trains on the mined tasks and evaluates on HumanEval and on the held-out mined functions,
and the report shows both. The tiny model is weak; the repository holds functions it can handle
(at temperature 0 the outcome is fixed: three tasks to train on, one held out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localdistill.tasks import load_tasks

SCRIPT = Path(sys.executable).parent / "localdistill"

REPOSITORY = '''
"""Small numeric helpers."""


def clamp_value(value: int, low: int, high: int) -> int:
    """Clamp value into [low, high]."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def sum_of_cubes(limit: int) -> int:
    """The sum of the cubes of 1 to limit."""
    total = 0
    for n in range(1, limit + 1):
        total += n ** 3
    return total


def max_of_three(a: int, b: int, c: int) -> int:
    """The largest of a, b and c."""
    best = a
    if b > best:
        best = b
    if c > best:
        best = c
    return best


def absolute_difference(x: int, y: int) -> int:
    """The absolute difference of x and y."""
    diff = x - y
    if diff < 0:
        diff = -diff
    return diff
'''

CONFIG = """
[run]
student = "tiny"
teacher = "tiny"
tasks = ["mined/tasks.jsonl"]
methods = ["standd", "persd"]

[collect]
max_tokens = 24
teacher_max_tokens = 160

[train]
max_steps = 2
grad_accumulation = 1
rank = 4

[eval]
benchmarks = ["humaneval", "mined/tasks.heldout.jsonl"]
limit = 3
temperature = 0
max_tokens = 48
steps = 0
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_mined_tasks_flow_through_the_loop_and_the_held_out_ones_into_the_report(tmp_path):
    (tmp_path / "repo" / "calc").mkdir(parents=True)
    (tmp_path / "repo" / "calc" / "numbers.py").write_text(REPOSITORY)
    _run("mine", str(tmp_path / "repo"), "-o", str(tmp_path / "mined" / "tasks.jsonl"),
         "--teacher", "tiny", "--run", str(tmp_path / "mine-run"), "--count", "5",
         "--min-tests", "1", "--max-tokens", "128", "--temperature", "0", "--held-out", "0.3")
    train = load_tasks(str(tmp_path / "mined" / "tasks.jsonl"))
    held = load_tasks(str(tmp_path / "mined" / "tasks.heldout.jsonl"))
    assert train and held and all(t.tests for t in train + held)
    assert not {t.task_id for t in train} & {t.task_id for t in held}

    (tmp_path / "own.toml").write_text(CONFIG)
    result = _run("run", str(tmp_path / "own.toml"), "--run", str(tmp_path / "run"))
    run = tmp_path / "run"
    manifest = json.loads((run / "collect" / "manifest.json").read_text())
    assert manifest["tasks"]["count"] == len(train)
    rows = json.loads((run / "report" / "report.json").read_text())
    on_own = {r["label"]: r for r in rows if r["benchmark"].endswith("tasks.heldout.jsonl")}
    on_humaneval = {r["label"] for r in rows if r["benchmark"] == "humaneval"}
    trained = {label for label, r in on_own.items() if r["examples"]}
    assert "base" in on_own and trained and set(on_own) == on_humaneval
    for label in trained:  # adapters learned from mined tasks only, never the held-out ones
        data = (run / "collect" / "data" / f"{label}.jsonl").read_text().splitlines()
        assert {json.loads(row)["task_id"] for row in data} <= {t.task_id for t in train}
        assert on_own[label]["tasks"] == len(held)
    assert "tasks.heldout.jsonl" in result.stdout  # the report table names the own-code set
