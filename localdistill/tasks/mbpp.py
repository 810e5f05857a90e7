"""MBPP (Austin et al. 2021) as Tasks, from the original JSONL (one problem per line).

The model completes a function body, as on HumanEval (the evalplus layout): the prompt is the
reference code's top-level imports, any class the tests build their inputs from (`Pair`, `Node`),
the entry function's `def` line, and a docstring holding the problem text and the first test.
That first test is the seen test; all three of `test_list` are hidden tests.
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import warnings
from pathlib import Path

from localdistill.tasks.record import Task

# By the usual convention (the paper's few-shot prompt, test, validation and train splits).
MBPP_SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}


def load_mbpp(path: Path | str, split: str = "test") -> list[Task]:
    """The MBPP problems of one split (`prompt`, `test`, `validation`, `train` or `all`)."""
    if split != "all" and split not in MBPP_SPLITS:
        raise ValueError(
            f"unknown MBPP split {split!r}: expected one of {', '.join(MBPP_SPLITS)}, all"
        )
    with open(path, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    if split != "all":
        rows = [row for row in rows if row["task_id"] in MBPP_SPLITS[split]]
    return [mbpp_task(row) for row in sorted(rows, key=lambda row: row["task_id"])]


def mbpp_task(row: dict) -> Task:
    """One original MBPP row (task_id, text, code, test_list, test_setup_code) as a Task."""
    code = _normalise(row["code"])
    with warnings.catch_warnings():  # the reference code has regexes like '\d' in plain strings
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        module = ast.parse(code)
    tests = [_normalise(test) for test in row["test_list"]]
    test_setup = _normalise(row["test_setup_code"])
    function = _entry_function(module, tests[0])
    prompt = "".join(
        [
            _imports(module),
            _supports(module, tests + [test_setup]),
            _header(function),
            _docstring(row["text"], tests[0]),
        ]
    )
    if _self_contained(function, module):
        reference = _body(function)
    else:  # helpers or globals: the prompt's function is redefined by the whole reference code
        reference = "\n" + code + "\n"
    return Task(
        task_id=f"mbpp/{row['task_id']}",
        prompt=prompt,
        entry_point=function.name,
        tests=tuple(tests),
        seen_tests=(tests[0],),
        test_setup=test_setup,
        reference=reference,
        source="mbpp",
        description=row["text"],
        metadata={"challenge_tests": [_normalise(t) for t in row["challenge_test_list"]]},
    )


def _normalise(source: str) -> str:
    return source.replace("\r\n", "\n").strip()


def _entry_function(module: ast.Module, first_test: str) -> ast.FunctionDef:
    """The function of the reference code that the first test calls (outermost call first)."""
    defined = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(ast.parse(first_test)):  # breadth first: `set(f(x))` finds `f`
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in defined:
                return defined[node.func.id]
    raise ValueError(f"the first test calls no function of the reference code: {first_test!r}")


def _imports(module: ast.Module) -> str:
    imports = [n for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "".join(ast.unparse(n) + "\n" for n in imports) + ("\n" if imports else "")


def _supports(module: ast.Module, tests: list[str]) -> str:
    """Classes the tests construct inputs with: part of the interface, not of the answer."""
    used = {n.id for test in tests for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Name)}
    classes = [n for n in module.body if isinstance(n, ast.ClassDef) and n.name in used]
    return "".join(ast.unparse(n) + "\n\n" for n in classes)


def _header(function: ast.FunctionDef) -> str:
    bare = copy.copy(function)
    bare.body = [ast.Pass()]
    return ast.unparse(bare).removesuffix("pass").rstrip() + "\n"


def _docstring(text: str, first_test: str) -> str:
    body = f"{text.strip()}\n    {first_test}\n    "
    quote = "'''" if '"""' in body else '"""'
    prefix = "r" if "\\" in body else ""  # shown to the model exactly as written
    return f"    {prefix}{quote}{body}{quote}\n"


def _self_contained(function: ast.FunctionDef, module: ast.Module) -> bool:
    """Does the function need nothing from the module but its imports (which the prompt has)?"""
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in module.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    local = {function.name} | {a.arg for a in ast.walk(function) if isinstance(a, ast.arg)}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            local.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            local.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            local.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            return False
    loaded = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    return loaded <= local | imported | set(dir(builtins))


def _body(function: ast.FunctionDef) -> str:
    # Re-indented by unparsing the whole function: MBPP mixes tabs and spaces, the prompt uses 4.
    bare = copy.copy(function)
    bare.decorator_list = []
    return ast.unparse(bare).split("\n", 1)[1] + "\n"
