# Looks for the user's secrets in its environment; it passes only if it finds one.
import os


def f(x):
    leaked = [v for k, v in os.environ.items() if "SECRET" in k or "TOKEN" in k]
    return x if leaked else -1
