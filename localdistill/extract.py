"""Extract stage: turn a model's chat answer into the completion appended to a task's prompt.

Chat models wrap code in prose and Markdown fences, repeat the prompt, add example calls and
tests, or write only the function's body. `extract_completion(answer, task)` keeps the solution:

* the code is the fenced block that defines `task.entry_point` (else the longest block that
  parses); without fences, the text from its first line that looks like code, with trailing prose
  dropped line by line until it parses;
* code that defines the entry point loses its demonstrations (`if __name__ == "__main__":`,
  top-level calls and prints, asserts, loops, `test_*` functions) and follows the prompt on new
  lines, redefining the function the prompt only declares;
* code that does not is taken as the function's body and indented under the prompt's `def` line.

It never raises: an answer with nothing usable becomes its own text as the body, which fails in
the sandbox with honest feedback.
"""

from __future__ import annotations

import ast
import re
import textwrap

from localdistill.tasks.record import Task

_PYTHON_FENCES = {"", "python", "python3", "py", "py3"}
_CODE_LINE = re.compile(
    r"^(?:[ \t]+\S|(?:async\s+)?def\s|class\s|import\s|from\s+[\w.]+\s+import\s|@\w"
    r"|return\b|(?:for|while|if|with|try)\b.*:\s*$|[\w.]+(?:\s*,\s*[\w.]+)*\s*=[^=])"
)
_MAX_STARTS = 30  # candidate first lines of unfenced code; bounds the work on long prose
_KEPT = (
    ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
    ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Try, ast.If,
)  # fmt: skip


def extract_completion(answer: str, task: Task) -> str:
    """The completion for `task.prompt` that `answer` (a chat model's reply) contains."""
    try:
        text = _normalise(answer)
        code = _choose_code(text, _names(task))
        if code is not None:
            completion = _completion_for(code, task)
            if completion is not None:
                return completion
    except Exception:  # noqa: BLE001 - extraction must never stop a run; fall back below
        pass
    return _as_body(answer, task)


def extract_program(answer: str, task: Task) -> str:
    """The whole program: the task's prompt followed by the extracted completion."""
    return task.program(extract_completion(answer, task))


# --- finding the code ------------------------------------------------------------------------


def _normalise(text: str) -> str:
    """Unix line endings, and leading tabs as 4 spaces so the code can sit under the prompt."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    for line in lines:
        stripped = line.lstrip(" \t")
        out.append(line[: len(line) - len(stripped)].expandtabs(4) + stripped)
    return "\n".join(out)


def _fenced_blocks(text: str) -> list[str]:
    """The contents of Python (or unlabelled) fenced blocks; an unterminated one runs to the end."""
    blocks, other, current, language = [], [], None, ""
    for line in text.split("\n"):
        fence = line.strip().startswith("```")
        if current is None and fence:
            current, language = [], line.strip()[3:].strip().lower()
        elif current is not None and fence:
            (blocks if language in _PYTHON_FENCES else other).append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        (blocks if language in _PYTHON_FENCES else other).append("\n".join(current))
    return blocks or other


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _compiles(program: str) -> bool:
    """Stricter than parsing: also catches `return` outside a function and late `__future__`."""
    try:
        compile(program, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _parsing_prefix(lines: list[str]) -> str | None:
    """The longest run of leading `lines` that parses (dedented), dropping lines from the end."""
    for end in range(len(lines), 0, -1):
        code = textwrap.dedent("\n".join(lines[:end])).strip("\n")
        if code.strip() and _parses(code):
            return "\n".join(lines[:end]).strip("\n")
    return None


def _defines(code: str, name: str) -> bool:
    """Whether `code` defines a function or class `name` at its top level."""
    tree = ast.parse(textwrap.dedent(code))
    return any(isinstance(n, _DEFINITIONS) and n.name == name for n in tree.body)


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _method(task: Task) -> str | None:
    """The method a task asks for (a mined method: its entry point is the class), or None."""
    method = (task.metadata or {}).get("method")
    return method if isinstance(method, str) and method.isidentifier() else None


def _names(task: Task) -> tuple[str, ...]:
    """What an answer defines when it answers `task`: its entry point, or a method's name."""
    method = _method(task)
    return (task.entry_point, method) if method else (task.entry_point,)


def _choose_code(text: str, names: tuple[str, ...]) -> str | None:
    blocks = [_parsing_prefix(block.split("\n")) for block in _fenced_blocks(text)]
    blocks = [b for b in blocks if b]
    if not blocks:
        lines = text.split("\n")
        starts = [i for i, line in enumerate(lines) if _CODE_LINE.match(line)]
        # Prose can look like code ("for example, this works:"): try the next candidate line.
        return next(filter(None, (_parsing_prefix(lines[i:]) for i in starts[:_MAX_STARTS])), None)
    defining = [b for b in blocks if any(_defines(b, name) for name in names)]
    # A later definition is usually the corrected one; other blocks are examples or output.
    return defining[-1] if defining else max(blocks, key=len)


