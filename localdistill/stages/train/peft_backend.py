"""LoRA on transformers with PEFT: any CUDA GPU or the CPU, any base transformers can load (a
Hugging Face directory, or a GGUF file that it dequantises, so the demo students train here)."""

from __future__ import annotations

from pathlib import Path

from localdistill.errors import BadInput
from localdistill.stages.train.config import TrainConfig


def load(base: Path, config: TrainConfig):
    """(model with fresh LoRA layers, tokenizer) for `base`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from localdistill.backends.hf import from_pretrained_args

    transformers_logging.disable_progress_bar()  # ours is the stage bar
    where = from_pretrained_args(base)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # fp32 on a CPU (bf16 products are slow there); bf16 on a GPU that has it.
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else (
        torch.float16 if device == "cuda" else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(**where, local_files_only=True, dtype=dtype)
    model.to(device)
    missing = [m for m in config.target_modules
               if not any(name.endswith(f".{m}") for name, _ in model.named_modules())]
    if missing:
        raise BadInput(f"training settings: target_modules: the model has no module named "
                       f"{missing[0]!r}")
    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    return model, tokenizer
