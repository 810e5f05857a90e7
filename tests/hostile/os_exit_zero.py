# Leaves the interpreter at once with status 0, skipping every handler.
import os


def f(x):
    os._exit(0)
