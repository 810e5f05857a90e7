# Double-forks a daemon into its own session that would outlive the test.
import os
import time


def f(x):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
        os._exit(0)
    return x + 1
