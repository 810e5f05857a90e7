"""Click options made from the fields of a config dataclass, so that each default and help text is
written once, in the dataclass (as TRL builds its command lines from its configs).

    @cli.command("train", cls=ConfigCommand)
    @config_option(TRAIN, "learning_rate", "--lr", min=0, min_open=True)

The option's names are those given (as click takes them), else `--field-name`; its value goes to
the parameter named as the field. Its type is the field's annotation: `X | None` takes None as
"not given", `tuple[X, ...]` is a comma-separated list, a bool a `--name/--no-name` flag (or the
pair of names given), a field whose metadata lists `choices` one of them. `min`/`max` bound a
number as the dataclass's own check does, so that a bad value is refused as a usage error naming
the flag; `type` replaces the annotation's type where the command checks more (a path that must
exist); `parse` turns a comma-separated list into its tuple with the command's own messages.

The dataclasses live beside their stages, which import much; so a command names its config by
import path, and the options are made when the command is first used (its --help or a run), never
when `localdistill` starts. A command with such options is a `ConfigCommand`.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable

import click


class ConfigCommand(click.Command):
    """A command whose `config_option`s are made into click options on first use."""

    @property
    def params(self) -> list[click.Parameter]:
        if any(isinstance(p, _FieldOption) for p in self._declared):
            self._declared[:] = [p.made() if isinstance(p, _FieldOption) else p
                                 for p in self._declared]
        return self._declared

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._declared = value


def config_option(config: str, name: str, *decls: str, **how) -> Callable:
    """A decorator adding the option for field `name` of `config` ("module:Class") to a
    ConfigCommand; `how`: names, bounds and overrides (module docstring)."""

    def add(function: Callable) -> Callable:
        if not hasattr(function, "__click_params__"):
            function.__click_params__ = []
        function.__click_params__.append(_FieldOption(config, name, decls, how))
        return function

    return add


@dataclasses.dataclass(frozen=True, eq=False)
class _FieldOption:
    """An option declared by `config_option`, not made yet."""

    config: str
    name: str
    decls: tuple[str, ...]
    how: dict

    def made(self) -> click.Option:
        module, _, cls = self.config.partition(":")
        kind = getattr(importlib.import_module(module), cls)
        spec = next(f for f in dataclasses.fields(kind) if f.name == self.name)
        return field_option(spec, typing.get_type_hints(kind)[self.name], self.decls, **self.how)


def field_option(spec: dataclasses.Field, hint, decls: tuple[str, ...] = (), *,
                 min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, type: click.ParamType | None = None,
                 parse: Callable[[str], tuple] | None = None) -> click.Option:
    """The click option of one dataclass field (module docstring)."""
    names = list(decls) or ["--" + spec.name.replace("_", "-")]
    kind = _without_none(hint)
    help_text = spec.metadata.get("help", "")
    settings: dict = {}
    if kind is bool:
        if not any("/" in n for n in names):
            names = [f"{names[-1]}/--no-{names[-1].removeprefix('--')}"]
    elif typing.get_origin(kind) is tuple:  # a comma-separated list, read back into the tuple
        item = typing.get_args(kind)[0]
        read = parse or (lambda text: _comma_list(text, item))
        settings["callback"] = lambda ctx, param, text: None if text is None else read(text)
        help_text += ", comma-separated"
    elif spec.metadata.get("choices"):
        settings["type"] = type or click.Choice(spec.metadata["choices"])
    elif kind in (int, float) and (min is not None or max is not None):
        ranged = click.IntRange if kind is int else click.FloatRange
        settings["type"] = type or ranged(min, max, min_open=min_open, max_open=max_open)
    else:
        settings["type"] = type or kind
    default = spec.default if spec.default_factory is dataclasses.MISSING else \
        spec.default_factory()
    if default is dataclasses.MISSING:  # no default=None: click would take it for a value
        settings["required"] = True
    else:
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        settings.update(default=default, show_default=default is not None)
    return click.Option([*names, spec.name], help=_sentence(help_text), **settings)


def _without_none(hint):
    """`X` of `X | None`."""
    if isinstance(hint, types.UnionType):
        return next(o for o in typing.get_args(hint) if o is not type(None))
    return hint


def _comma_list(value: str, item: type) -> tuple:
    try:
        return tuple(item(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a comma-separated list of "
                                 f"{item.__name__}") from None


def _sentence(text: str) -> str:
    """The dataclass's help (a phrase) as a --help line (a sentence)."""
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
