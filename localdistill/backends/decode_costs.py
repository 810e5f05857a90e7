"""The calibrated cost of a llama.cpp decode of 1..N rows, kept per model and machine.

The batched decoder (llamacpp_batched.py) chooses how many drafted tokens a decode carries from
these costs. Kept apart from it because this is a file cache keyed by the weights, the adapter,
the llama.cpp version and the processor, not decoding: the decoder measures, this keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def kept_costs(llm, threads: int, most: int,
               measure: Callable[[int], list[float]]) -> list[float]:
    """The calibrated costs of this model on this machine: measured the first time, then
    read from $XDG_CACHE_HOME/localdistill/decode-costs.json. Kept, because the rows chosen
    depend on them, and so can a greedy answer after a near tie: measured anew each time,
    timing noise would make the same requests come out differently from run to run.
    `measure(most)`: the decoder's own calibration (`BatchedDecoder.calibrate`)."""
    import json
    import os
    import platform

    import llama_cpp

    from localdistill.hashing import digest, file_digest

    adapter = getattr(llm, "lora_path", None)
    key = digest({"weights": file_digest(Path(llm.model_path)),
                  "adapter": file_digest(Path(adapter)) if adapter else None,
                  "threads": threads, "most": most, "llama.cpp": llama_cpp.__version__,
                  "cpu": _cpu_name(), "machine": platform.machine()})
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(root) / "localdistill" / "decode-costs.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    cost = known.get(key)
    if isinstance(cost, list) and len(cost) == most + 1:
        return [float(c) for c in cost]
    cost = measure(most)
    known[key] = cost
    try:  # a machine where it cannot be kept measures again next time: slower, not wrong
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(known))
        partial.replace(path)
    except OSError:
        pass
    return cost


def _cpu_name() -> str:
    """The processor's name and instruction sets (the same name covers EPYCs with and without
    AVX-512)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    wanted = ("model name", "flags")
    return " | ".join(next((line.split(":", 1)[1].strip() for line in lines
                            if line.startswith(key)), "") for key in wanted)
