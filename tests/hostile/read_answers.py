# Reads the expected answers from a data file outside the sandbox (as a program could read a
# benchmark's JSONL from disk); it passes only if it finds them.
def f(x):
    with open("/tmp/localdistill-hostile/sentinel.txt") as answers:
        return x if answers.read() == "original" else -1
