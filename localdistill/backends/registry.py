"""Every backend, found by its declaration: a module of this package with `BACKEND = Kind(...)`.

Adding a backend is adding its module; nothing here names one. A backend module is imported when
models.toml is read, so it imports its heavy libraries (torch, vllm, llama_cpp) only inside
`load`: a machine without vLLM (or without torch) can still use the others.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from functools import cache
from types import ModuleType

from localdistill.backends.base import Backend, Kind, Request
from localdistill.errors import BadInput
from localdistill.models.spec import ModelSpec

PACKAGE = "localdistill.backends"


@cache
def modules() -> dict[str, ModuleType]:
    """Every backend module, by the name models.toml gives it."""
    found = {}
    where = sys.modules[PACKAGE].__path__  # the package's own path (a test may extend it)
    for info in sorted(pkgutil.iter_modules(where), key=lambda m: m.name):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        kind = getattr(module, "BACKEND", None)
        if isinstance(kind, Kind):
            found[kind.name] = module
    return dict(sorted(found.items()))


def kinds() -> dict[str, Kind]:
    return {name: module.BACKEND for name, module in modules().items()}


def declared() -> dict[str, Kind]:
    """The backends a models.toml entry can name."""
    return {name: kind for name, kind in kinds().items() if kind.in_models_toml}


def kind_of(spec: ModelSpec) -> Kind:
    return modules()[spec.backend].BACKEND


def open_backend(spec: ModelSpec) -> Backend:
    """Load a model (an entry of models.toml: `get_model(name)`) with its backend."""
    return modules()[spec.backend].load(spec)


def check_can_score(spec: ModelSpec) -> None:
    """BadInput, in one line, unless the model's backend declares `scorer()` and runs it in
    process."""
    if getattr(modules()[spec.backend], "scorer", None) is None or kind_of(spec).served:
        raise BadInput(f"models.{spec.name}: scoring needs the model in process (backend "
                       f"{' or '.join(n for n, m in modules().items() if hasattr(m, 'scorer'))}); "
                       "a served model cannot score given tokens (the llama.cpp server cannot "
                       "return a prompt's log-probabilities)")


def open_scorer(spec: ModelSpec, context_length: int):
    """(scorer, backend to close) for a model that can score given tokens (backends/scoring.py):
    its backend module's `scorer(spec, context_length)`."""
    check_can_score(spec)
    return modules()[spec.backend].scorer(spec, context_length)


def request_for(spec: ModelSpec, messages=None, prompt=None, **overrides) -> Request:
    """A request with the model's default sampling, overridden where asked."""
    s = spec.sampling
    settings = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "stop": s.stop,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return Request(messages=messages, prompt=prompt, **settings)
