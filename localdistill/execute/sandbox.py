"""Run one untrusted program and its tests in a fresh, confined process.

Each run gets: a new session and process group (killed as a group), new PID and network namespaces
where the kernel allows them (the program cannot see or signal our processes, reach the network, or
leave daemons behind: when the sandbox's first process ends, the kernel kills the whole namespace),
a pids cgroup when we may create one (fork bombs stop at a fixed count even for root), rlimits on
address space, CPU time, processes, file size and open files, a fresh temporary working directory
(removed afterwards, also HOME and TMPDIR), an environment with nothing of the user's, stdin
closed, and stdout/stderr captured up to a cap. Tests get their own timeouts; a test that hangs
costs only itself: the rest run in a fresh process.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.execute import judge

RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text()
GRACE = 1.0  # seconds the parent waits past the in-sandbox alarm before it kills
MAX_REPORT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one program may use. Every field has a safe default."""

    test_timeout: float = 3.0  # seconds for each test, and for loading the program
    total_timeout: float = 30.0  # wall-clock seconds for the program and all its tests
    memory_mb: int = 2048  # address space of each process
    max_processes: int = 32  # processes and threads the program may have at once
    max_file_mb: int = 16  # size of any file it writes
    max_open_files: int = 64
    max_output_kb: int = 64  # stdout+stderr kept for the record; past 64x this it is killed
    stop_at_first_failure: bool = False  # skip the remaining tests after a failure
    site_packages: bool = False  # let the program import installed third-party packages

    def rlimits(self) -> dict[str, int]:
        mb = 1024 * 1024
        return {
            "RLIMIT_AS": self.memory_mb * mb,
            "RLIMIT_CPU": int(self.total_timeout) + 2,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_FSIZE": self.max_file_mb * mb,
            "RLIMIT_NOFILE": self.max_open_files,
            "RLIMIT_CORE": 0,
        }


@dataclass(frozen=True)
class TestOutcome:
    test: str
    status: str  # passed | failed | error | timeout | not_run
    feedback: str = ""


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    outcomes: tuple[TestOutcome, ...]
    feedback: str  # the first failure's feedback, for the teacher; "" when passed
    runtime: float  # seconds, wall clock
    output: str = ""  # what the program printed (capped)
    notes: tuple[str, ...] = field(default=())  # how processes ended, for the record

    @property
    def status(self) -> str:
        if self.passed:
            return "passed"
        return next((o.status for o in self.outcomes if o.status != "passed"), "failed")


# --- isolation -------------------------------------------------------------------------------


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program under test): a problem of this machine."""


@dataclass(frozen=True)
class Isolation:
    prefix: tuple[str, ...]  # the unshare command, () for none
    lockdown: bool  # read-only file system, hidden home, no capabilities


FULL = ("unshare", "--mount", "--mount-proc", "--net", "--pid", "--fork", "--kill-child")
NAMESPACES_ONLY = ("unshare", "--net", "--pid", "--fork", "--kill-child")


@functools.cache
def isolation() -> Isolation:
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
    run = _Run(
        "def f():\n    return 1\n",
        "",
        [judge.plan_test("assert f() == 1", "f")],
        0,
        Limits(test_timeout=10),
        20,
        mode,
    )
    events, end, _ = run.execute()
    return end == "done" and any(e.get("value") == 1 for e in events)


def _hidden_dirs(workdir_parent: str) -> list[str]:
    """The user's home directories, hidden from sandboxed code (unless the work dir is inside)."""
    homes = {os.path.expanduser("~"), "/root", "/home"}
    return sorted(
        h
        for h in homes
        if os.path.isdir(h)
        and os.path.realpath(h) != "/"
        and not os.path.realpath(workdir_parent).startswith(os.path.realpath(h))
    )


@functools.cache
def _pids_cgroup_root() -> Path | None:
    """A pids-controller cgroup directory we may create children in (root, or delegated)."""
    candidates = [Path("/sys/fs/cgroup/pids")]
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        unified = next(line.split(":", 2)[2] for line in own if line.startswith("0::"))
        candidates.append(Path("/sys/fs/cgroup") / unified.lstrip("/"))
    except (OSError, StopIteration):
        pass
    for base in candidates:
        probe = base / f"localdistill-probe-{os.getpid()}"
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


