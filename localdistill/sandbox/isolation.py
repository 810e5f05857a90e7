"""Which isolation this machine allows, found by really starting a sandbox, and the report of it
that `localdistill doctor` prints."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading

from localdistill.sandbox import judge
from localdistill.sandbox.limits import Limits, SandboxError
from localdistill.sandbox.worker import (
    FULL,
    NAMESPACES_ONLY,
    Isolation,
    _execute,
    _pids_cgroup_root,
)

_lock = threading.Lock()


def isolation() -> Isolation:
    """The strongest isolation this machine allows (found once per process, thread-safely)."""
    with _lock:
        return _find_isolation()


@functools.cache
def _find_isolation() -> Isolation:
    """The strongest isolation this machine allows, found by really running a probe program."""
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    candidates = []
    if shutil.which("unshare"):
        candidates += [
            Isolation((FULL[0], *user, *FULL[1:]), True),
            Isolation((NAMESPACES_ONLY[0], *user, *NAMESPACES_ONLY[1:]), False),
        ]
    for candidate in candidates:
        try:
            result = _probe(candidate)
        except SandboxError:
            continue
        if result:
            return candidate
    return Isolation((), False)


def _probe(mode: Isolation) -> bool:
    plans = [judge.plan_test("assert f() == 1", "f")]
    events, end, _ = _execute(
        "def f():\n    return 1\n", "", plans, 0, Limits(test_timeout=10), 20, mode
    )
    return end == "done" and any(e.get("value") == 1 for e in events)


def isolation_report() -> list[tuple[str, bool | None, str]]:
    """One line per protection, as `doctor` prints them: (name, active, how)."""
    mode = isolation()
    prefix = mode.prefix
    unprivileged = unprivileged_namespaces()
    if os.geteuid() == 0:
        user = (
            f"as root; unprivileged user namespaces {'allowed' if unprivileged else 'refused'}"
            " for other users"
        )
    else:
        user = "in an unprivileged user namespace"
    cgroup = _pids_cgroup_root()
    nproc_ok = os.geteuid() != 0
    return [
        (
            "sandbox network",
            bool(prefix),
            f"new network namespace ({user})"
            if prefix
            else "NOT isolated: this kernel refuses new network namespaces (unshare failed)",
        ),
        (
            "sandbox PID isolation",
            bool(prefix),
            "new PID and IPC namespaces: programs cannot signal other processes nor reach their "
            "shared memory, leftovers die with the run"
            if prefix
            else "NOT isolated: programs run in our PID namespace (process group only)",
        ),
        (
            "sandbox file system",
            mode.lockdown,
            "a new root: only /usr, system libraries and Python, read-only (benchmark packages "
            "hidden even with --site-packages; /proc/sys read-only); a 256 MB tmpfs to write in; "
            "no capabilities; undumpable zygote"
            if mode.lockdown
            else "NOT locked down: programs can write wherever this user can",
        ),
        (
            "sandbox process cap",
            bool(cgroup) or nproc_ok,
            f"pids cgroup under {cgroup}"
            if cgroup
            else "RLIMIT_NPROC"
            if nproc_ok
            else "NONE: running as root without a writable pids cgroup "
            "(RLIMIT_NPROC does not bind root)",
        ),
        (
            "sandbox limits",
            True,
            "rlimits on memory, CPU, file size, open files; per-test timeouts; temp dir; clean env",
        ),
    ]


@functools.cache
def unprivileged_namespaces() -> bool:
    """Whether this kernel lets an ordinary user create a user + network namespace (the sandbox
    of anyone not running as root). Checked by really doing it, as `nobody` when we are root."""
    if shutil.which("unshare") is None:
        return False
    command = ["unshare", "--user", "--map-root-user", "--net", "true"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return False
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    try:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
