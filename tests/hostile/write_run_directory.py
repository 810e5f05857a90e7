# Writes into another run's directory: a forged "passing" answer appended to its request cache and
# a rewritten manifest, as a program could to poison finished work; it passes only if a write lands.
import json
import os

RUN = "/tmp/localdistill-hostile/runs/victim"


def targets():
    yield RUN
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            yield f"/proc/{pid}/root{RUN}"


def f(x):
    landed = False
    forged = json.dumps({"key": "forged", "answer": "def f(x):\n    return x\n"}) + "\n"
    for run in targets():
        try:
            with open(os.path.join(run, "cache", "requests.jsonl"), "a") as cache:
                cache.write(forged)
            landed = True
        except OSError:
            pass
        try:
            with open(os.path.join(run, "manifest.json"), "w") as manifest:
                manifest.write('{"forged": true}')
            landed = True
        except OSError:
            pass
    return x if landed else -1
