"""vLLM in process: every request of a stage in one batched call (continuous batching, GPU only).

vLLM is imported only here, when a vllm model is opened, so machines without a GPU never need it.
For a model shared by several processes, serve it (`localdistill serve`) and use the openai
backend instead.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from localdistill.backends.base import BackendError, Kind, Request, Result, Sample, did_not_fit
from localdistill.models import ModelsFileError, ModelSpec, adapter_path, at_least_one, weights_path

if TYPE_CHECKING:
    from localdistill.backends.serving import RunningServer

NEEDS = (
    "the vLLM backend needs a CUDA GPU and the vllm package (pip install 'localdistill[gpu]'); "
    "on this machine use backend 'llama.cpp' or 'transformers'"
)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


@dataclass(frozen=True)
class Options:
    """The keys of a vllm entry of models.toml, beside the common ones."""

    tensor_parallel_size: int = field(default=1, metadata={
        "help": "GPUs per model (vLLM's tensor parallelism)"})
    gpu_memory_utilization: float = field(default=0.9, metadata={
        "help": "the share of each GPU's memory vLLM may take, in (0, 1]"})
    served_name: str | None = field(default=None, metadata={
        "help": "the model name `localdistill serve` gives the server (default: the entry's)"})

    def check(self, where: str) -> None:
        at_least_one(where, self, "tensor_parallel_size")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ModelsFileError(f"{where}.gpu_memory_utilization: expected a share in (0, 1], "
                                  f"got {self.gpu_memory_utilization:g}")


BACKEND = Kind("vllm", Options, adapter="peft",
               help="vLLM in this process on CUDA GPUs (every request of a stage in one batched "
                    "call); `localdistill serve` runs `vllm serve` for several processes")


class VLLMBackend:
    def __init__(self, spec: ModelSpec) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError(NEEDS) from None
        if not torch.cuda.is_available():
            raise BackendError(NEEDS)
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise BackendError(NEEDS) from None
        self.vllm, self.spec = vllm, spec
        path = weights_path(spec)
        adapter = adapter_path(spec)
        kwargs = {
            "model": str(path),
            "quantization": _quantization(spec, path),
            "tensor_parallel_size": spec.options.tensor_parallel_size,
            "gpu_memory_utilization": spec.options.gpu_memory_utilization,
            "max_model_len": spec.context_length,
            "enable_lora": adapter is not None,
            "seed": 0,
        }
        if adapter is not None and _lora_rank(adapter) > 16:  # vLLM's default max_lora_rank
            kwargs["max_lora_rank"] = next(r for r in LORA_RANKS if r >= _lora_rank(adapter))
        try:
            self.llm = vllm.LLM(**kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(f"vLLM could not load {path}: {first}") from None
        self.lora = LoRARequest(spec.name, 1, str(adapter)) if adapter is not None else None

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        requests = list(requests)
        # vLLM refuses a whole batch when one prompt is longer than max_model_len: those are
        # answered here, without text, and the rest go in the batch
        lengths = [self._prompt_length(r) for r in requests]
        unfit = {i for i, n in enumerate(lengths) if n >= self.spec.context_length}
        for i in sorted(unfit):
            yield did_not_fit(requests[i], lengths[i])
        chats = [i for i, r in enumerate(requests) if r.messages is not None and i not in unfit]
        prompts = [i for i, r in enumerate(requests) if r.prompt is not None and i not in unfit]
        outputs: dict[int, object] = {}
        if chats:
            answers = self.llm.chat(
                messages=[list(requests[i].messages) for i in chats],
                sampling_params=[self._sampling(requests[i]) for i in chats],
                use_tqdm=False,
                lora_request=self.lora,
                chat_template=self.spec.chat_template,
                add_generation_prompt=True,
            )
            outputs.update(zip(chats, answers, strict=True))
        if prompts:
            answers = self.llm.generate(
                [requests[i].prompt for i in prompts],
                sampling_params=[self._sampling(requests[i]) for i in prompts],
                use_tqdm=False,
                lora_request=self.lora,
            )
            outputs.update(zip(prompts, answers, strict=True))
        for i, request in enumerate(requests):
            if i not in unfit:
                yield _result(request, outputs[i])

    def _prompt_length(self, request: Request) -> int:
        """The prompt's tokens, as vLLM will count them (its tokenizer and chat template)."""
        tokenizer = self.llm.get_tokenizer()
        if request.prompt is not None:
            return len(tokenizer.encode(request.prompt))
        return len(tokenizer.apply_chat_template(list(request.messages), tokenize=True,
                                                 add_generation_prompt=True,
                                                 chat_template=self.spec.chat_template))

    def _sampling(self, request: Request):
        return self.vllm.SamplingParams(
            # greedy samples are all the same: ask for one, repeat it in the result
            n=1 if request.temperature == 0 else request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=list(request.stop) or None,
            seed=request.seed,
        )

    def close(self) -> None:
        self.llm = None
        gc.collect()
        import torch

        torch.cuda.empty_cache()


