"""mine: a task set from your own Python repository, to distil on your own code.

1. `find_candidates(repo)` reads every *.py file git would track (`files.py`: `git ls-files
   --cached --others --exclude-standard` in a git work tree; elsewhere a walk that honours the
   top-level .gitignore), less tests (tests/, test/, test_*.py, *_test.py, conftest.py), virtual
   environments, site-packages, build output and caches. Every function in them is counted; one
   becomes a candidate when it passes all of these rules, and is otherwise counted under the first
   it fails (the reasons, the constants and the first five rules are in `select.py`; the last
   three, what a function needs to run on its own, in `standalone.py`):
   - a top-level function, or a method of a top-level class that can be built from literals
     (`standalone.py` carries the class; tests call `Cls(...).method(...)`, `Cls.method(...)`, or
     check the object's state after a method that changes it); not nested functions, nor
     functions defined under `if`/`try` or twice in their module;
   - a plain `def` (a generator is tested on its items): not async, not decorated, not a
     `__dunder__` module hook;
   - takes at least one named argument and returns a value somewhere; no argument is annotated
     with a type whose values are not literals (a class of the repository, say), since the
     teacher proposes inputs as literals;
   - has a docstring, or else a clear name (two words or more) and signature (every argument
     annotated or named with two characters or more);
   - a body after the docstring of MIN_BODY_LINES to MAX_BODY_LINES lines of code (blank lines and
     comments not counted);
   - pure: neither it nor a helper it needs names a module of BANNED_MODULES (I/O, network,
     processes, time, randomness, logging...), a builtin of BANNED_BUILTINS (open, input,
     eval...), or calls `.now()`, `.today()`, `.utcnow()`;
   - no `global`/`nonlocal` statement and no module-level name bound to a mutable value (a list,
     dict or set, or any call but a few immutable constructors such as `re.compile`);
   - every other module-level name it needs can be carried along: an import (a third-party one
     only with `site_packages`), a top-level function that follows the same rules, a constant, or
     a class whose body is only a docstring, `pass` and constants (exceptions, usually); at most
     MAX_CONTEXT_LINES lines of them. A name imported from the repository's own modules
     (`from .util import clamp`, `from mypkg import clamp`, through re-exports) travels as the
     definition it names, with what that needs in its own module (`package.py`), all of it in
     one namespace: two pieces binding one name differently, a renamed import, or a module
     imported whole (used as `util.clamp`) are still refused.
2. A candidate's prompt (`standalone.py`) is the imports it uses (`from __future__` first), then
   the source of the helpers and constants it needs, in source order, then its own signature and
   docstring as written; its reference is the rest of its source. prompt + reference runs on its
   own.
3. `decontaminate` (`decontaminate.py`) drops candidates whose prompt or body is near-identical to
   an evaluation task's (HumanEval, MBPP's test split, the user's own sets): a difflib ratio of
   SIMILAR or more after normalising (bodies unparsed without comments and docstrings, prompts
   with whitespace collapsed), for texts of MIN_COMPARED_CHARS or more; a token-set Jaccard index
   below PREFILTER rules a pair out cheaply first.
4. `mine` (here) makes tests with gen-tests (the teacher proposes inputs, the real function gives
   the outputs) and holds out a share of the tasks as the user's own evaluation set, chosen by a
   hash of each task id, so a task stays on its side of the split in every run.

Nothing leaves the machine: the only model asked is the configured teacher (through the run's
request cache), and what is recorded goes to the run directory (`mine.jsonl`, the manifest).

files.py, module.py, select.py, package.py and standalone.py build on one another in that order,
decontaminate.py on none of them, and none imports this package: this module ties them together
(`find_candidates`, `mine`) and re-exports their public names, so
`from localdistill.stages.mine import ...` finds them all.
"""

from __future__ import annotations

