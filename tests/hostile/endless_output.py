# Prints forever; the output cap must end it.
def f(x):
    while True:
        print("spam " * 1000)
