"""models.toml: named models, parsed into typed entries that fail early and clearly.

Every key has a type and a one-line help (the fields of `ModelSpec` and `Sampling`, checked by
localdistill/tomlconfig.py as the run config's are); an unknown key, a wrong type or an impossible
value fails with the file, the key and what was expected, in one line.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import typing
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from urllib.parse import urlparse

from localdistill.errors import BadInput
from localdistill.tomlconfig import Mismatch, typed

BACKENDS = ("llama.cpp", "openai", "vllm", "transformers")
REPO_MODELS_TOML = Path(__file__).resolve().parents[2] / "models.toml"


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
    name: str
    backend: str = field(metadata={"help": f"one of {', '.join(BACKENDS)}"})
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
    url: str | None = field(
        default=None,
        metadata={"help": "base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"},
    )
    more_urls: tuple[str, ...] = field(
        default=(),
        metadata={"help": "openai: further servers of the same model; requests are spread over "
                          "url and these, each server taking work as it frees a slot"},
    )
    allow_remote: bool = field(
        default=False,
        metadata={
            "help": "let `url` point at another machine of your network (off: loopback only)"
        },
    )
    served_name: str | None = field(
        default=None,
        metadata={"help": "the model name the server expects (default: the server's first model)"},
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
    gpu_layers: int = field(default=0, metadata={"help": "llama.cpp: layers offloaded, -1 all"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads (default: all)"})
    prompt_lookup: int = field(default=0, metadata={
        "help": "llama.cpp: draft this many tokens from text already in the prompt and verify "
                "them in one pass (prompt lookup decoding). Measured on the demo teacher: 1.4x "
                "faster for refinements, which copy the student's code, but 0.73x for answers "
                "from scratch; 0: off. Keeps the logits of the whole context in memory "
                "(context_length x vocabulary x 4 bytes)"})
    parallel: int = field(default=1, metadata={
        "help": "llama.cpp: requests decoded together in one batch (continuous batching in "
                "process). On a CPU several sequences cost little more than one: 1.6-2x the "
                "tokens/s at 4 on the demo models (README; scripts/bench_generation.py). "
                "Each takes context_length tokens of KV cache. Answers can differ from "
                "parallel = 1 after a near tie (other matrix kernels round differently), so "
                "the run cache keeps them apart"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM: GPUs per model"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM: GPU share"})
    max_in_flight: int = field(default=4, metadata={"help": "openai: requests sent at once"})
    timeout: float = field(default=600.0, metadata={"help": "openai: seconds per request"})
    wait_for_server: float = field(default=120.0, metadata={
        "help": "openai: seconds to wait for a server that stopped answering mid-stage (crashed "
                "or restarting) to come back before the stage fails; a server that never "
                "answered fails at once"})
    request_extra: dict = field(default_factory=dict, metadata={
        "help": "openai: fields added to every request body, a server's own settings (e.g. "
                "repeat_penalty = 1.0 for llama-cpp-python's server, which defaults to 1.1)"})
    sampling: Sampling = field(
        default_factory=Sampling,
        metadata={"help": "default sampling: temperature, top_p, max_tokens, stop"},
    )
    source: str = field(default="", compare=False, metadata={"help": "(set by the loader)"})

    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()


def _in_words(where: str, m: Mismatch) -> ModelsFileError:
    """A mismatch of an entry (tomlconfig) as models.toml says it: `FILE: models.NAME.KEY: ...`."""
    at = f"{where}.{m.key}" if m.key else where
    match m.problem:
        case "not a table":
            return ModelsFileError(f"{at}: expected a table")
        case "unknown key":
            return ModelsFileError(f"{at}: unknown key (expected one of: {', '.join(m.known)})")
        case "missing key":
            return ModelsFileError(f"{at}: missing (expected {m.help})")
        case "wrong type":
            expected = " or ".join(_type_name(t) for t in m.expected)
            got = repr(m.value) if isinstance(m.value, list) else \
                f"{type(m.value).__name__} {m.value!r}"
            return ModelsFileError(f"{at}: expected {expected}, got {got}")
    return ModelsFileError(f"{at}: {m.error}")


def _type_name(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    return "a table" if kind is dict or is_dataclass(kind) else kind.__name__


def parse_models(text: str, source: str) -> dict[str, ModelSpec]:
    """Parse models.toml text; `source` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelsFileError(f"{source}: not valid TOML ({e})") from None
    unknown = set(data) - {"models"}
    if unknown:
        raise ModelsFileError(
            f"{source}: {sorted(unknown)[0]}: unknown table (expected [models.NAME])"
        )
    specs = {}
    for name, raw in data.get("models", {}).items():
        where = f"{source}: models.{name}"
        try:
            spec = typed(ModelSpec, raw, skip=("name", "source"),
                         given={"name": name, "source": source})
        except Mismatch as m:
            raise _in_words(where, m) from None
        _validate(spec, where)
        specs[name] = spec
    return specs


