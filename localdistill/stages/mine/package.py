"""The repository's own modules by the dotted names its code imports them by, so that a function
that imports from its own package can carry the pieces it uses (standalone.py) instead of being
rejected: `from .util import clamp` or `from mypkg.util import clamp` resolves to `clamp`'s
definition in mypkg/util.py, followed through re-exports (an `__init__.py` that imports it)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from localdistill.stages.mine.module import _Module

MAX_REEXPORTS = 5  # hops from an import to the definition (a re-export of a re-export...)


@dataclass
class Package:
    """Every parsed module of the repository, by dotted name."""

    prefix: str = ""  # the repository's own name when it is a package itself
    files: list[_Module] = field(default_factory=list)  # every module, in file order
    modules: dict[str, _Module] = field(default_factory=dict)  # by dotted name (first file wins)
    names: dict[str, str] = field(default_factory=dict)  # module path -> dotted name

    def add(self, module: _Module) -> None:
        name = dotted(module.path, self.prefix)
        self.files.append(module)
        self.modules.setdefault(name, module)
        self.names[module.path] = name

    def resolve(self, module: _Module, name: str, hops: int = 0) -> tuple[_Module, str] | None:
        """Where `name`, imported at the top of `module`, is defined in the repository: the
        module and its name there. None for anything else: a module imported as a whole
        (`import pkg.util`, `from pkg import util`: used as attributes), a renamed import, or a
        name the repository does not define."""
        if name not in module.imports or hops > MAX_REEXPORTS:
            return None
        node, alias = module.imports[name]
        if not isinstance(node, ast.ImportFrom) or (alias.asname not in (None, alias.name)):
            return None
        source = self._absolute(module, node)
        target = self.modules.get(source) if source else None
        if target is None or f"{source}.{alias.name}" in self.modules:
            return None
        if alias.name in target.definitions:
            return target, alias.name
        return self.resolve(target, alias.name, hops + 1)

    def _absolute(self, module: _Module, node: ast.ImportFrom) -> str | None:
        """The dotted module an import names, a relative one resolved against `module`."""
        if not node.level:
            return node.module
        here = self.names.get(module.path, "").split(".")
        is_package = PurePosixPath(module.path).name == "__init__.py"
        base = here if is_package else here[:-1]
        if node.level - 1 > len(base):
            return None
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])]) or None


def dotted(path: str, prefix: str = "") -> str:
    """`src/pkg/util.py` -> `pkg.util`; `pkg/__init__.py` -> `pkg`; with the repository's own
    name as prefix when the repository is a package itself."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join([*([prefix] if prefix else []), *parts])
