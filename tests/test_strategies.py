"""Refinement strategies (issue 21): guides, k candidates verified and the closest kept, copy and
unchanged detection, personalisation counts, a strategy declared in a test module, the probe, and
the one-line errors. The teacher is the tiny real model; where a test needs answers the tiny model
would never write (a copy of the guide, a near miss), they are planted in the run's cache, as the
echo test of test_refine.py does, and the model is then never asked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from localdistill.answers import REQUESTS, model_identity, request_hash
from localdistill.backends import get_model
from localdistill.rundir import RunDir
from localdistill.stages.build import build, load_dataset_rows
from localdistill.stages.execute import execute_attempts
from localdistill.stages.refine import (
    Strategy,
    StrategyError,
    failed_attempts,
    get_strategy,
    refine,
    register,
)
from localdistill.stages.refine.rounds import Settings, _requests
from localdistill.stages.refine.similarity import (
    is_copy,
    is_personalised,
    similarity,
    written_similarity,
    written_tokens,
)
from localdistill.tasks import save_jsonl
from localdistill.tasks.record import Task

SCRIPT = Path(sys.executable).parent / "localdistill"
MARKER = "zq_guide_marker_7731"  # appears only in the guide (the reference)
REFERENCE = (f"    {MARKER} = sorted(xs)\n    return {MARKER}[-1]\n")
MAX = Task("biggest", 'def biggest(xs):\n    """Return the largest number in the list xs."""\n',
           "biggest", ("assert biggest([1, 5, 2]) == 5", "assert biggest([-3, -7]) == -3"),
           seen_tests=("assert biggest([1, 5, 2]) == 5",), reference=REFERENCE, source="user")
ADD = Task("add", 'def add(a, b):\n    """Return the sum of a and b."""\n', "add",
           ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"), reference="    return a + b\n")
ATTEMPT = "\ndef biggest(xs):\n    best = xs[0]\n    for x in xs:\n        if x < best:\n" \
          "            best = x\n    return best\n"


def _failed_student(run: RunDir, tasks=(MAX,)) -> None:
    records = [{"key": "biggest#0", "task_id": "biggest", "sample": 0, "completion": ATTEMPT,
                "model": "tiny"}]
    if ADD in tasks:
        records.append({"key": "add#0", "task_id": "add", "sample": 0,
                        "completion": "    return a - b\n", "model": "tiny"})
    run.write("attempts", records)
    assert execute_attempts(list(tasks), run).counts["attempts failed"] == len(records)


def _plant(run: RunDir, strategy: Strategy, texts: list[str], tokens: int = 40) -> None:
    """Answers to the strategy's k first-round requests, in the run's cache."""
    spec = get_model("tiny")
    [item] = failed_attempts(run, [MAX], strategy)
    requests = _requests(spec, strategy, item, 1, 0, Settings(None, 96, 0, 0.8))
    assert len(requests) == len(texts) == strategy.candidates
    run.append(REQUESTS, [{"key": request_hash(model_identity(spec), r), "model": "tiny",
                           "stage": "refine", "text": f"```python\n{text}\n```",
                           "finish_reason": "stop", "completion_tokens": tokens,
                           "prompt_tokens": 200} for r, text in zip(requests, texts, strict=True)])


def test_similarity_ignores_layout_comments_and_docstrings():
    a = 'def f(x):\n    """Doc."""\n    return x+1  # one more\n'
    assert similarity(a, "def f(x):\n    return x + 1") == 1.0
    assert similarity(a, "def f(x):\n    return x - 1") < 1.0
    unrelated = ("def g(items):\n    total = 0\n    for i in items:\n"
                 "        total += i\n    return total")
    assert similarity(a, unrelated) < 0.5
    assert 0 < similarity("def f(:\n  broken", "def f(:\n  broken too") < 1  # no parse: tokens


def test_a_copy_is_close_to_the_guide_and_closer_to_it_than_to_the_attempt():
    guide, attempt = "def f(xs):\n    return max(xs)", "def f(xs):\n    return min(xs)"
    assert is_copy("def f(xs):\n    return max(xs)  # fixed", guide, attempt, "f")
    assert not is_copy("def f(xs):\n    return max(xs)", None, attempt, "f")  # no guide shown
    # when attempt and guide are near-identical, being close to the guide is not copying
    assert not is_copy(guide, guide, guide, "f")
    assert not is_copy("def f(xs):\n    best = xs[0]\n    return best", guide, attempt, "f")


GUIDE = 'def f(xs):\n    """Largest."""\n    ordered = sorted(xs)\n    return ordered[-1]\n'
FRAMED = ("from typing import *\nfrom collections import *\nimport math\n\n"
          "def f(xs: List[int]) -> int:\n"
          '    """Write a function to find the largest item.\n    assert f([1, 2]) == 2\n    """\n'
          "    # the student's own comment\n{body}\n\nprint(f([3, 1, 2]))\nprint(f([5]))\n")


def test_the_guides_body_under_the_attempts_header_imports_and_calls_is_a_copy():
    attempt = FRAMED.format(body="    result = min(xs)\n    return result")
    refinement = FRAMED.format(body="    ordered = sorted(xs)\n    return ordered[-1]")
    # Whole programs: what the refinement kept of the attempt's framing hides the copy...
    assert similarity(refinement, GUIDE) < 0.95
    assert similarity(refinement, attempt) > similarity(refinement, GUIDE)
    # ...what the teacher wrote is the guide's, token for token.
    assert written_tokens(refinement, "f") == written_tokens(GUIDE, "f") == \
        ["ordered", "=", "sorted", "(", "xs", ")", "return", "ordered", "[", "-", "1", "]"]
    assert is_copy(refinement, GUIDE, attempt, "f")
    own = FRAMED.format(body="    result = max(xs)\n    return result")  # the attempt's way
    assert not is_copy(own, GUIDE, attempt, "f")
    assert written_similarity(own, attempt, "f") > written_similarity(GUIDE, attempt, "f")
    assert is_personalised(own, GUIDE, attempt, "f")
    assert not is_personalised(GUIDE, GUIDE, attempt, "f")


def test_what_a_program_writes_takes_in_the_helpers_and_constants_its_function_uses():
    code = ("import os\nLIMIT = 10\nUNUSED = 3\n\ndef unused():\n    return 0\n\n"
            "def helper(x):\n    '''Doc.'''\n    return min(x, LIMIT)\n\n"
            "class Box:\n    '''A box.'''\n    size = 2\n\n"
            "def f(xs):\n    return [helper(x) * Box.size for x in xs]\n\nprint(f([1]))\n")
    tokens = written_tokens(code, "f")
    assert tokens[:3] == ["return", "[", "helper"]  # the function first, its header left out
    text = " ".join(tokens)
    assert "LIMIT = 10" in text and "min ( x , LIMIT )" in text and "class Box" in text
    for left_out in ("import", "UNUSED", "unused", "print", "Doc", "A box", "def"):
        assert left_out not in tokens and left_out not in text
    # no such function, or no parse: the whole program's tokens
    assert written_tokens(code, "g")[:2] == ["import", "os"]
    assert written_tokens("def f(:\n  x", "f") == ["def", "f", "(", ":", "x"]


K4 = register(Strategy("test-k4", "refine_guide_minimal", guide="reference", candidates=4,
                       temperature=0.8, help="declared in a test module"))


def test_k_candidates_are_all_verified_and_the_closest_verified_is_kept(tmp_path):
    copy = "def biggest(xs):\n    " + MARKER + " = sorted(xs)\n    return " + MARKER + "[-1]"
    close = ATTEMPT.strip().replace("x < best", "x > best")
    wrong = ATTEMPT.strip().replace("x < best", "x <= best")
    with RunDir(tmp_path) as run:
        _failed_student(run)
        _plant(run, K4, [copy, wrong, close, ATTEMPT.strip()])
        report = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                        strategy="test-k4")
        assert report.new_requests == 0  # every answer was planted: the model was not asked
        [record] = run.records("refinements")
    assert [c["passed"] for c in record["candidates"]] == [True, False, True, False]
    assert [c["unchanged"] for c in record["candidates"]] == [False, False, False, True]
    assert [c["copied"] for c in record["candidates"]] == [True, False, False, False]
    assert record["candidates_verified"] == 2
    assert record["passed"] and "x > best" in record["completion"]  # the closer of the two
    assert record["similarity"] == max(c["similarity"] for c in record["candidates"]
                                       if c["passed"])
    assert record["guide_source"] == "reference" and MARKER in record["guide"]
    assert record["personalised"] is True and record["copied"] is False
    assert record["similarity"] > record["guide_similarity"]
    assert report.counts["strategy"] == "test-k4"
    assert report.counts["round 1: verified / tried"] == "1 / 1"
    assert report.counts["round 1: personalised (closer to the attempt than the guide)"] == 1
    assert report.counts["round 1: copied (verified, a copy of the guide)"] == 0
    assert report.counts["round 1: answers with no code / cut off"] == "0 / 0"
    assert report.counts["teacher tokens per verified example"] == "160"


def test_answers_taken_from_another_run_are_counted_and_left_out_of_the_time_figures(tmp_path):
    """--reuse: answers another run paid for cost this run no time, so its seconds per verified
    example leaves them out and says so; the mark stays with the run's own copies, so a resumed
    run (no --reuse now) still says it. Tokens count every answer, reused or not."""
    close = ATTEMPT.strip().replace("x < best", "x > best")
    with RunDir(tmp_path / "runs" / "earlier") as run:
        _failed_student(run)
        _plant(run, K4, [close, close, close, close])
        first = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                       strategy="test-k4")
    assert first.reused == 0 and "not counting" not in first.counts["seconds per verified example"]
    later = tmp_path / "later"
    with RunDir(later, reuse=[tmp_path / "runs"]) as run:
        _failed_student(run)
        report = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                        strategy="test-k4")
    assert report.new_requests == 0 and report.reused == 4
    assert report.counts["seconds per verified example"].endswith(
        " (not counting 4 answers from --reuse)")
    assert report.counts["teacher tokens per verified example"] == "160"
    copies = [json.loads(line) for line in (later / "cache" / "requests.jsonl").open()]
    assert len(copies) == 4 and all(c["reused"] is True for c in copies)
    with RunDir(later) as run:  # resumed without --reuse: the answers are the run's own now
        again = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                       strategy="test-k4")
    assert again.reused == 4 and "not counting 4" in again.counts["seconds per verified example"]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(again.table())
    assert "answers taken from other runs (--reuse)" in console.export_text()


def test_a_kept_copy_is_counted_and_can_be_left_out_of_the_persd_sets(tmp_path):
    copy = "def biggest(xs):\n    " + MARKER + " = sorted(xs)\n    return " + MARKER + "[-1]"
    with RunDir(tmp_path) as run:
        _failed_student(run)
        _plant(run, K4, [copy, ATTEMPT.strip(), ATTEMPT.strip(), ATTEMPT.strip()])
        report = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                        strategy=K4)
        [record] = run.records("refinements")
        assert record["passed"] and record["copied"] and record["personalised"] is False
        assert report.counts["round 1: copied (verified, a copy of the guide)"] == 1
        run.write("direct", [])
        kept = build([MAX], run, ("persd",)).counts["persd examples"]
        dropped = build([MAX], run, ("persd",), keep_copies=False).counts["persd examples"]
    assert (kept, dropped) == (1, 0)


def test_unchanged_answers_are_detected_and_counted(tmp_path):
    strategy = register(Strategy("test-k2", "refine_guide_minimal", guide="reference",
                                 candidates=2, temperature=0.8))
    with RunDir(tmp_path) as run:
        _failed_student(run)
        _plant(run, strategy, [ATTEMPT.strip(), "# same code\n" + ATTEMPT.strip()])
        report = refine([MAX], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                        strategy=strategy)
        [record] = run.records("refinements")
    assert record["unchanged"] and not record["passed"]
    assert report.counts["round 1: unchanged"] == 1


@pytest.mark.slow
def test_a_test_modules_strategy_runs_through_collect_and_its_guide_never_reaches_the_student(
        tmp_path, monkeypatch):
    """A new strategy is one declaration and one template (here in a folder of the user's own);
    collect runs it for real with the tiny model. The guide (the reference, holding MARKER) is in
    the teacher's prompts, never in a training prompt nor in an evaluation request."""
    from localdistill.collect import CollectConfig, collect
    from localdistill.stages.evaluate import EvalConfig, evaluate

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "refine_test_only.jinja").write_text(
        "{#- A test strategy.\n    Variables:\n      prompt  p\n      attempt  a\n"
        "      feedback  f\n      guide  g\n-#}\nTEST-STRATEGY. Correct solution:\n{{ guide }}\n"
        "Task:\n{{ prompt }}\nWrong code:\n{{ attempt }}\nError:\n{{ feedback }}\n"
        "Fix the wrong code.")
    monkeypatch.setenv("LOCALDISTILL_PROMPTS", str(prompts))
    register(Strategy("test-only", "refine_test_only", guide="reference"))
    tasks = [MAX, ADD]
    config = CollectConfig(student="tiny", teacher="tiny", max_tokens=16, teacher_max_tokens=96,
                           rounds=1, unchanged_retries=0, strategy="test-only",
                           methods=("standd", "inpd", "persd", "persd-refine", "persd-combine"))
    with RunDir(tmp_path / "run") as run:
        reports = {r.stage: r for r in collect(tasks, config, run)}
        assert reports["refine + verify"].counts["strategy"] == "test-only"
        refinements = list(run.records("refinements"))
        asked = [json.loads(line) for line in (tmp_path / "run/cache/requests.jsonl").open()]
    assert refinements and all(r["strategy"] == "test-only" for r in refinements)
    teacher_prompts = [a for a in asked if a["stage"] == "refine"]
    assert teacher_prompts and all("TEST-STRATEGY" in json.dumps(a["request"])
                                   and MARKER in json.dumps(a["request"])
                                   for a in teacher_prompts
                                   if "biggest" in json.dumps(a["request"]))
    for method in ("standd", "inpd", "persd", "persd-refine", "persd-combine"):
        for row in load_dataset_rows(tmp_path / "run/data" / f"{method}.jsonl"):
            assert MARKER not in row["prompt"]
            assert all(MARKER not in m["content"] for m in row["messages"][:-1])
    with RunDir(tmp_path / "eval") as run:
        evaluate([MAX], "tiny", run, EvalConfig(max_tokens=24, steps=1, temperature=0))
        sent = (tmp_path / "eval/cache/requests.jsonl").read_text()
    assert sent and MARKER not in sent


