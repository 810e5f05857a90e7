"""The selection rules: where a function is and what shape it has, the reasons it is not a
candidate, and the records of what was selected (see the package docstring). What a candidate
needs to run on its own is checked in standalone.py."""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from localdistill.progress import StageReport
from localdistill.stages.mine.module import _Module
from localdistill.tasks.record import Task

MIN_BODY_LINES = 3
MAX_BODY_LINES = 60
MAX_CONTEXT_LINES = 150  # of helpers and constants carried into one prompt
MAX_CLASS_LINES = 200  # of a method's own class, shown whole in its prompt
CLASS_DECORATORS = frozenset({"dataclass", "dataclasses.dataclass", "total_ordering",
                              "functools.total_ordering"})  # a class built as written
METHOD_DECORATORS = frozenset({"staticmethod", "classmethod"})  # called on the class
# Special methods a test cannot call on a built object as it calls any other method (they build
# it, run on attribute access or at its end, or copy it); the rest (`__len__`, `__contains__`,
# `__getitem__`, `__iter__`, `__eq__`...) are called by name: `Cls(...).__len__()`.
UNTESTABLE_SPECIAL = frozenset({
    "__init__", "__new__", "__post_init__", "__del__", "__init_subclass__", "__set_name__",
    "__class_getitem__", "__getattr__", "__getattribute__", "__setattr__", "__delattr__",
    "__get__", "__set__", "__delete__", "__enter__", "__exit__", "__aenter__", "__aexit__",
    "__await__", "__aiter__", "__anext__", "__reduce__", "__reduce_ex__", "__getstate__",
    "__setstate__", "__copy__", "__deepcopy__", "__hash__", "__sizeof__", "__dir__",
})

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
_BUILTINS = frozenset(dir(builtins))

