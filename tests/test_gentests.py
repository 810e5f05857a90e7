"""gen-tests: the teacher's proposed calls parsed, the reference run in the sandbox for the expected
outputs, bad inputs dropped with their reason, Code-Alpaca loaded, and a real run on the tiny
model."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import pytest

from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, evaluate, execute, run_tests
from localdistill.stages.gentests import (
    CRASHED,
    DUPLICATE,
    FLOAT_NOISE,
    NOT_A_LITERAL,
    NOT_DATA,
    NOT_DETERMINISTIC,
    NOT_LITERAL,
    OVER_COUNT,
    SAME_BEHAVIOUR,
    TIMED_OUT,
    TOO_LONG,
    as_test,
    generate_tests,
    make_tests,
    materialise,
    outputs,
    parse_calls,
)
from localdistill.tasks import TaskFileError, TaskSpecError, load_jsonl, load_tasks, save_jsonl
from localdistill.tasks.record import Task

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
ALPACA = DATA / "code_alpaca_tasks.jsonl"
needs_alpaca = pytest.mark.skipif(
    not ALPACA.is_file(), reason=f"Code-Alpaca not found at {ALPACA} (set LOCALDISTILL_DATA)"
)
HOSTILE = Path(__file__).parent / "hostile"
FAST = Limits(test_timeout=1.0, total_timeout=10.0, memory_mb=512)

# --- parsing the teacher's answer --------------------------------------------------------------

FENCED = '''Sure! Here are some calls that test `sort_list`:

```python
sort_list([3, 1, 2])
sort_list([])
print(sort_list([5, -1, 0.5]))   # mixed numbers
assert sort_list(["b", "a"]) == ["a", "b"]
result = sort_list(my_list)
sort_list([3, 1, 2])
sort_list(list(range(5)))
sorted_list([1, 2])
obj.sort_list([4])
sort_list(xs=[1, 2],
          reverse=True)
sort_list("a)b(")
sort_list(*[[1]])
```

These cover the edge cases, e.g. sort_list([9]) in prose is not code.
'''


def test_calls_from_a_fenced_answer():
    proposal = parse_calls(FENCED, "sort_list", 10)
    assert proposal.calls == (
        "sort_list([3, 1, 2])",
        "sort_list([])",
        "sort_list([5, -1, 0.5])",
        "sort_list(['b', 'a'])",
        "sort_list(xs=[1, 2], reverse=True)",
        "sort_list('a)b(')",
    )
    # my_list and list(range(5)) are not literals, nor is a starred argument; sorted_list and
    # obj.sort_list are other functions; the prose outside the fence is not looked at.
    assert proposal.dropped == {NOT_LITERAL: 3, DUPLICATE: 1}
    assert proposal.found == len(proposal.calls) + sum(proposal.dropped.values())


def test_calls_from_a_bare_answer_with_junk_lines():
    answer = (
        "Test inputs for is_prime:\n"
        ">>> is_prime(7)\n"
        "is_prime(n=-3)  # negative\n"
        "is_prime(0x10)\n"
        "is_prime(2 ** 31)\n"
        "def is_prime(n):\n"
        "    return is_prime(n - 1)\n"
        "is_prime(7)\n"
        "1. is_prime(1)\n"
        "is_prime(  # cut short by max_tokens\n"
    )
    proposal = parse_calls(answer, "is_prime", 10)
    assert proposal.calls == ("is_prime(7)", "is_prime(n=-3)", "is_prime(16)", "is_prime(1)")
    # 2 ** 31 and n - 1 are expressions; the `def` line is not a call; the last call is unfinished.
    assert proposal.dropped == {NOT_LITERAL: 2, DUPLICATE: 1}
    assert proposal.found == 7


def test_calls_are_capped_and_an_unterminated_fence_still_counts():
    answer = "```python\n" + "\n".join(f"double({i})" for i in range(8))  # cut by max_tokens
    proposal = parse_calls(answer, "double", 5)
    assert proposal.calls == tuple(f"double({i})" for i in range(5))
    assert proposal.dropped == {OVER_COUNT: 3}


def test_an_answer_without_calls_proposes_nothing():
    answer = "```python\ndef add(a, b):\n    return a + b\n```\nThis adds two numbers."
    proposal = parse_calls(answer, "add", 10)
    assert proposal.calls == () and proposal.found == 0


# --- the reference in the sandbox -------------------------------------------------------------


def test_evaluate_brings_back_plain_values_and_says_why_not():
    program = (
        "def f(x):\n"
        "    if x == 0:\n"
        "        raise ValueError('zero')\n"
        "    if x == 1:\n"
        "        return object()\n"
        "    if x == 2:\n"
        "        while True:\n"
        "            pass\n"
        "    return {'a': [x, (x, 1.5)], 's': {x}, 'b': b'x', 'big': 10 ** 30}\n"
    )
    values = evaluate(program, ["f(3)", "f(0)", "f(1)", "f(2)", "f(4)"], limits=FAST)
    assert [v.status for v in values] == ["ok", "error", "not_data", "timeout", "ok"]
    assert values[0].value == {"a": [3, (3, 1.5)], "s": {3}, "b": b"x", "big": 10**30}
    assert values[1].detail == "ValueError: zero"
    assert values[4].value["a"] == [4, (4, 1.5)]  # the run went on after the hang
    broken = evaluate("def f(:\n", ["f(1)", "f(2)"], limits=FAST)
    assert [v.status for v in broken] == ["error", "error"]
    assert broken[0].detail.startswith("SyntaxError")


REFERENCE = '''import random

calls = []


def f(x):
    calls.append(x)
    if x == "crash":
        return 1 / 0
    if x == "random":
        return random.random()
    if x == "id":
        return id(object())
    if x == "state":
        return len(calls)  # depends on the calls made before
    if x == "nan":
        return float("nan")
    if x == "empty set":
        return set()
    if x == "noise":
        return 0.1 + 0.2
    if x == "object":
        return range(3)
    if x == "half":
        return 0.5
    if x == "long":
        return "x" * 2000
    return x[::-1]
'''
HEADER, BODY = REFERENCE.split("\n    calls.append", 1)
TASK = Task("t/1", HEADER + "\n", "f", (), reference="    calls.append" + BODY)


def test_only_deterministic_literal_outputs_become_tests():
    calls = [f"f({x!r})" for x in ("abc", "crash", "random", "id", "state", "nan", "empty set",
                                   "noise", "object", "half", "long", [1, 2])]
    first, second = outputs(TASK, calls, FAST)
    kept, dropped = make_tests(calls, first, second)
    assert kept == [("f('abc')", "cba"), ("f('empty set')", set()), ("f('half')", 0.5),
                    ("f([1, 2])", [2, 1])]
    assert dropped == {CRASHED: 1, NOT_DETERMINISTIC: 3, NOT_A_LITERAL: 1, FLOAT_NOISE: 1,
                       NOT_DATA: 1, TOO_LONG: 1}
    assert math.isnan(first[5].value)  # NaN is plain data, but `== nan` never holds
    tests = [as_test(call, output) for call, output in kept]
    assert tests[0] == "assert f('abc') == 'cba'"
    # The tests pass on the reference, judged by the sandbox as value tests.
    result = run_tests(TASK.program(TASK.reference), tests, "f", TASK.test_setup, FAST)
    assert result.passed, result.feedback
    # ... and fail on another function.
    assert not run_tests("def f(x):\n    return x\n", tests, "f", "", FAST).passed


def test_tests_that_behave_alike_are_kept_up_to_a_number_and_counted():
    """Outputs of one type, sign and size (outputs.behaviour) exercise a function alike: at most
    `per_behaviour` of them become tests; the rest are dropped with their reason."""
    from localdistill.sandbox import Value
    from localdistill.stages.gentests import behaviour

    values = [1, 7, 30, 0, -2, "ab", "abc", "", [1, 2], [3, 4], ["x", "y"], None, True]
    calls = [f"f({i})" for i in range(len(values))]
    outcome = [Value("ok", v) for v in values]
    kept, dropped = make_tests(calls, outcome, outcome, per_behaviour=2)
    assert [v for _, v in kept] == [1, 7, 0, -2, "ab", "abc", "", [1, 2], [3, 4], ["x", "y"],
                                    None, True]
    assert dropped == {SAME_BEHAVIOUR: 1}  # 30: a third positive int
    assert behaviour([1, 2]) != behaviour(["x", "y"]) != behaviour("xy")
    assert behaviour({"a": 1}) == behaviour({"b": 2}) != behaviour({})
    every, _ = make_tests(calls, outcome, outcome)  # 0: no limit (gen-tests' default is 5)
    assert len(every) == len(values)


def test_calls_that_take_different_branches_are_told_apart_by_their_path():
    """Outputs alike (a one-letter string each) but three branches: the traced first run says
    which lines each call ran, so one test per branch is kept where the output alone would keep
    one in all; two calls down the same branch still count as one kind. The path covers the
    program's own lines, never the test expression's or the standard library's."""
    reference = ("    if score >= 90:\n        return 'A'\n    if score >= 50:\n"
                 "        return min('B', 'C')\n    return 'C'\n")
    task = Task("grade", "def grade(score):\n", "grade", (), reference=reference)
    calls = ["grade(95)", "grade(99)", "grade(70)", "grade(10)"]
    first, second = outputs(task, calls, FAST)
    assert all(v.path for v in first) and all(v.path is None for v in second)
    assert first[0].path == first[1].path == (2, 3)  # the def's body starts on line 2
    assert first[2].path == (2, 4, 5) and first[3].path == (2, 4, 6)
    kept, dropped = make_tests(calls, first, second, per_behaviour=1)
    assert [c for c, _ in kept] == ["grade(95)", "grade(70)", "grade(10)"]
    assert dropped == {SAME_BEHAVIOUR: 1}
    untraced = evaluate(task.program(reference), calls, "", FAST)
    assert [c for c, _ in make_tests(calls, untraced, untraced, per_behaviour=1)[0]] == [
        "grade(95)"]  # by the output alone, as before paths


