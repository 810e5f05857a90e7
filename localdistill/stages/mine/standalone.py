"""What a function needs to run on its own: the imports, helpers and constants it uses, whether
they can be carried into its prompt, and the candidate built from them (see the package
docstring)."""

from __future__ import annotations

import ast
import copy
import sys
import warnings
from collections.abc import Callable

from localdistill.stages.mine.module import _free_names, _imported, _Module, _root
from localdistill.stages.mine.package import Package
from localdistill.stages.mine.select import (
    _BUILTINS,
    BANNED_BUILTINS,
    BANNED_MODULES,
    BROKEN,
    CLASS_DECORATORS,
    CLASS_NOT_PLAIN,
    CLASS_TOO_LONG,
    CLASS_USES_METHOD,
    GLOBALS,
    IMMUTABLE_CALLS,
    IMPURE,
    MAX_CLASS_LINES,
    MAX_CONTEXT_LINES,
    MUTABLE_CALLS,
    NOT_BUILDABLE,
    NOT_CARRIABLE,
    NOW_ATTRIBUTES,
    OPAQUE_ARGUMENTS,
    OWN_PACKAGE,
    RELATIVE,
    THIRD_PARTY,
    TOO_MUCH_CONTEXT,
    TOO_SHORT,
    UNDEFINED,
    Candidate,
    _binding,
    _body_lines,
    _constructor_arguments,
    _Function,
    _opaque,
    _signature_end,
    arguments_of,
    mutates,
    package_classes,
    self_arguments,
)


def _candidate(function: _Function, module: _Module, own: set[str],
               site_packages: bool, package: Package | None = None
               ) -> tuple[Candidate | None, str]:
    needs = _Needs(module, own, site_packages, function.name, package)
    reason = needs.resolve(function)
    if reason:
        return None, reason
    if not needs.require_classes(_classes_of(arguments_of(function), module, own)):
        return None, OPAQUE_ARGUMENTS
    signature = "\n".join(module.lines[function.lineno - 1 : _signature_end(function)])
    return _assembled(needs, function, module, signature, function.name)


def _assembled(needs: _Needs, function: _Function, module: _Module, last: str, name: str,
               binding: str | None = None) -> tuple[Candidate | None, str]:
    """The candidate whose prompt is what `needs` carries, then `last` (the function's signature
    and docstring, or its class), and whose reference is the function's body; or why not."""
    if _signature_end(function) < function.lineno:
        return None, TOO_SHORT  # the body shares the `def` line
    header = needs.future_lines() + needs.import_lines()
    blocks = ["\n".join(header)] if header else []
    blocks += needs.carried_sources()
    prompt = "\n\n\n".join([*blocks, last]) + "\n"
    reference = "\n".join(_body_lines(function, module)).rstrip() + "\n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(prompt + reference)
    except (SyntaxError, ValueError):
        return None, BROKEN
    return Candidate(module.path, function.lineno, name, prompt, reference, binding=binding,
                     mutates=binding == "instance" and mutates(function)), ""


def _method_candidate(function: _Function, owner: ast.ClassDef, module: _Module, own: set[str],
                      site_packages: bool, package: Package | None = None
                      ) -> tuple[Candidate | None, str]:
    """A method of a top-level class as a task: its class travels whole (its other methods as
    written, the target method last with its body removed), with what the class needs."""
    if owner.end_lineno - owner.lineno + 1 > MAX_CLASS_LINES:
        return None, CLASS_TOO_LONG
    problem = _class_problem(owner, module)
    if problem:
        return None, problem
    if any(function.name in _names(statement) for statement in owner.body
           if statement is not function):
        return None, CLASS_USES_METHOD  # (the method moves last: the class body must not use it)
    needs = _Needs(module, own, site_packages, owner.name, package)
    reason = needs.resolve(owner)
    if reason:
        return None, reason
    if not needs.require_classes(_classes_of(_constructor_arguments(owner), module, own)):
        return None, NOT_BUILDABLE
    skip = self_arguments(function)
    if not needs.require_classes(_classes_of(arguments_of(function)[skip:], module, own)):
        return None, OPAQUE_ARGUMENTS
    return _assembled(needs, function, module, _class_text(owner, function, module),
                      f"{owner.name}.{function.name}", _binding(function))


# Decorators a method of a class that travels may have (the class is built as written).
_METHOD_DECORATORS = frozenset({
    "staticmethod", "classmethod", "property", "cached_property", "functools.cached_property",
    "abstractmethod", "abc.abstractmethod", "overload", "typing.overload"})
_DATACLASS_FIELD = frozenset({"field", "dataclasses.field"})


