"""Differential checking (sandbox/differential.py) on hand-written tasks: inputs generated from the
tests' own calls, the reference as oracle, a wrong-but-passing candidate refuted with feedback in
the PERsD format, a correct one kept, and references that misbehave contained."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from localdistill.sandbox import run_tests
from localdistill.sandbox.differential import (
    GENERATED,
    Call,
    Oracle,
    generate_calls,
    make_oracle,
    seed_calls,
)
from localdistill.sandbox.limits import Limits
from localdistill.stages.build import load_dataset_rows
from localdistill.tasks.record import Task

REPO = Path(__file__).resolve().parents[1]
PROMPT = 'def longest_chain(pairs):\n    """The length of the longest chain of pairs."""\n'
# mbpp/601's lesson: three asserts that a wrong answer (counting a run of consecutive pairs)
# also passes.
CHAIN = Task(
    "chain", PROMPT, "longest_chain",
    ("assert longest_chain([(5, 24), (15, 25), (27, 40), (50, 60)]) == 3",
     "assert longest_chain([(1, 2), (3, 4), (5, 6), (7, 8)]) == 4",
     "assert longest_chain([(19, 10), (11, 12), (13, 14), (15, 16), (31, 54)]) == 5"),
    reference=("    best = 0\n    end = None\n    for a, b in sorted(pairs, key=lambda p: p[1]):\n"
               "        if end is None or a > end:\n            best += 1\n            end = b\n"
               "    return best\n"))
WRONG = ("    run = best = 1 if pairs else 0\n    for (a, b), (c, d) in zip(pairs, pairs[1:]):\n"
         "        run = run + 1 if c > b else 1\n        best = max(best, run)\n    return best\n")
RIGHT = ("    pairs = sorted(pairs, key=lambda p: p[1])\n    count, last = 0, float('-inf')\n"
         "    for a, b in pairs:\n        if a > last:\n            count, last = count + 1, b\n"
         "    return count\n")
# The third test's (19, 10) is a pair whose start is after its end: both solutions above agree
# on it because they read it the same way; the generated inputs are mutated from all three.


def _generated_only(oracle: Oracle) -> tuple[str, ...]:
    assert oracle.tests and all(t.startswith(GENERATED) for t in oracle.tests)
    return oracle.tests


def test_the_tests_calls_are_the_seeds():
    calls = seed_calls(CHAIN)
    assert len(calls) == 3 and calls[1] == Call(([(1, 2), (3, 4), (5, 6), (7, 8)],))
    assert calls[0].text("longest_chain") == \
        "longest_chain([(5, 24), (15, 25), (27, 40), (50, 60)])"


def test_a_wrong_answer_that_passes_the_tests_is_refuted_with_feedback():
    assert run_tests(CHAIN.program(WRONG), CHAIN.tests, CHAIN.entry_point).passed
    oracle = make_oracle(CHAIN, count=20, seed=0)
    assert oracle.skipped is None and len(oracle.tests) == 20 and oracle.tried >= 20
    result = run_tests(CHAIN.program(WRONG), _generated_only(oracle), CHAIN.entry_point)
    assert not result.passed
    lines = result.feedback.splitlines()
    assert lines[0] == "AssertionError" and lines[1].startswith("INPUT: [(")
    assert lines[2].startswith("OUTPUT: ") and lines[3].startswith("EXPECTED: ")
    # and a correct answer written another way passes every generated input
    assert run_tests(CHAIN.program(RIGHT), oracle.tests, CHAIN.entry_point).passed


def test_the_inputs_are_seeded_bounded_and_new():
    first = generate_calls(CHAIN, 40, seed=0)
    assert first == generate_calls(CHAIN, 40, seed=0)  # the same for every model
    assert first != generate_calls(CHAIN, 40, seed=1)
    seeds = set(map(repr, seed_calls(CHAIN)))
    assert len({repr(c) for c in first}) == len(first) == 40 and not seeds & set(map(repr, first))
    for call in first:
        (pairs,) = call.args
        assert isinstance(pairs, list) and 1 <= len(pairs) <= 50  # never emptied: tests never are
        for pair in pairs:  # nested values mutated, types kept, no sign the tests never use
            assert isinstance(pair, tuple) and all(isinstance(x, int) and x >= 1 for x in pair)


def test_an_argument_that_is_a_length_stays_the_length():
    task = Task("sized", "def total(arr, n):\n    pass\n", "total",
                ("assert total([1, 2, 3], 3) == 6", "assert total([4, 5], 2) == 9"),
                reference="    return sum(arr[:n])\n")
    calls = generate_calls(task, 30, seed=0)
    assert calls and all(call.args[1] == len(call.args[0]) for call in calls)


def test_floats_are_compared_within_a_tolerance():
    task = Task("mean", "def mean(xs):\n    pass\n", "mean",
                ("assert mean([1.5, 2.5, 3.25]) == 2.4166666666666665",),
                reference="    return sum(xs) / len(xs)\n")
    oracle = make_oracle(task, count=10, seed=0)
    # the same mean summed in another order: not the same float, within the tolerance
    other = "    return sum(sorted(xs, reverse=True)) / len(xs)\n"
    assert run_tests(task.program(other), oracle.tests, task.entry_point).passed
    off = "    return sum(xs) / len(xs) + 1e-3\n"
    assert not run_tests(task.program(off), oracle.tests, task.entry_point).passed


def test_a_nondeterministic_reference_skips_the_task():
    task = Task("noisy", "import random\n\ndef noisy(n):\n    pass\n", "noisy",
                ("assert noisy(3) is not None", "assert noisy(5) > 0"),
                reference="    return n + random.random()\n")
    oracle = make_oracle(task, count=10, seed=0)
    assert oracle.tests == () and "nondeterministic" in oracle.skipped
    assert oracle.dropped["the reference answered differently twice"] >= 10


def test_a_reference_that_remembers_earlier_calls_gives_no_generated_tests():
    """Run twice in the same order, a reference whose value counts the calls before it answers
    alike both times; the second run goes in reverse order from a shifted heap (as gen-tests
    runs it: sandbox.evaluate_again), so its values differ and no test is written from them."""
    task = Task("tally", "def tally(n, seen=[]):\n    pass\n", "tally",
                ("assert tally(3) == 1", "assert tally(5) == 2"),
                reference="    seen.append(n)\n    return len(seen) * n\n")
    oracle = make_oracle(task, count=10, seed=0)
    assert oracle.tests == () and "nondeterministic" in oracle.skipped


def test_references_that_loop_flood_or_crash_cost_inputs_not_the_run():
    limits = Limits(test_timeout=0.5, total_timeout=10)
    tests = ("assert f(2) == 2", "assert f(5) == 5", "assert f(8) == 8")
    looping = Task("loop", "def f(n):\n    pass\n", "f", tests,
                   reference="    while n not in (2, 5, 8):\n        pass\n    return n\n")
    oracle = make_oracle(looping, count=10, seed=0, limits=limits)
    assert oracle.dropped.get("the reference timed out", 0) >= 3
    assert oracle.dropped.get("not tried (the reference timed out too often)", 0) > 0
    flooding = Task("flood", "def f(n):\n    pass\n", "f", tests,
                    reference="    print('x' * 10_000_000)\n    return n\n")
    started = time.monotonic()
    oracle = make_oracle(flooding, count=5, seed=0, limits=limits)
    assert time.monotonic() - started < 60
    # past the file-size limit its calls fail: inputs dropped and counted, the task skipped
    assert oracle.tried >= 5 and sum(oracle.dropped.values()) >= 5 and oracle.skipped
    chatty = Task("chatty", "def f(n):\n    pass\n", "f", tests,
                  reference="    print('x' * 1000)\n    return n\n")
    assert len(make_oracle(chatty, count=5, seed=0, limits=limits).tests) == 5
    crashing = Task("crash", "def f(n):\n    pass\n", "f", tests,
                    reference="    import os\n    if n not in (2, 5, 8):\n        os._exit(3)\n"
                              "    return n\n")
    oracle = make_oracle(crashing, count=5, seed=0, limits=limits)
    assert oracle.tests == () and oracle.skipped  # every new input killed it: nothing kept


def test_tasks_without_a_usable_call_are_skipped_with_a_reason():
    no_reference = Task("a", "def f(x):\n    pass\n", "f", ("assert f(1) == 1",))
    assert make_oracle(no_reference).skipped == "no reference solution"
    computed = Task("b", "def f(x):\n    pass\n", "f", ("assert f(list(range(3))) == 3",),
                    reference="    return len(x)\n")
    assert make_oracle(computed).skipped == "no call with literal arguments in its tests"
    broken = Task("c", "def f(x):\n    pass\n", "f", ("assert f(1 ==",), reference="    return x\n")
    assert make_oracle(broken).skipped == "no call with literal arguments in its tests"


def test_an_oracle_is_stored_and_read_back_whole():
    oracle = make_oracle(CHAIN, count=5, seed=3)
    again = Oracle.from_dict(oracle.to_dict())
    assert again == oracle and again.seed == 3


def test_mutation_keeps_each_values_type():
    from localdistill.sandbox.differential import _bounds, mutate

    rng = random.Random(0)
    bounds = _bounds(seed_calls(CHAIN))
    for value in (3, -2.5, "abc", [1, 2], (1, "a"), {"k": 1}, {1, 2}, True, None):
        for _ in range(20):
            assert type(mutate(value, rng, bounds)) is type(value)


# --- in the pipeline: a hand-written run directory, no model -----------------------------------

def _run_with(tmp_path, attempt: str, teacher: str):
    from localdistill.rundir import RunDir
    from localdistill.stages.execute import execute_attempts

    run = RunDir(tmp_path / "run").__enter__()
    run.write("attempts", [{"key": "chain#0", "task_id": "chain", "sample": 0,
                            "completion": attempt, "model": "student"}])
    execute_attempts([CHAIN], run)
    verdict = run_tests(CHAIN.program(teacher), CHAIN.tests, CHAIN.entry_point)
    run.write("direct", [{"key": "chain#0", "task_id": "chain", "sample": 0, "teacher": "t",
                          "request_hash": "h", "answer": teacher, "completion": teacher,
                          "passed": verdict.passed, "status": verdict.status,
                          "feedback": verdict.feedback}])
    return run


def test_a_refuted_student_pass_goes_to_refinement_with_the_failing_input(tmp_path):
    from localdistill.records import executions, failed_task_ids
    from localdistill.stages.differential import differential_check
    from localdistill.stages.refine import failed_attempts, get_strategy

    run = _run_with(tmp_path, WRONG, RIGHT)
    assert not failed_task_ids(run)  # it passed the task's own tests
    report = differential_check([CHAIN], run, inputs=20, seed=0)
    counts = report.counts
    assert counts["student passes: passed the tests / checked / refuted / verified"] == \
        "1 / 1 / 1 / 0"
    # the teacher's answer is checked on the inputs where the reference and the student's
    # (wrong) pass agree: those still judge it, and it passes them
    assert counts["teacher answers: passed the tests / checked / refuted / verified"] == \
        "1 / 1 / 0 / 1"
    assert failed_task_ids(run) == {"chain"}
    [execution] = executions(run)
    assert execution.status == "refuted"
    assert execution.feedback.startswith("AssertionError\nINPUT:")
    [item] = failed_attempts(run, [CHAIN], get_strategy("restyle"))
    assert item.feedback == execution.feedback and "OUTPUT:" in item.feedback
    assert next(run.records("oracles"))["tests"]  # the inputs are kept in the run
    run.__exit__(None, None, None)


def test_a_refuted_teacher_answer_leaves_standd(tmp_path):
    from localdistill.stages.build import build
    from localdistill.stages.differential import differential_check

    run = _run_with(tmp_path, RIGHT, WRONG)  # now the student is right and the teacher wrong
    report = differential_check([CHAIN], run, inputs=20, seed=0)
    assert report.counts["teacher answers: passed the tests / checked / refuted / verified"] == \
        "1 / 1 / 1 / 0"
    assert build([CHAIN], run, ["standd"]).counts["standd examples"] == 0
    run.__exit__(None, None, None)


def test_a_correct_pass_is_kept_and_a_rerun_judges_nothing_again(tmp_path):
    from localdistill.stages.differential import differential_check

    run = _run_with(tmp_path, RIGHT, RIGHT.replace("count, last", "n, last").replace(
        "count + 1", "n + 1").replace("return count", "return n"))
    first = differential_check([CHAIN], run, inputs=20, seed=0).counts
    assert first["student passes: passed the tests / checked / refuted / verified"] == \
        "1 / 1 / 0 / 1"
    cached = len(list(run.records("cache/executions")))
    assert differential_check([CHAIN], run, inputs=20, seed=0).counts == first
    assert len(list(run.records("cache/executions"))) == cached  # all from the run's memory
    run.__exit__(None, None, None)


def test_a_refinement_that_passes_the_tests_but_is_refuted_is_not_verified(tmp_path):
    from localdistill.answers import REQUESTS, model_identity, request_hash
    from localdistill.backends import get_model
    from localdistill.stages.refine import failed_attempts, get_strategy, refine
    from localdistill.stages.refine.rounds import Settings, _requests

    failing = "    return 0\n"
    run = _run_with(tmp_path, failing, RIGHT)
    strategy = get_strategy("restyle")
    spec = get_model("tiny")
    [item] = failed_attempts(run, [CHAIN], strategy)
    requests = _requests(spec, strategy, item, 1, 0, Settings(None, 96, 0, 0.8))
    run.append(REQUESTS, [{"key": request_hash(model_identity(spec), r), "model": "tiny",
                           "stage": "refine",
                           "text": f"```python\n{CHAIN.prompt}{WRONG}```",
                           "finish_reason": "stop", "completion_tokens": 40,
                           "prompt_tokens": 200} for r in requests])
    report = refine([CHAIN], "tiny", run, rounds=1, max_tokens=96, unchanged_retries=0,
                    strategy=strategy, differential=(20, 0))
    [record] = run.records("refinements")
    assert not record["passed"] and record["status"] == "refuted"
    assert record["feedback"].startswith("AssertionError\nINPUT:")
    assert record["candidates"][0]["refuted"] is True
    assert report.counts["round 1: answers checked on generated inputs / refuted"] == "1 / 1"
    run.__exit__(None, None, None)


# --- eval's "+" column --------------------------------------------------------------------------

def _planted_eval(run_dir, tasks, answers: dict[str, str], config):
    """`evaluate` with the tiny model's answers written into the run's cache beforehand: the
    model is never asked."""
    from localdistill.answers import REQUESTS, model_identity, request_hash
    from localdistill.backends import get_model, request_for
    from localdistill.records import attempt_messages
    from localdistill.rundir import RunDir
    from localdistill.stages.evaluate import evaluate, sample_key

    spec = get_model("tiny")
    with RunDir(run_dir) as run:
        run.append(REQUESTS, [{
            "key": request_hash(model_identity(spec), request_for(
                spec, messages=attempt_messages(t), temperature=config.temperature,
                max_tokens=config.max_tokens, seed=config.seed,
                key=sample_key(t.task_id, 0, 0))),
            "model": "tiny", "stage": "eval", "text": f"```python\n{answers[t.task_id]}```",
            "finish_reason": "stop", "completion_tokens": 40, "prompt_tokens": 100}
            for t in tasks])
        return evaluate(tasks, spec, run, config)


def test_eval_reports_pass_at_1_plus_on_the_generated_inputs(tmp_path):
    import json

    from localdistill.stages.evaluate import EvalConfig

    other = Task("chain2", PROMPT.replace("pairs.", "pairs (again)."), "longest_chain",
                 CHAIN.tests, reference=CHAIN.reference)  # another prompt: its own request
    tasks = [CHAIN, other]
    answers = {"chain": CHAIN.prompt + WRONG, "chain2": other.prompt + RIGHT}
    config = EvalConfig(temperature=0, max_tokens=64, plus=20)
    summary = _planted_eval(tmp_path / "run", tasks, answers, config)
    assert summary["model_calls"] == 0
    assert summary["pass_at_k"]["step 0"]["pass@1"] == 1.0  # both pass the task's tests
    assert summary["pass_at_k_plus"]["step 0"]["pass@1"] == 0.5  # the wrong one is refuted
    assert summary["correct_per_task_plus"]["step 0"] == {"chain": 0, "chain2": 1}
    assert summary["plus"]["oracle"] == "the reference alone"
    assert summary["plus"]["tasks checked"] == 2 and "EvalPlus" in summary["plus"]["label"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").open()]
    assert [r["passed_plus"] for r in rows] == [False, True]
    assert rows[0]["feedback_plus"].startswith("AssertionError\nINPUT:")
    # every model evaluated with these settings meets the same inputs: they are in the run
    oracles = [json.loads(line) for line in (tmp_path / "run" / "oracles.jsonl").open()]
    assert {o["task_id"] for o in oracles} == {"chain", "chain2"}
    # a second run whose passing answer is the wrong one agrees with the reference on fewer
    # inputs: only those judge, and the wrong answer passes them all
    second = _planted_eval(tmp_path / "second", tasks, answers, config)
    assert second["pass_at_k_plus"]["step 0"]["pass@1"] == 0.5
    agreed = _planted_eval(tmp_path / "agreed", tasks, answers, EvalConfig(
        temperature=0, max_tokens=64, plus=20, plus_second=str(tmp_path / "run")))
    assert agreed["plus"]["oracle"].startswith("the reference where")
    assert agreed["correct_per_task_plus"]["step 0"] == {"chain": 1, "chain2": 1}


def test_the_report_shows_the_plus_results_as_a_benchmark_of_their_own(tmp_path):
    from localdistill.stages.evaluate import EvalConfig
    from localdistill.stages.report import compare, load_entries

    other = Task("chain2", PROMPT.replace("pairs.", "pairs (again)."), "longest_chain",
                 CHAIN.tests, reference=CHAIN.reference)
    config = EvalConfig(temperature=0, max_tokens=64, plus=20)
    _planted_eval(tmp_path / "base", [CHAIN, other], {"chain": CHAIN.prompt + WRONG,
                                                       "chain2": other.prompt + WRONG}, config)
    _planted_eval(tmp_path / "better", [CHAIN, other], {"chain": CHAIN.prompt + RIGHT,
                                                         "chain2": other.prompt + RIGHT}, config)
    entries = load_entries([tmp_path / "base", tmp_path / "better"])
    assert [(e.label, e.benchmark) for e in entries] == [
        ("base", ""), ("better", ""), ("base", "+"), ("better", "+")]
    assert [e.pass_at_k["step 0"]["pass@1"] for e in entries] == [1.0, 1.0, 0.0, 1.0]
    paired = {c.benchmark: c for c in compare(entries)}
    assert paired[""].difference == 0 and paired["+"].difference == 1.0  # told apart only by +


def test_a_run_judged_without_the_check_stays_without_it_whatever_its_config_says(tmp_path):
    """The kept reproduction's manifest recorded `differential_inputs = 20` (the field existed)
    from a build that ran no check: resuming it must not start one (it asked the teacher for new
    refinements of the attempts the check refuted)."""
    import json

    from localdistill.collect import CollectConfig, _as_made
    from localdistill.rundir import RunDir

    run = RunDir(tmp_path / "run").__enter__()

    def made(history, config):
        (run.path / "manifest.json").write_text(json.dumps({"config": config, "history": [
            {"stage": stage} for stage in history]}))
        return _as_made(CollectConfig("s", "t", differential_inputs=20), run).differential_inputs

    assert made([], {}) == 20  # a new run gets the check
    assert made(["attempt", "execute", "teacher answers", "refine + verify", "build"],
                {"differential_inputs": 20}) == 0
    assert made(["attempt", "execute"], {"rounds": 2}) == 0  # made before the check existed
    assert made(["attempt", "execute", "teacher answers", "differential check",
                 "refine + verify"], {"differential_inputs": 20}) == 20
    # a check started by mistake after the refinements were judged does not turn it on
    assert made(["attempt", "refine + verify", "differential check"],
                {"differential_inputs": 20}) == 0
    run.__exit__(None, None, None)


def test_a_lazy_reference_is_checked_on_its_items_as_gen_tests_makes_them():
    """A function returning an iterator (as gen-tests' materialised tests show: `list(f(...))`)
    gets generated tests of its items, and a candidate with the wrong items is refuted."""
    task = Task("neighbours", 'def neighbours(xs):\n    """Pairs of neighbours."""\n', "neighbours",
                ("assert list(neighbours([1, 2, 3])) == [(1, 2), (2, 3)]",
                 "assert list(neighbours([5])) == []"),
                reference="    return zip(xs, xs[1:])\n")
    oracle = make_oracle(task, 10, seed=0)
    assert oracle.skipped is None and len(oracle.tests) >= 3
    assert all("list(neighbours(" in t for t in oracle.tests)
    right = run_tests(task.program("    return iter(list(zip(xs, xs[1:])))\n"), oracle.tests,
                      task.entry_point)
    wrong = task.program("    return zip(xs[:3], xs[1:3])\n")  # only the first three
    assert run_tests(wrong, task.tests, task.entry_point).passed  # the task's own tests pass
    assert right.passed and not run_tests(wrong, oracle.tests, task.entry_point).passed


def _script(name: str):
    """A module of scripts/ (not a package), imported by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_kept_runs_check_names_its_refuted_rows_and_writes_sets_without_them(tiny_collect,
                                                                                 tmp_path):
    """scripts/differential_kept.py on a real collect: the JSON names each set's refuted rows
    (as many as it counts); a set over 5% refuted is written again without them, one under it is
    not."""
    run = tmp_path / "run"
    shutil.copytree(tiny_collect.run, run, symlinks=True)
    out = tmp_path / "differential.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "differential_kept.py"),
                           str(run), "--tasks", str(tiny_collect.tasks), "--out", str(out),
                           "--write-unrefuted"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sets = {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in (run / "data").glob("*.jsonl") if not p.stem.endswith("-unrefuted")}
    for row in json.loads(out.read_text())["table"]:
        named = row["refuted rows (agreed inputs)"]
        if row["set"] in sets:
            assert len(named) == row["refuted (agreed inputs)"]
            assert set(named) <= {r["id"] for r in sets[row["set"]]}
            written = run / "data" / f"{row['set']}-unrefuted.jsonl"
            over = bool(named) and len(named) / row["checked (agreed inputs)"] > 0.05
            assert written.is_file() == over, row
            if over:
                assert [json.loads(x) for x in written.read_text().splitlines()] == [
                    r for r in sets[row["set"]] if r["id"] not in named]

    # The rule itself, on the real rows: one of two checked refuted is over 5%; one of 100 is not
    module = _script("differential_kept")
    rows = sets["standd"]
    assert len(rows) >= 2, "the tiny teacher verified too few answers to test on"
    target = module.write_unrefuted(tmp_path / "data", "standd", rows, {
        "refuted rows (agreed inputs)": [rows[0]["id"]], "checked (agreed inputs)": 2})
    assert target == tmp_path / "data" / "standd-unrefuted"
    assert load_dataset_rows(target) == rows[1:]
    assert load_dataset_rows(target.with_suffix(".jsonl")) == rows[1:]
    assert module.write_unrefuted(tmp_path / "few", "standd", rows, {
        "refuted rows (agreed inputs)": [rows[0]["id"]], "checked (agreed inputs)": 100}) is None
    assert not (tmp_path / "few").exists()
