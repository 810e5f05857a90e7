"""What the reference returns for each proposed call, run twice in the sandbox, and whether that
output can be a test (gen-tests' step 3)."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from localdistill.sandbox import Limits, Value, evaluate, evaluate_again
from localdistill.sandbox.judge import equal
from localdistill.stages.gentests.calls import (
    CRASHED,
    FLOAT_NOISE,
    MAX_EXPECTED_CHARS,
    NOT_A_LITERAL,
    NOT_DATA,
    NOT_DETERMINISTIC,
    TIMED_OUT,
    TOO_LONG,
)
from localdistill.tasks.record import Task


def outputs(
    task: Task, calls: Sequence[str], limits: Limits = Limits()
) -> tuple[list[Value], list[Value]]:
    """The reference's values for the calls, from two separate sandbox runs that differ where a
    deterministic function cannot tell: the second makes the calls in reverse order (an output
    that depends on the calls before it changes) from a different heap (one that shows a memory
    address changes: id(), default reprs and hashes of objects). The first run also records
    the lines each call ran (`Value.path`: `kind` tells calls apart by it)."""
    program = task.program(task.reference or "")
    first = evaluate(program, calls, task.test_setup, limits, trace=True)  # with their paths
    return first, evaluate_again(program, calls, task.test_setup, limits)


def materialise(
    task: Task, calls: Sequence[str], first: Sequence[Value], second: Sequence[Value],
    limits: Limits = Limits(),
) -> tuple[list[str], list[Value], list[Value]]:
    """Calls whose output was not plain data in both runs are tried again as `list(call)`.

    Much Python returns iterators and generators (itertools-style libraries, most of all), and
    their items are what a test should check. A call is rewritten only when `list(call)` gives
    plain data in both runs; otherwise it keeps its first outcome (and is dropped as not data).
    The test becomes `assert list(f(...)) == [...]`: still a value test, judged outside the
    sandbox."""
    calls, first, second = list(calls), list(first), list(second)
    lazy = [i for i, (a, b) in enumerate(zip(first, second, strict=True))
            if a.status == b.status == "not_data"]
    if not lazy:
        return calls, first, second
    again_first, again_second = outputs(task, [f"list({calls[i]})" for i in lazy], limits)
    for i, a, b in zip(lazy, again_first, again_second, strict=True):
        if a.status == b.status == "ok":
            calls[i], first[i], second[i] = f"list({calls[i]})", a, b
    return calls, first, second


def judge_output(first: Value, second: Value) -> str | None:
    """Why a call whose reference gave these two values cannot be a test; None if it can."""
    statuses = {first.status, second.status}
    if statuses & {"timeout", "not_run"}:
        return TIMED_OUT
    if statuses == {"error"}:
        return CRASHED
    if statuses == {"not_data"}:
        return NOT_DATA
    if statuses != {"ok"}:
        return NOT_DETERMINISTIC
    try:
        text = repr(first.value)
    except ValueError:  # an int past Python's str-conversion limit
        return TOO_LONG
    if len(text) > MAX_EXPECTED_CHARS:
        return TOO_LONG
    if not _reads_back(text, first.value):
        return NOT_A_LITERAL
    if not _same(first.value, second.value):
        return NOT_DETERMINISTIC
    if any(_noisy(x) for x in _floats(first.value)):
        return FLOAT_NOISE
    return None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and equal(a, b)


def _reads_back(text: str, value: Any) -> bool:
    try:
        again = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return _same(again, value)


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, complex):
        yield from (value.real, value.imag)
    elif isinstance(value, dict):
        for item in value.items():
            yield from _floats(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _floats(item)


def _noisy(x: float) -> bool:
    """A float whose shortest repr is the tail of a rounding error: 0.30000000000000004,
    2.9999999999999996 (15+ significant digits with a run of zeros or nines)."""
    if not math.isfinite(x):
        return False
    digits = repr(abs(x)).split("e")[0].replace(".", "").lstrip("0")
    return len(digits) >= 15 and re.search(r"0{5,}|9{5,}", digits) is not None


def behaviour(value: Any) -> tuple:
    """What an output says, cheaply, about the path the reference took: its type; for a number
    its sign, for a bool its value; for a string or a container its size (0, 1, 2-4, 5 or more)
    and, for a container, the types of its items. Tests whose outputs agree on all of this
    exercise the function alike (ten filter strings that differ by one more option, say)."""
    if value is None or isinstance(value, bool):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return (type(value).__name__, (value > 0) - (value < 0))
    if isinstance(value, str | bytes):
        return (type(value).__name__, _size(len(value)))
    if isinstance(value, dict):
        items = {type(x).__name__ for pair in value.items() for x in pair}
        return ("dict", _size(len(value)), tuple(sorted(items)))
    if isinstance(value, list | tuple | set | frozenset):
        return (type(value).__name__, _size(len(value)),
                tuple(sorted({type(x).__name__ for x in value})))
    return (type(value).__name__,)


def kind(value: Value) -> tuple:
    """How one call exercised the reference: its output's `behaviour` and, where the run was
    traced, the lines of the program it ran (the path; two calls that take different branches
    differ here even when their outputs look alike)."""
    return (behaviour(value.value), value.path)


def _size(n: int) -> str:
    return "0" if n == 0 else "1" if n == 1 else "2-4" if n < 5 else "5+"
