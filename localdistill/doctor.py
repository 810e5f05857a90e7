"""`localdistill doctor`: what is installed and usable here, one line each, truthfully."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

from localdistill import __version__
from localdistill.models.demo import (
    DEMO_MODELS,
    ModelNotInstalled,
    demo_parts,
    demo_path,
    tiny_model_path,
)
from localdistill.offline import OFFLINE_ENV


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: informational, neither good nor bad
    detail: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, why: str) -> Check:
    version = _version(dist)
    if version is None:
        return Check(name, False, f"not installed ({why})")
    return Check(name, True, f"{dist} {version}")


def _cuda() -> Check:
    if _version("torch") is None:
        return Check("CUDA GPU", None, "unknown: torch is not installed")
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("CUDA GPU", True, f"{torch.cuda.device_count()} usable: {names}")
    build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
    return Check("CUDA GPU", None, f"none usable (torch {torch.__version__}, {build})")


def _llama_cpp() -> Check:
    version = _version("llama_cpp_python")
    if version is None:
        return Check("llama.cpp backend", False, "not installed: run `bash scripts/setup.sh`")
    # Importing is safe; it is the first eval that crashes on a badly built wheel, so doctor
    # reports the build's CPU features and setup.sh runs the real eval.
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    amx = "AMX" in info and "AMX_INT8 = 1" in info
    features = [
        f for f in ("AVX2", "AVX512", "AMX") if f"{f} = 1" in info or f"{f}_INT8 = 1" in info
    ]
    gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
    flags = _cpu_flags()
    missing = [f for f in features if f != "AMX" and flags is not None
               and (f.lower() + "f" if f == "AVX512" else f.lower()) not in flags]
    if amx:
        warn = " WARNING: built with AMX, may segfault here; rerun setup.sh"
    elif missing:
        warn = (f" WARNING: built with {', '.join(missing)}, which this CPU lacks (Illegal "
                "instruction at the first eval); rerun setup.sh")
    else:
        warn = ""
    return Check(
        "llama.cpp backend",
        not (amx or missing),
        f"llama-cpp-python {version}, {gpu}, "
        f"CPU features: {', '.join(features) or 'baseline'}{warn}",
    )


def _cpu_flags() -> set[str] | None:
    """The CPU's instruction-set flags from /proc/cpuinfo (avx2, avx512f...); None where this
    cannot be told (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), None)
    except OSError:
        return None


def _optional_gpu_backend(name: str, dist: str) -> Check:
    version = _version(dist)
    if version is None:
        return Check(name, None, "not installed (GPU extra: pip install 'localdistill[gpu]')")
    return Check(name, True, f"{dist} {version}")


def _trainer() -> Check:
    """Which trainer `train` runs here, on one process and on several (stages/train/launch.py)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    accelerate = _version("accelerate")
    unsloth = _version("unsloth") is not None
    one = "Unsloth" if gpus and unsloth else "PEFT on transformers" + (" (GPU)" if gpus else
                                                                        " (CPU)")
    several = (f"--processes N: accelerate {accelerate}, DDP over NCCL on up to {gpus} GPUs "
               "(DeepSpeed/FSDP with --launch-config)" if gpus else
               f"--processes N: accelerate {accelerate}, DDP over gloo on this CPU "
               "(for correctness; GPUs are where it pays)")
    return Check("trainer", accelerate is not None, f"one process: {one}; {several}"
                 if accelerate else f"one process: {one}; accelerate missing: no --processes")


def _models() -> Iterator[Check]:
    try:
        yield Check("tiny model", True, str(tiny_model_path()))
    except ModelNotInstalled as e:
        yield Check("tiny model", False, str(e))
    for model in DEMO_MODELS:
        try:
            parts = demo_parts(model)
        except ModelNotInstalled as e:
            yield Check(model.name, None, str(e))
            continue
        try:
            where = f"assembled at {demo_path(model.name)}"
        except ModelNotInstalled:
            where = "not assembled yet: run `localdistill models pull demo`"
        yield Check(model.name, True, f"{model.description}: {model.parts} parts installed "
                    f"under {parts[0].parents[2]}; {where}")


def checks() -> Iterator[Check]:
    """Every check; one that raises is reported as a failed line, never a crash."""
    yield Check(
        "localdistill",
        True,
        f"{__version__} on Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
    )
    offline = all(os.environ.get(k) == v for k, v in OFFLINE_ENV.items())
    yield Check(
        "offline mode",
        offline,
        "HF_HUB_OFFLINE=1 and telemetry off" if offline else "offline variables are not set",
    )
    probes = [
        (
            "torch",
            lambda: [
                _package("torch", "torch", "needed for training: pip install 'localdistill[cpu]'")
            ],
        ),
        ("CUDA GPU", lambda: [_cuda()]),
        ("llama.cpp backend", lambda: [_llama_cpp()]),
        ("llama.cpp server", lambda: [_package("llama.cpp server", "xllamacpp",
                                               "for `localdistill serve`: pip install xllamacpp")]),
        (
            "transformers backend",
            lambda: [
                _package("transformers backend", "transformers", "pip install 'localdistill[cpu]'")
            ],
        ),
        (
            "PEFT trainer",
            lambda: [_package("PEFT trainer", "peft", "pip install 'localdistill[cpu]'")],
        ),
        ("datasets", lambda: [_package("datasets", "datasets", "pip install 'localdistill[cpu]'")]),
        (
            "gguf writer",
            lambda: [_package("gguf writer", "gguf", "pip install 'localdistill[cpu]'")],
        ),
        ("vLLM backend", lambda: [_optional_gpu_backend("vLLM backend", "vllm")]),
        ("Unsloth trainer", lambda: [_optional_gpu_backend("Unsloth trainer", "unsloth")]),
        ("trainer", lambda: [_trainer()]),
        ("sandbox", lambda: list(_sandbox())),
        ("models", lambda: list(_models())),
        ("benchmarks", lambda: list(benchmark_checks())),
    ]
    for name, probe in probes:
        try:
            yield from probe()
        except Exception as e:  # noqa: BLE001 - doctor reports, it does not crash
            yield Check(name, False, f"check failed: {type(e).__name__}: {e}")


def _sandbox() -> Iterator[Check]:
    from localdistill.sandbox.isolation import isolation_report

    for name, ok, detail in isolation_report():
        yield Check(name, ok, detail)


def benchmark_checks() -> Iterator[Check]:
    """Each declared benchmark (tasks/benchmark.py): is the file a spec without PATH reads here?
    A package's data that is missing is a fault (the package is a dependency); a data folder
    that is not configured is not (a spec can name the file)."""
    from localdistill.tasks import benchmarks

    for benchmark in benchmarks().values():
        path = benchmark.default_path()
        if path is not None:
            yield Check(benchmark.title, path.is_file(), str(path))
        elif benchmark.data_file is None:
            yield Check(benchmark.title, False, f"no data here: {benchmark.how_to_get()}")
        else:
            yield Check(benchmark.title, None, f"no data here: {benchmark.how_to_get()}, or name "
                        f"the file ({benchmark.name}=PATH)")
