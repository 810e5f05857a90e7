"""The models' ground floor: a model's record and where its weights are (spec.py), the embedded
demo models (demo.py), GGUF files converted once for transformers (converted.py).

Reading models.toml needs each backend's own keys, so it lives above the backends:
`localdistill.backends.get_model` / `load_models` (backends/models_toml.py).
"""

from __future__ import annotations

from localdistill.models.demo import ModelNotInstalled, demo_path
from localdistill.models.spec import (
    ModelsFileError,
    ModelSpec,
    Sampling,
    adapter_path,
    at_least_one,
    weights_path,
)

__all__ = [
    "ModelNotInstalled",
    "ModelSpec",
    "ModelsFileError",
    "Sampling",
    "adapter_path",
    "at_least_one",
    "demo_path",
    "weights_path",
]
