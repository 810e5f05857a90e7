"""Generation backends: one module each, one interface (base.py), chosen by models.toml.

A backend is declared once, in its own module: `BACKEND = Kind(...)` (its name, its own
models.toml keys and their checks, its weights and adapters; base.py), `load(spec)`, and
`serve(...)` if it can be served. Every module of this package with a `BACKEND` is found here;
adding one touches nothing else. A backend module is imported when models.toml is read, so it
imports its heavy libraries (torch, vllm, llama_cpp) only inside `load`: a machine without vLLM
(or without torch) can still use the others.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from localdistill.backends.base import Backend, BackendError, Kind, Request, Result, Sample
from localdistill.models import ModelSpec, get_model


@cache
def modules() -> dict[str, ModuleType]:
    """Every backend module, by the name models.toml gives it."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
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


def open_backend(model: ModelSpec | str) -> Backend:
    """Load the model named in models.toml (or given as a spec) with its backend."""
    spec = get_model(model) if isinstance(model, str) else model
    return modules()[spec.backend].load(spec)


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


__all__ = ["Backend", "BackendError", "Kind", "Request", "Result", "Sample", "declared",
           "kind_of", "kinds", "modules", "open_backend", "request_for"]
