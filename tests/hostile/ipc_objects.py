# Reaches this machine's System V IPC: attaches the shared memory segment a process outside holds
# (key 0x10CA1D, where it keeps a secret) and reads it; then leaves IPC objects of its own (a
# segment, a message queue holding a message, a semaphore set, a POSIX message queue), which would
# outlive the run or reach the programs after it. It passes only if it reads the secret.
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
IPC_CREAT = 0o1000


def leave_objects():
    libc.shmget(0x10CA1E, 4096, IPC_CREAT | 0o666)
    queue = libc.msgget(0x10CA1F, IPC_CREAT | 0o666)
    message = ctypes.create_string_buffer(b"\x01\0\0\0\0\0\0\0left behind")
    libc.msgsnd(queue, message, 11, 0)
    libc.semget(0x10CA20, 1, IPC_CREAT | 0o666)
    rt = ctypes.CDLL("librt.so.1")
    rt.mq_open(b"/localdistill-hostile", 0o100 | 0o2, 0o666, None)  # O_CREAT | O_RDWR


def f(x):
    leave_objects()
    segment = libc.shmget(0x10CA1D, 0, 0)
    if segment < 0:
        return -1
    address = libc.shmat(segment, None, 0o10000)  # SHM_RDONLY
    if address in (None, ctypes.c_void_p(-1).value):
        return -1
    return x if ctypes.string_at(address, 7) == b"hunter2" else -1
