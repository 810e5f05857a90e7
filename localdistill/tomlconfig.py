"""TOML tables into typed dataclasses: the one checker of the run config (CONFIG.toml) and of
models.toml.

`typed(kind, table)` checks every key of a table against the dataclass's fields and their type
hints (int, float, str, bool, `X | None`, `tuple[X, ...]`, dict, a nested dataclass), takes what
TOML cannot say exactly (an integer where a number is declared, a list for a tuple, one string for
a list of strings) and builds the dataclass, whose own checks then run. What is wrong is raised as
a `Mismatch` naming the key (dotted inside a nested table); each file's loader words it in its
file's terms (experiment.py: `[train] rank = 'four': ...`, backends/models_toml.py:
`models.m.context_length: ...`). `same_as` declares a field as another dataclass does, so that a
setting two tables share has one default and one help.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Literal

from localdistill.errors import BadInput

Problem = Literal["not a table", "unknown key", "wrong type", "missing key", "refused"]


class Mismatch(BadInput):
    """A table that is not what its dataclass declares. `key`: the key at fault, dotted inside a
    nested table ("" for the table itself); `expected`: the types its value may have; `help`:
    the field's help; `known`: the keys the table may have; `error`: what the dataclass's own
    check refused ("refused")."""

    def __init__(self, problem: Problem, key: str = "", value: object = None,
                 expected: tuple[type, ...] = (), help: str = "", known: tuple[str, ...] = (),
                 error: Exception | None = None) -> None:
        super().__init__(f"{key or 'table'}: {problem}" + (f" ({error})" if error else ""))
        self.problem, self.key, self.value, self.expected = problem, key, value, expected
        self.help, self.known, self.error = help, known, error

    def within(self, key: str) -> Mismatch:
        """The same mismatch, seen from the table that holds this one under `key`."""
        return Mismatch(self.problem, f"{key}.{self.key}" if self.key else key, self.value,
                        self.expected, self.help, self.known, self.error)


def typed(kind: type, table: object, skip: tuple[str, ...] = (), given: dict | None = None):
    """`kind(**given, **table)`, every key of `table` checked against the dataclass's fields
    (but those in `skip`, which the file does not set) and their types."""
    if not isinstance(table, dict):
        raise Mismatch("not a table")
    fields = {f.name: f for f in dataclasses.fields(kind) if f.name not in skip}
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise Mismatch("unknown key", key, value, known=tuple(fields))
        values[key] = _checked(key, value, fields[key], hints[key])
    given = given or {}
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and name not in values
                and name not in given]
    if required:
        raise Mismatch("missing key", required[0], help=help_of(fields[required[0]]))
    try:
        return kind(**{**given, **values})
    except ValueError as e:
        raise Mismatch("refused", error=e) from None


def _checked(key: str, value: object, spec: dataclasses.Field, hint) -> object:
    """`value` as the field's type `hint` has it, or Mismatch saying what was expected."""
    options = types_of(hint)
    for option in options:
        if dataclasses.is_dataclass(option):
            if isinstance(value, dict):
                try:
                    return typed(option, value)
                except Mismatch as inner:
                    raise inner.within(key) from None
        elif option is dict or typing.get_origin(option) is dict:
            if isinstance(value, dict):
                return dict(value)
        elif typing.get_origin(option) is tuple:
            item = typing.get_args(option)[0]
            items = [value] if isinstance(value, str) and item is str else value
            if isinstance(items, list) and all(_is(v, item) for v in items):
                return tuple(items)
        elif _is(value, option):
            return float(value) if option is float else value
    raise Mismatch("wrong type", key, value, options, help_of(spec))


def same_as(config: type, name: str, default: object = dataclasses.MISSING) -> typing.Any:
    """A dataclass field declared as `config` declares `name`: its default (unless `default` is
    given) and its help, so that a setting two tables share is written once."""
    spec = next(f for f in dataclasses.fields(config) if f.name == name)
    if default is dataclasses.MISSING:
        return dataclasses.field(default=spec.default, default_factory=spec.default_factory,
                                 metadata=spec.metadata)
    return dataclasses.field(default=default, metadata=spec.metadata)


def types_of(hint) -> tuple:
    """The types a value of `hint` may have, None left out (`int | None` -> (int,))."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(o for o in options if o is not type(None))


def help_of(spec: dataclasses.Field) -> str:
    return spec.metadata.get("help", "")


def _is(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def type_name(kind) -> str:
    """A type in words, as CONFIG.toml's messages and reference (docs/run.md) name it."""
    if typing.get_origin(kind) is tuple:
        return f"a list of {typing.get_args(kind)[0].__name__}"
    if kind is dict or dataclasses.is_dataclass(kind):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        kind, str(kind))


def key_table(kind: type, skip: tuple[str, ...] = ()) -> list[str]:
    """A dataclass's keys as a markdown table: type, default, help (docs/run.md, docs/models.md)."""
    hints = typing.get_type_hints(kind)
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(kind):
        if f.name in skip:
            continue
        kind_name = " or ".join(type_name(t) for t in types_of(hints[f.name]))
        if f.default is not dataclasses.MISSING:
            default = "-" if f.default is None else f"`{toml_value(f.default)}`"
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            default = f"`{toml_value(value)}`" if not dataclasses.is_dataclass(value) else "-"
        else:
            default = "required"
        lines.append(f"| `{f.name}` | {kind_name} | {default} | {help_of(f)} |")
    return lines


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)