def test_iterators_are_tested_by_their_items():
    """Lazy outputs (generators, map objects) get `list(...)` tests; other non-data outputs, an
    endless generator and a non-iterable object stay dropped."""
    reference = ("    if n < 0:\n        return (i for i in iter(int, 1))\n"
                 "    if n == 99:\n        return object()\n"
                 "    return (i for i in range(n) if i % 2 == 0)\n")
    task = Task("lazy", "def evens(n):\n", "evens", (), reference=reference)
    calls = ["evens(5)", "evens(0)", "evens(-1)", "evens(99)"]
    calls, first, second = materialise(task, calls, *outputs(task, calls, FAST), FAST)
    kept, dropped = make_tests(calls, first, second)
    assert kept == [("list(evens(5))", [0, 2, 4]), ("list(evens(0))", [])]
    assert dropped == {NOT_DATA: 2}
    tests = [as_test(call, output) for call, output in kept]
    assert run_tests(task.program(reference), tests, "evens", "", FAST).passed
    wrong = "def evens(n):\n    return iter(range(n))\n"
    assert not run_tests(wrong, tests, "evens", "", FAST).passed


@pytest.mark.slow
def test_a_reference_that_loops_forever_costs_only_its_time_limit():
    program = (HOSTILE / "endless_loop.py").read_text()  # swallows the alarm: killed from outside
    task = Task("loop", "", "f", (), reference=program)
    limits = Limits(test_timeout=0.5, total_timeout=3.0, memory_mb=512)
    started = time.monotonic()
    first, second = outputs(task, ["f(1)", "f(2)", "f(3)"], limits)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * (limits.total_timeout + 2)
    kept, dropped = make_tests(["f(1)", "f(2)", "f(3)"], first, second)
    assert kept == [] and dropped == {TIMED_OUT: 3}


