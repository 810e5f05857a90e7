# Lifts the recursion limit, writes a report nested a million levels deep to every descriptor (for
# the readers of reports to recurse on), then recurses through C calls until the C stack overflows
# (a segfault), hoping a crash takes the judge with it; it passes only if the recursion completes.
import os
import sys

sys.setrecursionlimit(10**9)


def down(n, x):
    return x if n == 0 else next(map(down, (n - 1,), (x,)))


def f(x):
    line = b'{"test": 0, "value": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}\n"
    for fd in range(3, 64):
        try:
            os.write(fd, line)
        except OSError:
            pass
    return down(1_000_000, x)
