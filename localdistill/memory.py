"""The peak memory a stage used, for the stage tables and `train.json`.

On a CUDA GPU (training) the peak is the GPU memory torch allocated; elsewhere it is this
process's resident set, which takes in a model that runs in process (llama.cpp, transformers)
but not a served one (llama-server, vLLM: their own processes) nor the sandbox's children.
"""

from __future__ import annotations

import resource
from pathlib import Path


def cuda_torch():
    """torch, when it is imported already and sees a CUDA GPU; else None (it is never imported
    here only to ask: that costs seconds)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return torch if torch.cuda.is_available() else None


def reset_peak() -> None:
    """Start the peak that `peak_gib` reports afresh: one process may run several stages (or
    train several adapters), and each report should be its own peak, not the process's."""
    if (torch := cuda_torch()) is not None:
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: "5" resets the resident set's high-water mark (VmHWM) to the current size
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_gib() -> float:
    """The peak since `reset_peak`: GPU memory on CUDA, else the resident set (where the system
    cannot reset it, the process's peak)."""
    if (torch := cuda_torch()) is not None:
        return torch.cuda.max_memory_allocated() / 2**30
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 2**20
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
