# Allocates until something gives; RLIMIT_AS must turn it into an error, not an OOM of the host.
def f(x):
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))
