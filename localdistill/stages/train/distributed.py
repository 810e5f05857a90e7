"""Data-parallel training through Hugging Face accelerate: which process this is, and the few
collective operations the loop needs.

`localdistill train --processes N` (or `processes = N` in a run's [train] table) launches N copies
of the training (train/launch.py: torchrun on a CPU, `accelerate launch` on CUDA GPUs, or any
accelerate config: DDP, DeepSpeed ZeRO-3, FSDP, several machines). Each copy calls `joined()`,
which returns the single-process `Ranks()` when it was not launched that way, so the one-process
path is the loop as it always was. The loop shares each optimiser step's forward passes out
round-robin (rank r takes passes r, r + N, ...); the gradients are averaged over ranks by DDP once
per step, and each rank's loss is scaled by N, so the sum is the one-process gradient. Only rank 0
writes (log, checkpoints, adapter, GGUF export, train.json).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass
class Ranks:
    """This process among the training's processes (rank 0 of 1 when not launched)."""

    rank: int = 0
    world: int = 1
    accelerator: object | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def prepare(self, model, optimizer):
        """The model and optimiser as the passes and steps should use them: wrapped by
        accelerate for the launch's engine (DDP; DeepSpeed or FSDP from a launch config)."""
        if not self.accelerator:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def clip(self, parameters, max_norm: float) -> None:
        import torch

        if self.accelerator:
            self.accelerator.clip_grad_norm_(parameters, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def whole_state(self, wrapped) -> dict | None:
        """Under DeepSpeed ZeRO-3 or FSDP, the model's weights gathered whole (collective: every
        rank must call it); None where each rank holds them whole already."""
        if self.accelerator and self.sharded:
            return self.accelerator.get_state_dict(wrapped)
        return None

    def lora_state(self, model, wrapped) -> dict:
        """The LoRA weights (every rank must call it: see `whole_state`)."""
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, state_dict=self.whole_state(wrapped),
                                         save_embedding_layers=False)

    @property
    def sharded(self) -> bool:
        kind = str(getattr(self.accelerator, "distributed_type", "NO"))
        return "DEEPSPEED" in kind or "FSDP" in kind

    def no_sync(self, model):
        """No gradient exchange for this pass (all but a step's last pass on each rank)."""
        return self.accelerator.no_sync(model) if self.accelerator else contextlib.nullcontext()

    def backward(self, loss) -> None:
        if self.accelerator:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def total(self, value: float) -> float:
        """`value` summed over the ranks (a step's loss and tokens)."""
        if not self.accelerator:
            return value
        import torch

        tensor = torch.tensor([float(value)], dtype=torch.float64,
                               device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum").item())

    def each(self, value: float) -> list[float]:
        """`value` of every rank, in rank order (the per-process peak memory)."""
        if not self.accelerator:
            return [value]
        import torch

        tensor = torch.tensor([float(value)], dtype=torch.float64,
                              device=self.accelerator.device)
        return [float(v) for v in self.accelerator.gather(tensor).tolist()]

    def barrier(self) -> None:
        if self.accelerator:
            self.accelerator.wait_for_everyone()


LAUNCHED = "LOCALDISTILL_LAUNCHED"  # set by launch.py for the processes it starts


def launched() -> bool:
    """Whether this process was started by a launcher (torchrun, accelerate launch), ours or
    the user's own `accelerate launch -m localdistill train ...`."""
    return LAUNCHED in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def joined() -> Ranks:
    """This process's place in the training: the single process, or a rank of a launch."""
    if not launched():
        return Ranks()
    import torch
    from accelerate import Accelerator

    die_with_parent()
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    return Ranks(accelerator.process_index, accelerator.num_processes, accelerator)


def die_with_parent() -> None:
    """Linux: end this process when its launcher dies, even by kill -9, instead of training on
    as an orphan that holds the output directory's lock."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the launcher died before the line above
        os._exit(1)
