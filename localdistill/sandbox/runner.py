"""The sandboxed side of the executor: a zygote that forks one confined child per program.

Started by sandbox.py as `python -s -P -B -S -c <this file's source>` (inside new PID, network and
mount namespaces where the kernel allows), it imports only the standard library and nothing of
localdistill. It reads its configuration, then confines itself for good (pids cgroup, read-only
file system but for its base directory, no capabilities). Then, for each job line on stdin, it
forks a child that gets its own session, work directory, rlimits and output file, runs the program
and each test, and reports one JSON line per event on the results pipe. When the child ends, the
zygote kills whatever it left behind (as PID 1 of its namespace: `kill(-1)`), wipes the base
directory, and reports how the child ended. Forking a warm interpreter costs about a millisecond;
starting one, with namespaces, costs twenty.

What it reports is data, never a verdict the parent trusts blindly: for `assert f(x) == y` tests
it sends the value of `f(x)`, encoded as plain data, and the parent compares it with `y`, which
this process never sees.
"""

import builtins
import json
import os
import resource
import signal
import sys

_write = os.write  # saved before any untrusted code runs
_monotonic = __import__("time").monotonic
_exit = os._exit
_dumps = json.dumps

MAX_ITEMS = 100_000  # elements in one encoded value
MAX_INT_BITS = 64_000  # about 19,000 decimal digits


class NotData(Exception):
    """A value that is not plain data (and so cannot be judged outside the sandbox)."""


class TestTimeout(BaseException):
    """Raised by the per-test alarm; BaseException so `except Exception` in tests cannot eat it."""


def encode(value, budget=None):
    """Plain data as tagged JSON; subclasses are read through their base type's methods."""
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        raise NotData(f"a value with more than {MAX_ITEMS} elements")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if int.bit_length(value) > MAX_INT_BITS:
            raise NotData(f"an integer of more than {MAX_INT_BITS} bits")
        # hex: no decimal-digit limit, and linear time for big values
        return value if -(2**53) < value < 2**53 else {"int": int.__format__(value, "x")}
    if t is float:
        return (
            value
            if value == value and value not in (float("inf"), float("-inf"))
            else {"float": float.__repr__(value)}
        )
    if t is list or t is tuple or t is set or t is frozenset:
        return {t.__name__: [encode(v, budget) for v in t.__iter__(value)]}
    if t is dict:
        return {"dict": [[encode(k, budget), encode(v, budget)] for k, v in dict.items(value)]}
    if t is bytes:
        return {"bytes": bytes.hex(value)}
    if t is complex:
        return {"complex": [encode(value.real), encode(value.imag)]}
    # Subclasses of the builtins (IntEnum, namedtuple, Counter, OrderedDict...): convert through
    # the base type's C methods, so an overridden __eq__, __iter__ or __int__ changes nothing.
    for base, convert in _BASE_CONVERSIONS:
        if issubclass(t, base):
            return encode(convert(value), budget)
    module = getattr(t, "__module__", "")
    if module == "decimal" and t.__name__ == "Decimal":
        return {"decimal": str(value)}
    if module == "fractions" and t.__name__ == "Fraction":
        return {"fraction": [encode(value.numerator), encode(value.denominator)]}
    if module == "numpy" and hasattr(value, "tolist"):
        return encode(value.tolist(), budget)  # re-checked: whatever it returns must be plain
    raise NotData("a {} object".format(getattr(t, "__qualname__", "?")))