def test_a_bad_strategy_name_or_a_missing_reference_is_one_line(tmp_path):
    with pytest.raises(StrategyError, match="unknown refinement strategy 'nope' \\(known: blind"):
        get_strategy("nope")
    with pytest.raises(StrategyError, match="candidates need a sampling temperature"):
        Strategy("bad", "refine", candidates=3)
    tasks = tmp_path / "tasks.jsonl"
    no_reference = Task("biggest", MAX.prompt, "biggest", MAX.tests)
    save_jsonl([no_reference], tasks)
    with RunDir(tmp_path / "run") as run:
        _failed_student(run, (no_reference,))
    for strategy, expected in (("nope", "unknown refinement strategy 'nope'"),
                               ("test-only-reference", "have none (first: biggest)")):
        register(Strategy("test-only-reference", "refine_guide_inline", guide="reference"))
        result = subprocess.run(
            [str(SCRIPT), "refine", str(tasks), "--teacher", "tiny", "--run",
             str(tmp_path / "run"), "--strategy", strategy], capture_output=True, text=True,
            timeout=300)
        if strategy == "test-only-reference":
            # registered in this process only: the CLI does not know it either
            assert result.returncode == 2 and "unknown refinement strategy" in result.stderr
            continue
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with RunDir(tmp_path / "run") as run, pytest.raises(StrategyError,
                                                        match="have none \\(first: biggest\\)"):
        refine([no_reference], "tiny", run, strategy="test-only-reference")
    config = tmp_path / "run.toml"
    config.write_text('[run]\nstudent = "tiny"\nteacher = "tiny"\ntasks = ["tasks.jsonl"]\n'
                      '[collect]\nstrategy = "nope"\n')
    result = subprocess.run([str(SCRIPT), "run", str(config), "--run", str(tmp_path / "loop")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "unknown refinement strategy 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_probe_runs_every_strategy_on_the_same_sample_and_prints_one_table(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    save_jsonl([MAX, ADD], tasks)
    with RunDir(tmp_path / "source") as run:
        _failed_student(run, (MAX, ADD))
    probe = [str(SCRIPT), "probe", str(tasks), "--from", str(tmp_path / "source"), "--teacher",
             "tiny", "--run", str(tmp_path / "probe"), "--strategies", "blind,guide-minimal",
             "--sample", "1", "--seed", "3", "--max-tokens", "64"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "refinement strategies on the same failed attempts" in result.stdout
    assert "blind" in result.stdout and "guide-minimal" in result.stdout
    saved = json.loads((tmp_path / "probe/probe.json").read_text())
    assert [r["strategy"] for r in saved["rows"]] == ["blind", "guide-minimal"]
    assert all(r["tried"] == 1 for r in saved["rows"]) and len(saved["sample"]) == 1
    for name in ("blind", "guide-minimal"):
        [record] = [json.loads(line) for line in
                    (tmp_path / f"probe/probe-{name}.jsonl").read_text().splitlines()]
        assert record["attempt_key"] == saved["sample"][0] and record["strategy"] == name
    assert not (tmp_path / "source/refinements.jsonl").exists()  # the source is only read
    sent = (tmp_path / "probe/cache/sent.jsonl").read_text()
    again = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "probe/cache/sent.jsonl").read_text() == sent  # nothing asked twice
    # what the answers cost is what the first invocation spent: a rerun adds nothing
    assert json.loads((tmp_path / "probe/probe.json").read_text())["costs"] == saved["costs"]
    (tmp_path / "empty").mkdir()
    empty = subprocess.run(
        [str(SCRIPT), "probe", str(tasks), "--from", str(tmp_path / "empty"), "--teacher",
         "tiny", "--run", str(tmp_path / "probe2")], capture_output=True, text=True, timeout=300)
    assert empty.returncode == 2 and "no failed attempts to refine" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    assert all(r["new_requests"] >= 1 and r["cpu_seconds"] > 0 for r in saved["rows"])
