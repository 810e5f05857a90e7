"""Judging outside the sandbox: how each test is run, and what its outcome and feedback are.

A test `assert f(x) == <literal>` becomes a *value* test: the sandbox only evaluates `f(x)` and
sends the value back as plain data; the expected literal never enters the sandbox, and the
comparison happens here, where untrusted code cannot reach it. `assert f(x) == expr` becomes a
*compare* test (both sides are evaluated in the sandbox, compared here). Anything else is an *exec*
test whose success the sandbox reports.

Feedback, the text the teacher reads for the first failing test (the PERsD format):

    AssertionError
    INPUT: <the arguments of the call>
    OUTPUT: <what the function returned>
    EXPECTED: <the expected value>

an error: `<ExceptionType>: <message>` followed by `INPUT: ...`; a timeout:
`Timeout: the test did not finish within <s> s` followed by `INPUT: ...`.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

MAX_REPR = 300
# The first line of a test generated from the reference (differential.py): its expected value is
# the reference's, so floats are compared within a tolerance, not exactly.
GENERATED = "# localdistill: a generated input, checked against the reference\n"
REL_TOL, ABS_TOL = 1e-6, 1e-9

_MISSING = object()


@dataclass(frozen=True)
class TestPlan:
    source: str  # the test as written
    kind: str  # "value" | "compare" | "exec"
    expr: str = ""  # evaluated in the sandbox (value, compare)
    expected_expr: str = ""  # compare: the right-hand side, evaluated in the sandbox
    expected: Any = _MISSING  # value: known only to the parent
    truth: bool | None = None  # value tests of the form `assert f(x)` / `assert not f(x)`
    inputs: str = ""  # the INPUT line of the feedback
    close: bool = False  # floats compared within a tolerance (generated tests, differential.py)
    trace: bool = False  # value: report the lines of the program the call ran (its path)

    @property
    def has_expected(self) -> bool:
        """Whether the parent holds the expected value (value tests against a literal)."""
        return self.expected is not _MISSING

    def wire(self) -> dict:
        """What the sandbox receives for this test (never the expected value)."""
        if self.kind == "value":
            return {"kind": "value", "expr": self.expr, **({"trace": True} if self.trace else {})}
        if self.kind == "compare":
            return {"kind": "compare", "expr": self.expr, "expected": self.expected_expr}
        return {"kind": "exec", "code": self.source}


@functools.lru_cache(maxsize=65536)
def plan_test(source: str, entry_point: str) -> TestPlan:
    """Decide how a test runs; tests that do not parse become exec tests (and fail as such)."""
    try:
        return _plan(source, entry_point)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        # Too deep or too big for the parser (a hostile task file, a model's garbage test): it
        # fails in the sandbox, where compiling it raises the same error, never here.
        return TestPlan(source, "exec")


def _plan(source: str, entry_point: str) -> TestPlan:
    module = ast.parse(source)
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        return TestPlan(source, "exec", inputs=_inputs(module, entry_point))
    test = module.body[0].test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        left, right = test.left, test.comparators[0]
        expected = _literal(right)
        if expected is _MISSING and _literal(left) is not _MISSING:
            left, right, expected = right, left, _literal(left)
        if expected is not _MISSING:
            return TestPlan(
                source,
                "value",
                expr=ast.unparse(left),
                expected=expected,
                inputs=_inputs(left, entry_point),
                close=source.startswith(GENERATED),
            )
        return TestPlan(
            source,
            "compare",
            expr=ast.unparse(left),
            expected_expr=ast.unparse(right),
            inputs=_inputs(left, entry_point),
        )
    truth = True
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test, truth = test.operand, False
    # Only a direct call of the function under test: `assert math.isclose(f(x), y)` must stay an
    # exec test, or a program could judge itself through a patched helper.
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name)
            and test.func.id == entry_point):
        return TestPlan(
            source, "value", expr=ast.unparse(test), truth=truth, inputs=_inputs(test, entry_point)
        )
    return TestPlan(source, "exec", inputs=_inputs(test, entry_point))


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _calls(node: ast.AST, name: str) -> ast.Call | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name:
            return sub
    return None


def _inputs(node: ast.AST, entry_point: str) -> str:
    call = _calls(node, entry_point)
    if call is None:
        return ""
    parts = [ast.unparse(a) for a in call.args]
    parts += [
        f"{k.arg}={ast.unparse(k.value)}" if k.arg else f"**{ast.unparse(k.value)}"
        for k in call.keywords
    ]
    return _clip(", ".join(parts))


class ProtocolError(ValueError):
    """The sandbox sent something that is not a well-formed encoded value."""


def decode(data: Any) -> Any:
    """Inverse of runner.encode; anything malformed raises ProtocolError."""
    try:
        return _decode(data)
    except ProtocolError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the sandbox sent, it is not our crash
        raise ProtocolError(f"malformed value from the sandbox: {type(e).__name__}") from None


def _decode(data: Any) -> Any:
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if not isinstance(data, dict) or len(data) != 1:
        raise ProtocolError("malformed value from the sandbox")
    ((tag, body),) = data.items()
    match tag:
        case "list":
            return [_decode(v) for v in body]
        case "tuple":
            return tuple(_decode(v) for v in body)
        case "set":
            return {_decode(v) for v in body}
        case "frozenset":
            return frozenset(_decode(v) for v in body)
        case "dict":
            return {_decode(k): _decode(v) for k, v in body}
        case "int" if isinstance(body, str) and len(body) < 20_000:
            return int(body, 16)
        case "float" if body in ("nan", "inf", "-inf"):
            return float(body)
        case "bytes" if isinstance(body, str):
            return bytes.fromhex(body)
        case "complex":
            return complex(_decode(body[0]), _decode(body[1]))
        case "decimal" if isinstance(body, str):
            return Decimal(body)
        case "fraction":
            return Fraction(_decode(body[0]), _decode(body[1]))
    raise ProtocolError(f"unknown value tag {tag!r} from the sandbox")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "..."


def show(value: Any) -> str:
    """repr of a decoded (plain, trusted) value, bounded."""
    try:
        return _clip(repr(value))
    except ValueError:  # ints past Python's str-conversion limit
        return "<an integer too large to print>"
    except Exception:  # noqa: BLE001 - e.g. a Decimal signalling NaN
        return "<a value that cannot be shown>"


def equal(got: Any, expected: Any) -> bool:
    try:
        return bool(got == expected)
    except Exception:  # noqa: BLE001 - deep nesting, Decimal('sNaN')...: not equal
        return False


def close(got: Any, expected: Any) -> bool:
    """`equal`, but numbers where either side is a float match within REL_TOL / ABS_TOL, all the
    way down lists, tuples and dict values."""
    try:
        return _close(got, expected)
    except Exception:  # noqa: BLE001 - as `equal`
        return False


def _close(got: Any, expected: Any) -> bool:
    numbers = (int, float)
    if (isinstance(got, numbers) and isinstance(expected, numbers) and not isinstance(got, bool)
            and not isinstance(expected, bool) and float in (type(got), type(expected))):
        return math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL) or got == expected
    if isinstance(got, (list, tuple)) and type(got) is type(expected):
        return len(got) == len(expected) and all(
            _close(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_close(got[k], expected[k]) for k in got)
    return bool(got == expected)


def wrong_value(plan: TestPlan, output: str, expected: str) -> str:
    return "\n".join(
        ["AssertionError", *_input_line(plan), f"OUTPUT: {output}", f"EXPECTED: {expected}"]
    )


def error(plan: TestPlan, description: str) -> str:
    return "\n".join([description, *_input_line(plan)])


def timeout(plan: TestPlan, seconds: float) -> str:
    return "\n".join([f"Timeout: the test did not finish within {seconds:g} s", *_input_line(plan)])


def _input_line(plan: TestPlan) -> list[str]:
    if plan.inputs:
        return [f"INPUT: {plan.inputs}"]
    return [f"TEST: {_clip(plan.source.strip())}"]