_BASE_CONVERSIONS = (
    (bool, lambda v: bool(int.__add__(v, 0))),
    (int, lambda v: int.__add__(v, 0)),
    (float, lambda v: float.__mul__(v, 1.0)),
    (str, str.__str__),
    (bytes, lambda v: bytes.__add__(v, b"")),
    (dict, lambda v: dict(dict.items(v))),
    (list, lambda v: list(list.__iter__(v))),
    (tuple, lambda v: tuple(tuple.__iter__(v))),
    (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
    (set, lambda v: set(set.__iter__(v))),
)


def describe(exc):
    """`Type: message`, one line, bounded, even for hostile exception objects."""
    try:
        name = type(exc).__name__
        text = str(exc)
    except BaseException:  # a __str__ that raises is the program's problem, not ours
        return f"{type(exc).__name__}: <unprintable>"
    text = text if len(text) <= 500 else text[:500] + "..."
    return f"{name}: {text}" if text else name


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18


SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")
SANDBOX = "/sandbox"  # the one writable directory, inside the new root
SHM = "/dev/shm"  # a small tmpfs of its own, for multiprocessing; wiped after every program
MQUEUE = "/dev/mqueue"


def lockdown(base, keep, disk_mb, hide=()):
    """Build a new, minimal root on `base` and enter it for good.

    Inside fresh mount and PID namespaces, a tmpfs on `base` receives read-only binds of the system
    directories (/usr, /lib...), of the Python installation (`keep`), a few devices and a fresh
    /proc, and a size-capped tmpfs at /sandbox: nothing else of the machine exists there (no home,
    no /tmp, no data sets, no other sandbox). Directories in `hide` (benchmark packages with their
    tests, inside a kept virtual environment) are covered by an empty one. Then chroot, and drop
    every capability, so none of it can be undone; the process is made undumpable, so no child can
    read or write its memory.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, options=None):
        if libc.mount(source, target.encode(), fstype, flags, options) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {target}: {os.strerror(errno)}")

    def bind(source, target):
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount(source.encode(), target, None, MS_BIND | MS_REC)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)

    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = base
    mount(b"tmpfs", root, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=16m,mode=0755")
    for name in SYSTEM_DIRS:
        source = "/" + name
        if os.path.islink(source):
            os.symlink(os.readlink(source), root + source)
        elif os.path.isdir(source):
            bind(source, root + source)
    for path in keep:
        if not os.path.exists(root + path):
            bind(path, root + path)
    for path in hide:
        if os.path.isdir(root + path):
            mount(b"tmpfs", root + path, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  b"size=4k,mode=0555")
    for name in DEVICES:
        bind("/dev/" + name, f"{root}/dev/{name}")
    os.makedirs(root + MQUEUE)  # the POSIX message queues of our IPC namespace, to wipe them
    mount(b"mqueue", root + MQUEUE, b"mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + SHM)
    mount(b"tmpfs", root + SHM, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64m")
    os.makedirs(root + "/proc")
    mount(b"proc", root + "/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # A fresh /proc holds the kernel's settings, which file modes alone guard: run as root, a
    # program without capabilities could still write kernel.core_pattern (a program the host
    # runs as root at the next crash). They are read-only here, as in a container.
    for name in PROC_READ_ONLY:
        path = f"{root}/proc/{name}"
        if os.path.exists(path):
            mount(path.encode(), path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
                  | MS_NOEXEC)
    os.makedirs(root + SANDBOX)
    mount(b"tmpfs", root + SANDBOX, b"tmpfs", MS_NOSUID | MS_NODEV,
          f"size={int(disk_mb)}m,mode=0700".encode())
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir(SANDBOX)
    # Drop every capability, for good: bounding set, then the sets themselves.
    PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECUREBITS = 4, 24, 38, 28
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_SET_SECUREBITS, 0x2F, 0, 0, 0)  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "dumpable")


# What solutions to benchmark tasks import most, and small: a bigger zygote makes every fork
# dearer. Anything else still imports in the child, just not pre-warmed.
PREIMPORT = ("typing", "math", "collections", "re", "itertools", "functools", "heapq", "bisect",
             "string")


MAX_RELAY_BYTES = 8 * 1024 * 1024  # what one program may report; past it, it is killed


def serve():
    """The zygote: configure once, then one forked child per job line on stdin."""
    config = json.loads(sys.stdin.buffer.readline())
    results = config["results_fd"]
    area = os.getcwd()

    def tell(message):
        data = (_dumps(message) + "\n").encode()
        while data:
            data = data[_write(results, data):]

    try:
        if config.get("cgroup"):  # before /sys is out of reach, and before any fork
            with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        locked = bool(config.get("lockdown"))
        # never without an IPC namespace of our own: the objects would be this machine's
        own_ipc = locked and config["lockdown"].get("own_ipc", False)
        if locked:
            lockdown(area, config["lockdown"]["keep"], config["lockdown"]["disk_mb"],
                     config["lockdown"].get("hide", ()))
            area = SANDBOX
        for name in PREIMPORT:  # warm: every child starts with these already loaded
            try:
                __import__(name)
            except ImportError:
                pass
    except BaseException as exc:  # the sandbox could not be built: not any program's fault
        tell({"sandbox_error": describe(exc)})
        _exit(3)
    warm_up()
    import gc
    import select

    gc.freeze()  # children never scan (and so never copy) the zygote's objects
    tell({"zygote": "ready", "pid1": os.getpid() == 1})
    stdin = sys.stdin.buffer
    output_path = os.path.join(area, ".output")
    while True:
        line = stdin.readline()
        if not line:
            _exit(0)
        job = json.loads(line)
        # The child reports on a pipe of its own, which only this process reads: it can never
        # write to the parent, nor speak for another job, nor end its own job.
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                os.close(results)
                child(job, area, output_path, write_end)
            finally:
                _exit(4)
        os.close(write_end)
        status = relay(job["id"], pid, read_end, tell, select)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        output, size = b"", 0
        try:
            size = os.stat(output_path).st_size
            if size:
                with open(output_path, "rb") as f:
                    output = f.read(job["keep_output"])
        except OSError:
            pass
        wipe(area)
        if locked:  # the other places a program can leave things: the next one starts clean
            if os.listdir(SHM):
                wipe(SHM)
            if own_ipc:
                wipe_ipc()
        tell({"job": job["id"], "exit": code, "output": output.decode("utf-8", "replace"),
              "output_bytes": size})


def relay(job_id, pid, read_end, tell, select):
    """Pass the child's reports on, re-serialised and labelled, until it and its leftovers are
    gone; returns the child's wait status."""
    pidfd = os.pidfd_open(pid)
    buffer, total, status = b"", 0, None
    watched = [read_end, pidfd]
    try:
        while True:
            ready = select.select(watched, [], [])[0]
            if read_end in ready:
                chunk = os.read(read_end, 65536)
                total += len(chunk)
                if total > MAX_RELAY_BYTES:
                    os.kill(pid, signal.SIGKILL)
                    chunk = b""
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        event = json.loads(line)
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(event, dict):
                        tell({"job": job_id, "event": event})
                if not chunk:  # every writer is gone
                    break
            if pidfd in ready and status is None:
                status = os.waitpid(pid, 0)[1]
                end_leftovers(pid)  # the writers left behind die; the pipe then ends
                watched = [read_end]
    finally:
        os.close(pidfd)
        os.close(read_end)
    if status is None:
        status = os.waitpid(pid, 0)[1]
        end_leftovers(pid)
    return status


def warm_up():
    """Do once here what every child would otherwise do first (the parser's first compile alone
    costs a child a millisecond)."""
    namespace = {}
    exec(compile("def f(x):\n    return [i * 2 for i in x if i]\n", "<warm>", "exec"), namespace)
    value = eval(compile("f([1, 0, 2])", "<warm>", "eval"), namespace)
    _dumps({"value": encode((value, {"a": 1.5}, {1}, "s"))})
    try:
        raise ValueError("warm")
    except ValueError as exc:
        describe(exc)


def end_leftovers(pid):
    """Kill every process the child left (daemons included) and reap them."""
    if os.getpid() == 1:  # PID 1 of our own namespace: -1 means everyone here but us
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    else:  # no PID namespace: the child's session is what we can reach
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    while True:
        try:
            if os.waitpid(-1, 0)[0] <= 0:
                break
        except ChildProcessError:
            break
        except InterruptedError:
            continue


def wipe_ipc():
    """Remove the System V IPC objects and POSIX message queues a program left in our IPC
    namespace (the zygote, uid 0 like the programs, owns them; no capability is needed)."""
    for name in os.listdir(MQUEUE):
        try:
            os.unlink(os.path.join(MQUEUE, name))
        except OSError:
            pass
    for kind, command in (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl")):
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                ids = [int(line.split()[1]) for line in table.readlines()[1:]]
        except (OSError, ValueError, IndexError):
            continue
        if ids:
            import ctypes

            remove = getattr(ctypes.CDLL(None), command)
            for ipc_id in ids:
                remove(ipc_id, 0, 0, 0)  # IPC_RMID


def wipe(base):
    try:  # the common case: an empty work dir and the output file
        os.rmdir(os.path.join(base, "work"))
        os.unlink(os.path.join(base, ".output"))
        if not os.listdir(base):
            return
    except OSError:
        pass
    import shutil

    for name in os.listdir(base):
        path = os.path.join(base, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=force_remove)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def force_remove(func, path, exc_info):
    """rmtree's error handler: a program may have made its files or directories unreadable;
    remove them anyway, never following a symlink anywhere. (Also used by the parent, which
    imports this module: the runner itself imports nothing.)"""
    import shutil

    try:
        if os.path.islink(path):
            os.unlink(path)
            return
        parent = os.path.dirname(path)
        if parent and not os.path.islink(parent):
            os.chmod(parent, 0o700)
        if func in (os.rmdir, os.unlink, os.remove):
            func(path)
        elif os.path.isdir(path):  # it could not be listed: open it up and try it whole
            os.chmod(path, 0o700)
            shutil.rmtree(path, onerror=_give_up)
    except OSError:
        pass


def _give_up(func, path, exc_info):
    pass


def child(job, area, output_path, results):
    os.setsid()
    workdir = os.path.join(area, "work")
    os.mkdir(workdir, 0o700)
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)
    for name, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    run_job(job, results)


def run_job(job, results):
    job_id = job["id"]

    pending = []
    flush_every = job["flush_every"]
    last_flush = [_monotonic()]

    def report(message, final=False):
        # Batched: one write (and one wake-up of the parent) per few milliseconds, not per
        # test. A run that dies with reports unsent is re-run with flush_every = 0.
        message["job"] = job_id
        pending.append(_dumps(message))
        now = _monotonic()
        if final or now - last_flush[0] >= flush_every:
            data = ("\n".join(pending) + "\n").encode()
            pending.clear()
            last_flush[0] = now
            while data:
                data = data[_write(results, data) :]

    def on_alarm(signum, frame):
        raise TestTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    timeout = job["test_timeout"]
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    saved_builtins = dict(builtins.__dict__)

    def run_timed(step):
        # Every step starts with pristine builtins, whatever the program patched before.
        builtins.__dict__.clear()
        builtins.__dict__.update(saved_builtins)
        namespace["__builtins__"] = builtins
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return step()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def run(code, mode="exec"):
        return run_timed(lambda: eval(compile(code, "<test>", mode), namespace))  # noqa: S307

    for label, code in (("program", job["program"]), ("setup", job["setup"])):
        if not code:
            continue
        try:
            run(code)
        except TestTimeout:
            report({"load": label, "timeout": True}, final=True)
            _exit(0)
        except BaseException as exc:  # SystemExit too: exiting is not passing
            report({"load": label, "error": describe(exc)}, final=True)
            _exit(0)
    report({"ready": True})

    for i in range(job["start"], len(job["tests"])):
        test = job["tests"][i]
        message = {"test": i}
        try:
            if test["kind"] == "value":
                lines = set() if test.get("trace") else None
                if lines is not None:
                    sys.settrace(_line_tracer(lines))
                try:
                    got = run(test["expr"], "eval")
                finally:
                    if lines is not None:
                        sys.settrace(None)
                message["value"] = _encode_or_error(got, message)
                if lines is not None:
                    message["path"] = sorted(lines)[:MAX_PATH_LINES]
            elif test["kind"] == "compare":
                got = run(test["expr"], "eval")
                expected = run(test["expected"], "eval")
                message["value"] = _encode_or_error(got, message)
                try:
                    message["expected"] = encode(expected)
                except NotData:
                    # The test's own expected value is an object: only here may the comparison
                    # run inside the sandbox, as the original test would have done.
                    message.pop("not_data", None)
                    message["value"] = None
                    message["ok"] = bool(run_timed(lambda a=got, b=expected: a == b))
                    message["output"] = _safe_repr(got)
                    message["expected_repr"] = _safe_repr(expected)
            else:
                run(test["code"])
                message["ok"] = True
        except TestTimeout:
            message = {"test": i, "timeout": True}
        except BaseException as exc:
            message = {"test": i, "error": describe(exc)}
        report(message)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    report({"done": True}, final=True)
    _exit(0)


MAX_PATH_LINES = 2_000  # of a traced test's path sent back


def _line_tracer(lines):
    """A trace function that adds to `lines` every line run in the functions the program (or
    the setup) defines: the path one call takes, by which gen-tests tells calls apart. The test
    expression itself, and code from anywhere else (the standard library), are not traced."""
    def trace(frame, event, arg):
        code = frame.f_code
        if code.co_filename != "<test>" or code.co_name == "<module>":
            return None
        if event == "line":
            lines.add(frame.f_lineno)
        return trace

    return trace


def _encode_or_error(value, message):
    try:
        return encode(value)
    except NotData as exc:
        message["not_data"] = str(exc)
        return None


def _safe_repr(value):
    try:
        text = repr(value)
    except BaseException:
        return "<unprintable>"
    return text if len(text) <= 300 else text[:300] + "..."


if __name__ == "__main__":
    serve()
