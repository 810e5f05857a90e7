"""Errors raised while reading tasks: one line each, saying where, what, and what was expected."""

from __future__ import annotations

import re

from localdistill.errors import BadInput

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(\[\d+\])?")  # task_id, tests[3], ...


class TaskFileError(BadInput):
    """A task file is malformed. The message reads `<file>:<line>: <field>: <problem>`."""

    def __init__(self, path: object, line: int, field: str, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        # A field is named by the file: quoted when it is not a plain name (a newline in it
        # would break the one line)
        shown = field if _PLAIN.fullmatch(field) else repr(field)
        super().__init__(f"{self.path}:{line}: {shown}: {problem}")


class TaskSpecError(BadInput):
    """A task spec (`humaneval`, `mbpp:test=PATH`, a file or a directory) names nothing loadable."""
