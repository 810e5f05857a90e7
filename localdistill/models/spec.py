"""A model's record: one entry of models.toml, typed, and where its weights are.

The ground floor of models: backends import it, and it imports no backend. Parsing models.toml
(which needs each backend's own keys) is `backends/models_toml.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdistill.errors import BadInput
from localdistill.models.demo import ModelNotInstalled, demo_path


class ModelsFileError(BadInput):
    """models.toml is wrong: the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = field(default=0.0, metadata={"help": "0 is greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling, in (0, 1]"})
    max_tokens: int = field(default=512, metadata={"help": "tokens to generate at most"})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "strings that end a sample"})


@dataclass(frozen=True)
class ModelSpec:
    """One entry of models.toml: the keys every backend has, and `options`, the backend's own
    (declared with the backend, in localdistill/backends/<module>.py; written flat beside these)."""

    name: str
    backend: str = field(metadata={"help": "which backend runs it (below: each, and its own "
                                           "keys)"})
    description: str = field(default="", metadata={"help": "one line for `models list`"})
    path: str | None = field(
        default=None,
        metadata={
            "help": "weights: a GGUF file or a Hugging Face directory, absolute or relative to "
            "this file; 'demo:NAME' for the embedded demo models"
        },
    )
    hub_id: str | None = field(
        default=None,
        metadata={"help": "a Hugging Face id, used only if it is already in the local cache"},
    )
    quantisation: str | None = field(
        default=None,
        metadata={"help": "e.g. Q4_K_M, AWQ, bnb-4bit (informational for GGUF; passed to vLLM)"},
    )
    context_length: int = field(default=4096, metadata={"help": "tokens of context"})
    chat_template: str | None = field(
        default=None, metadata={"help": "a Jinja chat template overriding the model's own"}
    )
    adapter: str | None = field(
        default=None,
        metadata={
            "help": "a LoRA adapter: PEFT directory (transformers, vLLM) or GGUF file (llama.cpp)"
        },
    )
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads of a backend that runs in this process (default: all)"})
    sampling: Sampling = field(
        default_factory=Sampling,
        metadata={"help": "default sampling: temperature, top_p, max_tokens, stop"},
    )
    options: Any = field(default=None, metadata={
        "help": "(the backend's own keys, written flat in the entry)"})
    source: str = field(default="", compare=False, metadata={"help": "(set by the loader)"})

    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def with_keys(self, **keys) -> ModelSpec:
        """This entry with some keys changed, common or the backend's own."""
        common = {k: v for k, v in keys.items() if k in COMMON_KEYS}
        own = {k: v for k, v in keys.items() if k not in COMMON_KEYS}
        if own:  # dataclasses.replace names a key the backend does not have
            common["options"] = dataclasses.replace(self.options, **own)
        return dataclasses.replace(self, **common)


COMMON_KEYS = frozenset(f.name for f in dataclasses.fields(ModelSpec))


def at_least_one(where: str, options, *keys: str) -> None:
    """`keys` of an entry (or of a backend's options) that must be 1 or more."""
    for key in keys:
        if getattr(options, key) < 1:
            raise ModelsFileError(f"{where}.{key}: expected at least 1, got "
                                  f"{getattr(options, key)}")



def weights_path(spec: ModelSpec) -> Path:
    """The local weights of a model: a path, a demo model, or a hub id already in the cache."""
    if spec.path:
        return _local(spec, "path", spec.path)
    return _from_hub_cache(spec)


def adapter_path(spec: ModelSpec) -> Path | None:
    return _local(spec, "adapter", spec.adapter) if spec.adapter else None


def _local(spec: ModelSpec, key: str, value: str) -> Path:
    if value.startswith("demo:"):
        return demo_path(value.removeprefix("demo:"))
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = spec.base_dir() / path
    if not path.exists():
        raise ModelsFileError(
            f"{spec.source}: models.{spec.name}.{key}: {path} does not exist "
            "(expected a local file or directory)"
        )
    return path


def _from_hub_cache(spec: ModelSpec) -> Path:
    """Only what is already in the local Hugging Face cache: never a download."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ModelNotInstalled(
            "huggingface_hub is not installed: pip install 'localdistill[cpu]'"
        ) from None
    try:
        return Path(snapshot_download(spec.hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelsFileError(
            f"{spec.source}: models.{spec.name}.hub_id: {spec.hub_id} is not in the local Hugging "
            "Face cache, and localdistill never downloads; put the files on this machine and set "
            "`path` instead"
        ) from None
