"""Seen tests from the examples in a prompt's docstring: what a model may look at before it codes.

HumanEval docstrings give examples in many hands. Each style recognised here becomes
`assert <call> == <literal>`:

    >>> f(1, 2)                 doctest: the next lines hold the repr (none: the call returns None)
    3
    f(1, 2) == 3                also ==>, =>, ->, ➞, =, returns, should return, # returns, # =>;
    f([1, 2]) == 1 + 2 = 3      a worked sum keeps its final value
    For x = 1, y = 2 the output should be 3
    Input: x = 1, y = 2         (or positional: `Input: 1, 2`)
    Output: 3

An example is kept only when it is self-contained: the actual side is a call that reaches the
entry point and names nothing but it and builtins, and the expected side is a Python literal.
A docstring that defines the function by a recurrence (`fib4(n) -> fib4(n-1) + ...`) writes its
terms in the same style as examples, so there only the doctest (`>>>`) examples are used.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize

# Longest first, so that `==>` is not read as `==` followed by `>`.
_SEPARATORS = (
    "should return",
    "# returns",
    "# =>",
    "==>",
    "==",
    "=>",
    "->",
    "➞",
    "returns",
    "=",
)
_PREFIXES = {"", ">>>", "*", "-", "for", "assert"}
_BUILTINS = frozenset(dir(builtins))
_FOR_THE_OUTPUT = re.compile(
    r"^for (?P<args>.+?),?\s+the (?:output|result) should be (?P<expected>.+)$", re.IGNORECASE
)
_JOIN_LIMIT = 8  # lines a call written across several lines may span


def docstring_examples(prompt: str, entry_point: str) -> tuple[str, ...]:
    """The seen tests in the docstring of `entry_point` in `prompt`, in order, deduplicated."""
    function = _entry_function(prompt, entry_point)
    if function is None:
        return ()
    docstring = _docstring(function)
    params = [a.arg for a in function.args.posonlyargs + function.args.args]
    lines = [line.strip() for line in docstring.splitlines()]
    recurrence = _defines_recurrence(lines, entry_point)
    tests: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(">>>"):
            test = _doctest(lines, i, entry_point)
        elif recurrence:
            test = None
        else:
            test = (
                _inline(lines, i, entry_point)
                or _for_the_output(line, entry_point, params)
                or _input_output(lines, i, entry_point, params)
            )
        if test is not None and test not in tests:
            tests.append(test)
    return tuple(tests)


def _entry_function(prompt: str, entry_point: str) -> ast.FunctionDef | None:
    try:
        module = ast.parse(prompt)
    except SyntaxError:
        return None
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            return node
    return None


def _docstring(function: ast.FunctionDef) -> str:
    # Not ast.get_docstring: some prompts put an import before the docstring.
    for node in function.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                return node.value.value
    return ""


def _defines_recurrence(lines: list[str], entry_point: str) -> bool:
    name = re.escape(entry_point)
    pattern = re.compile(rf"(?<![\w.]){name}\(\s*[A-Za-z_]\w*\s*\)\s*(==|=|->|=>|➞)")
    return any(pattern.search(line) for line in lines)


def _doctest(lines: list[str], i: int, entry_point: str) -> str | None:
    source = lines[i][3:].strip()
    inline = _inline([source], 0, entry_point)
    if inline is not None:  # `>>> f(x) == y`: an example written as a doctest
        return inline
    output = []
    for line in lines[i + 1 :]:
        if not line or line.startswith(">>>"):
            break
        output.append(line)
    return _assertion(source, " ".join(output) or "None", entry_point)


def _inline(lines: list[str], i: int, entry_point: str) -> str | None:
    match = re.search(rf"(?<![\w.]){re.escape(entry_point)}\(", lines[i])
    if match is None or lines[i][: match.start()].strip().lower() not in _PREFIXES:
        return None
    text = "\n".join([lines[i][match.start() :], *lines[i + 1 : i + _JOIN_LIMIT]])
    end = _call_end(text)
    if end is None:
        return None
    rest = text[end:].split("\n", 1)[0].strip()
    for separator in _SEPARATORS:
        if rest.startswith(separator):
            return _assertion(text[:end], rest[len(separator) :], entry_point)
    return None


def _for_the_output(line: str, entry_point: str, params: list[str]) -> str | None:
    match = _FOR_THE_OUTPUT.match(line)
    if match is None:
        return None
    call = _call_from_arguments(match["args"], entry_point, params)
    return None if call is None else _assertion(call, match["expected"], entry_point)


def _input_output(lines: list[str], i: int, entry_point: str, params: list[str]) -> str | None:
    if not lines[i].startswith("Input:"):
        return None
    arguments = [lines[i].removeprefix("Input:")]
    for line in lines[i + 1 :]:
        if line.startswith("Output:"):
            call = _call_from_arguments(" ".join(arguments), entry_point, params)
            expected = line.removeprefix("Output:")
            return None if call is None else _assertion(call, expected, entry_point)
        if not line:
            return None
        arguments.append(line)
    return None


def _call_end(text: str) -> int | None:
    """Offset just past the parenthesis that closes the call `text` starts with."""
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    depth = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth -= 1
                if depth == 0:
                    row, col = token.end
                    return offsets[row - 1] + col
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _call_from_arguments(arguments: str, entry_point: str, params: list[str]) -> str | None:
    """`x = 1, y = [2]` or `1, [2]` -> `f(1, [2])`, when they fit the signature exactly."""
    parts = arguments.strip().split(",")
    while parts:  # `N = 1000, the sum of digits will be 1`: drop trailing prose
        try:
            call = ast.parse(f"_({','.join(parts)})", mode="eval").body
        except SyntaxError:
            parts.pop()
            continue
        assert isinstance(call, ast.Call)
        if call.keywords and not call.args:
            given = {k.arg: k.value for k in call.keywords}
            if set(given) != set(params):
                return None
            values = [given[name] for name in params]
        elif len(call.args) == len(params) and not call.keywords:
            values = call.args
        else:
            return None
        return f"{entry_point}({', '.join(ast.unparse(v) for v in values)})"
    return None


def _assertion(actual: str, expected: str, entry_point: str) -> str | None:
    try:
        actual_node = ast.parse(actual.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(actual_node, ast.Call) or not _self_contained(actual_node, entry_point):
        return None
    expected_node = _expected(expected)
    if expected_node is None:
        return None
    return f"assert {ast.unparse(actual_node)} == {ast.unparse(expected_node)}"


def _self_contained(node: ast.AST, entry_point: str) -> bool:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return entry_point in names and names <= _BUILTINS | {entry_point}


def _expected(text: str) -> ast.expr | None:
    """The literal an example promises, or None when it does not promise one."""
    text = text.strip()
    text = {"true": "True", "false": "False"}.get(text, text)
    node = _literal(text.removesuffix(".")) or _literal(text)
    if node is None and " = " in text:  # a worked sum: `1 + 9 + 0 + 0 = 10`
        work, _, result = text.rpartition(" = ")
        node = _literal(result.removesuffix("."))
        if node is None or not _is_arithmetic(work):
            return None
    # `("Venus")` is written like a tuple but is a string: too ambiguous to judge by.
    if node is not None and text.startswith("(") and not isinstance(node, ast.Tuple):
        return None
    return node


def _literal(text: str) -> ast.expr | None:
    try:
        node = ast.parse(text, mode="eval").body
        ast.literal_eval(node)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    return node


def _is_arithmetic(text: str) -> bool:
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    allowed = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    return all(isinstance(n, allowed) for n in ast.walk(node))
