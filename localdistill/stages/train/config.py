"""Training settings: one typed record, every field with its help and a check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.progress import StageReport

# The attention and MLP projections of LLaMA-style models (Qwen2, SmolLM2, Mistral...). Never the
# embeddings or lm_head: vLLM and llama.cpp refuse adapters that touch them.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FORBIDDEN_TARGETS = ("embed_tokens", "lm_head", "wte", "wpe", "embed", "output")
TRAINERS = ("auto", "peft", "unsloth")

# Below this many examples an adapter is not expected to help, and can hurt (a warning says so:
# on the demo pair, the quickstart's 2 PERsD examples of 2026-12-03 cost the 0.5B student 20
# points on HumanEval's first 20 tasks; 20 did nothing measurable on MBPP while StanD's 278 and
# PERsD-combine's 40 helped), and the settings left open take their small-set values. Measured
# on held-out tasks (docs/results.md, "Training on a small set"): on 9 examples, 4 steps of 8 (the
# defaults for larger sets) cost the 0.5B student 11 and 12 points of HumanEval on two seeds
# (p < 0.01); 15 steps of 2 (3 epochs) cost 2 and 3, which could not be told from noise.
SMALL_SET = 32
DEFAULTS = {"epochs": 2, "grad_accumulation": 8}
SMALL_SET_DEFAULTS = {"epochs": 3, "grad_accumulation": 2}


@dataclass(frozen=True)
class TrainConfig:
    rank: int = field(default=16, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scale = alpha / rank)"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: tuple[str, ...] = field(default=PROJECTIONS, metadata={
        "help": "module names LoRA adapts (attention and MLP projections)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW)"})
    epochs: int | None = field(default=None, metadata={
        "help": "passes over the data set, each rounded up to whole optimiser steps (default: "
                "2, or 3 below 32 examples)"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many optimiser steps (overrides epochs)"})
    batch_size: int = field(default=1, metadata={"help": "examples per forward pass"})
    grad_accumulation: int | None = field(default=None, metadata={
        "help": "forward passes per optimiser step, effective batch = batch_size x this "
                "(default: 8, or 2 below 32 examples: measured, docs/results.md)"})
    max_length: int = field(default=1024, metadata={
        "help": "tokens of prompt + completion; longer examples are left out, not cut"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps warming up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    seed: int = field(default=0, metadata={"help": "data order and LoRA initialisation"})
    save_every: int = field(default=25, metadata={
        "help": "optimiser steps between checkpoints (resume from the last one)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "trade compute for memory (useful on a GPU with long examples)"})
    backend: str = field(default="auto", metadata={
        "help": "the trainer: auto (Unsloth on a CUDA GPU when installed, else PEFT), peft or "
                "unsloth", "choices": TRAINERS})
    processes: int = field(default=1, metadata={
        "help": "data-parallel processes through accelerate (one per GPU; gloo on a CPU); the "
                "examples per optimiser step stay batch_size x grad_accumulation"})
    launch_config: str | None = field(default=None, metadata={
        "help": "an accelerate config file for the launch (examples/accelerate/: DDP, "
                "DeepSpeed ZeRO-3, FSDP, several machines)"})
    distill: str = field(default="forward", metadata={
        "help": "on the rows of a `score` data set (the teacher's log-probabilities on the "
                "student's own tokens): the divergence the student's distribution is moved by, "
                "forward (KL teacher||student), reverse (KL student||teacher) or jsd "
                "(generalised Jensen-Shannon, distill_beta); stages/train/token_distill.py",
        "choices": ("forward", "reverse", "jsd")})
    distill_beta: float = field(default=0.5, metadata={
        "help": "jsd's interpolation: 0 behaves like forward KL, 1 like reverse KL"})
    distill_weight: float = field(default=1.0, metadata={
        "help": "the weight of the distillation loss beside the cross-entropy of ordinary rows "
                "trained in the same run"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        checks = [
            (self.rank >= 1, "rank must be at least 1"),
            (self.alpha > 0, "alpha must be positive"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be at least 1"),
            (self.batch_size >= 1 and (self.grad_accumulation is None
                                        or self.grad_accumulation >= 1),
             "batch_size and grad_accumulation must be at least 1"),
            (self.max_length >= 16, "max_length must be at least 16"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.save_every >= 1, "save_every must be at least 1"),
            (self.backend in TRAINERS, "backend: auto, peft or unsloth"),
            (bool(self.target_modules), "target_modules: at least one module"),
            (self.processes >= 1, "processes must be at least 1"),
            ((self.grad_accumulation or self.processes) % self.processes == 0,
             f"grad_accumulation ({self.grad_accumulation}) must be a multiple of processes "
             f"({self.processes}): each optimiser step's forward passes are shared out evenly, "
             "so that N processes train the model one would"),
            (self.processes == 1 or self.backend != "unsloth",
             "Unsloth trains on one GPU: use backend = peft (or auto) with processes > 1"),
            (self.distill in ("forward", "reverse", "jsd"), "distill: forward, reverse or jsd"),
            (0 <= self.distill_beta <= 1, "distill_beta must be in [0, 1]"),
            (self.distill_weight >= 0, "distill_weight must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(f"training settings: {message}")
        bad = [m for m in self.target_modules if any(f in m for f in FORBIDDEN_TARGETS)]
        if bad:
            raise BadInput(f"training settings: target_modules: {bad[0]!r} is an embedding or "
                           "output layer; vLLM and llama.cpp cannot load such adapters")

    def for_examples(self, examples: int) -> TrainConfig:
        """These settings for a data set of `examples`: epochs and grad_accumulation left open
        take their value for its size (SMALL_SET_DEFAULTS below SMALL_SET examples, else
        DEFAULTS); grad_accumulation rounded up to a multiple of the processes."""
        chosen = SMALL_SET_DEFAULTS if examples < SMALL_SET else DEFAULTS
        epochs = self.epochs if self.epochs is not None else chosen["epochs"]
        steps = self.grad_accumulation
        if steps is None:
            steps = math.ceil(chosen["grad_accumulation"] / self.processes) * self.processes
        return dataclasses.replace(self, epochs=epochs, grad_accumulation=steps)

    def digest(self) -> str:
        """What a checkpoint must match to be resumed: everything but how often to save and how
        many processes share the work (N processes train the model one would, so a run
        interrupted on N resumes on any number)."""
        values = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("save_every", "processes", "launch_config")}
        for name in DISTILL_FIELDS:  # at their defaults: the digest the settings had before
            if values[name] == DISTILL_DEFAULTS[name]:
                del values[name]
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


DISTILL_FIELDS = ("distill", "distill_beta", "distill_weight")
DISTILL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                    if f.name in DISTILL_FIELDS}


@dataclass
class TrainResult:
    """What `train` returns (and launch.py reads back from the processes it started)."""

    out: Path
    adapter: Path  # PEFT format
    gguf_adapter: Path | None  # for llama.cpp, when the base is a GGUF file
    report: StageReport
