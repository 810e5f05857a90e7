"""`localdistill train`: LoRA fine-tuning of the student on a data set."""

from __future__ import annotations

import os
from pathlib import Path

import click

from localdistill.cli.base import cli


@cli.command("train")
@click.argument("data_set", metavar="DATA", type=click.Path(exists=True, path_type=Path))
@click.option("--student", required=True, help="The base model, a name in models.toml.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the adapter, checkpoints, log and loss plot go (resumed if there).")
@click.option("--rank", type=click.IntRange(1), default=16, show_default=True)
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=32.0,
              show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.05,
              show_default=True)
@click.option("--target-modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
              "down_proj", show_default=True, help="Comma-separated module names.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=2e-4, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True)
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="Stop after this many optimiser steps.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True)
@click.option("--grad-accumulation", type=click.IntRange(1), default=8, show_default=True)
@click.option("--max-length", type=click.IntRange(16), default=1024, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=click.IntRange(1), default=25, show_default=True,
              help="Optimiser steps between checkpoints.")
@click.option("--backend", type=click.Choice(["auto", "peft", "unsloth"]), default="auto",
              show_default=True, help="auto: Unsloth on a CUDA GPU when installed, else PEFT.")
@click.option("--processes", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel processes (one per GPU; gloo on a CPU), launched for you "
                   "through torchrun / accelerate; the examples per step stay the same.")
@click.option("--launch-config", type=click.Path(dir_okay=False), default=None,
              help="An accelerate config (examples/accelerate/: DDP, DeepSpeed ZeRO-3, FSDP, "
                   "several machines).")
@click.option("--restart", is_flag=True, help="Ignore OUT's checkpoint and start over.")
def train_command(data_set: Path, student: str, out: Path, target_modules: str, restart: bool,
                  **settings) -> None:
    """Fine-tune the student with LoRA on DATA (a `build` data set, or prompt/completion JSONL).

    Writes OUT/adapter/ (PEFT) and, for a GGUF student, OUT/adapter.gguf (llama.cpp); use the
    result in any command as the model STUDENT+OUT.
    """
    from rich.console import Console

    from localdistill.progress import Progress
    from localdistill.train import TrainConfig, train

    modules = tuple(m.strip() for m in target_modules.split(",") if m.strip())
    config = TrainConfig(target_modules=modules, **settings)
    if int(os.environ.get("RANK", "0")) != 0:  # one of the user's `accelerate launch` ranks
        train(data_set, student, out, config, None, restart=restart)
        return
    with Progress(Console(stderr=True)) as progress:
        result = train(data_set, student, out, config, progress, restart=restart)
    Console(highlight=False).print(result.report.table())
    if "warning" in result.report.counts:
        click.echo(f"warning: {result.report.counts['warning']}", err=True)
    click.echo(f"use it as the model: {student}+{out}")
