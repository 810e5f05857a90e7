"""A GGUF model as a Hugging Face directory, dequantised once and kept.

Training (PEFT), the transformers backend and the GGUF adapter's merge load a GGUF base through
transformers, which dequantises every tensor and converts the tokenizer at every load: about 10 s
for the 135M test model on two cores, far more for a 0.5B student, at every training. The first load
saves what transformers made of the file (fp32 safetensors, the config, the tokenizer) under

    $XDG_CACHE_HOME/localdistill/converted/<sha256 of the GGUF>-transformers-<version>/

(~/.cache when XDG_CACHE_HOME is unset), and later loads read that directory: the same weights bit
for bit, in about a second. The key holds the file's content and the transformers version that
converted it, so a changed file or library converts again. It takes 4 bytes per parameter (540 MB
for the 135M model, 2 GB for the 0.5B one); delete the folder to get the space back, or set
LOCALDISTILL_CONVERTED_CACHE=0 to load from the GGUF file every time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

OFF = "LOCALDISTILL_CONVERTED_CACHE"
DONE = ".complete"  # written last: a directory without it is a conversion that did not finish


def cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "localdistill" / "converted"


def enabled() -> bool:
    return os.environ.get(OFF, "1").strip().lower() not in ("0", "false", "no", "off")


def converted_directory(gguf: Path) -> Path | None:
    """The Hugging Face directory holding `gguf`'s dequantised weights, converted now if need be;
    None when the cache is off or cannot be written (the caller then loads the GGUF file)."""
    if not enabled():
        return None
    import transformers

    from localdistill.hashing import file_digest

    gguf = Path(gguf)
    target = cache_root() / f"{file_digest(gguf)}-transformers-{transformers.__version__}"
    if (target / DONE).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError:
        return None  # a read-only home: convert at every load, as before
    try:
        _convert(gguf, tmp)
        (tmp / DONE).write_text(str(gguf) + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process (a second rank, say) finished the same conversion
            if not (target / DONE).is_file():
                shutil.rmtree(target, ignore_errors=True)  # a leftover without its mark
                os.rename(tmp, target)
    except (OSError, ValueError, KeyError, RuntimeError):
        # Disk full, or a file transformers cannot convert: nothing kept; the caller loads the
        # GGUF file itself and reports its own error, as without the cache.
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    where = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name,
             "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # dequantised on load: plain fp32 weights, saved as a plain model
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
