# Integers too big to handle: lifts the int-to-str limit, prints a huge one, writes reports holding
# a million-digit JSON number to every descriptor (to crash the readers of reports), then answers
# with a computation of ten to the billion; it passes only if that finishes (no memory/time cap).
import os
import sys

sys.set_int_max_str_digits(0)
print(10 ** 100_000)


def f(x):
    line = b'{"test": 0, "value": 1' + b"0" * 1_000_000 + b"}\n"
    for fd in range(3, 64):
        try:
            os.write(fd, line)
        except OSError:
            pass
    return x + 10 ** 10 ** 9 - 10 ** 10 ** 9