import ast
import hashlib
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits
from localdistill.stages.gentests import DEFAULTS as GEN_TESTS
from localdistill.stages.gentests import GenTestsReport, generate_tests
from localdistill.stages.mine.decontaminate import (
    MIN_COMPARED_CHARS,
    PREFILTER,
    SIMILAR,
    Contamination,
    decontaminate,
    evaluation_sets,
)
from localdistill.stages.mine.files import SKIP_DIRS, _read, own_packages, python_files
from localdistill.stages.mine.module import _Module
from localdistill.stages.mine.package import Package
from localdistill.stages.mine.select import (
    ASYNC,
    BANNED_BUILTINS,
    BANNED_MODULES,
    BROKEN,
    CLASS_NOT_PLAIN,
    CLASS_TOO_LONG,
    CLASS_USES_METHOD,
    CONDITIONAL,
    DECORATED,
    DUNDER,
    GLOBALS,
    IMMUTABLE_CALLS,
    IMPURE,
    MAX_BODY_LINES,
    MAX_CLASS_LINES,
    MAX_CONTEXT_LINES,
    METHOD,
    MIN_BODY_LINES,
    MUTABLE_CALLS,
    NESTED,
    NO_ARGUMENTS,
    NO_RETURN,
    NOT_BUILDABLE,
    NOT_CARRIABLE,
    NOW_ATTRIBUTES,
    OPAQUE_ARGUMENTS,
    OWN_PACKAGE,
    PLAIN_TYPE_MODULES,
    PROPERTY,
    RELATIVE,
    SPECIAL_METHOD,
    THIRD_PARTY,
    TOO_LONG,
    TOO_MUCH_CONTEXT,
    TOO_SHORT,
    TWICE,
    UNCLEAR,
    UNDEFINED,
    VARARGS_ONLY,
    Candidate,
    MineStats,
    _functions,
    _method_problem,
    _placement_problem,
    _shape_problem,
)
from localdistill.stages.mine.standalone import _candidate, _method_candidate
from localdistill.tasks.record import Task

__all__ = [
    # files.py
    "SKIP_DIRS", "own_packages", "python_files",
    # select.py: the constants, the reasons and the records
    "BANNED_BUILTINS", "BANNED_MODULES", "IMMUTABLE_CALLS", "MAX_BODY_LINES", "MAX_CLASS_LINES",
    "MAX_CONTEXT_LINES", "MIN_BODY_LINES", "MUTABLE_CALLS", "NOW_ATTRIBUTES", "PLAIN_TYPE_MODULES",
    "ASYNC", "BROKEN", "CLASS_NOT_PLAIN", "CLASS_TOO_LONG", "CLASS_USES_METHOD",
    "CONDITIONAL", "DECORATED", "DUNDER", "GLOBALS", "IMPURE", "METHOD", "NESTED", "NO_ARGUMENTS",
    "NO_RETURN", "NOT_BUILDABLE", "NOT_CARRIABLE", "OPAQUE_ARGUMENTS", "OWN_PACKAGE", "PROPERTY",
    "RELATIVE", "SPECIAL_METHOD", "THIRD_PARTY", "TOO_LONG", "TOO_MUCH_CONTEXT", "TOO_SHORT",
    "TWICE", "UNCLEAR", "UNDEFINED", "VARARGS_ONLY",
    "Candidate", "MineStats",
    # decontaminate.py
    "MIN_COMPARED_CHARS", "PREFILTER", "SIMILAR", "Contamination", "decontaminate",
    "evaluation_sets",
    # here
    "MineReport", "find_candidates", "is_held_out", "mine", "split",
]


# --- finding the candidates ---------------------------------------------------------------------


def find_candidates(repo: Path, site_packages: bool = False) -> tuple[list[Candidate], MineStats]:
    """The functions of `repo` that make tasks (see the module docstring), in file order."""
    repo = Path(repo)
    files = python_files(repo)
    own = frozenset(own_packages(repo, files))
    started = time.monotonic()
    stats, candidates = MineStats(files=len(files)), []
    package = Package(repo.name if (repo / "__init__.py").exists() else "")
    for relative in files:
        try:
            text = _read(repo / relative)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes and the like
                tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
            stats.unparsable.append(relative.as_posix())
            continue
        package.add(_Module(relative.as_posix(), text.split("\n"), tree))
    for module in package.files:
        for function, qualified, place, owner in _functions(module.tree):
            stats.functions += 1
            reason = _placement_problem(place, function.name, module, owner) or (
                _shape_problem(function, module, own=own) if owner is None
                else _method_problem(function, owner, module, own))
            candidate = None
            if reason is None and owner is not None:
                candidate, reason = _method_candidate(function, owner, module, own,
                                                      site_packages, package)
            elif reason is None:
                candidate, reason = _candidate(function, module, own, site_packages, package)
            if candidate:
                candidates.append(candidate)
            else:
                stats.rejected.append((f"{module.path}::{qualified}", reason))
    stats.candidates = len(candidates)
    stats.seconds = round(time.monotonic() - started, 2)
    return candidates, stats


