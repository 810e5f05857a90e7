"""`localdistill examples RUN`: a collect run's refinements read side by side, from a run directory
written by hand (a refinement with the similarity fields of newer runs, and an older one
without them); no model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from localdistill.cli import cli
from localdistill.rundir import RunDir
from localdistill.stages.build.examples import load_examples
from localdistill.tasks import save_jsonl
from localdistill.tasks.record import Task

SCRIPT = Path(sys.executable).parent / "localdistill"
ADD = Task("add", 'def add(a, b):\n    """Return the sum of a and b."""\n', "add",
           ("assert add(1, 2) == 3",))
BIG = Task("biggest", "def biggest(xs):\n", "biggest", ("assert biggest([-3, -7]) == -3",))
ADD_ATTEMPT = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a - b'
ADD_GUIDE = "def add(a, b):\n    return b + a"
BIG_ATTEMPT = "def biggest(xs):\n    return xs[0]"
BIG_ROUND1 = "def biggest(xs):\n    return xs[-1]"
BIG_ROUND2 = "def biggest(xs):\n    total = max(xs)\n    return total"


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    save_jsonl([ADD, BIG], tmp_path / "tasks.jsonl")
    with RunDir(run) as r:
        r.write_json("manifest", {"tasks": {"spec": str(tmp_path / "tasks.jsonl")}})
        r.write("attempts", [
            {"key": "add#0", "task_id": "add", "sample": 0, "completion": "    return a - b\n"},
            {"key": "biggest#0", "task_id": "biggest", "sample": 0,
             "completion": "\n" + BIG_ATTEMPT + "\n"}])
        r.write("executions", [
            {"key": "add#0", "task_id": "add", "passed": False,
             "feedback": "AssertionError\nINPUT: 1, 2\nOUTPUT: -1\nEXPECTED: 3"},
            {"key": "biggest#0", "task_id": "biggest", "passed": False,
             "feedback": "AssertionError\nINPUT: [-3, -7]\nOUTPUT: -7\nEXPECTED: -3"}])
        r.write("refinements", [
            # A newer run's record: strategy, the attempt, the guide and the figures.
            {"key": "add#0@1", "attempt_key": "add#0", "task_id": "add", "round": 1,
             "teacher": "demo-teacher", "completion": "    return a + b\n",
             "refined_from": ADD_ATTEMPT, "passed": True,
             "feedback_given": "AssertionError\nINPUT: 1, 2\nOUTPUT: -1\nEXPECTED: 3",
             "strategy": "guide-minimal", "attempt": ADD_ATTEMPT, "guide": ADD_GUIDE,
             "guide_source": "reference", "similarity": 0.8333, "guide_similarity": 0.4,
             "copied": False, "personalised": True},
            # An older run's records: none of those fields; round 2 refined round 1's code.
            {"key": "biggest#0@1", "attempt_key": "biggest#0", "task_id": "biggest",
             "round": 1, "teacher": "demo-teacher", "completion": BIG_ROUND1,
             "refined_from": BIG_ATTEMPT, "passed": False,
             "feedback_given": "AssertionError\nINPUT: [-3, -7]\nOUTPUT: -7\nEXPECTED: -3",
             "feedback": "AssertionError\nINPUT: [1, 5, 2]\nOUTPUT: 2\nEXPECTED: 5"},
            {"key": "biggest#0@2", "attempt_key": "biggest#0", "task_id": "biggest",
             "round": 2, "teacher": "demo-teacher", "completion": BIG_ROUND2,
             "refined_from": BIG_ROUND1, "passed": True,
             "feedback_given": "AssertionError\nINPUT: [1, 5, 2]\nOUTPUT: 2\nEXPECTED: 5"}])
    with open(run / "refinements.jsonl", "a") as f:
        f.write('{"key": "add#1@1", "attempt_key": "add#1", "passed": tr')  # torn by a crash
    return run


def _examples(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["examples", *args], terminal_width=200)
    return result.exit_code, result.output


def test_the_verified_refinements_side_by_side(run_dir):
    code, out = _examples(str(run_dir))
    assert code == 0, out
    assert "add · round 1 · verified" in out and "biggest · round 2 · verified" in out
    assert "biggest · round 1" not in out  # failed: hidden by default
    assert "return a - b" in out and "return a + b" in out  # the attempt and the refinement
    assert "0.83" in out and "0.40" in out and "guide-minimal" in out
    assert "OUTPUT: -1" in out  # the attempt's feedback
    assert "return b + a" in out  # the guide
    assert "-    return a - b" in out and "+    return a + b" in out  # the diff
    # The older record: the student's own attempt (round 1's code), not round 1's refinement.
    assert "return xs[0]" in out and "total = max(xs)" in out
    assert "2 verified refinements shown, of 3 refinements in" in out
    assert "shown as extracted" not in out  # the manifest's task set was loaded


def test_older_records_fall_back_to_the_first_rounds_code(run_dir):
    examples, total = load_examples(run_dir)
    assert total == 3  # the torn line is skipped
    big = next(e for e in examples if e.task_id == "biggest")
    assert big.attempt == BIG_ATTEMPT and big.refinement == BIG_ROUND2
    assert (big.similarity, big.copied, big.strategy, big.guide) == (None, None, None, None)
    assert "OUTPUT: -7" in big.feedback and "OUTPUT: 2" in big.feedback_given


def test_all_shows_the_failed_refinements_too(run_dir):
    code, out = _examples(str(run_dir), "--all")
    assert code == 0, out
    assert "biggest · round 1 · failed" in out and "return xs[-1]" in out
    assert "3 refinements shown" in out
    assert "given (of the previous round's refinement)" in out and "OUTPUT: 2" in out
    code, out = _examples(str(run_dir), "--all", "--task", "biggest", "--limit", "1")
    assert "biggest · round 1 · failed" in out and "biggest · round 2" not in out
    assert "add · round 1" not in out


def test_markdown_has_both_code_blocks_and_the_diff(run_dir, tmp_path):
    target = tmp_path / "examples.md"
    code, out = _examples(str(run_dir), "-o", str(target))
    assert code == 0, out
    assert f"wrote {target}" in out.replace("\n", "")
    text = target.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## add, round 1 (verified)", "## biggest, round 2 (verified)"]
    assert f"```python\n{ADD_ATTEMPT}\n```" in text
    # The teacher wrote only the body: shown under the prompt's header, as it was run.
    assert f"```python\n{ADD_ATTEMPT.replace('a - b', 'a + b')}\n```" in text
    assert "```diff\n--- student's attempt\n+++ teacher's refinement\n" in text
    assert ' """Return the sum of a and b."""\n-    return a - b\n+    return a + b' in text
    assert "```text\nAssertionError\nINPUT: 1, 2" in text
    assert f"```python\n{ADD_GUIDE}\n```" in text
    assert "| similarity to the attempt | 0.83 |" in text


def test_without_the_task_set_refinements_are_shown_as_extracted(run_dir, tmp_path):
    (tmp_path / "tasks.jsonl").unlink()
    code, out = _examples(str(run_dir), "--task", "add")
    assert code == 0, out
    assert "shown as extracted" in out and "cannot be loaded here" in out
    assert "+    return a + b" in out and "-def add(a, b):" in out  # a body against a function
    code, out = _examples(str(run_dir), "--tasks", str(tmp_path / "elsewhere.jsonl"))
    assert code == 2 and "elsewhere.jsonl" in out


def test_it_reads_a_run_that_another_process_holds(run_dir):
    with RunDir(run_dir):  # a collect still running there holds the lock
        code, out = _examples(str(run_dir), "--task", "add")
    assert code == 0 and "add · round 1" in out


def test_a_directory_without_refinements_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([str(SCRIPT), "examples", str(tmp_path)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "refinements.jsonl") in lines[0]
    assert "collect" in lines[0] and "refine" in lines[0]
    assert not (tmp_path / ".lock").exists()  # only read: nothing written there


def test_the_run_is_left_as_it_was(run_dir):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert _examples(str(run_dir), "--all")[0] == 0
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