def _validate(spec: ModelSpec, where: str) -> None:
    if spec.backend not in BACKENDS:
        raise ModelsFileError(
            f"{where}.backend: expected one of {', '.join(BACKENDS)}, got {spec.backend!r}"
        )
    if spec.backend == "openai":
        if not spec.url:
            raise ModelsFileError(f"{where}.url: required for backend 'openai'")
        check_local_url(spec.url, spec.allow_remote, f"{where}.url")
        for i, url in enumerate(spec.more_urls):
            check_local_url(url, spec.allow_remote, f"{where}.more_urls[{i}]")
    elif spec.more_urls:
        raise ModelsFileError(f"{where}.more_urls: only for backend 'openai'")
    elif not (spec.path or spec.hub_id):
        raise ModelsFileError(
            f"{where}.path: required for backend {spec.backend!r} "
            "(or hub_id, for a model already in the local Hugging Face cache)"
        )
    if spec.hub_id and not _looks_like_hub_id(spec.hub_id):
        raise ModelsFileError(f"{where}.hub_id: expected 'organisation/name', got {spec.hub_id!r}")
    s = spec.sampling
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_tokens < 1:
        raise ModelsFileError(
            f"{where}.sampling: need temperature >= 0, 0 < top_p <= 1, max_tokens >= 1; got {s}"
        )
    if spec.prompt_lookup < 0:
        raise ModelsFileError(
            f"{where}.prompt_lookup: expected 0 (off) or more, got {spec.prompt_lookup}"
        )
    if spec.prompt_lookup and spec.backend != "llama.cpp":
        raise ModelsFileError(f"{where}.prompt_lookup: only for backend 'llama.cpp'")
    if spec.parallel > 1 and spec.backend != "llama.cpp":
        raise ModelsFileError(f"{where}.parallel: only for backend 'llama.cpp' (servers: "
                              "max_in_flight; vLLM batches on its own)")
    if spec.parallel > 1 and spec.prompt_lookup:
        raise ModelsFileError(f"{where}: parallel and prompt_lookup cannot be combined; "
                              "choose one")
    if spec.wait_for_server < 0:
        raise ModelsFileError(
            f"{where}.wait_for_server: expected 0 (do not wait) or more seconds, got "
            f"{spec.wait_for_server:g}")
    for key in ("context_length", "tensor_parallel_size", "max_in_flight", "parallel"):
        if getattr(spec, key) < 1:
            raise ModelsFileError(f"{where}.{key}: expected at least 1, got {getattr(spec, key)}")


def _looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/"))