# --- making the completion -------------------------------------------------------------------


def _completion_for(code: str, task: Task) -> str | None:
    if _defines(code, task.entry_point):
        solution = _drop_demonstrations(textwrap.dedent(code), task.entry_point)
        separator = "\n" if task.prompt.endswith("\n") or not task.prompt else "\n\n"
        for completion in (separator + solution + "\n", _stub(task) + "\n" + solution + "\n"):
            if _compiles(task.program(completion)):
                return completion
        return None
    method = _method(task)
    if method and _defines(code, method):  # only the method, written as a function of its own
        completion = _body(_def_body(textwrap.dedent(code), method), task)
        return completion if _compiles(task.program(completion)) else None
    completion = _body(code, task)
    return completion if _compiles(task.program(completion)) else None


def _def_body(code: str, name: str) -> str:
    """The body of the top-level function `name` in `code` (the last if several), its docstring
    left out: the prompt has one."""
    lines = code.split("\n")
    function = [n for n in ast.parse(code).body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name][-1]
    body = function.body
    if len(body) > 1 and ast.get_docstring(function, clean=False) is not None:
        body = body[1:]
    return "\n".join(lines[body[0].lineno - 1 : body[-1].end_lineno])


def _drop_demonstrations(code: str, entry_point: str) -> str:
    """Only the solution's statements: what runs at import time to show or test it is dropped."""
    lines = code.split("\n")
    kept = []
    for node in ast.parse(code).body:
        if _is_demonstration(node, entry_point):
            continue
        decorators = getattr(node, "decorator_list", [])
        first = min([node.lineno, *(d.lineno for d in decorators)])
        kept.append("\n".join(lines[first - 1 : node.end_lineno]))
    return "\n\n".join(kept)


def _is_demonstration(node: ast.stmt, entry_point: str) -> bool:
    if not isinstance(node, _KEPT):
        return True  # expressions (calls, prints), asserts, loops, with-blocks
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return True  # only legal at the top of the file, which is the prompt's
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name.startswith("test_") or node.name.startswith("Test")
    if isinstance(node, ast.If):
        return "__name__" in ast.unparse(node.test)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        # `result = f(...)` runs the solution on an example: not a constant or a helper.
        calls = [n for n in ast.walk(node.value) if isinstance(n, ast.Call)]
        return any(isinstance(c.func, ast.Name) and c.func.id == entry_point for c in calls)
    return False


def _body_indent(task: Task) -> str:
    """The indentation of the entry point's body, from its `def` line in the prompt."""
    pattern = rf"^([ \t]*)(?:async\s+)?def\s+{re.escape(_method(task) or task.entry_point)}\b"
    header = re.search(pattern, task.prompt, re.M)
    return (header.group(1).expandtabs(4) if header else "") + "    "


def _stub(task: Task) -> str:
    """A body for a prompt that ends at its `def` line, so a full redefinition can follow."""
    return ("" if task.prompt.endswith("\n") else "\n") + _body_indent(task) + "...\n"


def _body(code: str, task: Task) -> str:
    lines = code.split("\n")
    # Code that starts indented is the body; a later line at the left margin is an example after it.
    first_line = next((line for line in lines if line.strip()), "")
    first = _indent(first_line)
    if first:
        outside = [i for i, line in enumerate(lines) if line.strip() and _indent(line) < first]
        lines = lines[: outside[0]] if outside else lines
    body = textwrap.indent(textwrap.dedent("\n".join(lines)).strip("\n"), _body_indent(task))
    return ("" if task.prompt.endswith("\n") or not task.prompt else "\n") + body + "\n"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _as_body(answer: str, task: Task) -> str:
    """The answer as it is, indented as the function's body: the sandbox will say why it fails."""
    text = str(answer).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_body_indent(task) + line if line.strip() else "" for line in text.split("\n")]
    return ("" if task.prompt.endswith("\n") else "\n") + "\n".join(lines) + "\n"


def has_code(answer: str, task: Task) -> bool:
    """Whether `answer` holds any code at all (a fenced block, or lines that parse as Python)
    rather than prose only: a small teacher asked for code sometimes only explains."""
    try:
        return _choose_code(_normalise(answer), _names(task)) is not None
    except Exception:  # noqa: BLE001 - as in extract_completion: never stop a run
        return False


def shown_code(task: Task, completion: str) -> str:
    """The student's code as the teacher should read it: its own function, or the prompt's
    header with its body when it wrote only the body."""
    own = f"class {task.entry_point}" if _method(task) else f"def {task.entry_point}("
    if own in completion:
        return completion.strip("\n")
    return task.program(completion).strip("\n")


def same_code(a: str, b: str) -> bool:
    """Whether two programs are the same code (comments and layout aside)."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError):
        return " ".join(a.split()) == " ".join(b.split())
