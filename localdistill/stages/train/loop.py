"""The training loop, shared by the PEFT and Unsloth backends: AdamW on the LoRA weights, warmup
then linear decay, gradient accumulation and clipping, the loss on completion tokens only.

Every optimiser step's loss goes to `train_log.jsonl`; every `save_every` steps the adapter, the
optimiser, the schedule and the random state are checkpointed (atomically, to `checkpoint/`), so an
interrupted run resumes from its last checkpoint and continues exactly as it would have. A
checkpoint made with other settings or other data is refused, never silently mixed in.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.progress import Bar
from localdistill.stages.train.config import TrainConfig
from localdistill.stages.train.data import Example
from localdistill.stages.train.distributed import Ranks

CHECKPOINT = "checkpoint"
LOG = "train_log.jsonl"


@dataclass
class LoopResult:
    steps: int
    resumed_from: int  # 0: a fresh start
    first_loss: float | None
    last_loss: float | None
    tokens: int  # tokens through the model this call (prompt + completion)
    seconds: float
    whole_state: dict | None = None  # the gathered weights when they were sharded (ZeRO-3, FSDP)


def micro_batches(examples: Sequence[Example], config: TrainConfig) -> list[list[int]]:
    """The whole run's forward passes, as example indices: a seeded shuffle per epoch."""
    per_step = config.batch_size * config.grad_accumulation
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < total_steps * config.grad_accumulation:
        order = list(range(len(examples)))
        random.Random(config.seed + epoch).shuffle(order)
        batches += [order[i:i + config.batch_size] for i in range(0, len(order),
                                                                  config.batch_size)]
        epoch += 1
    return batches[:total_steps * config.grad_accumulation]


def pass_seed(seed: int, index: int) -> int:
    """The random seed of the run's forward pass `index` (its LoRA dropout): a function of the
    pass alone, so whichever process runs it, and after any resume, it draws the same."""
    return (seed * 1_000_003 + index) % 2**63


def run(model, examples: Sequence[Example], config: TrainConfig, out: Path, pad_id: int,
        fingerprint: str, bar: Bar | None = None, ranks: Ranks | None = None) -> LoopResult:
    """Train `model` (its trainable parameters: the LoRA weights) on `examples`; with `ranks`
    of several processes, this process's share of every step (train/distributed.py)."""
    import torch

    bar = bar or Bar()
    ranks = ranks or Ranks()
    device = next(model.parameters()).device
    batches = micro_batches(examples, config)
    total_steps = len(batches) // config.grad_accumulation
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    warmup = max(1, round(total_steps * config.warmup_ratio))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))
    ranks.barrier()  # rank 0 has prepared OUT (a --restart removed the checkpoint)
    start = _resume(model, optimizer, schedule, out, fingerprint, ranks.main)
    if start:
        bar.advance(start)
    if start == 0 and ranks.main:
        (out / LOG).unlink(missing_ok=True)
    wrapped, stepper = ranks.prepare(model, optimizer)
    model.train()
    first = last = None
    tokens, started = 0, time.monotonic()
    for step in range(start, total_steps):
        step_batches = batches[step * config.grad_accumulation:(step + 1) *
                               config.grad_accumulation]
        targets = sum(examples[i].completion_tokens for b in step_batches for i in b)
        loss_sum, step_tokens = 0.0, 0
        mine = list(range(ranks.rank, len(step_batches), ranks.world))
        for j in mine:
            ids, labels, mask = _pad([examples[i] for i in step_batches[j]], pad_id, device)
            torch.manual_seed(pass_seed(config.seed, step * config.grad_accumulation + j))
            with ranks.no_sync(wrapped) if j != mine[-1] else contextlib.nullcontext():
                logits = wrapped(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                    ignore_index=-100, reduction="sum") / targets
                scored = [(row, examples[i]) for row, i in enumerate(step_batches[j])
                          if examples[i].teacher is not None]
                if scored:
                    loss = loss + config.distill_weight * _distillation(
                        logits, scored, config) / targets
                # DDP averages the ranks' gradients: N times each share sums to the whole step's
                ranks.backward(loss * ranks.world)
            loss_sum += loss.item()
            step_tokens += int(mask.sum())
        loss_sum, tokens = ranks.total(loss_sum), tokens + int(ranks.total(step_tokens))
        ranks.clip(trainable, config.max_grad_norm)
        stepper.step()
        schedule.step()
        stepper.zero_grad(set_to_none=True)
        first = loss_sum if first is None else first
        last = loss_sum
        elapsed = time.monotonic() - started
        if ranks.main:
            _log(out, {"step": step + 1, "loss": round(loss_sum, 5),
                       "lr": schedule.get_last_lr()[0], "tokens": tokens,
                       "seconds": round(elapsed, 2)})
        bar.advance(status=f"loss {loss_sum:.3f}  {tokens / max(elapsed, 1e-9):,.0f} tok/s")
        if (step + 1) % config.save_every == 0 or step + 1 == total_steps:
            lora = ranks.lora_state(model, wrapped)  # collective when the weights are sharded
            if ranks.main:
                _save(lora, optimizer, schedule, out, step + 1, fingerprint)
    ranks.barrier()
    model.eval()
    return LoopResult(total_steps, start, first, last, tokens, time.monotonic() - started,
                      ranks.whole_state(wrapped))


