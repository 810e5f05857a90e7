"""Extracting the completion from chat answers: messy hand-written shapes and real model outputs.

Every shape is judged the way the pipeline judges it: `execute(task, completion)` in the sandbox.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdistill.extract import extract_completion, extract_program
from localdistill.sandbox import execute
from localdistill.tasks import load_humaneval
from localdistill.tasks.record import Task

ANSWERS = Path(__file__).parent / "data" / "model_answers.json"

SUM = Task(
    task_id="test/sum",
    prompt='def add_all(xs: list[int]) -> int:\n    """The sum of `xs`."""\n',
    entry_point="add_all",
    tests=("assert add_all([1, 2]) == 3", "assert add_all([]) == 0", "assert add_all([5]) == 5"),
)
EVENS = Task(
    task_id="test/evens",
    prompt=(
        "from typing import List\n\n\n"
        "def evens(xs: List[int]) -> List[int]:\n"
        '    """The even numbers of `xs`, in order.\n'
        "    >>> evens([1, 2, 4])\n"
        "    [2, 4]\n"
        '    """\n'
    ),
    entry_point="evens",
    tests=("assert evens([1, 2, 4]) == [2, 4]", "assert evens([3]) == []"),
)
HEADER_ONLY = Task(  # a prompt that stops at its `def` line, without a docstring or newline
    task_id="test/header",
    prompt="def add_all(xs):",
    entry_point="add_all",
    tests=SUM.tests,
)

SOLUTION = "def add_all(xs):\n    return sum(xs)\n"
TABBED_BODY = "\ttotal = 0\n\tfor x in xs:\n\t\ttotal += x\n\treturn total\n"

PASSING = {
    "prose around a fence": (
        SUM,
        f"Sure! Here is the function:\n\n```python\n{SOLUTION}```\n\nIt uses `sum`, which is O(n).",
    ),
    "two fences, solution second": (
        SUM,
        "First, how to call it:\n```python\nprint(add_all([1, 2, 3]))\n```\n"
        f"And the implementation:\n```python\n{SOLUTION}```\nDone.",
    ),
    "a corrected definition after a wrong one": (
        SUM,
        "```python\ndef add_all(xs):\n    return len(xs)\n```\nOops, fixed:\n"
        f"```python\n{SOLUTION}```",
    ),
    "no fence": (
        SUM,
        f"Here is the code:\n{SOLUTION}\nThis sums the list: add_all([1, 2]) gives 3.",
    ),
    "no fence, prose that looks like code first": (
        SUM,
        f"for example, this works:\n\n{SOLUTION}\nHope it helps!",
    ),
    "py fence": (SUM, f"```py\n{SOLUTION}```"),
    "bare fence": (SUM, f"```\n{SOLUTION}```"),
    "body only, indented": (SUM, "```python\n    return sum(xs)\n```"),
    "body only, not indented": (
        SUM,
        "```python\ntotal = 0\nfor x in xs:\n    total += x\nreturn total\n```",
    ),
    "body only, no fence, example after": (
        SUM,
        "    total = sum(xs)\n    return total\n\nprint(add_all(None))\n",
    ),
    "__main__ block": (
        SUM,
        f'```python\n{SOLUTION}\n\nif __name__ == "__main__":\n'
        "    raise SystemExit(add_all(None))\n```",
    ),
    "example prints and calls": (
        SUM,
        f"```python\n{SOLUTION}\nprint(add_all([1, 2]))\nresult = add_all(None)\nadd_all(7)\n```",
    ),
    "asserts and test functions": (
        SUM,
        f"```python\n{SOLUTION}\n\ndef test_add_all():\n    assert add_all([1]) == 2\n\n"
        "assert add_all([1]) == 2\ntest_add_all()\n```",
    ),
    "unterminated fence": (SUM, f"Sure!\n```python\n{SOLUTION}"),
    "truncated at max_tokens": (SUM, f"```python\n{SOLUTION}\n\nprint(add_all([1, 2, 3"),
    "CRLF line endings": (
        SUM,
        f"Here:\r\n```python\r\n{SOLUTION.replace(chr(10), chr(13) + chr(10))}```\r\nBye.\r\n",
    ),
    "tabs": (SUM, f"```python\ndef add_all(xs):\n{TABBED_BODY}```"),
    "body only with tabs": (SUM, f"```\n{TABBED_BODY}```"),
    "helpers and constants kept": (
        SUM,
        "```python\nimport functools\nimport operator\n\nSTART = 0\n\n\n"
        "def _plus(a, b):\n    return operator.add(a, b)\n\n\n"
        "def add_all(xs):\n    return functools.reduce(_plus, xs, START)\n```",
    ),
    "decorated helper": (
        SUM,
        "```python\nimport functools\n\n@functools.lru_cache\ndef zero():\n    return 0\n\n"
        "def add_all(xs):\n    return sum(xs, zero())\n```",
    ),
    "__future__ import": (SUM, f"```python\nfrom __future__ import annotations\n\n{SOLUTION}```"),
    "prompt repeated with its imports": (
        EVENS,
        f"```python\n{EVENS.prompt}    return [x for x in xs if x % 2 == 0]\n```",
    ),
    "no typing import, names from the prompt": (
        EVENS,
        "```python\ndef evens(xs: List[int]) -> List[int]:\n"
        "    return [x for x in xs if not x % 2]\n```",
    ),
    "header-only prompt, full definition": (HEADER_ONLY, f"```python\n{SOLUTION}```"),
    "header-only prompt, body only": (HEADER_ONLY, "```python\nreturn sum(xs)\n```"),
}

