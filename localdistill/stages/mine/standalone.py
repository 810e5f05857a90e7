"""What a function needs to run on its own: the imports, helpers and constants it uses, whether
they can be carried into its prompt, and the candidate built from them (see the package
docstring)."""

from __future__ import annotations

import ast
import copy
import sys
import warnings
from collections.abc import Callable

from localdistill.stages.mine.select import (
    _BUILTINS,
    BANNED_BUILTINS,
    BANNED_MODULES,
    BROKEN,
    GLOBALS,
    IMMUTABLE_CALLS,
    IMPURE,
    MAX_CONTEXT_LINES,
    MUTABLE_CALLS,
    NOT_CARRIABLE,
    NOW_ATTRIBUTES,
    OWN_PACKAGE,
    RELATIVE,
    THIRD_PARTY,
    TOO_MUCH_CONTEXT,
    TOO_SHORT,
    UNDEFINED,
    Candidate,
    _body_lines,
    _Function,
    _Module,
    _root,
    _signature_end,
)


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
