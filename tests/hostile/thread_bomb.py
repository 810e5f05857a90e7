# Starts threads without end (each one a task for the process cap), and keeps them alive past the
# test; it passes only if it gets far more threads than the cap (32 processes and threads).
import threading
import time


def f(x):
    threading.stack_size(64 * 1024)  # small stacks: the memory cap is not what stops it
    started = 0
    try:
        while started < 2000:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            started += 1
    except RuntimeError:
        pass
    return x if started >= 2000 else -1