def _classes_of(arguments: list[ast.arg], module: _Module, own: frozenset[str]) -> set[str]:
    """The repository's classes the arguments' annotations name (their objects are built in the
    tests: the classes must travel)."""
    return {name for argument in arguments if argument.annotation is not None
            for name in package_classes(argument.annotation, module, own)}


def _class_problem(node: ast.ClassDef, module: _Module) -> str | None:
    """Why a class cannot be built as written in a task's program (its body is only a docstring,
    constants, annotated fields and plainly decorated methods; no metaclass, no decorator but a
    dataclass's), or None. What its names need is resolved like a function's."""
    def dotted(function: ast.expr) -> str:
        return _dotted(function, module)

    decorators = [ast.unparse(d.func if isinstance(d, ast.Call) else d)
                  for d in node.decorator_list]
    if any(d not in CLASS_DECORATORS for d in decorators) or node.keywords:
        return CLASS_NOT_PLAIN
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in statement.decorator_list:
                name = ast.unparse(decorator)
                if name not in _METHOD_DECORATORS and not name.endswith(
                        (".setter", ".getter", ".deleter")):
                    return CLASS_NOT_PLAIN
            continue
        if isinstance(statement, ast.AnnAssign) and (statement.value is None or (
                isinstance(statement.value, ast.Call)
                and dotted(statement.value.func) in _DATACLASS_FIELD)):
            continue  # a field
        kind = _docstring_pass_or_constant(statement, dotted)
        if kind != "constant":
            return GLOBALS if kind == "mutable" else CLASS_NOT_PLAIN
    return None


def _names(node: ast.AST) -> set[str]:
    """Every name a statement reads or writes, in decorators and defaults too."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        parts = [*node.decorator_list, *node.args.defaults,
                 *(d for d in node.args.kw_defaults if d)]
    else:
        parts = [node]
    return {n.id for part in parts for n in ast.walk(part) if isinstance(n, ast.Name)}


def _start(node: ast.stmt) -> int:
    """The first line of a statement, its decorators included."""
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def _class_text(owner: ast.ClassDef, function: _Function, module: _Module) -> str:
    """The class as written (its comments and blank lines kept), with `function` moved last and
    cut after its docstring (or its signature): the rest of a task's prompt."""
    lines, end = [], _start(owner) - 1
    for statement in owner.body:
        if statement is function:
            end = statement.end_lineno  # what lies between the method and the next goes too
            continue
        lines += module.lines[end : statement.end_lineno]
        end = statement.end_lineno
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([*lines, "", *module.lines[_start(function) - 1 : _signature_end(function)]])