def _distillation(logits, scored, config: TrainConfig):
    """The summed divergence between the teacher's scores and the student's distributions at
    each scored row's answer positions (stages/train/token_distill.py)."""
    import torch

    from localdistill.stages.train.token_distill import divergence

    total = logits.new_zeros(())
    for row, example in scored:
        top_ids, top_logprobs, rest = example.teacher
        start, end = example.prompt_tokens - 1, len(example.input_ids) - 1
        device = logits.device
        total = total + divergence(
            logits[row, start:end], torch.tensor(top_ids, device=device),
            torch.tensor(top_logprobs, device=device), config.distill, config.distill_beta,
            torch.tensor(rest, device=device)).sum()
    return total


def _pad(batch: Sequence[Example], pad_id: int, device):
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        if example.teacher is None:  # a scored row's tokens are the student's: no SFT on them
            labels[row, example.prompt_tokens:n] = ids[row, example.prompt_tokens:n]
        mask[row, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def _log(out: Path, record: dict) -> None:
    with open(out / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _save(lora: dict, optimizer, schedule, out: Path, step: int, fingerprint: str) -> None:
    import torch

    staging = out / f".{CHECKPOINT}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save({"adapter": lora,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "step": step, "fingerprint": fingerprint,
                "rng": torch.get_rng_state()}, staging / "state.pt")
    (staging / "step").write_text(f"{step}\n")
    target, old = out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _resume(model, optimizer, schedule, out: Path, fingerprint: str, main: bool = True) -> int:
    import torch
    from peft import set_peft_model_state_dict

    state_file = out / CHECKPOINT / "state.pt"
    old = out / f".{CHECKPOINT}.old" / "state.pt"
    if not state_file.exists() and old.exists():  # killed between the two renames
        state_file = old
    if not state_file.exists():
        return 0
    try:  # weights_only: a checkpoint is tensors and plain values; a pickle that would run
        # code (a run directory from someone else, tampered with) is refused, not executed
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise BadInput(f"{state_file}: not a checkpoint localdistill can trust or read "
                       f"({type(e).__name__}); delete it or use --restart") from None
    if state.get("fingerprint") != fingerprint:
        raise BadInput(f"{out} holds a checkpoint of another training (other settings, data "
                       "or base model); use another --out, or --restart to start over")
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    log = out / LOG
    if main and log.exists():  # steps logged after the checkpoint are redone: drop them
        kept = [line for line in log.read_text().splitlines()
                if line and json.loads(line)["step"] <= state["step"]]
        log.write_text("".join(f"{line}\n" for line in kept))
    return int(state["step"])
