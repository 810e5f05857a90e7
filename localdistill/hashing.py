"""Content hashes: what keys the run's memory (answers.py, verdicts.py), the manifest and the
training fingerprint. A file's sha256 is remembered per (path, size, mtime, inode), so a 10 GB
model is read once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from localdistill.rundir import write_atomic


def digest(value: object) -> str:
    """sha256 of a JSON-able value (keys sorted: the same value, the same digest)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents); remembered per file
    (path, size, mtime) in ~/.cache/localdistill/digests.json, so a 10 GB model is read once."""
    path = Path(path)
    if path.is_dir():
        parts = [(str(f.relative_to(path)), _file_sha256(f))
                 for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        return digest(parts)
    return _file_sha256(path)


def _memo_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "localdistill" / "digests.json"


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(stamp), str):
        return memo[stamp]
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    value = sha.hexdigest()
    memo = memo if isinstance(memo, dict) else {}
    memo[stamp] = value
    try:
        write_atomic(memo_file, json.dumps(memo, indent=0).encode())
    except OSError:
        pass  # a read-only home only costs hashing again next time
    return value


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