# Why a function is not a candidate (the first rule it fails).
METHOD = "method of a nested or conditional class"
PROPERTY = "property or otherwise decorated method"
SPECIAL_METHOD = "special method of construction, attributes or lifetime (__init__...)"
CLASS_NOT_PLAIN = "its class is decorated, has a metaclass or runs code in its body"
CLASS_TOO_LONG = f"its class is over {MAX_CLASS_LINES} lines"
CLASS_USES_METHOD = "its class body uses the method itself"
NOT_BUILDABLE = "its class's constructor takes arguments that are not plain data"
NESTED = "nested function"
CONDITIONAL = "defined under if/try/with"
TWICE = "defined twice in its module"
ASYNC = "async"
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
    reference (the real body). A method's name is `Class.method`; its prompt ends with its class,
    the method last, and its tests build the class (`binding`: "instance", the method called on
    `Class(...)`; "class", a static or class method called on `Class`)."""

    path: str  # relative to the repository, with /
    line: int  # of the `def`
    name: str
    prompt: str
    reference: str
    binding: str | None = None  # a method's: "instance" or "class"
    mutates: bool = False  # a method that changes its object and returns nothing

    @property
    def task_id(self) -> str:
        return f"mined/{self.path}::{self.name}"

    def task(self) -> Task:
        """The task, still without tests (gen-tests makes them)."""
        metadata: dict = {"path": self.path, "line": self.line}
        if self.binding is None:
            return Task(self.task_id, self.prompt, self.name, (), reference=self.reference,
                        source="mined", metadata=metadata)
        owner, method = self.name.split(".")
        built = "on an object of the class" if self.binding == "instance" else "on the class"
        changes = "; it changes its object and returns nothing" if self.mutates else ""
        return Task(self.task_id, self.prompt, owner, (), reference=self.reference,
                    source="mined",
                    description=f"Complete the method `{method}` of the class `{owner}` (the "
                                f"last one in the class; it is called {built}{changes}).",
                    metadata={**metadata, "method": method, "binding": self.binding,
                              **({"mutates": True} if self.mutates else {})})


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


# --- where a function is and what shape it has --------------------------------------------------


_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.Module) -> Iterator[tuple[_Function, str, str, ast.ClassDef | None]]:
    """Every function with its qualified name, its place (top, conditional, method or nested)
    and, for a method of a class defined at the top of its module, that class."""
    def visit(node: ast.AST, prefix: str, scope: str, top: bool,
              owner: ast.ClassDef | None) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                place = {"class": "method", "function": "nested"}.get(scope)
                yield (child, prefix + child.name, place or ("top" if top else "conditional"),
                       owner if scope == "class" else None)
                yield from visit(child, f"{prefix}{child.name}.<locals>.", "function", False,
                                 None)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.", "class", False,
                                 child if top else None)
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield from visit(child, prefix, scope, False, None)
    yield from visit(tree, "", "module", True, None)


def _placement_problem(place: str, name: str, module: _Module,
                       owner: ast.ClassDef | None = None) -> str | None:
    if place == "method" and owner is not None:  # a method of a top-level class
        return TWICE if owner.name in module.twice else None
    problems = {"method": METHOD, "nested": NESTED, "conditional": CONDITIONAL}
    return problems.get(place) or (TWICE if name in module.twice else None)


def _binding(function: _Function) -> str | None:
    """How a method is called: "instance", "class" (static and class methods), or None for a
    property or any other decorated method."""
    names = [ast.unparse(d) for d in function.decorator_list]
    if not names:
        return "instance"
    return "class" if len(names) == 1 and names[0] in METHOD_DECORATORS else None


def _method_problem(function: _Function, owner: ast.ClassDef, module: _Module,
                    own: frozenset[str] = frozenset()) -> str | None:
    """Why a method of a top-level class is no candidate (its own shape; its class's ability to
    travel is checked in standalone.py), or None."""
    if function.name in UNTESTABLE_SPECIAL:
        return SPECIAL_METHOD
    if isinstance(function, ast.AsyncFunctionDef):
        return ASYNC
    binding = _binding(function)
    if binding is None:
        return PROPERTY
    extra = _constructor_arguments(owner) if binding == "instance" else []
    return _shape_problem(function, module, skip=self_arguments(function), extra=extra, method=True,
                          returns=binding == "class" or not mutates(function), own=own)


def mutates(function: _Function) -> bool:
    """Whether a method returns nothing and changes its object (`self.x = ...`, `self.x += ...`,
    `self.x[k] = ...`, or `self.x.append(...)` and the like): its tests check the object's state
    after the call."""
    own = list(_own_nodes(function))
    if any(isinstance(n, ast.Return) and n.value is not None for n in own):
        return False
    first = [*function.args.posonlyargs, *function.args.args][:1]
    if not first:
        return False
    me = first[0].arg

    def on_me(node: ast.AST) -> bool:  # self.x, self.x[k], self.x.y...
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
            if isinstance(node, ast.Name):
                return node.id == me
        return False

    for node in own:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
        if any(isinstance(t, ast.Attribute | ast.Subscript) and on_me(t) for t in targets):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(
                node.func.value, ast.Attribute) and on_me(node.func.value):
            return True
    return False


def arguments_of(function: _Function) -> list[ast.arg]:
    """A function's named arguments, in order (not *args, **kwargs)."""
    a = function.args
    return [*a.posonlyargs, *a.args, *a.kwonlyargs]


def self_arguments(method: _Function) -> int:
    """How many of a method's first arguments are its object or class: 0 for a static method."""
    return 0 if "staticmethod" in map(ast.unparse, method.decorator_list) else 1


