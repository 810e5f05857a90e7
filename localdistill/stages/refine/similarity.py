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

`is_copy`: the refinement is at least COPY_SIMILARITY like the guide and closer to the guide than
to the student's attempt (when the attempt and the guide are themselves near-identical, being
close to the guide is not copying).
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


def similarity(a: str, b: str) -> float:
    """1.0 for the same code, towards 0.0 for unrelated code (see the module docstring)."""
    ta, tb = normalised_tokens(a), normalised_tokens(b)
    if not ta and not tb:
        return 1.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def is_copy(refinement: str, guide: str | None, attempt: str) -> bool:
    """Whether `refinement` is the guide copied out rather than the attempt corrected."""
    if not guide:
        return False
    to_guide = similarity(refinement, guide)
    return to_guide >= COPY_SIMILARITY and to_guide > similarity(refinement, attempt)
