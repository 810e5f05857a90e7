"""The package's shape, as docs/architecture.md states it: no import cycle (imports inside
functions included), shared modules never import a stage, and no module far past ~400 lines
without a stated reason. Read from the code's own imports, nothing run."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "localdistill"
# What runs the stages or drives them: the only modules above `stages/`.
ENTRY_POINTS = ("localdistill.cli", "localdistill.collect", "localdistill.experiment",
                "localdistill.doctor", "localdistill.__main__")
# Modules allowed past the line, and why.
LONG = {
    "localdistill.sandbox.runner": "the sandboxed program itself: its source text is started as "
                                   "one `python -c` program that can import nothing of ours",
}
MOST_LINES = 410


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Each module -> the package's modules it imports, anywhere in its body."""
    known = modules()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                for alias in node.names:
                    found.add(resolve(f"{base}.{alias.name}") or "")
            elif isinstance(node, ast.Import):
                found.update(resolve(alias.name) or "" for alias in node.names)
        graph[name] = {m for m in found if m and m != name and m != "localdistill"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                part.append(other)
                if other == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(imports()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_shared_modules_never_import_a_stage():
    upward = sorted((name, target) for name, targets in imports().items()
                    for target in targets
                    if target.startswith("localdistill.stages")
                    and not name.startswith(("localdistill.stages", *ENTRY_POINTS)))
    assert upward == []


def test_no_module_is_far_past_400_lines_without_a_reason():
    long = {name: sum(1 for _ in path.open(encoding="utf-8"))
            for name, path in modules().items()}
    assert {name: n for name, n in long.items() if n > MOST_LINES and name not in LONG} == {}
