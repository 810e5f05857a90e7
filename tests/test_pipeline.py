"""The whole data pipeline for real: the tiny model as student and teacher over MBPP training tasks
read from ../shared/data/mbpp.jsonl; every stage runs, the five data sets have the right rows, a
changed template re-asks only what depends on it, and a second round carries the first's rows.
(Killed mid-stage and resumed: test_interruptions.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import MBPP, REPO, TASK_IDS, collect_command, four_mbpp_tasks, needs_mbpp

from localdistill.backends import get_model
from localdistill.hashing import file_digest
from localdistill.models import weights_path
from localdistill.prompts import render
from localdistill.records import attempt_messages
from localdistill.sandbox import execute
from localdistill.stages.build import COLUMNS, load_dataset_rows
from localdistill.stages.build.methods import default_methods
from localdistill.tasks import load_tasks

pytestmark = [needs_mbpp, pytest.mark.timeout(900)]  # the first test may make the shared runs
_task_file, _collect = four_mbpp_tasks, collect_command


@pytest.fixture(scope="module")
def finished(tiny_collect):
    """One uninterrupted run (made once for the session, conftest.py): what every other test
    compares with."""
    return tiny_collect.tasks, tiny_collect.run, tiny_collect.stdout


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_every_stage_runs_and_reports(finished):
    tasks_file, run, stdout = finished
    for title in ("attempt", "execute", "refine + verify", "teacher answers", "build"):
        assert title in stdout
    assert "teacher tokens per PERsD example" in stdout
    attempts = _jsonl(run / "attempts.jsonl")
    executions = _jsonl(run / "executions.jsonl")
    assert [a["task_id"] for a in attempts] == list(TASK_IDS)
    assert [e["key"] for e in executions] == [a["key"] for a in attempts]
    failed = [e for e in executions if not e["passed"]]
    assert failed, "the student should fail these tasks"
    refinements = _jsonl(run / "refinements.jsonl")
    first = [r for r in refinements if r["round"] == 1]
    assert sorted(r["attempt_key"] for r in first) == sorted(e["key"] for e in failed)
    second = {r["attempt_key"] for r in refinements if r["round"] == 2}
    assert second == {r["attempt_key"] for r in first if not r["passed"]}

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["student"]["identity"]["weights"] == file_digest(
        weights_path(get_model("tiny")))
    assert manifest["tasks"]["count"] == len(TASK_IDS)
    assert set(manifest["prompts"]) >= {"attempt", "refine", "direct", "self_repair"}
    assert set(manifest["stages"]) == {"attempt", "execute", "teacher answers",
                                       "differential check", "refine + verify", "build"}
    # each stage's own peak memory; the student and teacher run in this process (llama.cpp)
    assert all(manifest["stages"][name]["peak_memory_gib"] > 0.05
               for name in ("attempt", "refine + verify", "teacher answers"))
    assert manifest["versions"]["localdistill"]


@pytest.mark.slow
def test_the_five_data_sets(finished):
    tasks_file, run, _ = finished
    tasks = {t.task_id: t for t in load_tasks(str(tasks_file))}
    sets = {}
    for method in default_methods():
        rows = load_dataset_rows(run / "data" / method)  # the Hugging Face dataset
        assert rows == _jsonl(run / "data" / f"{method}.jsonl")  # and the JSONL agree
        assert all(list(r) == list(COLUMNS) or set(r) == set(COLUMNS) for r in rows)
        assert len({r["id"] for r in rows}) == len(rows)
        sets[method] = rows
    direct = [d for d in _jsonl(run / "direct.jsonl") if d["passed"]]
    failed_tasks = {e["task_id"] for e in _jsonl(run / "executions.jsonl") if not e["passed"]}
    verified = [r for r in _jsonl(run / "refinements.jsonl") if r["passed"]]
    # Greedy decoding on these tasks: the tiny teacher answers 2 of 4 itself and repairs 2 of the
    # student's 4 failed attempts, so every set has rows to check.
    assert sets["standd"] and sets["persd"]
    assert len(sets["standd"]) == len(direct)
    assert {r["task_id"] for r in sets["inpd"]} == {d["task_id"] for d in direct
                                                   if d["task_id"] in failed_tasks}
    assert len(sets["persd"]) == len(sets["persd-refine"]) == len(verified)
    assert len(sets["persd-combine"]) == len(sets["persd"]) + len(sets["persd-refine"])

    requests = {r["key"]: r for r in _jsonl(run / "cache" / "requests.jsonl")}
    attempts = {a["key"]: a for a in _jsonl(run / "attempts.jsonl")}
    for method, rows in sets.items():
        for row in rows:
            task = tasks[row["task_id"]]
            prompt, answer = row["messages"][:-1], row["messages"][-1]
            assert answer == {"role": "assistant", "content": row["completion"]}
            assert row["prompt"] == prompt[-1]["content"]
            # Every example teaches code that passes the task's tests.
            assert execute(task, row["completion"].removeprefix("```python\n")
                           .removesuffix("\n```")).passed, row["id"]
            if method == "persd-refine" or row["id"].startswith("persd-combine/persd-refine"):
                assert prompt == render("self_repair", prompt=task.prompt,
                                        description=task.description, attempt=row["attempt"],
                                        feedback=row["feedback"])
                assert row["feedback"] and row["attempt"]
            else:
                # The training prompt is the very text the student was sent at attempt time.
                assert prompt == attempt_messages(task)
                sent = requests[attempts[f"{task.task_id}#0"]["request_hash"]]["request"]
                assert prompt == sent["messages"]
            if method.startswith("persd"):
                assert row["teacher_round"] >= 1 and row["attempt_key"] in attempts
            else:
                assert row["teacher_round"] == 0 and row["attempt"] is None


# A collect killed mid-stage (SIGKILL, and Ctrl-C) and run again, again and again, asks nothing
# answered twice and ends with exactly the uninterrupted run's records, data sets and files:
# test_interruptions.py::test_collect_interrupted_again_and_again_ends_as_if_never_interrupted.


@pytest.mark.slow
def test_a_changed_template_reasks_only_what_depends_on_it(finished, tmp_path):
    tasks_file, reference, _ = finished
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    from localdistill.stages.refine import DEFAULT, get_strategy

    template = f"{get_strategy(DEFAULT).template}.jinja"  # the default strategy's prompt
    text = (REPO / "prompts" / template).read_text()
    (prompts / template).write_text(text.rstrip() + " Explain nothing.\n")
    sent_before = len(_jsonl(run / "cache" / "sent.jsonl"))
    # One refinement round, no retries: fewer requests to re-ask, the same dependency to check.
    result = subprocess.run(_collect(tasks_file, run, "--rounds", "1", "--unchanged-retries", "0"),
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "LOCALDISTILL_PROMPTS": str(prompts)})
    assert result.returncode == 0, result.stderr[-2000:]
    stages = Counter(s["stage"] for s in _jsonl(run / "cache" / "sent.jsonl")[sent_before:])
    assert set(stages) == {"refine"} and stages["refine"] >= 1
    manifest = json.loads((run / "manifest.json").read_text())
    last_attempt = [h for h in manifest["history"] if h["stage"] == "attempt"][-1]
    assert manifest["history"].index(last_attempt) == len(manifest["history"]) - 6  # 6 stages
    assert last_attempt["new_requests"] == 0


@pytest.mark.slow
def test_a_second_distillation_round_carries_the_first_rounds_rows(finished, tmp_path):
    tasks_file, reference, _ = finished
    run = tmp_path / "round2"
    shutil.copytree(reference / "cache", run / "cache")  # same models: answers are reused
    result = subprocess.run(_collect(tasks_file, run, "--previous", str(reference)),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run / "manifest.json").read_text())["distill_round"] == 2
    for method in default_methods():
        before = _jsonl(reference / "data" / f"{method}.jsonl")
        after = _jsonl(run / "data" / f"{method}.jsonl")
        assert after[:len(before)] == before  # kept, with their round
        assert all(r["distill_round"] == 2 for r in after[len(before):])


@pytest.mark.parametrize("args, message", [
    (["--student", "nobody"], "no model named 'nobody'"),
    (["--methods", "persd,bogus"], "expected a comma-separated list"),
    (["--previous", "."], "is not a localdistill run directory"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    tasks = _task_file(tmp_path)
    command = _collect(tasks, tmp_path / "run")
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in command:
            command[command.index(flag) + 1] = value
        else:
            command += [flag, value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_tasks_without_tests_are_refused_with_the_way_out(tmp_path):
    rows = tmp_path / "untested.jsonl"
    rows.write_text(json.dumps({"task_id": "u/1", "prompt": "def f():\n", "entry_point": "f",
                                "tests": []}) + "\n")
    result = subprocess.run(_collect(rows, tmp_path / "run"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "gen-tests" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_empty_data_set_loads_back_as_empty(tmp_path):
    # The tiny teacher often verifies nothing: an empty PERsD set must still be a data set that
    # the Hugging Face loader reads (with no shard written, load_from_disk raised IndexError).
    from localdistill.stages.build import write_dataset

    write_dataset([], tmp_path / "data" / "persd")
    assert load_dataset_rows(tmp_path / "data" / "persd") == []
    assert load_dataset_rows(tmp_path / "data" / "persd.jsonl") == []


@pytest.mark.slow
def test_a_task_whose_prompts_do_not_fit_the_context_is_counted_not_fatal(tmp_path):
    """A prompt longer than the model's context used to stop collect with llama.cpp's error
    (found by scripts/bench_load.py: one MBPP refinement prompt over the tiny model's 2,048
    tokens stopped a 3,000-task collect, and would again at every rerun). Now each such request
    gets no answer, the stage tables count them, and every other task goes on."""
    from dataclasses import replace

    from localdistill.tasks import save_jsonl

    models = tmp_path / "models.toml"
    models.write_text('[models.tiny-512]\nbackend = "llama.cpp"\npath = "demo:tiny"\n'
                      "context_length = 512\n")
    tasks = [t for t in load_tasks(f"mbpp:train={MBPP}") if t.task_id in TASK_IDS[:2]]
    long = replace(tasks[0], task_id="long", prompt="# " + "padding " * 600 + "\n" +
                   tasks[0].prompt)
    save_jsonl([*tasks, long], tmp_path / "tasks.jsonl")
    command = ["tiny-512" if word == "tiny" else word  # as student and as teacher
               for word in _collect(tmp_path / "tasks.jsonl", tmp_path / "run")]
    result = subprocess.run([command[0], "--models", str(models), *command[1:]],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    attempts = {a["task_id"]: a for a in _jsonl(tmp_path / "run" / "attempts.jsonl")}
    assert attempts["long"]["finish_reason"] == "context" and attempts["long"]["answer"] == ""
    assert all(attempts[t]["finish_reason"] != "context" for t in TASK_IDS[:2])
    reports = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert reports["attempt"]["over_context"] == 1
    assert reports["refine + verify"]["over_context"] >= 1  # the long task's refinement
    assert reports["teacher answers"]["over_context"] == 1
    assert "prompts over the context (no answer)" in result.stdout
    direct = {d["task_id"]: d for d in _jsonl(tmp_path / "run" / "direct.jsonl")}
    assert set(direct) == {*TASK_IDS[:2], "long"} and not direct["long"]["passed"]
