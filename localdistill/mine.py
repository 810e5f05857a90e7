"""mine: a task set from your own Python repository, to distil on your own code.

1. `find_candidates(repo)` reads every *.py file git would track (`git ls-files --cached --others
   --exclude-standard` in a git work tree; elsewhere a walk that honours the top-level .gitignore),
   less tests (tests/, test/, test_*.py, *_test.py, conftest.py), virtual environments,
   site-packages, build output and caches. Every function in them is counted; one becomes a
   candidate when it passes all of these rules, and is otherwise counted under the first it fails:
   - a top-level function: methods are not mined (their class would have to be built), nor nested
     functions, nor functions defined under `if`/`try` or twice in their module;
   - a plain `def`: not async, not a generator, not decorated, not a `__dunder__` module hook;
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
   - every other module-level name it needs can be carried along: an import (not a relative one,
     not of the repository's own packages, which cannot run standalone, and a third-party one only
     with `site_packages`), a top-level function that follows the same rules, a constant, or a
     class whose body is only a docstring, `pass` and constants (exceptions, usually); at most
     MAX_CONTEXT_LINES lines of them.
2. A candidate's prompt is the imports it uses (`from __future__` first), then the source of the
   helpers and constants it needs, in source order, then its own signature and docstring as
   written; its reference is the rest of its source. prompt + reference runs on its own.
3. `decontaminate` drops candidates whose prompt or body is near-identical to an evaluation task's
   (HumanEval, MBPP's test split, the user's own sets): a difflib ratio of SIMILAR or more after
   normalising (bodies unparsed without comments and docstrings, prompts with whitespace
   collapsed), for texts of MIN_COMPARED_CHARS or more; a token-set Jaccard index below PREFILTER
   rules a pair out cheaply first.
4. `mine` makes tests with gen-tests (the teacher proposes inputs, the real function gives the
   outputs) and holds out a share of the tasks as the user's own evaluation set, chosen by a hash
   of each task id, so a task stays on its side of the split in every run.

Nothing leaves the machine: the only model asked is the configured teacher (through the run's
request cache), and what is recorded goes to the run directory (`mine.jsonl`, the manifest).
"""

from __future__ import annotations

import ast
import builtins
import copy
import difflib
import hashlib
import os
import re
import subprocess
import sys
import time
import tokenize
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from localdistill.execute import Limits
from localdistill.gentests import GenTestsReport, generate_tests
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport
from localdistill.rundir import RunDir
from localdistill.tasks import TaskSpecError, load_tasks
from localdistill.tasks.record import Task

MIN_BODY_LINES = 3
MAX_BODY_LINES = 60
MAX_CONTEXT_LINES = 150  # of helpers and constants carried into one prompt
SIMILAR = 0.9
PREFILTER = 0.5
MIN_COMPARED_CHARS = 40  # shorter bodies and prompts match by chance (`return a + b`)

BANNED_MODULES = frozenset({
    "aiohttp", "asyncio", "atexit", "concurrent", "ctypes", "fileinput", "ftplib", "gc",
    "getpass", "glob", "http", "httpx", "importlib", "inspect", "locale", "logging",
    "multiprocessing", "os", "pathlib", "pickle", "platform", "random", "requests", "secrets",
    "select", "selectors", "shelve", "shutil", "signal", "smtplib", "socket", "sqlite3", "ssl",
    "subprocess", "sys", "tempfile", "threading", "time", "urllib", "urllib3", "uuid",
    "webbrowser",
})
BANNED_BUILTINS = frozenset({
    "__import__", "breakpoint", "compile", "eval", "exec", "exit", "globals", "help", "input",
    "locals", "open", "quit", "vars",
})
NOW_ATTRIBUTES = frozenset({"now", "today", "utcnow"})
IMMUTABLE_CALLS = frozenset({
    "bool", "bytes", "complex", "float", "frozenset", "int", "object", "range", "str", "tuple",
    "collections.namedtuple", "re.compile", "typing.NamedTuple", "typing.NewType",
    "typing.TypeVar", "typing_extensions.TypeVar",
})
MUTABLE_CALLS = frozenset({
    "bytearray", "dict", "list", "set", "collections.Counter", "collections.OrderedDict",
    "collections.defaultdict", "collections.deque",
})
PLAIN_TYPE_MODULES = frozenset({"collections", "typing", "typing_extensions"})
SKIP_DIRS = frozenset({
    ".eggs", ".git", ".hg", ".mypy_cache", ".nox", ".pytest_cache", ".ruff_cache", ".svn",
    ".tox", ".venv", "__pycache__", "build", "dist", "env", "node_modules", "site-packages",
    "test", "tests", "venv",
})
_BUILTINS = frozenset(dir(builtins))

