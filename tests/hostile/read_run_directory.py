# Looks for another run's files (its request cache holds prompts, private code and answers): at a
# well-known place, under every home and working directory it can see (its own, other processes'
# through /proc), then by walking the file system; it passes only if it reads the planted cache.
import os
import time

MARK = "hostile-run-marker"


def candidates():
    yield "/tmp/localdistill-hostile/runs/victim/cache/requests.jsonl"
    roots = [os.path.expanduser("~"), os.getcwd(), "/root", "/work", "/tmp"]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            roots += [f"/proc/{pid}/cwd", f"/proc/{pid}/root/tmp", f"/proc/{pid}/root/work"]
    for root in roots:
        yield os.path.join(root, ".cache/localdistill/runs")
        yield os.path.join(root, "runs")
        yield root


def find(deadline):
    for place in candidates():
        if os.path.isfile(place):
            yield place
            continue
        for folder, dirs, files in os.walk(place):
            if time.monotonic() > deadline:
                return
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "usr", "lib", ".venv")]
            for name in files:
                if name in ("requests.jsonl", "executions.jsonl", "manifest.json"):
                    yield os.path.join(folder, name)


def f(x):
    for path in find(time.monotonic() + 0.6):
        try:
            with open(path, errors="replace") as found:
                if MARK in found.read():
                    return x
        except OSError:
            pass
    return -1
