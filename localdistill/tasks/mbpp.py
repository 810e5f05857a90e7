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
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.tasks.benchmark import Benchmark
from localdistill.tasks.errors import TaskFileError
from localdistill.tasks.record import Task
from localdistill.tasks.rows import INTEGER, TEXT, TEXTS, RowError, check_fields, json_rows, parse

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
        raise BadInput(
            f"unknown MBPP split {split!r}: expected one of {', '.join(MBPP_SPLITS)}, all"
        )
    rows = []
    for number, row in json_rows(path):
        check_fields(path, number, row, _FIELDS, "MBPP")
        if split == "all" or row["task_id"] in MBPP_SPLITS[split]:
            rows.append((number, row))
    tasks = []
    for number, row in sorted(rows, key=lambda numbered: numbered[1]["task_id"]):
        try:
            tasks.append(mbpp_task(row))
        except RowError as error:
            raise TaskFileError(path, number, error.field, error.problem) from None
    return tasks


_FIELDS = {"task_id": INTEGER, "text": TEXT, "code": TEXT, "test_list": TEXTS,
           "test_setup_code": TEXT, "challenge_test_list": TEXTS}

BENCHMARK = Benchmark(
    "mbpp", "MBPP", "974 short Python problems, three hidden tests each",
    load=load_mbpp, splits=(*MBPP_SPLITS, "all"), default_split="test", data_file="mbpp.jsonl",
    decontaminate=("test",),  # the split it is evaluated on; train and validation are for training
)


def mbpp_task(row: dict) -> Task:
    """One original MBPP row (task_id, text, code, test_list, test_setup_code) as a Task;
    RowError when its code or tests are not Python or do not fit together."""
    code = _normalise(row["code"])
    module = parse(code, "code")
    tests = [_normalise(test) for test in row["test_list"]]
    if not tests:
        raise RowError("test_list", "empty; expected the problem's tests")
    test_modules = [parse(test, f"test_list[{i}]") for i, test in enumerate(tests)]
    test_setup = _normalise(row["test_setup_code"])
    function = _entry_function(module, test_modules[0])
    prompt = "".join(
        [
            _imports(module),
            _supports(module, [*test_modules, parse(test_setup, "test_setup_code")]),
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


def _entry_function(module: ast.Module, first_test: ast.Module) -> ast.FunctionDef:
    """The function of the reference code that the first test calls (outermost call first)."""
    defined = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(first_test):  # breadth first: `set(f(x))` finds `f`
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in defined:
                return defined[node.func.id]
    raise RowError("test_list[0]", "calls no function of the reference code (`code`)")


def _imports(module: ast.Module) -> str:
    imports = [n for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "".join(ast.unparse(n) + "\n" for n in imports) + ("\n" if imports else "")


def _supports(module: ast.Module, tests: list[ast.Module]) -> str:
    """Classes the tests construct inputs with: part of the interface, not of the answer."""
    used = {n.id for test in tests for n in ast.walk(test) if isinstance(n, ast.Name)}
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
