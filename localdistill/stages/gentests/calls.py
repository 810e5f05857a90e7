"""The calls a teacher proposes as test inputs: `f(<literal args>)` found in its answer,
deduplicated and bounded (gen-tests' step 2)."""

from __future__ import annotations

import ast
import re
import tokenize
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

MAX_ANSWER_CHARS = 20_000  # of a teacher's answer searched for calls
MAX_CALL_CHARS = 1_000  # a longer call makes an unreadable test
MAX_CALLS = 200  # looked at in one block of an answer (a small model may repeat itself forever)
MAX_EXPECTED_CHARS = 1_000  # the same for the expected output's repr
MAX_NESTING = 3  # objects built in an argument: `Cls(Other(Third(1)))` at most

# Why a proposed call gives no test, in the order a call meets them.
NOT_LITERAL = "arguments not literal"
DUPLICATE = "duplicate"
OVER_COUNT = "over count"
CRASHED = "crashed the reference"
TIMED_OUT = "timed out"
NOT_DATA = "output not plain data"
NOT_DETERMINISTIC = "not deterministic"
NOT_A_LITERAL = "output repr not a literal"
FLOAT_NOISE = "float rounding noise"
TOO_LONG = "output too long"
SAME_BEHAVIOUR = "behaves as tests kept (output and path: outputs.kind)"
TASK_SKIPPED = "task skipped"  # a good test of a task left with too few


@dataclass(frozen=True)
class Proposal:
    """The calls found in one teacher answer."""

    calls: tuple[str, ...]  # `f(<literal args>)`, normalised, distinct, at most `count`
    found: int  # calls of the function in the answer, any arguments
    dropped: Counter[str]  # reason -> calls not kept (found = len(calls) + sum(dropped))


def parse_calls(answer: str, entry_point: str, count: int, method: str | None = None,
                binding: str | None = None, classes: frozenset[str] = frozenset()) -> Proposal:
    """The calls `entry_point(<literal args>)` a teacher's answer proposes, in order; for a
    method of the class `entry_point`, `Cls(<literal args>).method(<literal args>)` (`binding`
    "instance") or `Cls.method(<literal args>)` ("class"). An argument may also be an object of
    one of `classes` (those the task's program defines) built from such arguments: `Cls(...)`,
    alone or in a list, tuple, set or dict."""
    found, calls, dropped = 0, [], Counter()
    for segment in _code_segments(answer[:MAX_ANSWER_CHARS]):
        found_in = (_calls_in(segment, entry_point, classes) if method is None else
                    _method_calls_in(segment, entry_point, method, binding == "class", classes))
        for call in found_in:
            found += 1
            if call is None:
                dropped[NOT_LITERAL] += 1
            elif call in calls:
                dropped[DUPLICATE] += 1
            elif len(calls) >= count:
                dropped[OVER_COUNT] += 1
            else:
                calls.append(call)
    return Proposal(tuple(calls), found, dropped)


def _code_segments(answer: str) -> list[str]:
    """The contents of the fenced blocks (an unterminated one runs to the end), or the whole
    answer when it has no fence."""
    blocks, current = [], None
    for line in answer.split("\n"):
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks or [answer]


def _calls_in(code: str, entry_point: str, classes: frozenset[str] = frozenset()
              ) -> Iterator[str | None]:
    """Each call of `entry_point` (not a method, not its `def`): its normalised source when all
    its arguments are literals, else None."""
    start = re.compile(rf"(?P<define>\bdef\s+)?(?<![\w.]){re.escape(entry_point)}\s*\(")
    for number, match in enumerate(start.finditer(code)):
        if number >= MAX_CALLS:
            return
        if match["define"]:
            continue
        call, _ = _call_at(code[match.start() :])
        if call is None:
            continue  # not a call (cut short, or a syntax error): no input proposed
        yield _literal_call(call, entry_point, classes)


