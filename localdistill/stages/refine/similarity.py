"""How close two programs are: the measure of personalisation.

A personalised refinement should read like the student's own code, corrected; a refinement that
is the guide (the correct solution the teacher was shown) copied out teaches the student nothing
about its own mistakes. Both are judged with one number:

    similarity(a, b) = 2 * M / (|A| + |B|)

where A and B are the token sequences of the two programs after comments, docstrings and layout
are removed (`ast.unparse`; a program that does not parse is tokenised as written), and M is the
number of tokens difflib's longest-matching-blocks alignment pairs up (`SequenceMatcher.ratio`,
autojunk off). 1.0 is the same code; names count, so renaming the student's variables moves the
code away from the student. Tokens rather than characters, so a long name weighs as much as a
short one; tokens rather than AST nodes, so a program that does not parse still gets a value.

Copies and personalisation are judged on what the teacher wrote, not on the whole program
(`written_tokens`): the body of the task's function without its header and docstring, followed by
the program's own functions, classes and constants that body uses, transitively. The lines a
refinement keeps from the attempt around the code (imports, the header, a docstring, example calls
at the end) are not what the teacher wrote: measured on whole programs they made a refinement whose
body is the guide's, token for token, count as closer to the attempt than a copy may be.

`is_copy`: what the refinement wrote is at least COPY_SIMILARITY like what the guide wrote and
closer to it than to the attempt's (when the attempt and the guide are themselves near-identical,
being close to the guide is not copying). `is_personalised`: what the refinement wrote is closer
to the attempt's than a correct solution written without the attempt (the guide) is; the refine
stage counts a verified refinement personalised only when it is not a copy too.

`similarity` on whole programs still picks, among a strategy's verified samples, the one closest
to the attempt (the kept runs' choice; it counts the student's own framing as its style).
"""

from __future__ import annotations

import ast
import difflib
import re

COPY_SIMILARITY = 0.95
_TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\S")


def normalised_tokens(code: str) -> list[str]:
    """The tokens of `code` without comments, docstrings and layout."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        text = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
    else:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        try:
            text = ast.unparse(tree)
        except (ValueError, RecursionError):
            text = code
    return _TOKEN.findall(text)


def written_tokens(code: str, entry: str | None) -> list[str]:
    """The tokens of what `code` writes for its function `entry`: its body (no header, no
    docstring), then the body of each of the program's own top-level functions it uses and the
    whole of each class or constant it uses, transitively, in the program's order. Imports and
    anything else at the top level are left out. Code that does not parse, or defines no `entry`,
    is measured whole (`normalised_tokens`)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return normalised_tokens(code)
    defined: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined.setdefault(name.id, node)
    if entry is None or not isinstance(defined.get(entry), (ast.FunctionDef,
                                                            ast.AsyncFunctionDef)):
        return normalised_tokens(code)
    used, queue = [defined[entry]], [defined[entry]]
    while queue:
        for name in ast.walk(queue.pop()):
            node = defined.get(name.id) if isinstance(name, ast.Name) else None
            if node is not None and all(node is not u for u in used):
                used.append(node)
                queue.append(node)
    order = {id(node): i for i, node in enumerate(tree.body)}
    helpers = sorted(used[1:], key=lambda node: order[id(node)])
    tokens: list[str] = []
    for node in [used[0], *helpers]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = _without_docstring(node.body)
            tokens += normalised_tokens(_unparse(ast.Module(body=body, type_ignores=[])))
        else:
            tokens += normalised_tokens(_unparse(node))
    return tokens


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[1:]
    return body


def _unparse(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except (ValueError, RecursionError):
        return ""


def _ratio(ta: list[str], tb: list[str]) -> float:
    if not ta and not tb:
        return 1.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def written_similarity(a: str, b: str, entry: str | None) -> float:
    """`similarity` of what two programs write for their function `entry` (`written_tokens`)."""
    return _ratio(written_tokens(a, entry), written_tokens(b, entry))


def similarity(a: str, b: str) -> float:
    """1.0 for the same code, towards 0.0 for unrelated code (see the module docstring)."""
    return _ratio(normalised_tokens(a), normalised_tokens(b))


def is_copy(refinement: str, guide: str | None, attempt: str, entry: str | None) -> bool:
    """Whether `refinement` is the guide copied out rather than the attempt corrected."""
    if not guide:
        return False
    to_guide = written_similarity(refinement, guide, entry)
    return to_guide >= COPY_SIMILARITY and to_guide > written_similarity(refinement, attempt,
                                                                         entry)


def is_personalised(refinement: str, baseline: str, attempt: str, entry: str | None) -> bool:
    """Whether what `refinement` writes is closer to what the attempt wrote than a correct
    solution written without the attempt (`baseline`: the guide, or the reference) is."""
    return (written_similarity(refinement, attempt, entry)
            > written_similarity(baseline, attempt, entry))
