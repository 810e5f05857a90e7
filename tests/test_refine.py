"""Stages 3-4 on the tiny model as teacher: refinements recorded per round, retried only when
they failed, verified by the tests, and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from localdistill.extract import same_code, shown_code
from localdistill.rundir import RunDir
from localdistill.stages.execute import execute_attempts
from localdistill.stages.refine import refine, verified_by_round
from localdistill.tasks.record import Task

SCRIPT = Path(sys.executable).parent / "localdistill"
ADD = Task("add", 'def add(a, b):\n    """Return the sum of a and b."""\n', "add",
           ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"))
MAX = Task("biggest", 'def biggest(xs):\n    """Return the largest number in the list xs."""\n',
           "biggest", ("assert biggest([1, 5, 2]) == 5", "assert biggest([-3, -7]) == -3"))


def _student(run: RunDir) -> None:
    """Wrong attempts, as a student would write them, then executed for real."""
    run.write("attempts", [
        {"key": "add#0", "task_id": "add", "sample": 0, "completion": "    return a - b\n"},
        {"key": "biggest#0", "task_id": "biggest", "sample": 0,
         "completion": "\ndef biggest(xs):\n    return xs[0]\n"},
        {"key": "add#1", "task_id": "add", "sample": 1, "completion": "    return a + b\n"},
    ])
    assert execute_attempts([ADD, MAX], run).counts["attempts failed"] == 2


def test_the_teacher_sees_the_students_own_code():
    assert shown_code(ADD, "    return a - b\n") == ADD.prompt + "    return a - b"
    assert shown_code(MAX, "\ndef biggest(xs):\n    return 0\n") == "def biggest(xs):\n    return 0"


def test_unchanged_code_is_recognised_through_layout_and_comments():
    assert same_code("def f(x):\n    return x  # same\n", "def f(x):\n\n    return (x)")
    assert not same_code("def f(x):\n    return x", "def f(x):\n    return -x")
    assert same_code("def f(:\n  broken", "def f(:  broken")  # no parse: compared as text


def test_refine_rounds_verify_and_resume(tmp_path):
    with RunDir(tmp_path) as run:
        _student(run)
        report = refine([ADD, MAX], "tiny", run, rounds=2, max_tokens=96)
        records = {r["key"]: r for r in run.records("refinements")}
        # Round 1 for each failed attempt (add#1 passed: never refined), round 2 only after a
        # failed round 1.
        assert {k for k in records if k.endswith("@1")} == {"add#0@1", "biggest#0@1"}
        for key in ("add#0", "biggest#0"):
            assert (f"{key}@2" in records) == (not records[f"{key}@1"]["passed"])
        for record in records.values():
            assert record["passed"] or record["feedback"]
            assert record["teacher"] == "tiny"
            # An answer handed back unchanged was asked again (sampling) before being kept.
            assert record["unchanged"] is False or record["unchanged_retries"] == 2
        assert records["add#0@1"]["refined_from"] == ADD.prompt + "    return a - b"
        verified = sum(records[k]["passed"] for k in ("add#0@1", "biggest#0@1"))
        assert verified_by_round(run)[1] == (2, verified)
        assert report.counts["round 1: verified / tried"] == f"{verified} / 2"
        assert report.new_requests >= len(records)
        again = refine([ADD, MAX], "tiny", run, rounds=2, max_tokens=96)
        assert again.new_requests == 0  # resumed: the teacher is not asked again
        assert {r["key"]: r for r in run.records("refinements")} == records


def test_a_teacher_that_echoes_the_students_code_is_asked_again(tmp_path):
    """Round 1's answer is planted in the cache as an echo of the student's code (what the
    1.5B demo teacher did); refine must not execute it but ask the real model again."""
    from localdistill.answers import REQUESTS, model_identity, request_hash
    from localdistill.backends import get_model
    from localdistill.stages.refine import get_strategy
    from localdistill.stages.refine.rounds import FailedAttempt, Settings, _requests

    spec = get_model("tiny")
    settings = Settings(None, 64, 2, 0.8)
    with RunDir(tmp_path) as run:
        _student(run)
        echoes = []
        for key, task, completion in (("add#0", ADD, "    return a - b\n"),
                                      ("biggest#0", MAX, "\ndef biggest(xs):\n    return xs[0]\n")):
            feedback = next(e["feedback"] for e in run.records("executions") if e["key"] == key)
            code = shown_code(task, completion)
            item = FailedAttempt(key, task, code, feedback, code)
            [request] = _requests(spec, get_strategy("blind"), item, 1, 0, settings)
            echoes.append({"key": request_hash(model_identity(spec), request), "model": "tiny",
                           "stage": "refine", "text": f"```python\n{item.code}\n```",
                           "finish_reason": "stop", "completion_tokens": 9, "prompt_tokens": 99})
        run.append(REQUESTS, echoes)
        report = refine([ADD, MAX], spec, run, rounds=1, max_tokens=64, strategy="blind")
        records = {r["key"]: r for r in run.records("refinements")}
        assert report.new_requests >= 2  # the echoes came from the cache, the retries did not
        for record in records.values():
            assert record["unchanged_retries"] >= 1
            assert record["request_hash"] not in {e["key"] for e in echoes}
        sent = [json.loads(line) for line in (tmp_path / "cache" / "sent.jsonl").open()]
        assert {e["key"] for e in echoes}.isdisjoint(s["key"] for s in sent)


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
    assert "round 1: verified / tried" in result.stdout and " / 2 " in result.stdout