def _result(request: Request, output) -> Result:
    samples = [
        Sample(
            o.text,
            "length" if o.finish_reason == "length" else "stop",
            len(o.token_ids),
        )
        for o in output.outputs
    ]
    if len(samples) < request.n:
        samples = samples * request.n
    return Result(request, tuple(samples), len(output.prompt_token_ids or ()))


def _quantization(spec: ModelSpec, path: Path) -> str | None:
    """vLLM's `quantization` name: none for GGUF (vLLM reads it from the file)."""
    if path.is_file() or not spec.quantisation:
        return None
    name = spec.quantisation.lower()
    return "bitsandbytes" if name.startswith("bnb") else name


def _lora_rank(adapter: Path) -> int:
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # let vLLM report what is wrong with the adapter


def vllm_command(spec: ModelSpec, port: int, parallel: int) -> list[str]:
    """The `vllm serve` command line for a model of models.toml."""
    from localdistill.backends.serving import HOST

    command = [shutil.which("vllm") or "vllm", "serve", str(weights_path(spec)),
               "--host", HOST, "--port", str(port),
               "--tensor-parallel-size", str(spec.options.tensor_parallel_size),
               "--max-model-len", str(spec.context_length),
               "--gpu-memory-utilization", str(spec.options.gpu_memory_utilization),
               "--served-model-name", spec.options.served_name or spec.name,
               "--disable-log-requests"]
    if spec.quantisation:
        command += ["--quantization", spec.quantisation.lower()]
    adapter = adapter_path(spec)
    if adapter is not None:
        command += ["--enable-lora", "--lora-modules", f"{spec.name}-adapter={adapter}"]
    if spec.chat_template:
        command += ["--chat-template", spec.chat_template]
    return command


def serve(spec: ModelSpec, port: int, parallel: int) -> RunningServer:
    """`vllm serve` in a process of its own (it batches on its own: `parallel` is not used)."""
    from localdistill.backends.serving import HOST, RunningServer

    if shutil.which("vllm") is None:
        raise BackendError("vLLM is not installed here (it needs a CUDA GPU: pip install "
                           "'localdistill[gpu]'); serve GGUF models with backend 'llama.cpp'")
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(vllm_command(spec, port, parallel), env=env, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return RunningServer(f"http://{HOST}:{port}/v1", stop, "vllm")


def load(spec: ModelSpec) -> VLLMBackend:
    return VLLMBackend(spec)


def scorer(spec: ModelSpec, context_length: int):
    """Token-level distillation's teacher (vllm_score.py): scorer and backend to close. The
    model's own context length bounds what it scores (`context_length` is the scorer's need)."""
    from localdistill.backends.vllm_score import Scorer

    backend = VLLMBackend(spec)
    return Scorer(backend), backend
