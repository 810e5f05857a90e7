"""Generation backends: one module each, one interface (base.py), chosen by models.toml.

A backend module is imported only when a model of that backend is opened, so a machine without
vLLM (or without torch) can still use the others.
"""

from __future__ import annotations

import importlib

from localdistill.backends.base import Backend, BackendError, Request, Result, Sample
from localdistill.models import ModelSpec, get_model

MODULES = {
    "llama.cpp": "localdistill.backends.llamacpp",
    "openai": "localdistill.backends.openai_http",
    "vllm": "localdistill.backends.vllm",
    "transformers": "localdistill.backends.hf",
    "replay": "localdistill.backends.replay",  # not for models.toml: `eval --replay` only
}


def open_backend(model: ModelSpec | str) -> Backend:
    """Load the model named in models.toml (or given as a spec) with its backend."""
    spec = get_model(model) if isinstance(model, str) else model
    module = importlib.import_module(MODULES[spec.backend])
    return module.load(spec)


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


__all__ = ["Backend", "BackendError", "Request", "Result", "Sample", "open_backend", "request_for"]
