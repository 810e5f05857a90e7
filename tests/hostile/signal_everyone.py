# Sends SIGKILL to every process it can name (kill(-1), every PID under /proc, PIDs 1..70000),
# and SIGSTOP first, so the judge would hang frozen; it passes only if it could signal a process
# other than itself, its own children, and PID 1 of its namespace (the zygote, which ignores it).
import os
import signal


def f(x):
    me = os.getpid()
    signalled = 0
    targets = {int(p) for p in os.listdir("/proc") if p.isdigit()} | set(range(1, 70000))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in sorted(targets - {me}):
            try:
                os.kill(pid, sig)
                signalled += pid != 1
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    return x if signalled else -1
