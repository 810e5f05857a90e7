# Forks without end; the pids cgroup / RLIMIT_NPROC must stop it and the run must still end.
import os


def f(x):
    while True:
        os.fork()