FAILING = {
    "refusal": "I'm sorry, I can't help with that.",
    "empty": "",
    "empty fence": "```python\n```",
    "shell only": "```bash\npip install numpy\n```",
    "wrong function": "```python\ndef total(xs):\n    return sum(xs)\n```",
    "wrong answer": "```python\ndef add_all(xs):\n    return 0\n```",
}


@pytest.mark.parametrize("name", PASSING)
def test_messy_answers_pass(name):
    task, answer = PASSING[name]
    completion = extract_completion(answer, task)
    result = execute(task, completion)
    assert result.passed, f"{name}:\n{task.program(completion)}\n{result.feedback}"


@pytest.mark.parametrize("name", FAILING)
def test_unusable_answers_fail_with_feedback(name):
    completion = extract_completion(FAILING[name], SUM)
    result = execute(SUM, completion)
    assert not result.passed and result.feedback


def test_demonstrations_are_removed_from_the_completion():
    answer = PASSING["asserts and test functions"][1] + PASSING["__main__ block"][1]
    completion = extract_completion(answer, SUM)
    assert "test_add_all" not in completion and "__main__" not in completion
    assert "assert" not in completion and "print" not in completion


def test_body_goes_under_the_prompts_def_line():
    assert extract_completion("```python\nreturn sum(xs)\n```", SUM) == "    return sum(xs)\n"
    assert extract_completion("    return sum(xs)", HEADER_ONLY) == "\n    return sum(xs)\n"


def test_a_definition_follows_the_prompt_on_new_lines():
    completion = extract_completion(PASSING["prose around a fence"][1], SUM)
    assert completion == "\n" + SOLUTION
    assert extract_program(PASSING["prose around a fence"][1], SUM) == SUM.prompt + completion


def test_nothing_usable_becomes_the_indented_answer():
    assert extract_completion("I don't know.\nSorry.", SUM) == "    I don't know.\n    Sorry.\n"


# --- real answers: demo-student and tiny on six HumanEval tasks (greedy, max_tokens 256) -----


def _real_answers() -> list[dict]:
    return json.loads(ANSWERS.read_text())


@pytest.fixture(scope="module")
def humaneval() -> dict[str, Task]:
    return {task.task_id: task for task in load_humaneval()}


@pytest.mark.parametrize("row", _real_answers(), ids=lambda r: f"{r['model']}:{r['task_id']}")
def test_real_answers_extract_to_code_that_parses(row, humaneval):
    task = humaneval[row["task_id"]]
    program = extract_program(row["answer"], task)
    tree = ast.parse(program)
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert task.entry_point in defined


def test_extraction_makes_real_answers_pass(humaneval):
    raw, extracted = {}, {}
    for row in _real_answers():
        task = humaneval[row["task_id"]]
        key = (row["model"], row["task_id"])
        raw[key] = execute(task, row["answer"]).passed
        extracted[key] = execute(task, extract_completion(row["answer"], task)).passed
    # Fenced answers appended as they are are syntax errors; the student's six are all correct.
    assert not any(raw.values())
    assert all(passed for (model, _), passed in extracted.items() if model == "demo-student")
    assert sum(extracted.values()) == 9  # tiny solves 3 of its 6 (0, 2 and 13 are wrong code)


# --- it never raises ---------------------------------------------------------------------------

PIECES = st.sampled_from(
    ["```python", "```py", "```", "```bash", "def add_all(xs):", "def evens(xs):", "    return 1",
     "\treturn sum(xs)", "return", "if __name__ == '__main__':", "print(add_all([1]))",
     "assert 1 == 2", "from __future__ import annotations", "class A:", "@", "'''", '"""', "\r",
     "for example:", "x = add_all(1)", "    ", "\x00", "Here is the code:"]
)  # fmt: skip
MESSY = st.lists(st.one_of(PIECES, st.text()), max_size=12).map("\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=st.one_of(st.text(), MESSY), task=st.sampled_from([SUM, EVENS, HEADER_ONLY]))
def test_extract_never_raises(answer, task):
    completion = extract_completion(answer, task)
    assert isinstance(completion, str)
    assert isinstance(extract_program(answer, task), str)
