"""Which files mine reads: the Python files git would track, less tests, virtual environments,
build output and caches (see the package docstring)."""

from __future__ import annotations

import os
import subprocess
import tokenize
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

SKIP_DIRS = frozenset({
    ".eggs", ".git", ".hg", ".mypy_cache", ".nox", ".pytest_cache", ".ruff_cache", ".svn",
    ".tox", ".venv", "__pycache__", "build", "dist", "env", "node_modules", "site-packages",
    "test", "tests", "venv",
})


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


def _read(path: Path) -> str:
    with tokenize.open(path) as source:  # honours a coding cookie
        return source.read()