# --- the whole of it ----------------------------------------------------------------------------


def is_held_out(task_id: str, fraction: float) -> bool:
    """Whether a task belongs to the held-out share: a hash of its id, so the same in every run
    and whatever else was mined."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(tasks: Sequence[Task], fraction: float) -> tuple[list[Task], list[Task]]:
    """(tasks to train on, held-out tasks for the user's own evaluation)."""
    held = [t for t in tasks if is_held_out(t.task_id, fraction)]
    return [t for t in tasks if not is_held_out(t.task_id, fraction)], held


@dataclass
class MineReport:
    """What `mine` found, dropped and made."""

    stats: MineStats
    contaminated: dict[str, Contamination]
    compared_with: Counter[str]  # evaluation tasks compared with, by source
    decontamination_seconds: float
    gen_tests: GenTestsReport
    tasks: list[Task]  # with tests, to train on
    held_out: list[Task]  # with tests, the user's own evaluation set

    def decontamination_report(self) -> StageReport:
        counts: dict[str, int | str] = {
            f"compared with {source}": n for source, n in self.compared_with.most_common()}
        counts["dropped"] = len(self.contaminated)
        found = Counter(f"{c.part} like {c.source}" for c in self.contaminated.values())
        counts |= {f"dropped: {what}": n for what, n in found.most_common()}
        return StageReport("decontaminate", counts, seconds=self.decontamination_seconds)


@dataclass(frozen=True)
class MineConfig:
    """What `mine` keeps besides the tests it makes (gen-tests' settings: GenTestsConfig)."""

    held_out: float = field(default=0.2, metadata={
        "help": "the share of the tasks kept as your own evaluation set"})
    limit: int | None = field(default=None, metadata={
        "help": "only the first N candidates get tests"})


def mine(
    repo: Path,
    teacher: ModelSpec | str,
    run: RunDir,
    against: Sequence[Task] = (),
    held_out: float = MineConfig.held_out,
    count: int = GEN_TESTS.count,
    min_tests: int = GEN_TESTS.min_tests,
    limits: Limits = Limits(),
    limit: int | None = MineConfig.limit,
    workers: int | None = None,
    temperature: float | None = GEN_TESTS.temperature,
    max_tokens: int | None = GEN_TESTS.max_tokens,
    progress: Progress | None = None,
    per_behaviour: int = GEN_TESTS.per_behaviour,
) -> MineReport:
    """Tasks with tests from the functions of `repo` (see the module docstring); the fate of
    every function seen is written to the run directory's mine.jsonl."""
    if not 0 <= held_out < 1:
        raise BadInput(f"the held-out share must be in [0, 1), got {held_out}")
    candidates, stats = find_candidates(repo, limits.site_packages)
    started = time.monotonic()
    tasks, contaminated = decontaminate([c.task() for c in candidates], against)
    seconds = round(time.monotonic() - started, 2)
    tasks = tasks[:limit]
    made = generate_tests(tasks, teacher, run, count, min_tests, limits, workers, temperature,
                          max_tokens, progress, per_behaviour)
    train, evaluation = split(made.tasks, held_out)
    held = {t.task_id for t in evaluation}
    fates = [{"key": key, "fate": "rejected", "why": why} for key, why in stats.rejected]
    fates += [{"key": c.task_id, "line": c.line, **_fate(c.task_id, made, contaminated, held)}
              for c in candidates]
    run.write("mine", fates)
    compared = Counter(t.source for t in against)
    return MineReport(stats, contaminated, compared, seconds, made, train, evaluation)


def _fate(task_id: str, made: GenTestsReport, contaminated: dict[str, Contamination],
          held: set[str]) -> dict:
    if task_id in contaminated:
        return {"fate": "contaminated", "why": contaminated[task_id].reason}
    if task_id in made.skipped:
        return {"fate": "no tests", "why": made.skipped[task_id]}
    if task_id in held:
        return {"fate": "held out"}
    if any(t.task_id == task_id for t in made.tasks):
        return {"fate": "task"}
    return {"fate": "over --limit"}