# --- Code-Alpaca and task files without tests --------------------------------------------------


@needs_alpaca
def test_code_alpaca_loads_with_references_and_no_tests(monkeypatch):
    tasks = load_tasks(f"alpaca={ALPACA}")
    assert len(tasks) == 3248
    assert len({t.task_id for t in tasks}) == 3248
    assert all(t.source == "alpaca" and t.tests == () and t.reference for t in tasks)
    first = tasks[0]
    assert first.task_id == "alpaca/4" and first.entry_point == "permutations"
    assert first.prompt.rstrip().endswith("def permutations(string, step = 0):")
    assert all(re.search(rf"def\s+{t.entry_point}\s*\(", t.prompt) for t in tasks)
    monkeypatch.setenv("LOCALDISTILL_DATA", str(DATA))
    assert load_tasks("alpaca")[-1] == tasks[-1]
    with pytest.raises(TaskSpecError, match="no splits"):
        load_tasks("alpaca:train")
    monkeypatch.delenv("LOCALDISTILL_DATA")
    with pytest.raises(TaskSpecError, match="LOCALDISTILL_DATA"):
        load_tasks("alpaca")


def test_a_task_file_without_tests_says_to_run_gen_tests(tmp_path):
    path = tmp_path / "untested.jsonl"
    save_jsonl([Task("u/1", "def f(x):\n", "f", (), reference="    return x\n")], path)
    with pytest.raises(TaskFileError, match=r"untested.jsonl:1: tests: .*gen-tests"):
        load_jsonl(path)


