"""Launching a training on several processes: the ecosystem's launchers, started for the user.

`train(..., TrainConfig(processes=N))` (and `localdistill train --processes N`) runs

    CPU:        python -m torch.distributed.run --nproc_per_node N ... WORKER
    CUDA GPUs:  python -m accelerate.commands.launch --multi_gpu --num_processes N ... WORKER
    a config:   python -m accelerate.commands.launch --config_file FILE ... WORKER
                (DeepSpeed ZeRO-3, FSDP, several machines: examples/accelerate/)

with WORKER = `-m localdistill.stages.train.worker JOB`

where JOB (OUT/.launch.json) holds the data set, the student and the settings. torchrun is what
`accelerate launch` itself runs for DDP; on a CPU it is called directly because `accelerate
launch` has no multi-process CPU mode without MPI. Every process builds an `Accelerator` (gloo on
a CPU, NCCL on GPUs) and trains its share (distributed.py); rank 0 writes OUT. The launcher and its
processes die together (a kill -9 of the command leaves no training behind); a rank that fails
ends the launch and its one-line reason is this command's error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.models import ModelSpec
from localdistill.progress import StageReport
from localdistill.rundir import make_private_dir, write_atomic
from localdistill.stages.train.config import TrainConfig, TrainResult
from localdistill.stages.train.distributed import LAUNCHED

JOB = ".launch.json"
FAILED = "localdistill train failed on rank"  # the line a failing rank prints (worker.py)
NEEDS_GPUS = ("MULTI_GPU", "DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")


class LaunchError(BadInput):
    """A launch that cannot start: a bad launch configuration, or one this machine cannot run."""


class TrainingFailed(RuntimeError):
    """A rank of a launched training failed (its reason in the message)."""


def check_launch_config(path: Path | str, processes: int) -> dict:
    """The accelerate config file, parsed and checked by accelerate itself; LaunchError (one
    line) when it is missing, does not parse, or disagrees with `processes`."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"launch_config {path}: no such file")
    try:
        config = load_config_from_file(str(path)).to_dict()
    except Exception as e:  # noqa: BLE001 - yaml, json and accelerate's own checks all differ
        raise LaunchError(f"launch_config {path}: not an accelerate config "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                          ) from None
    declared = config.get("num_processes")
    if declared not in (None, -1, processes):  # -1: accelerate's "not set"
        raise LaunchError(f"launch_config {path}: num_processes is {declared} there and "
                          f"processes is {processes} here; make them agree")
    return config


def needs_gpus(config: dict) -> bool:
    kind = str(config.get("distributed_type", "NO")).rsplit(".", 1)[-1].upper()
    return kind in NEEDS_GPUS or bool(config.get("use_cpu") is False and kind != "NO")


def launcher_command(config: TrainConfig, job: Path, cuda: bool) -> list[str]:
    worker = ["-m", "localdistill.stages.train.worker", str(job)]
    port = str(_free_port())
    if config.launch_config:
        settings = check_launch_config(config.launch_config, config.processes)
        if needs_gpus(settings) and not cuda:
            raise LaunchError(
                f"launch_config {config.launch_config}: "
                f"{settings.get('distributed_type')} needs CUDA GPUs and this machine has none; "
                "leave launch_config out to train on processes of this CPU (gloo)")
        # several machines meet at the config's address and port; one machine takes a free port
        meeting = [] if settings.get("main_process_ip") else ["--main_process_port", port]
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(config.launch_config), "--num_processes", str(config.processes), *meeting,
                *worker]
    if cuda:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", str(config.processes), "--main_process_port", port, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
            str(config.processes), "--master_addr", "127.0.0.1", "--master_port", port, *worker]


def launch(data_set: Path | str, spec: ModelSpec, out: Path, config: TrainConfig,
           restart: bool):
    """Train on `config.processes` processes; the TrainResult rank 0 wrote."""
    import torch

    from localdistill.backends import models_file

    make_private_dir(out)
    job = out / JOB
    command = launcher_command(config, job, torch.cuda.is_available())
    write_atomic(job, json.dumps({"data_set": str(Path(data_set).resolve()),
                                  "student": spec.name, "config": asdict(config),
                                  "restart": restart}, indent=2).encode())
    env = {**os.environ, LAUNCHED: "1", "LOCALDISTILL_MODELS": str(Path(models_file()).resolve()),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                             str(max(1, (os.cpu_count() or 1)
                                                     // config.processes)))}
    reason = None
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_die_with_parent) as process:
        for line in process.stderr:
            if line.startswith(FAILED):
                reason = reason or line.strip()
            elif not _launcher_noise(line):
                sys.stderr.write(line)
        code = process.wait()
    if code != 0:
        raise TrainingFailed(reason or f"training on {config.processes} processes failed "
                             f"(the launcher exited with {code})")
    summary = json.loads((out / "train.json").read_text())
    report = StageReport.from_dict(summary["report"])
    gguf = out / "adapter.gguf"
    return TrainResult(out, out / "adapter", gguf if gguf.is_file() else None, report)


def _launcher_noise(line: str) -> bool:
    """torchrun's banners and its report of a failed rank (the rank's own line says it)."""
    text = line.strip()
    return (not text or text.startswith(("*****", "Setting OMP_NUM_THREADS", "W1", "E1", "I1"))
            or "torch.distributed" in text or "OMP_NUM_THREADS" in text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    from localdistill.stages.train.distributed import die_with_parent

    die_with_parent()
