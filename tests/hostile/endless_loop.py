# Spins forever (and swallows the alarm); the parent's hard deadline must end it.
def f(x):
    while True:
        try:
            while True:
                pass
        except BaseException:
            continue