# --- end to end on the tiny model --------------------------------------------------------------


@pytest.mark.slow
@needs_alpaca
def test_gen_tests_on_code_alpaca_with_the_tiny_teacher(tmp_path):
    by_id = {t.task_id: t for t in load_tasks(f"alpaca={ALPACA}")}
    tasks = [by_id["alpaca/10"], by_id["alpaca/19"], by_id["alpaca/4"],
             Task("no-ref", "def g(x):\n", "g", ())]
    with RunDir(tmp_path / "run") as run:
        report = generate_tests(tasks, "tiny", run, count=5, min_tests=1, max_tokens=48,
                                temperature=0, workers=2)
        # one request per task with a reference, one more for each asked again (left with too
        # few tests); nothing for the task without a reference
        assert report.asked_again <= 3 and report.new_requests == 3 + report.asked_again
        kept_ids = [t.task_id for t in report.tasks]
        assert sorted(kept_ids + list(report.skipped)) == sorted(t.task_id for t in tasks)
        assert report.skipped["no-ref"] == "no reference solution to run"
        assert all(report.skipped.values())
        parsing = report.dropped[NOT_LITERAL] + report.dropped[DUPLICATE] + \
            report.dropped[OVER_COUNT]
        assert report.proposed == report.parsed + parsing
        assert report.parsed == report.kept + sum(report.dropped.values()) - parsing
        assert report.kept == sum(len(t.tests) for t in report.tasks)
        for task in report.tasks:
            assert task.tests and task.seen_tests == task.tests[:1]
            assert task.metadata["gen_tests"]["teacher"] == "tiny"
            assert execute(task, task.reference).passed  # every test holds on the reference
        records = {r["key"]: r for r in run.records("gen_tests")}
        assert set(records) == {t.task_id for t in tasks}
        # A second run asks the teacher nothing and makes the same tests.
        again = generate_tests(tasks, "tiny", run, count=5, min_tests=1, max_tokens=48,
                               temperature=0, workers=2)
        assert again.new_requests == 0
        assert again.tasks == report.tasks and again.skipped == report.skipped
    table = report.stage_report().counts
    assert table["tests kept"] == report.kept and table["tasks skipped"] == len(report.skipped)
    if report.tasks:
        path = tmp_path / "with_tests.jsonl"
        save_jsonl(report.tasks, path)
        assert load_tasks(str(path)) == report.tasks


