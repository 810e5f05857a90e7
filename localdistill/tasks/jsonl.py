"""Users' own tasks as JSONL: one JSON object per line, the fields of `Task` (see docs/tasks.md).

Reading checks everything a later stage would otherwise trip over, and stops at the first problem
with one line, `<file>:<line>: <field>: <what is wrong and what was expected>`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path

from localdistill.tasks.errors import TaskFileError
from localdistill.tasks.record import Task
from localdistill.tasks.rows import text_lines

REQUIRED = ("task_id", "prompt", "entry_point", "tests")
OPTIONAL = ("seen_tests", "test_setup", "reference", "source", "description", "metadata")
_KINDS = {  # field -> (check, what is expected)
    "task_id": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "prompt": (lambda v: isinstance(v, str), "a string"),
    "entry_point": (lambda v: isinstance(v, str) and v.isidentifier(), "a Python function name"),
    "tests": (lambda v: isinstance(v, list) and v != [], "a non-empty list of strings"),
    "seen_tests": (lambda v: isinstance(v, list), "a list of strings"),
    "test_setup": (lambda v: isinstance(v, str), "a string"),
    "reference": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "source": (lambda v: isinstance(v, str), "a string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "metadata": (lambda v: isinstance(v, dict), "a JSON object"),
}
_GEN_TESTS = "; make tests from a reference solution with `localdistill gen-tests`"


def load_jsonl(path: Path | str) -> list[Task]:
    """Read and check a task file; raises TaskFileError (a ValueError) at the first problem."""
    data = Path(path).read_bytes()
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    for number, line in text_lines(path, data):
        task = _task(path, number, line)
        if task.task_id in first_line:
            problem = f"duplicate {task.task_id!r} (first on line {first_line[task.task_id]})"
            raise TaskFileError(path, number, "task_id", problem + "; task ids must be unique")
        first_line[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(path, 1, "file", "no tasks; expected one JSON object per line")
    return tasks


def save_jsonl(tasks: Iterable[Task], path: Path | str) -> None:
    """Write tasks so that `load_jsonl` reads back the same tasks (metadata included)."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            for task in tasks:
                out.write(json.dumps(task_to_row(task), ensure_ascii=False) + "\n")
    except OSError as error:  # name the file: a full disk's error names none
        raise OSError(error.errno, error.strerror, str(path)) from None


def task_to_row(task: Task) -> dict:
    """A task as a plain JSON-ready dict, every field present."""
    return {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "entry_point": task.entry_point,
        "tests": list(task.tests),
        "seen_tests": list(task.seen_tests),
        "test_setup": task.test_setup,
        "reference": task.reference,
        "source": task.source,
        "description": task.description,
        "metadata": task.metadata,
    }


def _task(path: Path | str, number: int, line: str) -> Task:
    def fail(field: str, problem: str) -> TaskFileError:
        return TaskFileError(path, number, field, problem)

    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        problem = f"not valid JSON ({error.msg} at column {error.colno})"
        raise fail("row", problem + "; expected one JSON object per line") from None
    if not isinstance(row, dict):
        problem = f"got {_describe(row)}; expected a JSON object with the task fields"
        raise fail("row", problem)
    for field in row:
        if field not in _KINDS:
            raise fail(field, f"unknown field; expected one of {', '.join(_KINDS)}")
    for field in REQUIRED:
        if field not in row:
            raise fail(field, "missing required field" + (_GEN_TESTS if field == "tests" else ""))
    for field, value in row.items():
        check, expected = _KINDS[field]
        if not check(value):
            hint = _GEN_TESTS if field == "tests" and value == [] else ""
            raise fail(field, f"expected {expected}, got {_describe(value)}{hint}")
    for field in ("tests", "seen_tests"):
        for i, test in enumerate(row.get(field, [])):
            if not isinstance(test, str):
                raise fail(f"{field}[{i}]", f"expected a string, got {_describe(test)}")
            _parses(test, fail, f"{field}[{i}]")
    _parses(row.get("test_setup", ""), fail, "test_setup")
    _check_program(row, fail)
    return Task(**row)


def _check_program(row: dict, fail) -> None:
    """The prompt must be the start of a program, and prompt + reference a whole one."""
    prompt, reference = row["prompt"], row.get("reference")
    # A prompt normally ends inside a function: give it a body to see if the rest is sound.
    last = prompt.rstrip().splitlines()[-1] if prompt.strip() else ""
    indent = last[: len(last) - len(last.lstrip())] or "    "
    # (one level deeper than that line: a method's prompt ends with `    def m(self):`)
    endings = ("", f"\n{indent}pass\n", f"\n{indent}    pass\n", "\n    pass\n")
    if not any(_is_python(prompt.rstrip() + ending) for ending in endings):
        _parses(prompt, fail, "prompt")
    if reference is None:
        return
    _parses(prompt + reference, fail, "reference", "prompt + reference is not valid Python")
    defined = {
        node.name
        for node in ast.walk(ast.parse(prompt + reference))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    if row["entry_point"] not in defined:
        problem = f"prompt + reference defines no function {row['entry_point']!r}"
        raise fail("entry_point", problem + "; expected the name of the function the tests call "
                   "(or of the class, for a method)")


def _is_python(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def _parses(source: str, fail, field: str, what: str = "not valid Python") -> None:
    try:
        ast.parse(source)
    except SyntaxError as error:
        where = f" at line {error.lineno}" if error.lineno else ""  # none for a null byte
        raise fail(field, f"{what} ({error.msg}{where})") from None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    names |= {int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if value in ([], "", {}):
        return f"an empty {_json_type(value)}"
    kind = _json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