class _Needs:
    """The imports and top-level definitions a function needs, found transitively, in its own
    module and, through `package`, in the repository's other modules (a name imported from its
    own package travels as the definition it names); `resolve` says why they cannot be carried,
    if they cannot. Everything carried lands in one namespace: two pieces that bind one name to
    different things make the function NOT_CARRIABLE."""

    def __init__(self, module: _Module, own: set[str], site_packages: bool, name: str,
                 package: Package | None = None) -> None:
        self.module, self.own, self.site_packages, self.name = module, own, site_packages, name
        self.package = package
        self.imports: dict[str, set[str]] = {}  # module path -> names bound by its imports used
        self.carried: list[tuple[_Module, ast.stmt]] = []
        self.bound: dict[str, str] = {name: f"{module.path}:{name}"}  # name -> what it means
        self.seen = {(module.path, name)}  # (module, name) looked up already

    def resolve(self, function: _Function | ast.ClassDef) -> str | None:
        return self._resolve([(function, self.module)])

    def require_classes(self, names: set[str]) -> bool:
        """Carry the repository's classes named by an argument's annotation (a test builds their
        objects from literals, `Cls(...)`, or from other such classes: their constructors are
        followed too), with what they need; False when one is no class or cannot travel."""
        todo, done = [(name, self.module) for name in sorted(names)], set()
        while todo:
            name, module = todo.pop()
            if (module.path, name) in done or (module.path, name) == (self.module.path,
                                                                      self.name):
                continue  # the task's own class is its prompt already
            done.add((module.path, name))
            found, problem = self._need(name, module)
            if problem or found is None or not isinstance(found[1], ast.ClassDef):
                return False
            if found not in self.carried:
                self.carried.append(found)
                self.seen.add((module.path, name))
                if self._resolve([(found[1], found[0])]):
                    return False
            for argument in _constructor_arguments(found[1]):
                if argument.annotation is None:
                    continue
                if _opaque(argument.annotation, found[0], self.own):
                    return False
                todo += [(n, found[0]) for n in sorted(package_classes(
                    argument.annotation, found[0], self.own))]
        return True

    def _resolve(self, todo: list[tuple[ast.AST, _Module]]) -> str | None:
        while todo:
            node, module = todo.pop()
            problem = self._impurity(node)
            if problem:
                return problem
            annotations = not module.lazy_annotations
            for name in sorted(_free_names(node, annotations)):
                if (module.path, name) in self.seen:
                    continue
                self.seen.add((module.path, name))
                found, problem = self._need(name, module)
                if problem:
                    return problem
                if found is not None and found not in self.carried:
                    self.carried.append(found)
                    todo.append((found[1], found[0]))
        if sum(n.end_lineno - n.lineno + 1 for _, n in self.carried) > MAX_CONTEXT_LINES:
            return TOO_MUCH_CONTEXT
        return None

    def _need(self, name: str, module: _Module
              ) -> tuple[tuple[_Module, ast.stmt] | None, str | None]:
        if name in module.twice:
            return None, NOT_CARRIABLE
        root = module.import_root(name)
        if root is not None:
            if (root == "." or root in self.own) and self.package is not None:
                found = self.package.resolve(module, name)
                if found is not None:
                    return self._carry(found[0], found[1], name)
            node, alias = module.imports[name]
            if not self._bind(name, _imported(node, alias)):
                return None, NOT_CARRIABLE
            self.imports.setdefault(module.path, set()).add(name)
            return None, self._import_problem(root)
        if name in module.definitions:
            return self._carry(module, name, name)
        if name in BANNED_BUILTINS:
            return None, IMPURE
        return None, None if name in _BUILTINS else UNDEFINED

    def _carry(self, module: _Module, real: str, name: str
               ) -> tuple[tuple[_Module, ast.stmt] | None, str | None]:
        """The definition of `real` in `module`, to be carried under `name` (the same name)."""
        if real in module.twice or not self._bind(name, f"{module.path}:{real}"):
            return None, NOT_CARRIABLE
        definition = module.definitions[real]
        return (module, definition), self._carriable(definition, module)

    def _bind(self, name: str, meaning: str) -> bool:
        """Whether `name` can mean `meaning` in the one namespace everything lands in."""
        return self.bound.setdefault(name, meaning) == meaning

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

    def _carriable(self, node: ast.stmt, module: _Module) -> str | None:
        def dotted(function: ast.expr) -> str:
            return _dotted(function, module)

        if isinstance(node, ast.FunctionDef):
            return None if not node.decorator_list else NOT_CARRIABLE
        if isinstance(node, ast.ClassDef):  # carried whole, built as written
            if node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                return TOO_MUCH_CONTEXT
            problem = _class_problem(node, module)
            return None if problem is None else GLOBALS if problem == GLOBALS else NOT_CARRIABLE
        kind = _docstring_pass_or_constant(node, dotted)
        return {"constant": None, "mutable": GLOBALS}.get(kind, NOT_CARRIABLE)

    def _modules(self) -> list[_Module]:
        """The modules pieces come from: the others first, the deepest found first (what a
        piece needs comes before it), the function's own last."""
        others = list(dict.fromkeys(m.path for m, _ in reversed(self.carried)
                                    if m.path != self.module.path))
        by_path = {m.path: m for m, _ in self.carried}
        return [*(by_path[p] for p in others), self.module]

    def future_lines(self) -> list[str]:
        return list(dict.fromkeys(ast.unparse(node) for module in self._modules()
                                  for node in module.future))

    def import_lines(self) -> list[str]:
        """Each module's import statements, in order, with only the names used, once each."""
        lines = []
        for module in self._modules():
            used_names = self.imports.get(module.path, set())
            for node in module.tree.body:
                if isinstance(node, ast.Import | ast.ImportFrom) and node not in module.future:
                    used = [a for a in node.names
                            if (a.asname or a.name.split(".")[0]) in used_names]
                    if used:
                        trimmed = copy.copy(node)
                        trimmed.names = used
                        lines.append(ast.unparse(trimmed))
        return list(dict.fromkeys(lines))

    def carried_sources(self) -> list[str]:
        """The carried definitions' source, module by module, each module's in source order."""
        blocks = []
        for module in self._modules():
            mine = sorted((n for m, n in self.carried if m.path == module.path),
                          key=lambda n: n.lineno)
            blocks += [module.source(node) for node in mine]
        return blocks


def _dotted(function: ast.expr, module: _Module) -> str:
    """A called name as its module's path: `_re.compile` -> `re.compile`."""
    parts = []
    while isinstance(function, ast.Attribute):
        parts.append(function.attr)
        function = function.value
    if not isinstance(function, ast.Name):
        return ""
    head = function.id
    if head in module.imports:
        node, alias = module.imports[head]
        if isinstance(node, ast.ImportFrom):
            head = f"{node.module}.{alias.name}"
        elif alias.asname:
            head = alias.name
    return ".".join([head, *reversed(parts)])


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

