"""`train`: LoRA fine-tuning of the student on a data set, and adapters every backend can load.

    data set -> examples (data.py: rendered as at inference, loss on the completion only)
             -> a backend loads the base with fresh LoRA layers (Unsloth on a CUDA GPU when
                installed, else PEFT on transformers, GPU or CPU; peft_backend.py,
                unsloth_backend.py)
             -> the loop (loop.py: checkpoints, resumable)
             -> OUT/adapter/ (PEFT format: transformers+PEFT, vLLM), OUT/adapter.gguf (llama.cpp,
                when the base is a GGUF file; gguf_lora.py), OUT/loss.png, OUT/train.json

Use the result in any stage as the model `NAME+OUT` (e.g. `demo-student+runs/persd`): the base
from models.toml with the adapter of the right format for its backend.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from localdistill import memory
from localdistill.backends import get_model
from localdistill.errors import BadInput
from localdistill.models import ModelSpec, weights_path
from localdistill.progress import PEAK, Measure, Progress, StageReport, bar
from localdistill.rundir import DirectoryLock, write_atomic
from localdistill.stages.train import data, distributed, loop
from localdistill.stages.train.config import SMALL_SET, TrainConfig, TrainResult


def choose_backend(config: TrainConfig) -> str:
    from localdistill.stages.train import unsloth_backend

    if config.backend == "auto":
        return "unsloth" if unsloth_backend.available() else "peft"
    return config.backend


def train(data_set: Path | str, student: ModelSpec | str, out: Path | str,
          config: TrainConfig = TrainConfig(), progress: Progress | None = None,
          restart: bool = False) -> TrainResult:
    """Fine-tune `student` on `data_set`; resumes from OUT's last checkpoint unless `restart`.
    With `config.processes` > 1 the training is launched on that many processes (launch.py)."""
    spec = get_model(student) if isinstance(student, str) else student
    from localdistill.backends import kind_of

    if kind_of(spec).served:
        raise BadInput(f"models.{spec.name}: a served model cannot be trained here; name "
                       "its weights (path) in models.toml")
    if spec.adapter:
        raise BadInput(f"models.{spec.name}: already has an adapter; train from the base "
                       "model (merge first to stack adapters)")
    out = Path(out)
    if (config.processes > 1 or config.launch_config) and not distributed.launched():
        from localdistill.stages.train.launch import launch

        return launch(data_set, spec, out, config, restart)
    ranks = distributed.joined()
    if config.grad_accumulation is not None:  # before the model loads; else once it is chosen
        _check_shares(config, ranks.world)
    try:
        # one training into OUT at a time (a second is refused, never interleaved); of a
        # launch's processes rank 0 holds the lock, the others only read OUT
        with DirectoryLock(out) if ranks.main else contextlib.nullcontext():
            return _train(data_set, spec, out, config, progress, restart, ranks)
    finally:
        release_memory()


def release_memory() -> None:
    """Give the trained model's memory back to the system. `run` trains and then evaluates for
    hours in the same process: without this the freed weights, gradients and optimiser state
    stayed in the process (glibc keeps freed heap, torch's CUDA allocator keeps its cache), 8.5 GB
    on the 0.5B student, beside the model being evaluated."""
    import ctypes
    import gc

    gc.collect()  # PEFT's wrapped model holds reference cycles
    if (torch := memory.cuda_torch()) is not None:
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator decides for itself
        pass


def _train(data_set: Path | str, spec: ModelSpec, out: Path, config: TrainConfig,
           progress: Progress | None, restart: bool, ranks: distributed.Ranks) -> TrainResult:
    if restart and ranks.main:
        shutil.rmtree(out / loop.CHECKPOINT, ignore_errors=True)
    report = StageReport("train")
    memory.reset_peak()
    base = weights_path(spec)
    backend_name = choose_backend(config)
    rows = data.load_rows(data_set)
    if backend_name == "unsloth":
        from localdistill.stages.train import unsloth_backend as backend
    else:
        from localdistill.stages.train import peft_backend as backend
    model, tokenizer = backend.load(base, config)
    examples, too_long = data.tokenize(rows, tokenizer, config.max_length)
    if not examples:
        raise BadInput(f"{data_set}: no example fits in max_length={config.max_length} tokens")
    given = config
    config = config.for_examples(len(examples))
    _check_shares(config, ranks.world)
    from localdistill.hashing import file_digest

    fingerprint = "|".join([config.digest(), data.digest(examples), file_digest(base)])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    total = len(loop.micro_batches(examples, config)) // config.grad_accumulation
    result = loop.run(model, examples, config, out, pad, fingerprint,
                      bar(progress if ranks.main else None, "train", total), ranks)
    adapter = out / "adapter"
    peaks = ranks.each(memory.peak_gib())
    if not ranks.main:  # rank 0 writes the outputs
        return TrainResult(out, adapter, None, report)
    _save_adapter(model, adapter, base, result.whole_state)
    gguf_adapter, gguf_note = None, "-"
    if base.is_file():
        from localdistill.stages.train.gguf_lora import AdapterError, export_gguf_lora

        try:
            gguf_adapter = export_gguf_lora(adapter, base, out / "adapter.gguf")
            gguf_note = str(gguf_adapter)
        except AdapterError as e:  # the PEFT adapter stands; say why llama.cpp gets none
            gguf_note = f"not made: {e}"
    plot_loss(out)
    report.count("backend", backend_name)
    report.count("examples", len(examples))
    open_keys = [k for k in ("epochs", "grad_accumulation") if getattr(given, k) is None]
    if open_keys:
        report.count("settings for the set's size",
                     ", ".join(f"{k} {getattr(config, k)}" for k in open_keys)
                     + (" (small set)" if len(examples) < SMALL_SET else ""))
    if len(examples) < SMALL_SET:
        report.count("warning", small_set_warning(len(examples)))
    report.count_all({
        "left out (longer than max_length)": too_long, "optimiser steps": result.steps,
        "resumed from step": result.resumed_from,
        "first loss": Measure(result.first_loss, ".4f"),
        "last loss": Measure(result.last_loss, ".4f"),
        "tokens/s": Measure(result.tokens / result.seconds if result.seconds else None, ",.0f"),
        PEAK: Measure(peaks[0], ".2f"),
        **({"processes": ranks.world,
            "peak memory per process (GiB)": ", ".join(f"{p:.2f}" for p in peaks)}
           if ranks.world > 1 else {}),
        "adapter": str(adapter), "GGUF adapter": gguf_note})
    report.peak_memory_gib = round(peaks[0], 2)
    report.finish()
    summary = {"student": spec.name, "base": str(base), "config": asdict(config),
               "settings": asdict(given),  # as given: `run` retrains when they change
               "data_set": str(data_set), "data_digest": data.rows_digest(rows),
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "report": report.as_dict()}
    write_atomic(out / "train.json", (json.dumps(summary, indent=2) + "\n").encode())
    return TrainResult(out, adapter, gguf_adapter, report)


def _check_shares(config: TrainConfig, world: int) -> None:
    """Each optimiser step's forward passes are shared out evenly over the processes launched
    (only a user's own `accelerate launch` can get this wrong: --processes is checked earlier)."""
    if config.grad_accumulation % world:
        raise BadInput(f"training settings: grad_accumulation ({config.grad_accumulation}) "
                       f"must be a multiple of the {world} processes launched")


def small_set_warning(examples: int) -> str:
    return (f"only {examples} examples: too few to expect a gain, and enough to hurt the student "
            "on other tasks (docs/results.md); collect from more tasks, or find the refinement "
            "strategy that repairs the most with `localdistill probe` (docs/refinement.md)")


def _save_adapter(model, target: Path, base: Path, whole_state: dict | None = None) -> None:
    """The PEFT adapter, replaced whole; its config names the local base, never a hub id."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    extra = {"state_dict": whole_state} if whole_state is not None else {}
    model.save_pretrained(str(staging), save_embedding_layers=False, **extra)
    config_file = staging / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(base)
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def plot_loss(out: Path) -> Path | None:
    """OUT/loss.png from OUT/train_log.jsonl."""
    log = out / loop.LOG
    if not log.exists():
        return None
    points = [json.loads(line) for line in log.read_text().splitlines() if line]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.5), dpi=100)
    axes.plot([p["step"] for p in points], [p["loss"] for p in points])
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("loss (completion tokens)")
    axes.set_title(out.name)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    target = out / "loss.png"
    figure.savefig(target)
    pyplot.close(figure)
    return target


__all__ = ["TrainConfig", "TrainResult", "choose_backend", "plot_loss", "train"]
