# Overwrites a file outside its work dir, and creates another; both must stay untouched/absent.
def f(x):
    with open("/tmp/localdistill-hostile/sentinel.txt", "w") as out:
        out.write("overwritten")
    with open("/tmp/localdistill-hostile/created.txt", "w") as out:
        out.write("created")
    return x
