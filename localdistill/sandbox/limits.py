"""What a sandboxed program may use, and the error for a sandbox that cannot work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one program may use. Every field has a safe default."""

    test_timeout: float = 3.0  # seconds for each test, and for loading the program
    total_timeout: float = 30.0  # wall-clock seconds for the program and all its tests
    memory_mb: int = 2048  # address space of each process
    max_processes: int = 32  # processes and threads the program may have at once
    max_file_mb: int = 16  # size of any file it writes (stdout/stderr included)
    max_disk_mb: int = 256  # all it writes together (its work dir is a tmpfs of this size)
    max_open_files: int = 64
    max_output_kb: int = 64  # stdout+stderr kept for the record (the rest is counted, not kept)
    stop_at_first_failure: bool = False  # skip the remaining tests after a failure
    site_packages: bool = False  # let the program import installed third-party packages

    def rlimits(self) -> dict[str, int]:
        mb = 1024 * 1024
        return {
            "RLIMIT_AS": self.memory_mb * mb,
            "RLIMIT_CPU": int(self.total_timeout) + 2,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_FSIZE": self.max_file_mb * mb,
            "RLIMIT_NOFILE": self.max_open_files,
            "RLIMIT_CORE": 0,
        }


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program under test): a problem of this machine."""
