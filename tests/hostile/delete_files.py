# Deletes files outside its work dir; they must survive.
import shutil


def f(x):
    shutil.rmtree("/tmp/localdistill-hostile", ignore_errors=True)
    import os
    os.remove("/tmp/localdistill-hostile/sentinel.txt")
    return x