# Why a function is not a candidate (the first rule it fails).
METHOD = "method (classes are not built)"
NESTED = "nested function"
CONDITIONAL = "defined under if/try/with"
TWICE = "defined twice in its module"
ASYNC_OR_GENERATOR = "async or generator"
DECORATED = "decorated"
DUNDER = "module hook (__name__)"
NO_ARGUMENTS = "takes no arguments"
VARARGS_ONLY = "takes *args/**kwargs only"
NO_RETURN = "returns no value"
OPAQUE_ARGUMENTS = "an argument's annotation is not a plain data type"
UNCLEAR = "no docstring and unclear name or signature"
TOO_SHORT = f"body under {MIN_BODY_LINES} lines"
TOO_LONG = f"body over {MAX_BODY_LINES} lines"
IMPURE = "uses I/O, network, processes, time or randomness"
GLOBALS = "reads or writes mutable module globals"
RELATIVE = "relative import"
OWN_PACKAGE = "imports its own package"
THIRD_PARTY = "imports a third-party package"
NOT_CARRIABLE = "needs a module-level value it cannot carry"
UNDEFINED = "needs a name its module binds only conditionally or not at all"
TOO_MUCH_CONTEXT = f"needs over {MAX_CONTEXT_LINES} lines of helpers"
BROKEN = "does not parse standalone"


@dataclass(frozen=True)
class Candidate:
    """A function that makes a task: its prompt (imports, helpers, signature, docstring) and its
    reference (the real body)."""

    path: str  # relative to the repository, with /
    line: int  # of the `def`
    name: str
    prompt: str
    reference: str

    @property
    def task_id(self) -> str:
        return f"mined/{self.path}::{self.name}"

    def task(self) -> Task:
        """The task, still without tests (gen-tests makes them)."""
        return Task(self.task_id, self.prompt, self.name, (), reference=self.reference,
                    source="mined", metadata={"path": self.path, "line": self.line})


@dataclass
class MineStats:
    """What `find_candidates` saw: functions seen = candidates + rejected."""

    files: int = 0
    unparsable: list[str] = field(default_factory=list)  # files that are not valid Python
    functions: int = 0
    candidates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (function, reason)
    seconds: float = 0.0

    def by_reason(self) -> Counter[str]:
        return Counter(reason for _, reason in self.rejected)

    def stage_report(self) -> StageReport:
        counts: dict[str, int | str] = {
            "python files": self.files, "files not parsed": len(self.unparsable),
            "functions seen": self.functions, "candidates": self.candidates,
        }
        counts |= {f"rejected: {reason}": n for reason, n in self.by_reason().most_common()}
        return StageReport("mine", counts, seconds=self.seconds)


# --- the repository's files ---------------------------------------------------------------------


def python_files(repo: Path) -> list[PurePosixPath]:
    """The repository's Python files, relative to it, sorted; tests and virtual environments
    left out, and what .gitignore ignores."""
    listed = _git_files(repo)
    files = listed if listed is not None else _walk(repo, _gitignore_patterns(repo))
    return sorted(f for f in files if _library_file(repo, f))


def _git_files(repo: Path) -> list[PurePosixPath] | None:
    command = ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
               "--exclude-standard", "--", "*.py"]
    try:
        listed = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None  # not a git work tree (or git is not installed)
    names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [PurePosixPath(n) for n in names if n.endswith(".py") and (repo / n).is_file()]