def isolation_report() -> list[tuple[str, bool | None, str]]:
    """One line per protection, as `doctor` prints them: (name, active, how)."""
    mode = isolation()
    prefix = mode.prefix
    user = "as root" if os.geteuid() == 0 else "with an unprivileged user namespace"
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
            "new PID namespace: programs cannot signal other processes, leftovers die with the run"
            if prefix
            else "NOT isolated: programs run in our PID namespace (process group only)",
        ),
        (
            "sandbox file system",
            mode.lockdown,
            "read-only except its own temp dir; home directories hidden; no capabilities"
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


# --- one run -----------------------------------------------------------------------------------


def run_tests(
    program: str,
    tests: Sequence[str],
    entry_point: str,
    setup: str = "",
    limits: Limits = Limits(),
) -> ExecutionResult:
    """Run `program`, then `setup`, then each test; the verdict never trusts the program."""
    started = time.monotonic()
    plans = [judge.plan_test(t, entry_point) for t in tests]
    outcomes: list[TestOutcome | None] = [None] * len(plans)
    output, notes = bytearray(), []
    start = 0
    while True:
        remaining = limits.total_timeout - (time.monotonic() - started)
        run = _Run(program, setup, plans, start, limits, remaining)
        events, end, printed = run.execute()
        output += printed[: limits.max_output_kb * 1024 - len(output)]
        next_start = _judge_events(plans, events, outcomes, limits)
        if next_start is None:  # the program itself did not load: every test fails alike
            break
        if next_start >= len(plans):
            break
        # The process ended before test `next_start` reported: that test pays for it.
        notes.append(end)
        plan = plans[next_start]
        if end.startswith("timeout"):
            outcomes[next_start] = TestOutcome(
                plan.source, "timeout", judge.timeout(plan, limits.test_timeout)
            )
        else:
            outcomes[next_start] = TestOutcome(plan.source, "error", judge.error(plan, end))
        start = next_start + 1
        out_of_time = time.monotonic() - started >= limits.total_timeout
        if start >= len(plans) or limits.stop_at_first_failure or out_of_time:
            break
    final = tuple(
        o or TestOutcome(p.source, "not_run") for o, p in zip(outcomes, plans, strict=False)
    )
    passed = bool(final) and all(o.status == "passed" for o in final)
    feedback = next((o.feedback for o in final if o.status not in ("passed", "not_run")), "")
    return ExecutionResult(
        passed,
        final,
        feedback,
        time.monotonic() - started,
        output.decode("utf-8", "replace"),
        tuple(notes),
    )


def _judge_events(plans, events, outcomes, limits) -> int | None:
    """Fill outcomes from the sandbox's reports; return the first test without a report."""
    expected_next = None
    for event in events:
        if "load" in event:
            what = "the program" if event["load"] == "program" else "the test setup"
            text = (
                f"Timeout: {what} did not finish loading within {limits.test_timeout:g} s"
                if event.get("timeout")
                else str(event.get("error", "error"))[:600]
            )
            for i, plan in enumerate(plans):
                if outcomes[i] is None:
                    outcomes[i] = TestOutcome(plan.source, "error", text)
            return None
        if event.get("ready"):
            continue
        i = event.get("test")
        if not isinstance(i, int) or not 0 <= i < len(plans) or outcomes[i] is not None:
            continue  # stray or duplicate lines are ignored, never trusted
        if expected_next is not None and i != expected_next:
            continue
        outcomes[i] = _outcome(plans[i], event, limits)
        expected_next = i + 1
        if limits.stop_at_first_failure and outcomes[i].status != "passed":
            return len(plans)
    return next((i for i, o in enumerate(outcomes) if o is None), len(plans))


def _outcome(plan: judge.TestPlan, event: dict, limits: Limits) -> TestOutcome:
    if event.get("timeout"):
        return TestOutcome(plan.source, "timeout", judge.timeout(plan, limits.test_timeout))
    if "error" in event:
        return TestOutcome(plan.source, "error", judge.error(plan, str(event["error"])[:600]))
    if plan.kind == "exec":
        return TestOutcome(
            plan.source,
            "passed" if event.get("ok") is True else "failed",
            "" if event.get("ok") is True else judge.error(plan, "AssertionError"),
        )
    if "not_data" in event:
        expected = "" if plan.expected is judge._MISSING else judge.show(plan.expected)
        return TestOutcome(
            plan.source,
            "failed",
            judge.wrong_value(
                plan, f"<{str(event['not_data'])[:100]}, not plain data>", expected or "?"
            ),
        )
    if plan.kind == "compare" and "ok" in event:  # the test's own expected value is an object
        ok = event["ok"] is True
        return TestOutcome(
            plan.source,
            "passed" if ok else "failed",
            ""
            if ok
            else judge.wrong_value(
                plan, str(event.get("output", ""))[:300], str(event.get("expected_repr", ""))[:300]
            ),
        )
    try:
        got = judge.decode(event.get("value"))
        expected = plan.expected if plan.kind == "value" else judge.decode(event.get("expected"))
    except judge.ProtocolError as e:
        return TestOutcome(plan.source, "error", judge.error(plan, str(e)))
    if plan.truth is not None:
        ok = bool(got) is plan.truth
        expected_text = "a true value" if plan.truth else "a false value"
    else:
        ok = judge.equal(got, expected)
        expected_text = judge.show(expected)
    if ok:
        return TestOutcome(plan.source, "passed")
    return TestOutcome(
        plan.source, "failed", judge.wrong_value(plan, judge.show(got), expected_text)
    )


class _Run:
    """One sandboxed process: spawn, feed the job, collect reports, clean up everything."""

    def __init__(
        self,
        program,
        setup,
        plans,
        start,
        limits: Limits,
        budget: float,
        mode: Isolation | None = None,
    ):
        self.job = {
            "program": program,
            "setup": setup,
            "start": start,
            "tests": [p.wire() for p in plans],
            "test_timeout": limits.test_timeout,
            "rlimits": limits.rlimits(),
        }
        self.limits = limits
        self.budget = max(budget, 0.1)
        self.mode = mode or isolation()

    def execute(self) -> tuple[list[dict], str, bytes]:
        workdir = Path(tempfile.mkdtemp(prefix="localdistill-sandbox-"))
        cgroup = _make_cgroup(self.limits.max_processes)
        read_fd, write_fd = os.pipe()
        proc = None
        try:
            self.job["results_fd"] = write_fd
            self.job["cgroup"] = str(cgroup) if cgroup else None
            if self.mode.lockdown:
                keep = {os.path.realpath(sys.base_prefix)}
                if self.limits.site_packages:
                    keep.add(os.path.realpath(sys.prefix))
                self.job["lockdown"] = {
                    "hide": _hidden_dirs(str(workdir.parent)),
                    "keep": sorted(keep),
                }
            python = [sys.executable, "-I", "-B"] + ([] if self.limits.site_packages else ["-S"])
            proc = subprocess.Popen(
                [*self.mode.prefix, *python, "-c", RUNNER_SOURCE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=_clean_env(workdir),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
            os.close(write_fd)
            write_fd = -1
            try:
                proc.stdin.write(json.dumps(self.job).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            return self._collect(proc, read_fd)
        finally:
            if proc is not None:
                _kill_group(proc)
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
            if cgroup:
                _remove_cgroup(cgroup)
            shutil.rmtree(workdir, onerror=_force_remove)

    def _collect(self, proc: subprocess.Popen, read_fd: int) -> tuple[list[dict], str, bytes]:
        events: list[dict] = []
        buffer, printed, printed_total, report_bytes = b"", bytearray(), 0, 0
        keep, kill_at = self.limits.max_output_kb * 1024, self.limits.max_output_kb * 1024 * 64
        started = time.monotonic()
        step_deadline = started + self.limits.test_timeout + GRACE
        total_deadline = started + self.budget
        with selectors.DefaultSelector() as sel:
            sel.register(read_fd, selectors.EVENT_READ, "results")
            sel.register(proc.stdout, selectors.EVENT_READ, "output")
            open_streams, done = 2, False
            while open_streams:
                now = time.monotonic()
                deadline = min(step_deadline, total_deadline)
                if now >= deadline:
                    return events, "done" if done else "timeout", bytes(printed)
                for key, _ in sel.select(deadline - now):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fd)
                        open_streams -= 1
                    elif key.data == "output":
                        printed_total += len(chunk)
                        printed += chunk[: keep - len(printed)]
                        if printed_total > kill_at:
                            return (
                                events,
                                f"killed: printed more than {kill_at // 1024} KB",
                                bytes(printed),
                            )
                    else:
                        report_bytes += len(chunk)
                        if report_bytes > MAX_REPORT_BYTES:
                            return events, "killed: reported too much data", bytes(printed)
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            event = _parse(line)
                            if event is None:
                                continue
                            if "sandbox_error" in event:
                                raise SandboxError(
                                    f"the sandbox could not be set up: "
                                    f"{str(event['sandbox_error'])[:300]}"
                                )
                            events.append(event)
                            step_deadline = time.monotonic() + self.limits.test_timeout + GRACE
                            if event.get("done"):
                                # drain what the program printed, briefly, then stop
                                done = True
                                step_deadline = total_deadline = time.monotonic() + 0.5
        if done:
            return events, "done", bytes(printed)
        try:
            code = proc.wait(timeout=max(total_deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            return events, "timeout", bytes(printed)
        return events, _describe_exit(code, self.limits), bytes(printed)


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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream and not stream.closed:
            stream.close()
    proc.wait()


_cgroup_counter = 0


def _make_cgroup(max_processes: int) -> Path | None:
    global _cgroup_counter
    base = _pids_cgroup_root()
    if base is None:
        return None
    _cgroup_counter += 1
    path = base / f"localdistill-{os.getpid()}-{_cgroup_counter}-{time.monotonic_ns()}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_processes))
    except OSError:
        return None
    return path


def _remove_cgroup(path: Path) -> None:
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


def _force_remove(func, path, exc_info) -> None:
    """A program may chmod its files read-only; we still remove them."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass
