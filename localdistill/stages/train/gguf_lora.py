"""Adapters everyone can load: a PEFT LoRA adapter as a GGUF LoRA adapter for llama.cpp, or merged.

PEFT saves `adapter_config.json` + `adapter_model.safetensors`, which transformers+PEFT and vLLM
load as they are. llama.cpp wants the same low-rank pairs in a GGUF file whose tensors are named
after the base GGUF's (`blk.3.attn_q.weight.lora_a`, shape (r, in); `.lora_b`, shape (out, r)) and
whose metadata says `general.type = adapter`, `adapter.type = lora` and the alpha that llama.cpp
turns into the scale `alpha / r` (r read from each lora_b).

Two things differ between the layouts, and both are handled here rather than left to luck:
- LLaMA-family GGUFs store the rows of attn_q and attn_k permuted (llama.cpp's rotary layout;
  transformers undoes the permutation when it loads such a GGUF), so lora_b of q_proj and k_proj,
  trained in Hugging Face's layout, gets the same row permutation.
- PEFT's scale can be `alpha / sqrt(r)` (rsLoRA) and can vary per module (`rank_pattern`,
  `alpha_pattern`); llama.cpp has one alpha per file. The file's alpha gives the default modules
  their scale and any other module's lora_b is multiplied by what remains.

Adapters that llama.cpp (or vLLM) cannot apply as plain LoRA are refused with one line saying why.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput

# Hugging Face projection → GGUF tensor, the same in every architecture below.
GGUF_TENSOR = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
# GGUF architecture → whether llama.cpp's converter permutes the q/k rows (its "normal" rotary
# layout, not the NeoX one Hugging Face uses). Only architectures checked against the converter.
ROPE_PERMUTED = {"llama": True, "qwen2": False, "qwen3": False, "gemma": False, "gemma2": False}
# Hugging Face model_type → the GGUF architecture llama.cpp's converter writes for it.
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
             "gemma": "gemma", "gemma2": "gemma2"}  # fmt: skip
EMBEDDINGS = {"embed_tokens", "lm_head", "wte", "wpe", "word_embeddings", "embed_out"}
# PEFT options that change what the adapter computes beyond W + scale * B @ A.
NOT_PLAIN_LORA = ("use_dora", "lora_bias", "use_qalora", "use_bdlora", "velora_config",
                  "monteclora_config", "arrow_config", "kasa_config", "alora_invocation_tokens",
                  "layer_replication", "fan_in_fan_out", "target_parameters")  # fmt: skip
# initialisations that rewrite the base weights too: the adapter is only right on top of those
BASE_CHANGING_INIT = ("pissa", "olora", "loftq", "corda", "lora_ga")
LORA_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
LAYER_MODULE = re.compile(r"(?:.*\.)?layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<proj>\w+)")


class AdapterError(BadInput):
    """An adapter that cannot be exported or merged; the message is one line, with the fix."""


@dataclass(frozen=True)
class _Base:
    arch: str
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, int]]  # GGUF tensor name → (out, in)


def export_gguf_lora(adapter_dir: Path, base_gguf: Path, out: Path) -> Path:
    """Write the PEFT LoRA adapter in `adapter_dir` as a GGUF LoRA adapter for `base_gguf`."""
    import gguf
    import numpy as np

    adapter_dir, base_gguf, out = Path(adapter_dir), Path(base_gguf), Path(out)
    config = _read_config(adapter_dir)
    base = _read_base(base_gguf)
    _check_arch(config, base, base_gguf, adapter_dir)
    pairs = _read_pairs(adapter_dir)
    default_scale = _scale(config, config["r"], config["lora_alpha"])
    # llama.cpp's scale is alpha / r: the file's alpha gives rank-r modules PEFT's default scale
    gguf_alpha = default_scale * config["r"]
    tensors: list[tuple[str, np.ndarray]] = []
    for module, (lora_a, lora_b) in sorted(pairs.items(), key=lambda kv: _natural(kv[0])):
        name = _gguf_name(module, adapter_dir)
        rank = lora_a.shape[0]
        shape = (lora_b.shape[0], lora_a.shape[1])
        if base.shapes.get(name) != shape:
            found = base.shapes.get(name, "absent")
            raise AdapterError(
                f"{adapter_dir}: {module} is {shape[0]}x{shape[1]} but {name} in {base_gguf.name} "
                f"is {found}: the adapter was trained on another base model"
            )
        alpha = _pattern_value(config.get("alpha_pattern"), module, config["lora_alpha"])
        lora_b = lora_b * (_scale(config, rank, alpha) / (gguf_alpha / rank))
        proj = module.rsplit(".", 1)[-1]
        if ROPE_PERMUTED[base.arch] and proj in ("q_proj", "k_proj"):
            lora_b = _rope_permute(lora_b, base.n_head if proj == "q_proj" else base.n_head_kv)
        tensors += [(f"{name}.lora_a", lora_a), (f"{name}.lora_b", lora_b)]

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, base.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, gguf_alpha)
        for name, data in tensors:
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def merge_adapter(base: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge the adapter into full-precision weights of `base` (an HF directory or a GGUF file,
    which transformers dequantises) and save them, with the tokenizer, as an HF directory."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from localdistill.backends.hf import from_pretrained_args

    base, adapter_dir, out_dir = Path(base), Path(adapter_dir), Path(out_dir)
    _read_config(adapter_dir)
    where = from_pretrained_args(base)
    if base.is_dir():
        quantisation = _json(base / "config.json").get("quantization_config")
        if quantisation:  # 4-bit (or 8-bit) weights: merging would round the adapter away
            raise AdapterError(
                f"{base} is quantised ({quantisation.get('quant_method', 'bitsandbytes')}): merge "
                "into the full-precision base instead, or use the adapter unmerged"
            )
    model = AutoModelForCausalLM.from_pretrained(
        **where, dtype=torch.float32, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    quantizer = getattr(merged, "hf_quantizer", None)  # newer transformers, for a GGUF base
    if quantizer is not None:
        if not all(p.is_floating_point() for p in merged.parameters()):
            raise AdapterError(f"{base}: transformers kept its weights quantised; cannot merge")
        # dequantised on load: plain fp32 weights, saved as a plain model
        quantizer.remove_quantization_config(merged)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _read_config(adapter_dir: Path) -> dict:
    config = _json(adapter_dir / "adapter_config.json")
    where = f"{adapter_dir / 'adapter_config.json'}"
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{where}: a {config['peft_type']} adapter, not LoRA")
    for key in NOT_PLAIN_LORA:
        if config.get(key):
            raise AdapterError(
                f"{where}: {key} is set; llama.cpp and vLLM apply plain LoRA only: train without it"
            )
    if config.get("modules_to_save") or config.get("trainable_token_indices"):
        raise AdapterError(
            f"{where}: modules_to_save / trainable_token_indices train whole modules, which "
            "llama.cpp and vLLM cannot load: train LoRA on the projections only"
        )
    if config.get("bias", "none") != "none":
        raise AdapterError(f"{where}: bias={config['bias']!r} trains biases; use bias='none'")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INIT):
        raise AdapterError(
            f"{where}: init_lora_weights={init!r} changed the base weights too; save it converted "
            "(path_initial_model_for_weight_conversion) first"
        )
    targets = config.get("target_modules")
    for target in [targets] if isinstance(targets, str) else targets or ():
        proj = target.rsplit(".", 1)[-1]
        if proj in EMBEDDINGS:
            raise AdapterError(
                f"{where}: targets {target}; embedding and lm_head adapters cannot be loaded by "
                "llama.cpp and vLLM: target the attention and MLP projections only"
            )
        if isinstance(targets, list) and proj not in GGUF_TENSOR:
            raise AdapterError(
                f"{where}: unknown target module {target!r}; supported: {', '.join(GGUF_TENSOR)}"
            )
    if not config.get("r") or not config.get("lora_alpha"):
        raise AdapterError(f"{where}: r and lora_alpha must be set and non-zero")
    return config


def _read_base(base_gguf: Path) -> _Base:
    try:
        stat = base_gguf.stat()
    except OSError as e:
        raise AdapterError(f"{base_gguf}: cannot read the base GGUF ({e.strerror})") from None
    return _read_base_cached(base_gguf.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)  # GGUFReader parses the whole vocabulary: seconds per read
def _read_base_cached(base_gguf: Path, mtime_ns: int, size: int) -> _Base:
    import gguf

    try:
        reader = gguf.GGUFReader(base_gguf)
    except (OSError, ValueError) as e:
        raise AdapterError(f"{base_gguf}: not a readable GGUF file ({e})") from None
    fields = reader.fields
    arch = fields["general.architecture"].contents()
    if arch not in ROPE_PERMUTED:
        raise AdapterError(
            f"{base_gguf}: architecture {arch!r} is not supported by the GGUF LoRA export "
            f"(supported: {', '.join(ROPE_PERMUTED)}); use the PEFT adapter or merge it"
        )
    n_head = int(fields[f"{arch}.attention.head_count"].contents())
    kv_field = fields.get(f"{arch}.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    shapes = {
        t.name: (int(t.shape[1]), int(t.shape[0])) for t in reader.tensors if len(t.shape) == 2
    }
    return _Base(arch, n_head, n_head_kv, shapes)


def _check_arch(config: dict, base: _Base, base_gguf: Path, adapter_dir: Path) -> None:
    """The base the adapter was trained on, when it is on this machine, has the same architecture
    (the tensor shapes are checked too, against the base GGUF)."""
    import gguf

    name = config.get("base_model_name_or_path")
    trained_on = Path(name) if name else None
    if trained_on is not None and (trained_on / "config.json").is_file():
        model_type = _json(trained_on / "config.json").get("model_type")
        arch = GGUF_ARCH.get(model_type, model_type)
    elif trained_on is not None and trained_on.is_file() and trained_on.suffix == ".gguf":
        if trained_on.resolve() == base_gguf.resolve():
            return
        arch = gguf.GGUFReader(trained_on).fields["general.architecture"].contents()
    else:
        return
    if arch != base.arch:
        raise AdapterError(
            f"{adapter_dir}: the adapter was trained on a {arch} model ({name}) but the base "
            f"GGUF is {base.arch}: export it for the GGUF of the model it was trained on"
        )


def _read_pairs(adapter_dir: Path) -> dict:
    """Module name → (lora_A, lora_B) as float32 numpy arrays."""
    import torch
    from safetensors.torch import load_file

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_model.safetensors (save it with PEFT)")
    pairs: dict[str, dict[str, object]] = {}
    for key, tensor in load_file(path).items():
        match = LORA_KEY.fullmatch(key)
        if match is None:
            raise AdapterError(
                f"{path}: tensor {key} is not a LoRA A/B matrix (a trained bias, embedding, "
                "DoRA magnitude or saved module); llama.cpp and vLLM load plain LoRA only"
            )
        pair = pairs.setdefault(match["module"], {})
        pair[match["ab"]] = tensor.to(torch.float32).numpy()
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise AdapterError(f"{path}: {module} has lora_A or lora_B missing")
    return {module: (pair["A"], pair["B"]) for module, pair in pairs.items()}


def _gguf_name(module: str, adapter_dir: Path) -> str:
    match = LAYER_MODULE.fullmatch(module)
    proj = module.rsplit(".", 1)[-1]
    if proj in EMBEDDINGS:
        raise AdapterError(
            f"{adapter_dir}: the adapter trains {module}; embedding and lm_head adapters cannot "
            "be loaded by llama.cpp and vLLM"
        )
    if match is None or match["proj"] not in GGUF_TENSOR:
        raise AdapterError(
            f"{adapter_dir}: unknown target module {module}; supported: {', '.join(GGUF_TENSOR)}"
        )
    return f"blk.{match['layer']}.{GGUF_TENSOR[match['proj']]}.weight"


def _scale(config: dict, rank: int, alpha: float) -> float:
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _pattern_value(patterns: dict | None, module: str, default: float) -> float:
    """PEFT's rank_pattern/alpha_pattern lookup: the first key that matches the module's tail."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _rope_permute(lora_b, n_head: int):
    """The row permutation llama.cpp's converter applies to q/k weights: within each head, the
    first and second halves of the rows are interleaved."""
    rows, rank = lora_b.shape
    return lora_b.reshape(n_head, 2, rows // n_head // 2, rank).swapaxes(1, 2).reshape(rows, rank)


def _natural(module: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", module)]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise AdapterError(f"{path}: not valid JSON ({e})") from None
