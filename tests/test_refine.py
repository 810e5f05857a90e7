"""Stages 3-4 on the tiny model as teacher: refinements recorded per round, retried only when
they failed, verified by the tests, and resumed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from localdistill.attempt import execute_attempts
from localdistill.refine import refine, shown_code, verified_by_round
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task

SCRIPT = Path(sys.executable).parent / "localdistill"
ADD = Task("add", 'def add(a, b):\n    """Return the sum of a and b."""\n', "add",
           ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"))
MAX = Task("biggest", 'def biggest(xs):\n    """Return the largest number in the list xs."""\n',
           "biggest", ("assert biggest([1, 5, 2]) == 5", "assert biggest([-3, -7]) == -3"))


def _student(run: RunDir) -> None:
    """Wrong attempts, as a student would write them, then executed for real."""
    run.append("attempts", [
        {"key": "add#0", "task_id": "add", "sample": 0, "completion": "    return a - b\n"},
        {"key": "biggest#0", "task_id": "biggest", "sample": 0,
         "completion": "\ndef biggest(xs):\n    return xs[0]\n"},
        {"key": "add#1", "task_id": "add", "sample": 1, "completion": "    return a + b\n"},
    ])
    assert execute_attempts([ADD, MAX], run) == 3


def test_the_teacher_sees_the_students_own_code():
    assert shown_code(ADD, "    return a - b\n") == ADD.prompt + "    return a - b"
    assert shown_code(MAX, "\ndef biggest(xs):\n    return 0\n") == "def biggest(xs):\n    return 0"


def test_refine_rounds_verify_and_resume(tmp_path):
    with RunDir(tmp_path) as run:
        _student(run)
        counts = refine([ADD, MAX], "tiny", run, rounds=2, max_tokens=96)
        records = {r["key"]: r for r in run.records("refinements")}
        # Round 1 for each failed attempt (add#1 passed: never refined), round 2 only after a
        # failed round 1.
        assert {k for k in records if k.endswith("@1")} == {"add#0@1", "biggest#0@1"}
        for key in ("add#0", "biggest#0"):
            assert (f"{key}@2" in records) == (not records[f"{key}@1"]["passed"])
        for record in records.values():
            assert record["passed"] or record["feedback"]
            assert record["teacher"] == "tiny"
        assert verified_by_round(run)[1] == (2, sum(records[k]["passed"] for k in
                                                    ("add#0@1", "biggest#0@1")))
        assert counts[1][0] == 2
        assert refine([ADD, MAX], "tiny", run, rounds=2, max_tokens=96) == {}  # resumed


def test_refine_cli(tmp_path):
    with RunDir(tmp_path) as run:
        _student(run)
    tasks = tmp_path / "tasks.jsonl"
    from localdistill.tasks import save_jsonl

    save_jsonl([ADD, MAX], tasks)
    result = subprocess.run([str(SCRIPT), "refine", str(tasks), "--teacher", "tiny", "--run",
                             str(tmp_path), "--rounds", "1", "--max-tokens", "64"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("round 1: ") and "of 2 refinements verified" in result.stdout