def _gitignore_patterns(repo: Path) -> list[str]:
    try:
        lines = (repo / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and line[0] not in "#!"]


def _ignored(relative: PurePosixPath, is_dir: bool, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("/") and not is_dir:
            continue
        bare = pattern.strip("/")
        if "/" in pattern.rstrip("/"):  # anchored at the repository's root
            if fnmatch(relative.as_posix(), bare):
                return True
        elif fnmatch(relative.name, bare):
            return True
    return False


def _walk(repo: Path, patterns: list[str]) -> list[PurePosixPath]:
    found = []
    for directory, subdirectories, files in os.walk(repo):
        here = PurePosixPath(Path(directory).relative_to(repo).as_posix())
        subdirectories[:] = [
            d for d in subdirectories
            if d not in SKIP_DIRS and not (Path(directory) / d / "pyvenv.cfg").exists()
            and not _ignored(here / d, True, patterns)
        ]
        found += [here / f for f in files
                  if f.endswith(".py") and not _ignored(here / f, False, patterns)]
    return found


def _library_file(repo: Path, relative: PurePosixPath) -> bool:
    name = relative.name
    if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
        return False
    directories = relative.parts[:-1]
    if any(part in SKIP_DIRS for part in directories):
        return False
    return not any((repo.joinpath(*directories[: i + 1]) / "pyvenv.cfg").exists()
                   for i in range(len(directories)))


def own_packages(repo: Path, files: Sequence[PurePosixPath]) -> set[str]:
    """Top-level names the repository's own code imports itself by: they do not exist in the
    sandbox."""
    if (repo / "__init__.py").exists():
        return {repo.name}  # a package itself: its modules are only importable through it
    parts = [f.parts[1:] if f.parts[0] == "src" and len(f.parts) > 1 else f.parts for f in files]
    return {p[0] if len(p) > 1 else p[0].removesuffix(".py") for p in parts}


# --- one module ---------------------------------------------------------------------------------


@dataclass
class _Module:
    """A parsed file and what its top level binds."""

    path: str
    lines: list[str]
    tree: ast.Module
    imports: dict[str, tuple[ast.Import | ast.ImportFrom, ast.alias]] = field(default_factory=dict)
    definitions: dict[str, ast.stmt] = field(default_factory=dict)
    twice: set[str] = field(default_factory=set)
    future: list[ast.ImportFrom] = field(default_factory=list)

    def __post_init__(self) -> None:
        meanings: dict[str, set[str]] = {}  # name -> what each binding binds it to
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                self.future.append(node)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    if alias.name != "*":
                        name = alias.asname or alias.name.split(".")[0]
                        self.imports[name] = (node, alias)
                        meanings.setdefault(name, set()).add(_imported(node, alias))
            elif not _overload(node):  # typing stubs, not the definition
                for name in _top_level_names(node):
                    self.definitions[name] = node
                    meanings.setdefault(name, set()).add(f"line {node.lineno}")
        self.twice = {name for name, bound in meanings.items() if len(bound) > 1}

    @property
    def lazy_annotations(self) -> bool:
        return any(a.name == "annotations" for node in self.future for a in node.names)

    def source(self, node: ast.stmt) -> str:
        return "\n".join(self.lines[node.lineno - 1 : node.end_lineno])

    def import_root(self, name: str) -> str | None:
        """The top-level module a name imported at the top level comes from ('.' if relative)."""
        if name not in self.imports:
            return None
        node, alias = self.imports[name]
        return _root(node, alias)


def _imported(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """What an import binds its name to: `import os` and `import os.path` both bind os to os."""
    if isinstance(node, ast.Import):
        return alias.name if alias.asname else alias.name.split(".")[0]
    return f"{'.' * node.level}{node.module or ''}:{alias.name}"


def _overload(node: ast.stmt) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(isinstance(d, ast.Name | ast.Attribute) and ast.unparse(d).endswith("overload")
               for d in decorators)


def _top_level_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign) and node.value and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _root(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if isinstance(node, ast.ImportFrom):
        return "." if node.level else (node.module or "").split(".")[0]
    return alias.name.split(".")[0]


def _read(path: Path) -> str:
    with tokenize.open(path) as source:  # honours a coding cookie
        return source.read()


def find_candidates(repo: Path, site_packages: bool = False) -> tuple[list[Candidate], MineStats]:
    """The functions of `repo` that make tasks (see the module docstring), in file order."""
    repo = Path(repo)
    files = python_files(repo)
    own = own_packages(repo, files)
    started = time.monotonic()
    stats, candidates = MineStats(files=len(files)), []
    for relative in files:
        try:
            text = _read(repo / relative)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes and the like
                tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
            stats.unparsable.append(relative.as_posix())
            continue
        module = _Module(relative.as_posix(), text.split("\n"), tree)
        for function, qualified, place in _functions(tree):
            stats.functions += 1
            reason = (_placement_problem(place, function.name, module)
                      or _shape_problem(function, module))
            candidate = None
            if reason is None:
                candidate, reason = _candidate(function, module, own, site_packages)
            if candidate:
                candidates.append(candidate)
            else:
                stats.rejected.append((f"{module.path}::{qualified}", reason))
    stats.candidates = len(candidates)
    stats.seconds = round(time.monotonic() - started, 2)
    return candidates, stats


_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.Module) -> Iterator[tuple[_Function, str, str]]:
    """Every function with its qualified name and place: top, conditional, method or nested."""
    def visit(node: ast.AST, prefix: str, scope: str, top: bool) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                place = {"class": "method", "function": "nested"}.get(scope)
                yield child, prefix + child.name, place or ("top" if top else "conditional")
                yield from visit(child, f"{prefix}{child.name}.<locals>.", "function", False)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.", "class", False)
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield from visit(child, prefix, scope, False)
    yield from visit(tree, "", "module", True)


def _placement_problem(place: str, name: str, module: _Module) -> str | None:
    problems = {"method": METHOD, "nested": NESTED, "conditional": CONDITIONAL}
    return problems.get(place) or (TWICE if name in module.twice else None)


def _shape_problem(function: _Function, module: _Module) -> str | None:
    own = list(_own_nodes(function))
    if isinstance(function, ast.AsyncFunctionDef) or any(
        isinstance(n, ast.Yield | ast.YieldFrom) for n in own
    ):
        return ASYNC_OR_GENERATOR
    if function.decorator_list:
        return DECORATED
    if function.name.startswith("__") and function.name.endswith("__"):
        return DUNDER
    arguments = function.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    if not named:
        return VARARGS_ONLY if arguments.vararg or arguments.kwarg else NO_ARGUMENTS
    if not any(isinstance(n, ast.Return) and n.value is not None for n in own):
        return NO_RETURN
    if any(_opaque(a.annotation, module) for a in named if a.annotation):
        return OPAQUE_ARGUMENTS
    if ast.get_docstring(function) is None and not _clear(function.name, named):
        return UNCLEAR
    lines = _body_lines(function, module)
    code = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    if len(code) < MIN_BODY_LINES:
        return TOO_SHORT
    if len(code) > MAX_BODY_LINES:
        return TOO_LONG
    return None


def _own_nodes(function: _Function) -> Iterator[ast.AST]:
    """The nodes of a function's own body, not those of functions, lambdas or classes in it."""
    todo = list(function.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            todo.extend(ast.iter_child_nodes(node))


def _opaque(annotation: ast.expr, module: _Module) -> bool:
    """Does an argument's annotation name a type whose values are not literals (a class of the
    repository, say)? Builtins, typing's generics and type aliases are plain."""
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "Foo"
            try:
                if _opaque(ast.parse(node.value, mode="eval").body, module):
                    return True
            except SyntaxError:
                return True
        elif isinstance(node, ast.Name) and node.id not in _BUILTINS:
            root = module.import_root(node.id)
            alias = isinstance(module.definitions.get(node.id), ast.Assign | ast.AnnAssign)
            if root not in PLAIN_TYPE_MODULES and not alias:
                return True
    return False


def _clear(name: str, arguments: list[ast.arg]) -> bool:
    words = [w for w in re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])", name) if w]
    return len(words) >= 2 and all(a.annotation or len(a.arg) >= 2 for a in arguments)


def _signature_end(function: _Function) -> int:
    """The last line of the prompt part of a function: its docstring's, or its `def` line's."""
    if ast.get_docstring(function, clean=False) is not None:
        return function.body[0].end_lineno
    return function.body[0].lineno - 1


def _body_lines(function: _Function, module: _Module) -> list[str]:
    return module.lines[_signature_end(function) : function.end_lineno]


# --- what a function needs to run on its own ----------------------------------------------------


def _candidate(function: _Function, module: _Module, own: set[str],
               site_packages: bool) -> tuple[Candidate | None, str]:
    needs = _Needs(module, own, site_packages, function.name)
    reason = needs.resolve(function)
    if reason:
        return None, reason
    if _signature_end(function) < function.lineno:
        return None, TOO_SHORT  # the body shares the `def` line
    header = [ast.unparse(node) for node in module.future] + needs.import_lines()
    blocks = ["\n".join(header)] if header else []
    blocks += [module.source(node) for node in sorted(needs.carried, key=lambda n: n.lineno)]
    signature = "\n".join(module.lines[function.lineno - 1 : _signature_end(function)])
    prompt = "\n\n\n".join([*blocks, signature]) + "\n"
    reference = "\n".join(_body_lines(function, module)).rstrip() + "\n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(prompt + reference)
    except (SyntaxError, ValueError):
        return None, BROKEN
    return Candidate(module.path, function.lineno, function.name, prompt, reference), ""


class _Needs:
    """The imports and top-level definitions a function needs, found transitively; `resolve`
    says why they cannot be carried, if they cannot."""

    def __init__(self, module: _Module, own: set[str], site_packages: bool, name: str) -> None:
        self.module, self.own, self.site_packages, self.name = module, own, site_packages, name
        self.imports: set[str] = set()  # names bound by the module's imports
        self.carried: list[ast.stmt] = []

    def resolve(self, function: _Function) -> str | None:
        todo: list[ast.AST] = [function]
        seen = {self.name}
        while todo:
            node = todo.pop()
            problem = self._impurity(node)
            if problem:
                return problem
            for name in sorted(_free_names(node, not self.module.lazy_annotations) - seen):
                seen.add(name)
                definition, problem = self._need(name)
                if problem:
                    return problem
                if definition is not None and definition not in self.carried:
                    self.carried.append(definition)
                    todo.append(definition)
        if sum(n.end_lineno - n.lineno + 1 for n in self.carried) > MAX_CONTEXT_LINES:
            return TOO_MUCH_CONTEXT
        return None

    def _need(self, name: str) -> tuple[ast.stmt | None, str | None]:
        module = self.module
        if name in module.twice:
            return None, NOT_CARRIABLE
        root = module.import_root(name)
        if root is not None:
            self.imports.add(name)
            return None, self._import_problem(root)
        definition = module.definitions.get(name)
        if definition is not None:
            return definition, self._carriable(definition)
        if name in BANNED_BUILTINS:
            return None, IMPURE
        return None, None if name in _BUILTINS else UNDEFINED

    def _import_problem(self, root: str) -> str | None:
        if root == ".":
            return RELATIVE
        if root in BANNED_MODULES:
            return IMPURE
        if root in self.own:
            return OWN_PACKAGE
        if root not in sys.stdlib_module_names and not self.site_packages:
            return THIRD_PARTY
        return None

    def _impurity(self, node: ast.AST) -> str | None:
        for child in ast.walk(node):
            if isinstance(child, ast.Global | ast.Nonlocal):
                return GLOBALS
            if isinstance(child, ast.Attribute) and child.attr in NOW_ATTRIBUTES:
                return IMPURE
            if isinstance(child, ast.Import | ast.ImportFrom):
                for alias in child.names:
                    problem = self._import_problem(_root(child, alias))
                    if problem:
                        return problem
        return None

    def _carriable(self, node: ast.stmt) -> str | None:
        if isinstance(node, ast.FunctionDef):
            return None if not node.decorator_list else NOT_CARRIABLE
        if isinstance(node, ast.ClassDef):
            simple = all(_docstring_pass_or_constant(s, self._dotted) == "constant"
                         for s in node.body)
            plain = not node.decorator_list and not node.keywords
            return None if simple and plain else NOT_CARRIABLE
        kind = _docstring_pass_or_constant(node, self._dotted)
        return {"constant": None, "mutable": GLOBALS}.get(kind, NOT_CARRIABLE)

    def _dotted(self, function: ast.expr) -> str:
        """A called name as its module's path: `_re.compile` -> `re.compile`."""
        parts = []
        while isinstance(function, ast.Attribute):
            parts.append(function.attr)
            function = function.value
        if not isinstance(function, ast.Name):
            return ""
        head = function.id
        if head in self.module.imports:
            node, alias = self.module.imports[head]
            if isinstance(node, ast.ImportFrom):
                head = f"{node.module}.{alias.name}"
            elif alias.asname:
                head = alias.name
        return ".".join([head, *reversed(parts)])

    def import_lines(self) -> list[str]:
        """The module's import statements, in order, with only the names used."""
        lines = []
        for node in self.module.tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom) and node not in self.module.future:
                used = [a for a in node.names
                        if (a.asname or a.name.split(".")[0]) in self.imports]
                if used:
                    trimmed = copy.copy(node)
                    trimmed.names = used
                    lines.append(ast.unparse(trimmed))
        return lines


