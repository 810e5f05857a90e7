"""`localdistill train`: LoRA fine-tuning of the student on a data set."""

from __future__ import annotations

import os
from pathlib import Path

import click

from localdistill.cli.base import cli
from localdistill.cli.options import ConfigCommand, config_option

TRAIN = "localdistill.stages.train.config:TrainConfig"
SCORE = "localdistill.stages.score:ScoreConfig"


@cli.command("train", cls=ConfigCommand)
@click.argument("data_set", metavar="DATA", type=click.Path(exists=True, path_type=Path))
@click.option("--student", required=True, help="The base model, a name in models.toml.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the adapter, checkpoints, log and loss plot go (resumed if there).")
@config_option(TRAIN, "rank", min=1)
@config_option(TRAIN, "alpha", min=0, min_open=True)
@config_option(TRAIN, "dropout", min=0, max=1, max_open=True)
@config_option(TRAIN, "target_modules")
@config_option(TRAIN, "learning_rate", "--lr", min=0, min_open=True)
@config_option(TRAIN, "epochs", min=1)
@config_option(TRAIN, "max_steps", min=1)
@config_option(TRAIN, "batch_size", min=1)
@config_option(TRAIN, "grad_accumulation", min=1)
@config_option(TRAIN, "max_length", min=16)
@config_option(TRAIN, "seed")
@config_option(TRAIN, "save_every", min=1)
@config_option(TRAIN, "backend")
@config_option(TRAIN, "processes", min=1)
@config_option(TRAIN, "launch_config", type=click.Path(dir_okay=False))
@config_option(TRAIN, "distill")
@config_option(TRAIN, "distill_beta", min=0, max=1)
@config_option(TRAIN, "distill_weight", min=0)
@click.option("--restart", is_flag=True, help="Ignore OUT's checkpoint and start over.")
def train_command(data_set: Path, student: str, out: Path, restart: bool, **settings) -> None:
    """Fine-tune the student with LoRA on DATA (a `build` data set, or prompt/completion JSONL;
    the rows of a `score` data set train by token-level distillation, `--distill`: a JSONL file
    may hold both kinds).

    Writes OUT/adapter/ (PEFT) and, for a GGUF student, OUT/adapter.gguf (llama.cpp); use the
    result in any command as the model STUDENT+OUT.
    """
    from rich.console import Console

    from localdistill.progress import Progress
    from localdistill.stages.train import TrainConfig, train

    config = TrainConfig(**settings)
    if int(os.environ.get("RANK", "0")) != 0:  # one of the user's `accelerate launch` ranks
        train(data_set, student, out, config, None, restart=restart)
        return
    with Progress(Console(stderr=True)) as progress:
        result = train(data_set, student, out, config, progress, restart=restart)
    Console(highlight=False).print(result.report.table())
    if result.report.value("warning"):
        click.echo(f"warning: {result.report.value('warning')}", err=True)
    click.echo(f"use it as the model: {student}+{out}")


@cli.command("score", cls=ConfigCommand)
@click.argument("tasks_spec", metavar="TASKS")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="A collect run: the student's answers behind its verified "
                                  "refinements are scored.")
@click.option("--student", required=True, help="The student, a name in models.toml (its "
                                                "tokenizer makes the ids).")
@click.option("--teacher", required=True, help="The teacher, a model of models.toml run in "
                                                "process (llama.cpp, transformers or vLLM).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The data set to write (OUT/ and OUT.jsonl).")
@config_option(SCORE, "top_k", min=1)
@config_option(SCORE, "max_length", min=16)
@config_option(SCORE, "context")
def score_command(tasks_spec: str, run_dir: Path, student: str, teacher: str, out: Path,
                  top_k: int, max_length: int, context: str) -> None:
    """The teacher's log-probabilities on the student's own failed answers, given the task, the
    feedback and a correct solution: a data set for `train --distill` (stages/score.py)."""
    from rich.console import Console

    from localdistill.progress import Progress
    from localdistill.rundir import RunDir
    from localdistill.stages.score import score_refinements
    from localdistill.tasks import load_tasks

    tasks = load_tasks(tasks_spec)
    with Progress(Console(stderr=True)) as progress, RunDir(run_dir) as run:
        report = score_refinements(tasks, run, student, teacher, out, top_k, max_length,
                                   progress, context)
    Console(highlight=False).print(report.table())
    click.echo(f"scores in {out} and {out.with_suffix('.jsonl')}")