def check_local_url(url: str, allow_remote: bool, where: str) -> None:
    """A server URL must be loopback, unless the entry explicitly allows the local network."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ModelsFileError(f"{where}: expected http://HOST:PORT/v1, got {url!r}")
    host = parsed.hostname
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_loopback:
        return
    if not allow_remote:
        raise ModelsFileError(
            f"{where}: {host} is not this machine; localdistill talks only to "
            "loopback servers unless the entry sets allow_remote = true"
        )
    if address is not None and address.is_global:
        raise ModelsFileError(
            f"{where}: {host} is a public address; only servers on your own "
            "network are allowed, even with allow_remote"
        )


def models_file() -> Path:
    """$LOCALDISTILL_MODELS if set, else ./models.toml, else the repository's models.toml."""
    explicit = os.environ.get("LOCALDISTILL_MODELS")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "models.toml"
    return local if local.is_file() else REPO_MODELS_TOML


def load_models(path: Path | None = None) -> dict[str, ModelSpec]:
    path = Path(path) if path else models_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelsFileError(
            f"{path}: no such models file (set LOCALDISTILL_MODELS or pass --models)"
        ) from None
    except UnicodeDecodeError:
        raise ModelsFileError(f"{path}: not UTF-8 text") from None
    return parse_models(text, str(path))


def get_model(name: str, path: Path | None = None) -> ModelSpec:
    """A model by its name in models.toml, or `NAME+DIR`: NAME with the adapter `train` wrote
    to DIR (the GGUF adapter for llama.cpp, the PEFT one for transformers and vLLM)."""
    specs = load_models(path)
    if name not in specs and "+" in name:
        base, trained = name.split("+", 1)
        if base in specs:
            return with_trained_adapter(specs[base], Path(trained), name)
    if name not in specs:
        raise ModelsFileError(
            f"{path or models_file()}: no model named {name!r} "
            f"(known: {', '.join(specs) or 'none'})"
        )
    return specs[name]


def with_trained_adapter(spec: ModelSpec, trained: Path, name: str | None = None) -> ModelSpec:
    """`spec` with the adapter in `trained` (a `localdistill train` output, or an adapter)."""
    import dataclasses

    trained = trained.expanduser().resolve()
    if spec.backend == "llama.cpp":
        adapter = trained / "adapter.gguf" if trained.is_dir() else trained
        kind = "GGUF adapter (adapter.gguf)"
    elif spec.backend in ("transformers", "vllm"):
        adapter = trained / "adapter" if (trained / "adapter").is_dir() else trained
        kind = "PEFT adapter (adapter_config.json)"
        if not (adapter / "adapter_config.json").is_file():
            adapter = adapter / "missing"
    else:
        raise ModelsFileError(f"{name or spec.name}: a served model takes its adapter on the "
                              "server; declare it there")
    if not adapter.exists():
        raise ModelsFileError(f"{name or spec.name}: {trained} holds no {kind} for the "
                              f"{spec.backend} backend; train it with `localdistill train`")
    return dataclasses.replace(spec, name=name or spec.name, adapter=str(adapter))


def replayed(spec: ModelSpec, answers: Path, trained: Path | None = None) -> ModelSpec:
    """`spec` answering from the answers recorded in `answers` (backends/replay.py) instead of
    its weights; `trained`: the training output (its train.json) of the adapter that wrote them,
    so that reports know the data set, though the adapter itself need not exist any more."""
    import dataclasses

    answers = answers.expanduser().resolve()
    if not answers.is_file():
        raise ModelsFileError(f"--replay {answers}: no such file (expected an evaluation's "
                              "cache/requests.jsonl)")
    adapter = None
    if trained is not None:
        trained = trained.expanduser().resolve()
        if not (trained / "train.json").is_file():
            raise ModelsFileError(f"--replay with --adapter {trained}: holds no train.json "
                                  "(expected the `localdistill train` output that made the "
                                  "answers)")
        adapter = str(trained)
    name = f"{spec.name}+{trained.name}" if trained else spec.name
    return dataclasses.replace(spec, name=name, backend="replay", path=str(answers),
                               hub_id=None, url=None, more_urls=(), adapter=adapter)
