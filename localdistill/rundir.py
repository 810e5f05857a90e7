"""A run directory: where a stage's records go, append-only, so a killed run resumes.

Each stage writes JSONL files of records with a unique `key` (e.g. "HumanEval/3#2" for the third
sample of a task). Appends are whole lines, flushed and fsync'ed in batches; a line cut short by a
crash is ignored when the file is read again, so what a rerun skips is exactly what was finished.
One process at a time owns a run directory: a second one is refused with a clear message.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

FORMAT = 1  # bumped when the layout changes; an older run directory is refused, not misread


class RunDirError(RuntimeError):
    """The run directory cannot be used (locked by another run, or from another version)."""


class RunDir:
    """Open (creating if needed) and lock a run directory; use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the run's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RunDirError(f"{self.path} is in use by another localdistill run (pid "
                              f"{_holder(self.path)}); wait for it or use another directory") \
                from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._check_format()

    def _check_format(self) -> None:
        marker = self.path / "localdistill-run.json"
        if marker.exists():
            try:
                found = json.loads(marker.read_text()).get("format")
            except (ValueError, AttributeError):
                found = None
            if found != FORMAT:
                self.close()
                raise RunDirError(f"{self.path} was written by another version of localdistill "
                                  f"(format {found!r}, this one reads {FORMAT}); start a new run "
                                  "directory")
        else:
            marker.write_text(json.dumps({"format": FORMAT}) + "\n")

    def records(self, name: str) -> Iterator[dict]:
        """The complete records of `name`.jsonl, in order; a torn last line is skipped."""
        path = self.path / f"{name}.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # the tail of a write a crash cut short
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record

    def done_keys(self, name: str) -> set[str]:
        return {r["key"] for r in self.records(name) if "key" in r}

    def append(self, name: str, records: Iterable[dict], every: int = 16) -> int:
        """Append records (each with a `key`), durable every `every` records; returns the count.

        A torn last line left by a crash is cut off first, so the file stays one record a line.
        """
        path = self.path / f"{name}.jsonl"
        _truncate_torn_tail(path)
        count = 0
        with open(path, "ab") as f:
            for record in records:
                if "key" not in record:
                    raise ValueError(f"{name}: a record needs a 'key'")
                f.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
                count += 1
                if count % every == 0:
                    f.flush()
                    os.fsync(f.fileno())
            f.flush()
            os.fsync(f.fileno())
        return count

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def _holder(path: Path) -> str:
    try:
        return (path / ".lock").read_text().strip() or "?"
    except OSError:
        return "?"
