# Writes the kernel's settings through /proc/sys (kernel.core_pattern set to a pipe runs a program
# as root on the host at the next crash; vm.overcommit_memory, kernel.panic...) and opens the SysRq
# trigger. To prove a hole without harming the machine that runs the suite, each setting is written
# back with the value it already has. It passes only if one write (or the open) succeeds.
import os

SETTINGS = ("kernel/core_pattern", "kernel/panic", "vm/overcommit_memory", "vm/drop_caches",
            "kernel/hostname", "net/ipv4/ip_forward")


def f(x):
    landed = False
    for name in SETTINGS:
        path = "/proc/sys/" + name
        try:
            with open(path) as setting:
                value = setting.read() if name != "vm/drop_caches" else "0"
            with open(path, "w") as setting:
                setting.write(value)
            landed = True
        except OSError:
            pass
    try:
        os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))
        landed = True
    except OSError:
        pass
    return x if landed else -1