@pytest.mark.slow
@needs_alpaca
def test_the_gen_tests_command_writes_a_task_file_and_reports(tmp_path):
    import subprocess
    import sys

    output = tmp_path / "tests.jsonl"
    command = [str(Path(sys.executable).parent / "localdistill"), "gen-tests",
               f"alpaca={ALPACA}", "--teacher", "tiny", "--run", str(tmp_path / "run"),
               "-o", str(output), "--limit", "2", "--min-tests", "1", "--max-tokens", "96"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = re.search(r"wrote (\d+) tasks with (\d+) tests", result.stdout)
    assert written, result.stdout
    rows = output.read_text().splitlines()
    assert len(rows) == int(written[1])
    if rows:  # whatever the tiny teacher proposed, what was written loads as a task file
        assert sum(len(t.tests) for t in load_jsonl(output)) == int(written[2])
    skipped = re.findall(r"^skipped (alpaca/\d+): ", result.stdout, re.M)
    assert len(rows) + len(skipped) == 2
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert re.search(r"model calls made now\W+0\b", again.stdout)  # all from the run's cache


def _record_answers(run, spec, task: Task, count: int, asked_first: list[str],
                    answers: tuple[str, str], why: str = "alike") -> None:
    """The teacher's two answers (to gen-tests' request, then to its asking again, shown
    `asked_first`, `why`) written to the run's cache beforehand, as a replayed run holds them."""
    from localdistill.answers import REQUESTS, model_identity, request_hash
    from localdistill.backends import request_for
    from localdistill.prompts import render

    values = {"prompt": task.prompt, "entry_point": task.entry_point, "count": count,
              "method": None, "binding": None, "classes": []}
    messages = [render("gen_tests", **values),
                render("gen_tests_again", **values, calls="\n".join(asked_first), why=why)]
    identity = model_identity(spec)
    with run.appender(REQUESTS) as cache:
        for asked, text in zip(messages, answers, strict=True):
            h = request_hash(identity, request_for(spec, messages=asked, key="x"))
            cache.add({"key": h, "model": spec.name, "stage": "gen-tests", "text": text,
                       "finish_reason": "stop", "completion_tokens": 10, "prompt_tokens": 10})


def test_calls_that_behave_alike_make_the_teacher_ask_once_more(tmp_path):
    """The first answer's calls all return positive ints: 3 tests (per_behaviour), fewer than
    min_tests, so the teacher is asked once more, shown them; its new calls that behave
    otherwise complete the task. The tiny model's answers are recorded in the run's cache
    beforehand (as a replayed run holds them): the requests are the ones gen-tests makes."""
    from localdistill.backends import get_model

    task = Task("double", "def double(n):\n", "double", (), reference="    return 2 * n\n")
    spec = get_model("tiny")
    first = "```python\n" + "\n".join(f"double({i})" for i in range(1, 7)) + "\n```"
    second = "```python\ndouble(0)\ndouble(-4)\ndouble(7)\ndouble(1)\n```"
    asked_first = [f"double({i})" for i in range(1, 7)]
    with RunDir(tmp_path / "run") as run:
        _record_answers(run, spec, task, 6, asked_first, (first, second))
        report = generate_tests([task], spec, run, count=6, min_tests=5, limits=FAST,
                                per_behaviour=3)
        records = list(run.records("gen_tests"))
    assert report.new_requests == 0 and report.asked_again == 1  # both answers from the cache
    [made] = report.tasks
    assert [t.split(" == ")[0] for t in made.tests] == [
        "assert double(1)", "assert double(2)", "assert double(3)", "assert double(0)",
        "assert double(-4)"]
    assert report.proposed == 10 and report.parsed == 9  # double(1) asked twice
    assert report.dropped[DUPLICATE] == 1 and report.kept == 5
    assert records[0]["asked_again"] is True
    counts = report.stage_report().counts
    assert counts["tasks asked again (first calls alike or too few)"] == 1
    assert counts["behaviours per task (median)"] == 3


def test_too_few_usable_calls_make_the_teacher_ask_once_more(tmp_path):
    """The first answer's calls are mostly not literal (variables): one test, fewer than
    min_tests, though nothing behaved alike; the teacher is asked once more, told that too few
    of its calls gave tests (the "few" wording: the recorded answer is found under that
    request's hash, so no model is called), and the new calls complete the task."""
    from localdistill.backends import get_model

    task = Task("double", "def double(n):\n", "double", (), reference="    return 2 * n\n")
    spec = get_model("tiny")
    first = "```python\ndouble(n)\ndouble(x + 1)\ndouble(2)\n```"
    second = "```python\ndouble(0)\ndouble(-4)\ndouble(7)\n```"
    with RunDir(tmp_path / "run") as run:
        _record_answers(run, spec, task, 6, ["double(2)"], (first, second), why="few")
        report = generate_tests([task], spec, run, count=6, min_tests=3, limits=FAST)
    assert report.new_requests == 0 and report.asked_again == 1
    [made] = report.tasks
    assert [t.split(" == ")[0] for t in made.tests] == [
        "assert double(2)", "assert double(0)", "assert double(-4)", "assert double(7)"]


def test_tests_that_all_behave_alike_make_the_teacher_ask_once_more(tmp_path):
    """Enough tests, but every output the same kind (positive ints): asked once more, and the
    new calls that behave otherwise join them. Answers recorded in the run's cache beforehand,
    as in the test above."""
    from localdistill.backends import get_model

    task = Task("double", "def double(n):\n", "double", (), reference="    return 2 * n\n")
    spec = get_model("tiny")
    asked_first = [f"double({i})" for i in range(1, 5)]
    answers = ("```python\n" + "\n".join(asked_first) + "\n```",
               "```python\ndouble(0)\ndouble(-3)\n```")
    with RunDir(tmp_path / "run") as run:
        _record_answers(run, spec, task, 4, asked_first, answers)
        report = generate_tests([task], spec, run, count=4, min_tests=3, limits=FAST)
    [made] = report.tasks
    assert report.asked_again == 1 and len(made.tests) == 6
    assert report.stage_report().counts["tasks whose tests all behave alike"] == 0
