# Kills its parent, its process group and every process it may signal, then answers wrongly:
# a pass could only come from the kill silencing the judge.
import os
import signal


def f(x):
    for target in (os.getppid(), 1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    return x + 1
