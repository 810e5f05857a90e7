"""`localdistill eval` for real on the tiny model: pass@k per self-rectification step, no hidden
test ever reaches a prompt, and a killed evaluation resumes without asking the model again."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localdistill.backends import get_model
from localdistill.stages.evaluate import EvalConfig, _summary
from localdistill.tasks import Task, save_jsonl

SCRIPT = Path(sys.executable).parent / "localdistill"
# Numbers that appear only in hidden tests: none of them may be in anything sent to the model.
HIDDEN_MARKS = ("31337", "424242", "987654", "123987", "55555")
TASKS = [
    Task("own/add_seven", 'def add_seven(x):\n    """Return x plus seven."""\n', "add_seven",
         tests=("assert add_seven(1) == 8", "assert add_seven(31337) == 31344",
                "assert add_seven(-424242) == -424235"),
         seen_tests=("assert add_seven(1) == 8",)),
    # The tiny model cannot guess this one, so it fails its seen test and is asked to repair.
    Task("own/mystery", 'def mystery(x):\n    """Return the secret transformation of x."""\n',
         "mystery", tests=("assert mystery(2) == 11", "assert mystery(987654) == 123987"),
         seen_tests=("assert mystery(2) == 11",)),
    # No seen tests: nothing to repair from, the sample keeps its code.
    Task("own/blank", 'def halve(x):\n    """Return x divided by two."""\n', "halve",
         tests=("assert halve(55555 * 2) == 55555",)),
]


def _eval(tasks: Path, run: Path, *extra: str) -> list[str]:
    return [str(SCRIPT), "eval", str(tasks), "--model", "tiny", "--run", str(run),
            "--temperature", "0", "--max-tokens", "64", "--steps", "2", *extra]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    tasks = tmp / "tasks.jsonl"
    save_jsonl(TASKS, tasks)
    run = tmp / "run"
    result = subprocess.run(_eval(tasks, run), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return tasks, run, result.stdout


def test_no_hidden_test_reaches_any_prompt(finished):
    _, run, _ = finished
    requests = _jsonl(run / "cache" / "requests.jsonl")
    sent = json.dumps([r["request"] for r in requests])
    for mark in HIDDEN_MARKS:
        assert mark not in sent, f"a hidden test ({mark}) leaked into a prompt"
    rows = {(r["task_id"], r["step"]): r for r in _jsonl(run / "samples.jsonl")}
    repairs = [r for r in requests if "Your previous answer was" in
               r["request"]["messages"][-1]["content"]]
    assert repairs, "no sample was repaired: the test proves nothing"
    for request in repairs:  # the feedback shown is the seen tests' verdict, word for word
        prompt = request["request"]["messages"][-1]["content"]
        task_id = "own/mystery" if "mystery" in prompt else "own/add_seven"
        assert any(row["seen_feedback"] and row["seen_feedback"] in prompt
                   for (tid, _), row in rows.items() if tid == task_id)


def test_rows_and_summary_per_step(finished):
    _, run, stdout = finished
    rows = _jsonl(run / "samples.jsonl")
    assert sorted({(r["task_id"], r["step"]) for r in rows}) == sorted(
        (t.task_id, s) for t in TASKS for s in range(3))
    by = {(r["task_id"], r["step"]): r for r in rows}
    assert by[("own/blank", 0)]["seen_passed"] is None
    assert not by[("own/blank", 1)]["repaired"] and not by[("own/blank", 2)]["repaired"]
    for task in ("own/add_seven", "own/mystery"):
        for step in (1, 2):
            before, now = by[(task, step - 1)], by[(task, step)]
            assert now["repaired"] == (not before["seen_passed"])  # only seen failures repair
            if not now["repaired"]:
                assert now["completion"] == before["completion"] and not now["changed"]
            # changed: the repair's code differs from the step before (not just its wording)
            assert now["changed"] == (now["repaired"] and now["completion"].strip() !=
                                      before["completion"].strip())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["steps"] == 2 and summary["tasks"] == 3
    assert summary["peak_memory_gib"] > 0.05  # the tiny student runs in this process
    assert "peak memory (GiB)" in stdout
    for step in range(3):
        passed = sum(by[(t.task_id, step)]["passed"] for t in TASKS)
        assert summary["pass_at_k"][f"step {step}"]["pass@1"] == pytest.approx(passed / 3)
    assert "pass@1 step 2" in stdout
    for step in (1, 2):  # the table says how many repairs were asked and how many changed code
        asked = sum(by[(t.task_id, step)]["repaired"] for t in TASKS)
        changed = sum(by[(t.task_id, step)]["changed"] for t in TASKS)
        assert re.search(rf"step {step}: repairs asked\W+{asked}\b", stdout)
        assert re.search(rf"step {step}: repairs that changed the code\W+{changed}\b", stdout)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["name"] == "tiny" and manifest["eval"]["steps"] == 2


def test_pass_at_k_from_rows():
    """The unbiased estimator per step, over samples of each task (numbers worked by hand)."""
    tasks = [Task(f"t{i}", "def f():\n", "f", tests=("assert f()",)) for i in range(2)]
    rows = [{"task_id": "t0", "step": 0, "passed": p} for p in (True, False, False, False)]
    rows += [{"task_id": "t1", "step": 0, "passed": p} for p in (True, True, False, False)]
    summary = _summary(tasks, get_model("tiny"), EvalConfig(samples=4, ks=(1, 2, 10)), rows,
                       "x")
    # t0: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2; t1: 2/4 and 1 - C(2,2)/C(4,2) = 5/6.
    assert summary["pass_at_k"]["step 0"]["pass@1"] == pytest.approx((0.25 + 0.5) / 2)
    assert summary["pass_at_k"]["step 0"]["pass@2"] == pytest.approx((0.5 + 5 / 6) / 2)
    assert "pass@10" not in summary["pass_at_k"]["step 0"]  # k above n is left out
    assert summary["correct_per_task"]["step 0"] == {"t0": 1, "t1": 2}


@pytest.mark.slow
def test_a_killed_evaluation_resumes_without_asking_again(finished, tmp_path):
    tasks, reference, _ = finished
    run = tmp_path / "run"
    answers = run / "cache" / "requests.jsonl"
    process = subprocess.Popen(_eval(tasks, run), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if answers.exists() and answers.read_bytes().count(b"\n") >= 1:
            break  # the first answer is in; the other answers and the repairs are still to come
        time.sleep(0.05)
    assert process.poll() is None, "the evaluation ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    answered = {r["key"] for r in _jsonl(answers)}
    assert not (run / "samples.jsonl").exists()
    again = subprocess.run(_eval(tasks, run), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    keys = [r["key"] for r in _jsonl(answers)]
    assert len(keys) == len(set(keys)) and answered <= set(keys)
    sent = [s["key"] for s in _jsonl(run / "cache" / "sent.jsonl")]
    assert all(sent.count(k) == 1 for k in answered)  # nothing answered was asked again

    def without_runtimes(path):
        return [{k: v for k, v in r.items() if k != "runtime"} for r in _jsonl(path)]

    assert without_runtimes(run / "samples.jsonl") == \
        without_runtimes(reference / "samples.jsonl")


@pytest.mark.parametrize("args, message", [
    (["-k", "0"], "every k must be 1 or more"),
    (["-k", "one"], "expected numbers like 1,5,10"),
    (["--adapter", "/nonexistent/adapter"], "does not exist"),
    (["--model", "nobody"], "no model named 'nobody'"),
])
def test_bad_input_is_one_line_and_exit_2(finished, tmp_path, args, message):
    tasks, _, _ = finished
    result = subprocess.run(_eval(tasks, tmp_path / "run", *args), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def _evaluated_again(tasks: Path, run: Path, reference: Path, *extra: str) -> tuple[dict, dict]:
    """Evaluate the tasks again into `run` with `extra` options: its summary, the reference's."""
    result = subprocess.run(_eval(tasks, run, *extra), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return (json.loads((run / "summary.json").read_text()),
            json.loads((reference / "summary.json").read_text()))


def test_replay_judges_recorded_answers_again_without_a_model(finished, tmp_path):
    """`eval --replay`: the answers of an earlier evaluation, judged again, give the same rows
    and pass@k; the model named is used for its sampling settings only (backend `replay`)."""
    tasks, reference, _ = finished
    answers = reference / "cache" / "requests.jsonl"
    run = tmp_path / "replayed"
    summary, before = _evaluated_again(tasks, run, reference, "--replay", str(answers))
    assert summary["pass_at_k"] == before["pass_at_k"]
    assert summary["correct_per_task"] == before["correct_per_task"]
    assert summary["replayed_from"] == str(answers.resolve())
    keep = ("task_id", "step", "answer", "completion", "passed", "repaired", "seen_feedback")
    assert ([{k: r[k] for k in keep} for r in _jsonl(run / "samples.jsonl")] ==
            [{k: r[k] for k in keep} for r in _jsonl(reference / "samples.jsonl")])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "replay"
    # its cache is its own: keyed by the answers file, never mistaken for the model's answers
    assert not ({r["key"] for r in _jsonl(run / "cache" / "requests.jsonl")} &
                {r["key"] for r in _jsonl(answers)})


def test_an_evaluation_answered_from_a_cache_shows_no_eval_time(finished, tmp_path):
    """Every answer taken from another run (--reuse): same numbers, no model call, and the
    report says "cached" where it would show the model's time (it is the judging only)."""
    from rich.console import Console

    from localdistill.stages.report import report, table

    tasks, reference, _ = finished
    run = tmp_path / "cached"
    summary, before = _evaluated_again(tasks, run, reference, "--reuse", str(reference))
    assert summary["correct_per_task"] == before["correct_per_task"]
    assert summary["model_calls"] == 0
    assert before["model_calls"] == len(_jsonl(reference / "cache" / "requests.jsonl")) > 0
    entries, _ = report([reference, run], tmp_path / "out")
    console = Console(width=250, record=True)
    console.print(table(entries))
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    header = next(line for line in text.splitlines() if "eval time" in line)
    column = [c.strip() for c in re.split("[┃│]", header)].index("eval time")
    assert [row.split("│")[column].strip() == "cached" for row in rows] == [False, True]


def test_replay_refuses_requests_it_has_no_answer_for(finished, tmp_path):
    tasks, reference, _ = finished
    answers = reference / "cache" / "requests.jsonl"
    other = _eval(tasks, tmp_path / "run", "--replay", str(answers))
    other[other.index("--max-tokens") + 1] = "32"  # not what the recorded answers were asked
    result = subprocess.run(other, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "no recorded answer for 3 request(s)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_replay_refuses_a_file_of_several_models_or_no_answers(tmp_path):
    from localdistill.backends.base import BackendError
    from localdistill.backends.replay import read_answers

    request = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"model": m, "request": dict(request, seed=i),
                                         "text": "x"}) + "\n"
                             for i, m in enumerate(("a", "b"))))
    with pytest.raises(BackendError, match="answers of several models"):
        read_answers(mixed)
    clash = tmp_path / "clash.jsonl"
    clash.write_text("".join(json.dumps({"model": "a", "request": request, "text": t}) + "\n"
                             for t in ("x", "y")))
    with pytest.raises(BackendError, match="two different answers to the same request"):
        read_answers(clash)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"not": "an answer"}\n')
    with pytest.raises(BackendError, match=r"broken.jsonl:1: not an answer record"):
        read_answers(broken)
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"model": "a", "request": {}, "te')  # a line cut by a kill
    with pytest.raises(BackendError, match="holds no answers"):
        read_answers(cut)
