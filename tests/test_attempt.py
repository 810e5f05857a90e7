"""Stages 1 and 2 on the tiny model: attempts and executions recorded, and resumed, not redone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localdistill.rundir import RunDir
from localdistill.stages.attempt import attempt
from localdistill.stages.execute import execute_attempts
from localdistill.tasks import load_humaneval

SCRIPT = Path(sys.executable).parent / "localdistill"
TASKS = load_humaneval()[:3]


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.slow
def test_attempt_then_execute_and_resume(tmp_path):
    with RunDir(tmp_path) as run:
        report = attempt(TASKS, "tiny", run, samples=2, max_tokens=48)
        assert report.new_requests == 6 and report.counts["attempts"] == 6
        attempts = list(run.records("attempts"))
        assert sorted(a["key"] for a in attempts) == sorted(
            f"{t.task_id}#{i}" for t in TASKS for i in range(2))
        assert all(a["model"] == "tiny" and a["answer"] and isinstance(a["completion"], str)
                   for a in attempts)
        assert report.student_tokens == sum(a["completion_tokens"] for a in attempts) > 0
        again = attempt(TASKS, "tiny", run, samples=2, max_tokens=48)
        assert again.new_requests == 0  # resumed: the model is not asked again
        assert list(run.records("attempts")) == attempts  # and the same attempts come out
        assert attempt(TASKS, "tiny", run, samples=3, max_tokens=48).new_requests == 3
        assert len(list(run.records("attempts"))) == 9
        assert _lines(tmp_path / "cache" / "sent.jsonl") == 9  # every request sent once

        report = execute_attempts(TASKS, run)
        executions = {e["key"]: e for e in run.records("executions")}
        assert executions.keys() == {a["key"] for a in run.records("attempts")}
        for e in executions.values():
            assert e["passed"] is (e["status"] == "passed")
            assert e["passed"] or e["feedback"]  # a failure always says why
        assert report.counts["attempts passed"] == sum(e["passed"] for e in executions.values())
        verdicts = _lines(tmp_path / "cache" / "executions.jsonl")
        assert 1 <= verdicts <= 9  # identical programs are run once
        execute_attempts(TASKS, run)
        assert _lines(tmp_path / "cache" / "executions.jsonl") == verdicts  # nothing re-run


def test_fewer_tokens_is_another_request(tmp_path):
    """What determines an answer is its key: a changed setting asks again, the old stays."""
    with RunDir(tmp_path) as run:
        attempt(TASKS[:1], "tiny", run, max_tokens=16)
        assert attempt(TASKS[:1], "tiny", run, max_tokens=24).new_requests == 1
        assert attempt(TASKS[:1], "tiny", run, max_tokens=16).new_requests == 0


def test_the_cli_runs_both_stages(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.run([str(SCRIPT), "attempt", "humaneval", "--model", "tiny", "--run",
                            str(run_dir), "--limit", "2", "--max-tokens", "32"],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "attempts" in first.stdout and "model calls made now" in first.stdout
    second = subprocess.run([str(SCRIPT), "execute", "humaneval", "--run", str(run_dir)],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "attempts executed" in second.stdout
    rows = [json.loads(line) for line in (run_dir / "executions.jsonl").open()]
    assert len(rows) == 2
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"attempt", "execute"}
    assert [h["stage"] for h in manifest["history"]] == ["attempt", "execute"]


def test_a_locked_run_directory_is_a_one_line_error(tmp_path):
    with RunDir(tmp_path):
        result = subprocess.run([str(SCRIPT), "attempt", "humaneval", "--model", "tiny", "--run",
                                 str(tmp_path), "--limit", "1"],
                                capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "in use by another localdistill run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_answers_are_reused_from_other_runs_only_for_the_same_request(tmp_path):
    """--reuse: an answer another run already paid for is copied, not asked again; a request
    that differs in anything (here max_tokens) still goes to the model; the other run is only
    read."""
    earlier = tmp_path / "runs" / "earlier"
    with RunDir(earlier) as run:
        attempt(TASKS[:2], "tiny", run, max_tokens=24)
    before = {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file()}
    later = tmp_path / "later"
    result = subprocess.run([str(SCRIPT), "attempt", "humaneval", "--model", "tiny", "--run",
                             str(later), "--limit", "3", "--max-tokens", "24",
                             "--reuse", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    sent = [json.loads(line) for line in (later / "cache" / "sent.jsonl").open()]
    assert len(sent) == 1  # only the third task was asked
    mine = {a["task_id"]: a["completion"] for a in RunDir(later).records("attempts")}
    theirs = {a["task_id"]: a["completion"] for a in RunDir(earlier).records("attempts")}
    assert len(mine) == 3 and {t: mine[t] for t in theirs} == theirs
    assert _lines(later / "cache" / "requests.jsonl") == 3  # the run keeps its own copies
    with RunDir(tmp_path / "again", reuse=[tmp_path / "runs"]) as run:
        assert attempt(TASKS[:2], "tiny", run, max_tokens=25).new_requests == 2
    assert {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == before


def test_reusing_a_missing_directory_is_a_one_line_error(tmp_path):
    result = subprocess.run([str(SCRIPT), "eval", "humaneval", "--model", "tiny", "--run",
                             str(tmp_path / "run"), "--reuse", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "Invalid value for '--reuse'" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "run").exists()
