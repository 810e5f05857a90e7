"""One parsed module of the mined repository: its lines, its tree, and what its top level binds
(imports, definitions, names bound twice). select.py, package.py and standalone.py read it."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


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
