"""Stages 1 and 2 on the tiny model: attempts and executions recorded, and resumed, not redone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from localdistill.attempt import attempt, execute_attempts
from localdistill.rundir import RunDir
from localdistill.tasks import load_humaneval

SCRIPT = Path(sys.executable).parent / "localdistill"
TASKS = load_humaneval()[:3]


def test_attempt_then_execute_and_resume(tmp_path):
    with RunDir(tmp_path) as run:
        assert attempt(TASKS, "tiny", run, samples=2, max_tokens=48) == 6
        attempts = list(run.records("attempts"))
        assert sorted(a["key"] for a in attempts) == sorted(
            f"{t.task_id}#{i}" for t in TASKS for i in range(2))
        assert all(a["model"] == "tiny" and a["answer"] and isinstance(a["completion"], str)
                   for a in attempts)
        assert attempt(TASKS, "tiny", run, samples=2, max_tokens=48) == 0  # resumed: nothing new
        assert attempt(TASKS, "tiny", run, samples=3, max_tokens=48) == 3  # only the new samples

        assert execute_attempts(TASKS, run) == 9
        executions = {e["key"]: e for e in run.records("executions")}
        assert executions.keys() == {a["key"] for a in run.records("attempts")}
        for e in executions.values():
            assert e["passed"] is (e["status"] == "passed")
            assert e["passed"] or e["feedback"]  # a failure always says why
        assert execute_attempts(TASKS, run) == 0


def test_the_cli_runs_both_stages(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.run([str(SCRIPT), "attempt", "humaneval", "--model", "tiny", "--run",
                            str(run_dir), "--limit", "2", "--max-tokens", "32"],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"2 new attempts (2 in {run_dir}/attempts.jsonl)"
    second = subprocess.run([str(SCRIPT), "execute", "humaneval", "--run", str(run_dir)],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "2 attempts executed" in second.stdout
    rows = [json.loads(line) for line in (run_dir / "executions.jsonl").open()]
    assert len(rows) == 2


def test_a_locked_run_directory_is_a_one_line_error(tmp_path):
    with RunDir(tmp_path):
        result = subprocess.run([str(SCRIPT), "attempt", "humaneval", "--model", "tiny", "--run",
                                 str(tmp_path), "--limit", "1"],
                                capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "in use by another localdistill run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
