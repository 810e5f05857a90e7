"""A pids cgroup per zygote: a fork bomb stops at a fixed count of processes, even run as root,
and a daemon that left its session is still found and killed.

Kept apart from the zygote pool (worker.py) because this is the kernel's cgroup file system,
probed once per process (root, or a delegated subtree) and used only where this machine allows
it; the pool just asks for one and gives it back.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import time
from pathlib import Path

_cgroup_numbers = itertools.count(1)  # next() on a count is atomic in CPython: thread-safe


def make_cgroup(max_processes: int) -> Path | None:
    base = pids_cgroup_root()
    if base is None:
        return None
    path = base / f"localdistill-{os.getpid()}-{next(_cgroup_numbers)}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_processes))
    except OSError:
        return None
    return path


def remove_cgroup(path: Path) -> None:
    """Kill whatever is still in the cgroup (daemons that left the session), then remove it."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.01)


_probe_lock = threading.Lock()


def pids_cgroup_root() -> Path | None:
    """A pids-controller cgroup directory we may create children in (probed once, locked)."""
    with _probe_lock:
        return _find_pids_cgroup_root()


@functools.cache
def _find_pids_cgroup_root() -> Path | None:
    """A pids-controller cgroup directory we may create children in (root, or delegated)."""
    candidates = [Path("/sys/fs/cgroup/pids")]
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        unified = next(line.split(":", 2)[2] for line in own if line.startswith("0::"))
        candidates.append(Path("/sys/fs/cgroup") / unified.lstrip("/"))
    except (OSError, StopIteration):
        pass
    for base in candidates:
        probe = base / f"localdistill-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if (probe / "pids.max").exists():
                return base
        finally:
            probe.rmdir()
    return None
