"""llama.cpp in process (llama-cpp-python): GGUF weights, CPU or GPU offload, optional LoRA.

Requests run one after another, or `parallel` at a time in one batch when models.toml sets it
(llamacpp_batched.py): on a CPU that is several times the throughput. `localdistill serve`
starts llama.cpp's own server for it (`serve`, from the xllamacpp wheel).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from localdistill.backends.base import BackendError, Kind, Request, Result, Sample, did_not_fit
from localdistill.backends.llamacpp_batched import chat_formatter, prompt_tokens
from localdistill.models import ModelsFileError, ModelSpec, adapter_path, at_least_one, weights_path

if TYPE_CHECKING:
    from localdistill.backends.serving import RunningServer


@dataclass(frozen=True)
class Options:
    """The keys of a llama.cpp entry of models.toml, beside the common ones."""

    gpu_layers: int = field(default=0, metadata={"help": "layers offloaded to the GPU, -1 all"})
    prompt_lookup: int = field(default=0, metadata={
        "help": "draft this many tokens from text already in the prompt and verify them in one "
                "pass (prompt lookup decoding). Measured on the demo teacher: 1.4x faster for "
                "refinements, which copy the student's code, but 0.73x for answers from "
                "scratch; 0: off. Keeps the logits of the whole context in memory "
                "(context_length x vocabulary x 4 bytes)"})
    parallel: int = field(default=1, metadata={
        "help": "requests decoded together in one batch (continuous batching in process). On a "
                "CPU a decode of many rows costs far less than that many decodes of one: on 2 "
                "cores the demo models use 16 (docs/results.md, \"Decoding\"; "
                "scripts/bench_decoding.py). Each takes context_length tokens of KV cache. "
                "Answers can differ after a near tie (other matrix kernels round differently), "
                "so the run cache keeps each value's answers apart",
        "hint": "servers: max_in_flight; vLLM batches on its own"})
    prefix_reuse: bool = field(default=False, metadata={
        "help": "with parallel > 1: a prompt's first tokens that a sequence in the batch already "
                "holds (the same instructions; the same prompt sampled again, as the -k4 "
                "refinement strategies ask it 4 times) are copied from it, not computed again: "
                "restyle-k4's teacher requests 1.9x faster on 2 cores. Can part answers after a "
                "near tie, so it is part of the model's identity in the run cache"})
    ngram_draft: int = field(default=0, metadata={
        "help": "with parallel > 1: each sequence may draft up to this many tokens from text it "
                "already has (its prompt, its answer so far), verified in the same decode; the "
                "decoder adds the drafted tokens with the most expected tokens per second of its "
                "measured cost. Every token is still drawn by the sequence's own sampler, so "
                "answers are the model's, but they can part after a near tie (part of the "
                "identity). Measured on 2 cores: no gain beside parallel = 16, whose decodes "
                "are already bound by compute (docs/results.md); 0: off"})

    def check(self, where: str) -> None:
        if self.prompt_lookup < 0:
            raise ModelsFileError(f"{where}.prompt_lookup: expected 0 (off) or more, got "
                                  f"{self.prompt_lookup}")
        at_least_one(where, self, "parallel")
        if self.ngram_draft < 0:
            raise ModelsFileError(f"{where}.ngram_draft: expected 0 (off) or more, got "
                                  f"{self.ngram_draft}")
        if self.parallel > 1 and self.prompt_lookup:
            raise ModelsFileError(f"{where}: parallel and prompt_lookup cannot be combined; "
                                  "choose one")

    def identity(self) -> dict:
        # batched decoding can round differently (llamacpp_batched.py): its answers are its own
        if self.parallel == 1:
            return {}
        # drafting can part greedy answers after a near tie too (llamacpp_batched.py)
        return {"parallel": self.parallel} | (
            {"ngram_draft": self.ngram_draft} if self.ngram_draft else {}) | (
            {"prefix_reuse": True} if self.prefix_reuse else {})


BACKEND = Kind("llama.cpp", Options, adapter="gguf",
               help="GGUF weights in this process (llama-cpp-python), on the CPU or offloaded "
                    "to a GPU; `localdistill serve` starts llama.cpp's own server for them")


class LlamaCppBackend:
    def __init__(self, spec: ModelSpec) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("llama-cpp-python is not installed: run scripts/setup.sh") from None
        path = weights_path(spec)
        _check_gguf(path, spec)
        adapter = adapter_path(spec)
        kwargs = {
            "model_path": str(path),
            # llama.cpp rounds the context up to a multiple of 256; llama-cpp-python sizes its
            # logits buffer by the number asked for and overflows (a numpy broadcast error) on
            # a prompt between the two. Asked for rounded up, the two agree; the prompt's limit
            # is still context_length, checked in _one.
            "n_ctx": -(-spec.context_length // 256) * 256,
            "n_threads": spec.threads or os.cpu_count(),
            "n_gpu_layers": spec.options.gpu_layers,
            "verbose": False,
        }
        if spec.options.parallel > 1:
            # The batch decodes in a context of its own; this one only carries the model.
            kwargs["n_ctx"] = 64
        if adapter is not None:
            kwargs["lora_path"] = str(adapter)
        if spec.options.prompt_lookup:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

            kwargs["draft_model"] = LlamaPromptLookupDecoding(
                num_pred_tokens=spec.options.prompt_lookup)
            # Drafts need the logits of every position. llama-cpp-python sizes its logits
            # buffer by the logits_all argument, not by the draft model, and overflows after
            # n_batch tokens unless it is set here too.
            kwargs["logits_all"] = True
        if spec.chat_template:
            kwargs["chat_handler"] = _chat_handler(spec.chat_template)
        try:
            with _quiet_stderr(adapter is not None):
                self.llm = Llama(**kwargs)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"llama.cpp could not load {path}: {e}") from None
        self.spec = spec
        # renders chat messages as the model sees them, to count their tokens; None (no chat
        # template): llama-cpp-python falls back to its own format and counts it itself
        self.formatter = chat_formatter(self.llm, spec.chat_template)
        self.batched = None
        if spec.options.parallel > 1:
            from localdistill.backends.llamacpp_batched import BatchedDecoder

            self.batched = BatchedDecoder(self.llm, spec.options.parallel, spec.context_length,
                                          kwargs["n_threads"], self.formatter,
                                          spec.options.ngram_draft,
                                          spec.options.prefix_reuse)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        if self.batched is not None:
            yield from self.batched.generate(requests)
            return
        for request in requests:
            yield self._one(request)

    def _prompt_length(self, request: Request) -> int:
        if request.messages is not None and self.formatter is None:
            return 0  # llama-cpp-python's own format: only it can count
        return len(prompt_tokens(self.llm, self.formatter, request)[0])

    def _one(self, request: Request) -> Result:
        length = self._prompt_length(request)
        if length >= self.spec.context_length:
            return did_not_fit(request, length)
        samples, prompt_tokens = [], 0
        for i in range(request.n):
            settings = {
                "temperature": request.temperature,
                "top_p": request.top_p,
                # an answer stops where the context ends (as in the batched decoder)
                "max_tokens": min(request.max_tokens, self.spec.context_length - length),
                "stop": list(request.stop) or None,
            }
            if request.seed is not None:
                settings["seed"] = request.seed + i
            try:
                if request.messages is not None:
                    out = self.llm.create_chat_completion(messages=list(request.messages),
                                                          **settings)
                    text = out["choices"][0]["message"]["content"] or ""
                else:
                    out = self.llm.create_completion(prompt=request.prompt, **settings)
                    text = out["choices"][0]["text"]
            except ValueError as e:  # llama-cpp-python's words for a prompt over n_ctx, should
                # its count of a chat prompt's tokens differ from _prompt_length's
                too_long = re.match(r"Requested tokens \((\d+)\) exceed context window", str(e))
                if too_long is None:
                    raise
                return did_not_fit(request, int(too_long.group(1)))
            usage = out.get("usage", {})
            prompt_tokens = usage.get("prompt_tokens", 0)
            reason = out["choices"][0].get("finish_reason") or "stop"
            samples.append(
                Sample(
                    text,
                    "length" if reason == "length" else "stop",
                    usage.get("completion_tokens", 0),
                )
            )
        return Result(request, tuple(samples), prompt_tokens)

    def close(self) -> None:
        batched, self.batched = getattr(self, "batched", None), None
        if batched is not None:
            batched.close()
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


@contextmanager
def _quiet_stderr(quiet: bool):
    """Silence the C library's own writes to stderr (file descriptor 2) while loading.

    llama.cpp prints a line per adapted tensor when it loads a LoRA adapter on a CPU
    ("... cannot use buft 'CPU_REPACK', fallback to CPU"), past verbose=False, right across the
    progress bars. A failed load still raises, and its message reaches the user as one line."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_gguf(path, spec: ModelSpec) -> None:
    """A clear error for a file that is not GGUF (or is truncated) before llama.cpp sees it."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except IsADirectoryError:
        raise BackendError(
            f"models.{spec.name}: {path} is a directory; llama.cpp needs a "
            ".gguf file (use backend 'transformers' for a Hugging Face "
            "directory)"
        ) from None
    if magic != b"GGUF":
        raise BackendError(f"models.{spec.name}: {path} is not a GGUF file")


def _chat_handler(template: str):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token="", bos_token="").to_chat_handler()


def serve(spec: ModelSpec, port: int, parallel: int) -> RunningServer:
    """llama.cpp's own server (xllamacpp): `parallel` slots with continuous batching, unlike
    llama-cpp-python's server, which answers one request at a time."""
    from localdistill.backends.serving import HOST, RunningServer

    try:
        import xllamacpp
    except ImportError:
        raise BackendError("llama.cpp's server is not installed: pip install xllamacpp "
                           "(part of 'localdistill[cpu]')") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(weights_path(spec))
    params.n_parallel = parallel
    params.n_ctx = spec.context_length * parallel  # every slot gets its model's full context
    params.port = port
    params.hostnames = [HOST]
    params.verbosity = 0  # llama.cpp's per-request timing lines would drown the user's terminal
    params.offline = True
    params.n_gpu_layers = spec.options.gpu_layers
    if spec.options.gpu_layers == 0:
        # Flash attention (xllamacpp's default) changes the arithmetic: with it off, greedy
        # answers match llama-cpp-python's in process, and on a CPU it gains nothing.
        params.flash_attn_type = 0
    params.cpuparams.n_threads = spec.threads or os.cpu_count() or 1
    params.cpuparams_batch.n_threads = spec.threads or os.cpu_count() or 1
    if spec.chat_template:
        params.chat_template = spec.chat_template
    adapter = adapter_path(spec)
    if adapter is not None:
        lora = xllamacpp.CommonAdapterLoraInfo()
        lora.path = str(adapter)
        lora.scale = 1.0
        params.lora_adapters = [lora]
    holder = [xllamacpp.Server(params)]

    def stop() -> None:
        holder.clear()  # the server's destructor stops its loop and frees the model

    return RunningServer(f"http://{HOST}:{port}/v1", stop, "llama.cpp")


def load(spec: ModelSpec) -> LlamaCppBackend:
    return LlamaCppBackend(spec)


def scorer(spec: ModelSpec, context_length: int):
    """Token-level distillation's teacher (llamacpp_score.py): scorer and backend to close."""
    from localdistill.backends.llamacpp_score import Scorer

    backend = LlamaCppBackend(spec)
    return Scorer(backend.llm, context_length, spec.threads or 2), backend