def _docstring_pass_or_constant(node: ast.stmt, dotted: Callable[[ast.expr], str]) -> str:
    """'constant' for a docstring, `pass`, `...` or an assignment of an immutable value; 'mutable'
    for an assignment of a list, dict or set; 'other' for anything else."""
    if isinstance(node, ast.Pass) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    ):
        return "constant"
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    if value is None:
        return "other"
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    if isinstance(value, mutable) or (
        isinstance(value, ast.Call) and dotted(value.func) in MUTABLE_CALLS
    ):
        return "mutable"
    calls = [n for n in ast.walk(value) if isinstance(n, ast.Call)]
    if all(dotted(c.func) in IMMUTABLE_CALLS for c in calls):
        return "constant"
    return "other"


def _free_names(node: ast.AST, annotations: bool) -> set[str]:
    """Names a definition reads but never binds (builtins among them); annotations left out when
    they are never evaluated (`from __future__ import annotations`). Default values are read
    outside their function: in `def f(x, sqrt=sqrt)` the second sqrt is free."""
    loaded, bound, parameters, defaults = set(), set(), set(), set()
    todo = [node]
    while todo:
        child = todo.pop()
        if isinstance(child, ast.Name):
            (loaded if isinstance(child.ctx, ast.Load) else bound).add(child.id)
        elif isinstance(child, ast.arg):
            parameters.add(child.arg)
        elif isinstance(child, ast.arguments):
            defaults |= {n.id for d in [*child.defaults, *child.kw_defaults] if d
                         for n in ast.walk(d) if isinstance(n, ast.Name)}
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if child is not node:
                bound.add(child.name)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            bound |= {a.asname or a.name.split(".")[0] for a in child.names}
        elif isinstance(child, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and child.name:
            bound.add(child.name)
        for name, value in ast.iter_fields(child):
            if not annotations and name in ("annotation", "returns"):
                continue
            values = value if isinstance(value, list) else [value]
            todo.extend(v for v in values if isinstance(v, ast.AST))
    if isinstance(node, ast.ClassDef):
        loaded.discard(node.name)
    return (loaded - bound - parameters) | (defaults - bound)


# --- decontamination ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contamination:
    """Why a mined task was dropped: the evaluation task it nearly copies, and on what."""

    part: str  # "prompt" or "body"
    ratio: float
    task_id: str  # of the evaluation task
    source: str  # its benchmark (humaneval, mbpp, user...)

    @property
    def reason(self) -> str:
        return f"{self.part} {self.ratio:.2f} similar to {self.task_id} ({self.source})"


@dataclass(frozen=True)
class _Fingerprint:
    text: str
    tokens: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Fingerprint:
        return cls(text, frozenset(re.findall(r"\w+|[^\w\s]", text)))

    def similarity(self, other: _Fingerprint) -> float:
        """difflib's ratio, or 0 when the texts are too short or a cheaper bound rules it out."""
        shorter, longer = sorted((len(self.text), len(other.text)))
        if shorter < MIN_COMPARED_CHARS or 2 * shorter / (shorter + longer) < SIMILAR:
            return 0.0
        union = len(self.tokens | other.tokens)
        if not union or len(self.tokens & other.tokens) / union < PREFILTER:
            return 0.0
        return difflib.SequenceMatcher(None, self.text, other.text, autojunk=False).ratio()


def _prompt_text(task: Task) -> str:
    return " ".join(task.prompt.split())


def _body_text(task: Task) -> str:
    """The entry point's body, unparsed without comments or docstring; the reference with its
    whitespace collapsed when the program does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(task.program(task.reference or ""))
        function = [n for n in ast.walk(tree)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    and n.name == task.entry_point][-1]
    except (SyntaxError, ValueError, RecursionError, IndexError):
        return " ".join((task.reference or "").split())
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return "\n".join(ast.unparse(statement) for statement in body)


def decontaminate(
    tasks: Sequence[Task], against: Sequence[Task]
) -> tuple[list[Task], dict[str, Contamination]]:
    """`tasks` less those whose prompt or body is near-identical to one of `against` (see the
    module docstring), and for each dropped task the closest match."""
    evaluation = [(t, _Fingerprint.of(_prompt_text(t)), _Fingerprint.of(_body_text(t)))
                  for t in against]
    kept, dropped = [], {}
    for task in tasks:
        prompt, body = _Fingerprint.of(_prompt_text(task)), _Fingerprint.of(_body_text(task))
        best = None
        for other, other_prompt, other_body in evaluation:
            for part, ratio in (("prompt", prompt.similarity(other_prompt)),
                                ("body", body.similarity(other_body))):
                if ratio >= SIMILAR and (best is None or ratio > best.ratio):
                    best = Contamination(part, round(ratio, 3), other.task_id, other.source)
        if best:
            dropped[task.task_id] = best
        else:
            kept.append(task)
    return kept, dropped


def evaluation_sets(specs: Sequence[str] = ()) -> tuple[list[Task], list[str]]:
    """The tasks mined ones must not copy: HumanEval, MBPP's test split when its data file is
    found, and the sets `specs` name (load_tasks specs; their errors are raised). Also a note for
    each default set that could not be read."""
    tasks, notes = [], []
    for name in ("humaneval", "mbpp:test"):
        try:
            tasks += load_tasks(name)
        except (TaskSpecError, OSError, ValueError) as error:
            notes.append(f"{name} not checked: {str(error).splitlines()[0]}")
    for spec in specs:
        tasks += load_tasks(spec)
    return tasks, notes


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


def mine(
    repo: Path,
    teacher: ModelSpec | str,
    run: RunDir,
    against: Sequence[Task] = (),
    held_out: float = 0.2,
    count: int = 10,
    min_tests: int = 3,
    limits: Limits = Limits(),
    limit: int | None = None,
    workers: int | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    progress: Progress | None = None,
) -> MineReport:
    """Tasks with tests from the functions of `repo` (see the module docstring); the fate of
    every function seen is written to the run directory's mine.jsonl."""
    if not 0 <= held_out < 1:
        raise ValueError(f"the held-out share must be in [0, 1), got {held_out}")
    candidates, stats = find_candidates(repo, limits.site_packages)
    started = time.monotonic()
    tasks, contaminated = decontaminate([c.task() for c in candidates], against)
    seconds = round(time.monotonic() - started, 2)
    tasks = tasks[:limit]
    made = generate_tests(tasks, teacher, run, count, min_tests, limits, workers, temperature,
                          max_tokens, progress)
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
