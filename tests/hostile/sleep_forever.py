# Sleeps forever; the per-test timeout must end it.
import time


def f(x):
    time.sleep(10_000)
    return x
