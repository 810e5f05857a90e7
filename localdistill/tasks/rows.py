"""Reading the rows of a benchmark's JSONL file (MBPP, HumanEval, Code-Alpaca), checked.

Each problem stops the reading with one TaskFileError naming the file, the line and the field:
bytes that are not UTF-8, a line that is not a JSON object, a field missing or of the wrong type.
"""

from __future__ import annotations

import ast
import gzip
import json
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.tasks.errors import TaskFileError

Check = tuple[Callable[[object], bool], str]  # (is the value right?, what is expected)

TEXT: Check = (lambda v: isinstance(v, str), "a string")
NAME: Check = (lambda v: isinstance(v, str) and v.isidentifier(), "a Python function name")
INTEGER: Check = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
TEXTS: Check = (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
                "a list of strings")


def json_rows(path: Path | str) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every non-blank line of a JSONL file (gzip-compressed if .gz)."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise TaskFileError(path, 1, "file", f"not a whole gzip file ({error})") from None
    for number, line in text_lines(path, data):
        try:
            row = json.loads(line)
        except ValueError as error:
            raise TaskFileError(path, number, "row", f"not valid JSON ({error})") from None
        if not isinstance(row, dict):
            raise TaskFileError(path, number, "row", "expected a JSON object")
        yield number, row


def text_lines(path: Path | str, data: bytes) -> Iterator[tuple[int, str]]:
    """(line number, text) for every non-blank line of a file's bytes, or TaskFileError at the
    first line that is not UTF-8; a byte-order mark some editors write is dropped."""
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem = f"not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
            raise TaskFileError(path, number, "row", problem + "; save the file as UTF-8") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        if line.strip():
            yield number, line


def check_fields(path: Path | str, number: int, row: dict, fields: dict[str, Check],
                 kind: str) -> None:
    """Every field present and of its type, or TaskFileError saying what a `kind` row holds."""
    for name, (check, expected) in fields.items():
        if name not in row:
            raise TaskFileError(path, number, name,
                                f"missing (a {kind} row has {', '.join(fields)})")
        if not check(row[name]):
            raise TaskFileError(path, number, name, f"expected {expected}, got {row[name]!r:.60}")


class RowError(BadInput):
    """A row that cannot become a task; the loader adds the file and the line."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def parse(source: str, field: str) -> ast.Module:
    """`source` parsed, or RowError naming `field`."""
    try:
        with warnings.catch_warnings():  # benchmark code has regexes like '\d' in plain strings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        where = f" at line {error.lineno}" if getattr(error, "lineno", None) else ""
        message = getattr(error, "msg", None) or str(error) or type(error).__name__
        raise RowError(field, f"not valid Python ({message}{where})") from None
