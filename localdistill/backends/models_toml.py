"""models.toml: named models, parsed into typed entries that fail early and clearly.

Every key has a type and a one-line help (the fields of `ModelSpec` and `Sampling`, in
models/spec.py, checked by localdistill/tomlconfig.py as the run config's are), and each backend
adds its own keys (its `Kind.options`, declared in its module); an unknown key, a wrong type or an
impossible value fails with the file, the key and what was expected, in one line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import is_dataclass
from pathlib import Path

from localdistill.backends import replay
from localdistill.backends.registry import declared, kind_of
from localdistill.models.demo import ModelNotInstalled
from localdistill.models.spec import (
    COMMON_KEYS,
    ModelsFileError,
    ModelSpec,
    Sampling,
    at_least_one,
    weights_path,
)
from localdistill.tomlconfig import Mismatch, key_table, typed

REPO_MODELS_TOML = Path(__file__).resolve().parents[2] / "models.toml"


def _in_words(where: str, m: Mismatch) -> ModelsFileError:
    """A mismatch of an entry (tomlconfig) as models.toml says it: `FILE: models.NAME.KEY: ...`."""
    at = f"{where}.{m.key}" if m.key else where
    match m.problem:
        case "not a table":
            return ModelsFileError(f"{at}: expected a table")
        case "unknown key" if isinstance(m.value, dict) and "." not in m.key:
            # `[models.qwen-0.5b]` is the table `5b` inside `models.qwen-0`: TOML's dots nest
            return ModelsFileError(
                f"{at}: unknown key {m.key!r}; a dot in a table's name nests a table: quote "
                f"the name, as in [models.\"{at.rsplit(': models.', 1)[1]}\"]")
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
        specs[name] = _entry(name, raw, source)
    return specs


def _entry(name: str, raw, source: str) -> ModelSpec:
    """One entry: the common keys into ModelSpec, its backend's own keys into `options`."""
    where = f"{source}: models.{name}"
    backends = declared()
    kind = backends.get(raw.get("backend")) if isinstance(raw, dict) else None
    own = kind.option_names() if kind else ()
    if isinstance(raw, dict) and kind:
        for key in raw:
            if key not in COMMON_KEYS and key not in own:
                _not_this_backends(key, kind, backends, where)
    try:
        common = raw if not isinstance(raw, dict) else \
            {k: v for k, v in raw.items() if k not in own}
        spec = typed(ModelSpec, common, skip=("name", "source", "options"),
                     given={"name": name, "source": source})
    except Mismatch as m:
        if m.problem == "unknown key":
            m.known = tuple(k for k in (*m.known, *own))
        raise _in_words(where, m) from None
    if spec.backend not in backends:
        raise ModelsFileError(f"{where}.backend: expected one of {', '.join(backends)}, "
                              f"got {spec.backend!r}")
    try:
        options = typed(kind.options, {k: v for k, v in raw.items() if k in own})
    except Mismatch as m:
        raise _in_words(where, m) from None
    spec = dataclasses.replace(spec, options=options)
    _validate(spec, kind, where)
    check = getattr(options, "check", None)
    if check:
        check(where)
    return spec


def _not_this_backends(key: str, kind, backends: dict, where: str) -> None:
    """A key of another backend given to this one: say whose it is."""
    owners = [k for k in backends.values() if key in k.option_names()]
    if owners:
        hint = next((f.metadata.get("hint") for f in dataclasses.fields(owners[0].options)
                     if f.name == key), None)
        names = " or ".join(repr(k.name) for k in owners)
        raise ModelsFileError(f"{where}.{key}: only for backend {names}, not {kind.name!r}"
                              + (f" ({hint})" if hint else ""))


def _validate(spec: ModelSpec, kind, where: str) -> None:
    """The keys every backend has."""
    if not kind.served and not (spec.path or spec.hub_id):
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
    at_least_one(where, spec, "context_length")


def _looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/"))


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
    trained = trained.expanduser().resolve()
    loads = kind_of(spec).adapter
    if loads == "gguf":
        adapter = trained / "adapter.gguf" if trained.is_dir() else trained
        kind = "GGUF adapter (adapter.gguf)"
    elif loads == "peft":
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
    return dataclasses.replace(spec, name=name, backend="replay", path=str(answers), hub_id=None,
                               adapter=adapter, options=replay.Options(
                                   getattr(spec.options, "parallel", 1)))


def models_reference() -> str:
    """Every key of a models.toml entry: the common ones, then each backend's own, from their
    declarations (docs/models.md ends with this; `localdistill models keys` prints it)."""
    lines = ["### Every entry", "", *key_table(ModelSpec, skip=("name", "source", "options")), "",
             "### `[models.NAME.sampling]`", "", *key_table(Sampling), ""]
    for kind in declared().values():
        lines += [f'### `backend = "{kind.name}"`', "", f"{kind.help}.", ""]
        lines += [*key_table(kind.options), ""] if kind.option_names() else \
            ["No keys of its own.", ""]
    return "\n".join(lines)


def weights_status(spec: ModelSpec) -> str:
    """Where the weights are, or in a few words why they are not usable yet."""
    if kind_of(spec).served:
        return f"served at {spec.options.url}"
    try:
        return str(weights_path(spec))
    except (ModelsFileError, ModelNotInstalled) as e:
        return f"missing: {str(e).split(': ')[-1]}"
