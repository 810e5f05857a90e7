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
TASK_SKIPPED = "task skipped"  # a good test of a task left with too few


@dataclass(frozen=True)
class Proposal:
    """The calls found in one teacher answer."""

    calls: tuple[str, ...]  # `f(<literal args>)`, normalised, distinct, at most `count`
    found: int  # calls of the function in the answer, any arguments
    dropped: Counter[str]  # reason -> calls not kept (found = len(calls) + sum(dropped))


def parse_calls(answer: str, entry_point: str, count: int) -> Proposal:
    """The calls `entry_point(<literal args>)` a teacher's answer proposes, in order."""
    found, calls, dropped = 0, [], Counter()
    for segment in _code_segments(answer[:MAX_ANSWER_CHARS]):
        for call in _calls_in(segment, entry_point):
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


def _calls_in(code: str, entry_point: str) -> Iterator[str | None]:
    """Each call of `entry_point` (not a method, not its `def`): its normalised source when all
    its arguments are literals, else None."""
    start = re.compile(rf"(?P<define>\bdef\s+)?(?<![\w.]){re.escape(entry_point)}\s*\(")
    for number, match in enumerate(start.finditer(code)):
        if number >= MAX_CALLS:
            return
        if match["define"]:
            continue
        call = _call_at(code[match.start() :])
        if call is None:
            continue  # not a call (cut short, or a syntax error): no input proposed
        yield _literal_call(call, entry_point)


def _call_at(code: str) -> ast.Call | None:
    """The call expression `code` starts with: up to its closing parenthesis (found by tokens, so
    parentheses in strings do not count)."""
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
                return node if isinstance(node, ast.Call) else None
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return None


def _literal_call(call: ast.Call, entry_point: str) -> str | None:
    arguments = [*call.args, *(k.value for k in call.keywords)]
    if any(k.arg is None for k in call.keywords) or any(
        isinstance(a, ast.Starred) for a in call.args
    ):
        return None
    for argument in arguments:
        try:
            ast.literal_eval(argument)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return ast.unparse(ast.Call(ast.Name(entry_point, ast.Load()), call.args, call.keywords))
