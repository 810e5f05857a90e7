"""Named models (models.toml), where their weights are, and the embedded demo models."""

from __future__ import annotations

from pathlib import Path

from localdistill.models.config import (
    ModelsFileError,
    ModelSpec,
    get_model,
    load_models,
    models_file,
)
from localdistill.models.demo import ModelNotInstalled, demo_path


def weights_path(spec: ModelSpec) -> Path:
    """The local weights of a model: a path, a demo model, or a hub id already in the cache."""
    if spec.path:
        return _local(spec, "path", spec.path)
    return _from_hub_cache(spec)


def weights_status(spec: ModelSpec) -> str:
    """Where the weights are, or in a few words why they are not usable yet."""
    from localdistill.backends import kind_of

    if kind_of(spec).served:
        return f"served at {spec.options.url}"
    try:
        return str(weights_path(spec))
    except (ModelsFileError, ModelNotInstalled) as e:
        return f"missing: {str(e).split(': ')[-1]}"


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


__all__ = [
    "ModelNotInstalled",
    "ModelSpec",
    "ModelsFileError",
    "adapter_path",
    "get_model",
    "load_models",
    "models_file",
    "weights_path",
    "weights_status",
]
