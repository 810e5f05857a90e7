"""LoRA with Unsloth: a 4-bit base and its fast kernels, on a CUDA GPU only.

Unsloth loads Hugging Face directories (not GGUF files). The adapter it trains is a standard PEFT
adapter on the same module names, so it is saved and exported like the PEFT backend's.
"""

from __future__ import annotations

from pathlib import Path

from localdistill.errors import BadInput
from localdistill.stages.train.config import TrainConfig


def available() -> bool:
    """Unsloth can run here: a CUDA GPU and the package."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    import importlib.util

    return importlib.util.find_spec("unsloth") is not None


def import_first() -> None:
    """Import Unsloth now. It patches transformers and PEFT as it is imported, and fully only when
    it comes before them (otherwise it warns that training may be slower or take more memory, as
    it did on the H200 when a test had loaded transformers first): `run`, whose earlier stages may
    load transformers (a vLLM or transformers teacher does), calls this before any of them."""
    import unsloth  # noqa: F401


def load(base: Path, config: TrainConfig):
    if not available():
        raise BadInput("the unsloth backend needs a CUDA GPU and `pip install "
                       "'localdistill[gpu]'`; use --backend peft")
    if not base.is_dir():
        raise BadInput(f"{base}: Unsloth needs a Hugging Face directory, not a GGUF file; "
                       "use --backend peft for GGUF students")
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base), max_seq_length=config.max_length, load_in_4bit=True,
        local_files_only=True)
    model = FastLanguageModel.get_peft_model(
        model, r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), bias="none",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed)
    return model, tokenizer