def _method_calls_in(code: str, owner: str, method: str, on_class: bool,
                     classes: frozenset[str] = frozenset()) -> Iterator[str | None]:
    """Each call of the method: `Owner(...).method(...)`, or `Owner.method(...)` `on_class`; its
    normalised source when every argument (the constructor's too) is a literal, else None."""
    name = re.escape(owner)
    start = re.compile(rf"(?<![\w.]){name}\s*\.\s*{re.escape(method)}\s*\(" if on_class
                       else rf"(?<![\w.]){name}\s*\(")
    for number, match in enumerate(start.finditer(code)):
        if number >= MAX_CALLS:
            return
        call, length = _call_at(code[match.start() :])
        if call is None:
            continue
        if on_class:
            func = ast.Attribute(ast.Name(owner, ast.Load()), method, ast.Load())
            yield _literal_call(call, func, classes)
            continue
        rest = code[match.start() + length :]
        then = re.match(rf"\s*\.\s*(?={re.escape(method)}\s*\()", rest)
        if then is None:
            continue  # the class built, but not this method called on it
        called, _ = _call_at(rest[then.end() :])
        if called is None:
            continue
        built = _literal_call(call, owner, classes)
        if built is None:
            yield None
            continue
        target = ast.Attribute(ast.parse(built, mode="eval").body, method, ast.Load())
        yield _literal_call(called, target, classes)


def _call_at(code: str) -> tuple[ast.Call | None, int]:
    """The call expression `code` starts with: up to its closing parenthesis (found by tokens, so
    parentheses in strings do not count); and how many characters of `code` it takes."""
    lines = code[:MAX_CALL_CHARS].splitlines(keepends=True)
    depth = 0
    try:
        for token in tokenize.generate_tokens(iter(lines).__next__):
            if token.type != tokenize.OP or token.string not in "()[]{}":
                continue
            depth += 1 if token.string in "([{" else -1
            if depth == 0:
                row, column = token.end
                source = "".join(lines[: row - 1]) + lines[row - 1][:column]
                node = ast.parse(source, mode="eval").body
                return (node if isinstance(node, ast.Call) else None), len(source)
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None, 0
    return None, 0


def _literal_call(call: ast.Call, function: str | ast.expr,
                  classes: frozenset[str] = frozenset()) -> str | None:
    """The call's normalised source with `function` called (a name, or a method of an object
    built by literals), when all its arguments are literals or objects of `classes` built from
    them; else None."""
    if not _plain_arguments(call, classes, 0):
        return None
    func = ast.Name(function, ast.Load()) if isinstance(function, str) else function
    return ast.unparse(ast.Call(func, call.args, call.keywords))


def _plain_arguments(call: ast.Call, classes: frozenset[str], depth: int) -> bool:
    if any(k.arg is None for k in call.keywords) or any(
            isinstance(a, ast.Starred) for a in call.args):
        return False
    return all(_buildable(a, classes, depth) for a in [*call.args,
                                                        *(k.value for k in call.keywords)])


def _buildable(node: ast.expr, classes: frozenset[str], depth: int) -> bool:
    """A literal, or an object of one of `classes` built from such values (nested at most
    MAX_NESTING deep), alone or inside a list, tuple, set or dict."""
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if not classes or depth >= MAX_NESTING:
        return False
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id in classes
                and _plain_arguments(node, classes, depth + 1))
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_buildable(e, classes, depth + 1) for e in node.elts)
    if isinstance(node, ast.Dict):
        return None not in node.keys and all(
            _buildable(part, classes, depth + 1) for part in [*node.keys, *node.values])
    return False


def state_of(call: str) -> str:
    """The expression whose value is the object's attributes after a mutating method's call."""
    built, method = split_method_call(call)
    return f"(lambda obj: (obj.{method}, vars(obj))[1])({built})"


def split_method_call(call: str) -> tuple[str, str]:
    """`Cls(a).m(b)` -> ("Cls(a)", "m(b)") (calls.parse_calls wrote it, so it has this shape)."""
    node = ast.parse(call, mode="eval").body
    method = ast.Call(ast.Name(node.func.attr, ast.Load()), node.args, node.keywords)
    return ast.unparse(node.func.value), ast.unparse(method)
