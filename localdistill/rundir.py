"""A run directory: a run's caches, its stages' outputs and its manifest, safe against kill -9.

Two kinds of files, both JSONL records with a unique `key`:
- caches (`cache/requests.jsonl`, `cache/executions.jsonl`) are append-only: each record is
  handed to the OS as soon as it exists (so kill -9 loses nothing finished) and fsync'ed in
  batches; a line cut short by a crash is ignored when read, and cut off before the next append.
- stage outputs (`attempts.jsonl`, `refinements.jsonl`, ...) and the manifest are rewritten whole
  and atomically (a temporary file, fsync, rename): a reader sees the old file or the new one.
One process at a time owns a run directory: a second one is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from localdistill.errors import BadInput

FORMAT = 2  # bumped when the layout changes; an older run directory is refused, not misread


class RunDirError(BadInput, RuntimeError):  # still a RuntimeError to callers catching one
    """The run directory cannot be used (locked by another run, or from another version)."""


class RunDir:
    """Open (creating if needed) and lock a run directory; use as a context manager."""

    def __init__(self, path: Path | str, reuse: Sequence[Path | str] = ()) -> None:
        """`reuse`: other run directories (or folders holding them) whose model answers this run
        may take instead of asking the model again (see answers.generate); read, never written."""
        self.path = Path(path)
        self.reuse = tuple(Path(p) for p in reuse)
        for where in self.reuse:
            if not where.is_dir():
                raise RunDirError(f"--reuse {where}: not a directory")
        self._lock = DirectoryLock(self.path)
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

    def file(self, name: str, suffix: str = ".jsonl") -> Path:
        return self.path / f"{name}{suffix}"

    def records(self, name: str) -> Iterator[dict]:
        """The complete records of `name`.jsonl, in order; a torn last line is skipped."""
        return read_records(self.file(name))

    def done_keys(self, name: str) -> set[str]:
        return {r["key"] for r in self.records(name) if "key" in r}

    def append(self, name: str, records: Iterable[dict]) -> int:
        """Append records (each with a `key`); returns the count. See `appender`."""
        with self.appender(name) as out:
            for record in records:
                out.add(record)
            return out.count

    def appender(self, name: str, every: int = 16) -> Appender:
        """An open `name`.jsonl to add records to, one at a time, as they are made.

        Each record reaches the OS as it is added (a killed process loses none of them) and the
        disk every `every` records and at the end. A torn last line left by a crash is cut off
        first, so the file stays one record a line.
        """
        path = self.file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_torn_tail(path)
        return Appender(path, every)

    def write(self, name: str, records: Iterable[dict]) -> int:
        """Replace `name`.jsonl with `records`, atomically; returns the count."""
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
        write_atomic(self.file(name), "".join(lines).encode())
        return len(lines)

    def read_json(self, name: str) -> dict:
        path = self.file(name, ".json")
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise RunDirError(f"{path}: not valid JSON; it was edited or damaged") from None
        return data if isinstance(data, dict) else {}

    def write_json(self, name: str, data: dict) -> None:
        text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        write_atomic(self.file(name, ".json"), text.encode())

    def close(self) -> None:
        self._lock.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DirectoryLock:
    """One process at a time in a directory (created if missing): `.lock` there, flock'ed and
    holding the pid; the kernel drops the lock when the process ends, even by kill -9. A second
    process is refused at once with RunDirError naming the directory and the holder's pid."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        make_private_dir(self.path)
        self._file = open(self.path / ".lock", "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RunDirError(f"{self.path} is in use by another localdistill run (pid "
                              f"{_holder(self.path)}); wait for it or use another directory") \
                from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Appender:
    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every, self.count = path, every, 0
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by __exit__

    def add(self, record: dict) -> None:
        if "key" not in record:
            raise ValueError(f"{self.path.name}: a record needs a 'key'")
        line = memoryview(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        start = os.fstat(self._file.fileno()).st_size
        try:
            while line:
                line = line[os.write(self._file.fileno(), line):]
        except OSError as error:
            # A full disk: take back what got through, so the file stays one record a line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), start)
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        self.count += 1
        if self.count % self.every == 0:
            os.fsync(self._file.fileno())

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()


def read_records(path: Path) -> Iterator[dict]:
    """The complete records of a JSONL file of a run directory, in order; a torn last line is
    skipped. Takes no lock: a reader may look at a run that another process is writing."""
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


def load_json(path: Path) -> object:
    """A JSON file a command wrote earlier (a summary, a manifest, train.json) and a user passed
    back; a damaged one is the user's to fix or remake: BadInput naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not valid JSON ({e}); make it again with the command that "
                       "wrote it") from None


def load_jsonl(path: Path) -> list:
    """A JSONL file a command wrote earlier (a data set), every line a JSON value; a damaged
    line is BadInput naming the file and the line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise BadInput(f"{path}:{number}: not valid JSON ({e}); make it again with the "
                           "command that wrote it") from None
    return rows


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents; the top-most one created is its owner's alone
    (0700): a run holds prompts, private code and answers. Existing directories are left as
    they are."""
    top, probe = None, path
    while not probe.exists():
        top, probe = probe, probe.parent
    path.mkdir(parents=True, exist_ok=True)
    if top is not None:
        os.chmod(top, 0o700)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:  # a full disk: the old file stays, and no half-written copy
        temporary.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from None
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return
        position = end  # look backwards, a block at a time, for the last whole line
        while position > 0:
            start = max(0, position - 65536)
            f.seek(start)
            block = f.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            position = start
        f.truncate(0)


def _holder(path: Path) -> str:
    try:
        return (path / ".lock").read_text().strip() or "?"
    except OSError:
        return "?"
