# Reads other processes' environments and command lines through /proc, where a sibling of the
# judge holds a secret token; it passes only if it finds the secret.
import os


def f(x):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as found:
                    if b"hunter2" in found.read():
                        return x
            except OSError:
                pass
    return -1
