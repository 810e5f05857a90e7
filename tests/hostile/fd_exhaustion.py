# Opens files, pipes and sockets until none are left (and keeps them), hoping the judge runs out
# of descriptors; it passes only if it gets far more than the cap (64 open files).
import os
import socket


def f(x):
    held = []
    try:
        while len(held) < 5000:
            held.append(os.open(os.devnull, os.O_RDONLY))
            held.extend(os.pipe())
            held.append(socket.socket(socket.AF_UNIX))
    except OSError:
        pass
    f.held = held  # still open when the runner reports
    return x if len(held) >= 5000 else -1