def _constructor_arguments(owner: ast.ClassDef) -> list[ast.arg]:
    """The named arguments its class is built with: `__init__`'s, or a dataclass's fields."""
    for node in owner.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            return arguments_of(node)[1:]
    if any(ast.unparse(d).split("(")[0].endswith("dataclass") for d in owner.decorator_list):
        return [ast.arg(n.target.id, n.annotation) for n in owner.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    return []


def _shape_problem(function: _Function, module: _Module, skip: int = 0,
                   extra: list[ast.arg] | None = None, method: bool = False,
                   returns: bool = True, own: frozenset[str] = frozenset()) -> str | None:
    """Why a function's shape makes no task; for a `method`, `skip` its first `skip` arguments
    (self, cls) and count `extra` ones (its constructor's) as its inputs too, its decorators and
    special name checked already, a returned value not needed (`returns` False: a method that
    changes its object). An argument annotated with a class of the repository (`own`: its
    top-level packages) passes here; standalone.py refuses it when the class cannot travel."""
    body = list(_own_nodes(function))
    if isinstance(function, ast.AsyncFunctionDef):
        return ASYNC
    # A generator is tested on its items (`list(f(...))`, as gen-tests tests any lazy output);
    # it needs no returned value.
    if any(isinstance(n, ast.Yield | ast.YieldFrom) for n in body):
        returns = False
    special = function.name.startswith("__") and function.name.endswith("__")
    if function.decorator_list and not method:
        return DECORATED
    if special and not method:
        return DUNDER
    arguments = function.args
    named = arguments_of(function)[skip:]
    inputs = named + (extra or [])
    if not inputs:
        return VARARGS_ONLY if arguments.vararg or arguments.kwarg else NO_ARGUMENTS
    if returns and not any(isinstance(n, ast.Return) and n.value is not None for n in body):
        return NO_RETURN
    if any(_opaque(a.annotation, module, own) for a in named if a.annotation):
        return OPAQUE_ARGUMENTS
    if any(_opaque(a.annotation, module, own) for a in extra or () if a.annotation):
        return NOT_BUILDABLE
    # a special method's name says what it does (Python's data model); its arguments must be clear
    if ast.get_docstring(function) is None and not _clear(function.name, named, special):
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


def _opaque(annotation: ast.expr, module: _Module, own: frozenset[str] = frozenset()) -> bool:
    """Does an argument's annotation name a type whose values are neither literals nor objects of
    the repository's own classes (which a test builds from literals: `Cls(...)`, when the class
    can travel; standalone.py checks that)? Builtins, typing's generics and type aliases are
    plain."""
    return _annotation_names(annotation, module, own) is None


def package_classes(annotation: ast.expr, module: _Module,
                    own: frozenset[str] = frozenset()) -> set[str]:
    """The repository's classes an annotation names (empty when it names none, or other types
    no literal can write)."""
    return _annotation_names(annotation, module, own) or set()


def _annotation_names(annotation: ast.expr, module: _Module,
                      own: frozenset[str]) -> set[str] | None:
    """The names of the repository's classes in an annotation; None when it names a type whose
    values are neither literals nor such objects."""
    found: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "Foo"
            try:
                inner = _annotation_names(ast.parse(node.value, mode="eval").body, module, own)
            except SyntaxError:
                return None
            if inner is None:
                return None
            found |= inner
        elif isinstance(node, ast.Name) and node.id not in _BUILTINS:
            root = module.import_root(node.id)
            alias = isinstance(module.definitions.get(node.id), ast.Assign | ast.AnnAssign)
            if root in PLAIN_TYPE_MODULES or alias:
                continue
            if isinstance(module.definitions.get(node.id), ast.ClassDef) or (
                    root is not None and (root == "." or root in own)):
                found.add(node.id)  # a class of the repository, or so its import says
            else:
                return None
    return found


def _clear(name: str, arguments: list[ast.arg], special: bool = False) -> bool:
    words = [w for w in re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])", name) if w]
    return (special or len(words) >= 2) and all(a.annotation or len(a.arg) >= 2
                                                for a in arguments)


def _signature_end(function: _Function) -> int:
    """The last line of the prompt part of a function: its docstring's, or its `def` line's."""
    if ast.get_docstring(function, clean=False) is not None:
        return function.body[0].end_lineno
    return function.body[0].lineno - 1


def _body_lines(function: _Function, module: _Module) -> list[str]:
    return module.lines[_signature_end(function) : function.end_lineno]
