"""Generation backends: one module each, one interface (base.py), chosen by models.toml.

A backend is declared once, in its own module: `BACKEND = Kind(...)` (its name, its own
models.toml keys and their checks, its weights and adapters; base.py), `load(spec)`, `serve(...)`
if it can be served and `scorer(spec, context_length)` if it can score given tokens. Every module
of this package with a `BACKEND` is found by registry.py; adding one touches nothing else.
models_toml.py reads models.toml into `ModelSpec`s (models/spec.py), each backend adding its keys.
"""

from __future__ import annotations

from localdistill.backends.base import Backend, BackendError, Kind, Request, Result, Sample
from localdistill.backends.models_toml import (
    get_model,
    load_models,
    models_file,
    models_reference,
    parse_models,
    replayed,
    weights_status,
    with_trained_adapter,
)
from localdistill.backends.registry import (
    check_can_score,
    declared,
    kind_of,
    kinds,
    modules,
    open_backend,
    open_scorer,
    request_for,
)

__all__ = ["Backend", "BackendError", "Kind", "Request", "Result", "Sample", "check_can_score",
           "declared",
           "get_model", "kind_of", "kinds", "load_models", "models_file", "models_reference",
           "modules", "open_backend", "open_scorer", "parse_models", "replayed", "request_for",
           "weights_status", "with_trained_adapter"]
