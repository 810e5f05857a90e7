# Fills every place it can write (its work dir, the tmpfs above it, /dev/shm, /tmp) and leaves
# the files there, to starve the programs that run after it; it passes only if it could write
# more than the disk cap (256 MB) in all.
import os

CHUNK = b"\0" * (4 << 20)


def fill(folder, budget):
    written, i = 0, 0
    while written < budget:
        try:
            with open(os.path.join(folder, f"fill-{i}"), "wb") as out:
                for _ in range(3):  # 12 MB: under the per-file size limit
                    out.write(CHUNK)
                    written += len(CHUNK)
        except OSError:
            return written
        i += 1
    return written


def f(x):
    total = 0
    for folder in (os.getcwd(), os.path.dirname(os.getcwd()), "/dev/shm", "/tmp"):
        total += fill(folder, 600 << 20)
    return x if total > 600 << 20 else -1
