"""Errors raised while reading tasks: one line each, saying where, what, and what was expected."""

from __future__ import annotations


class TaskFileError(ValueError):
    """A task file is malformed. The message reads `<file>:<line>: <field>: <problem>`."""

    def __init__(self, path: object, line: int, field: str, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {field}: {problem}")


class TaskSpecError(ValueError):
    """A task spec (`humaneval`, `mbpp:test=PATH`, a file or a directory) names nothing loadable."""
