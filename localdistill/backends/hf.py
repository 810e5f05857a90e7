"""transformers in process: any Hugging Face model (or a GGUF, dequantised), with a PEFT adapter.

Slow but universal: it checks what the other backends generate, and it serves the LoRA adapters
that training writes before they are merged or converted. Requests are decoded together in
batches of `BATCH_ROWS` sequences (left-padded), each sample with its own seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from inspect import signature
from pathlib import Path

from localdistill.backends.base import (
    BackendError,
    Kind,
    NoOptions,
    Request,
    Result,
    Sample,
    did_not_fit,
)
from localdistill.backends.scoring import Position, position
from localdistill.models import ModelSpec, adapter_path, weights_path

BATCH_ROWS = 8  # sequences decoded together; more is faster on a GPU, not on a few CPU cores

BACKEND = Kind("transformers", NoOptions, adapter="peft",
               help="any Hugging Face model (or a GGUF, dequantised) in this process, with a "
                    "PEFT adapter: slow, but what training starts from")


class TransformersBackend:
    def __init__(self, spec: ModelSpec) -> None:
        try:
            import torch
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise BackendError(
                "the transformers backend needs torch and transformers: "
                "pip install 'localdistill[cpu]'"
            ) from None
        self.torch, self.spec = torch, spec
        path = weights_path(spec)
        where = from_pretrained_args(path, f"models.{spec.name}")
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # fp32 on a CPU: bf16 matrix products are slow there, and fp32 is the reference numerics.
        dtype = "auto" if self.device == "cuda" else torch.float32
        dtype_key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                **where, local_files_only=True, **{dtype_key: dtype}
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise BackendError(f"transformers could not load {path}: {_first_line(e)}") from None
        # transformers 5.x renamed `past_key_values` to `cache`, in arguments and outputs.
        arguments = signature(model.forward).parameters
        self.cache_key = "cache" if "cache" in arguments else "past_key_values"
        adapter = adapter_path(spec)
        if adapter is not None:
            model = _with_adapter(model, adapter, spec)
        self.model = model.to(self.device).eval()
        self.eos = _eos_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else next(iter(self.eos), 0)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        jobs: list[_Job] = []
        waiting: list[_Row] = []
        for request in requests:
            job = self._job(request)
            if isinstance(job, Result):  # the prompt does not fit: nothing to decode
                yield job
                continue
            jobs.append(job)
            waiting.extend(job.rows)
            while len(waiting) >= BATCH_ROWS:
                self._decode(waiting[:BATCH_ROWS])
                waiting = waiting[BATCH_ROWS:]
                yield from _take_finished(jobs)
        while waiting:
            self._decode(waiting[:BATCH_ROWS])
            waiting = waiting[BATCH_ROWS:]
        yield from _take_finished(jobs)

    def close(self) -> None:
        self.model = self.tokenizer = None
        torch = getattr(self, "torch", None)
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _job(self, request: Request) -> _Job | Result:
        ids = self._prompt_ids(request)
        room = self.spec.context_length - len(ids)
        if room < 1:
            return did_not_fit(request, len(ids))
        # Greedy samples are all the same: decode one and repeat it.
        rows = 1 if request.temperature == 0 else request.n
        job = _Job(request, len(ids))
        for i in range(rows):
            generator = None
            if request.temperature > 0:
                generator = self.torch.Generator(device=self.device)
                if request.seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(request.seed + i)
            job.rows.append(_Row(request, ids, min(request.max_tokens, room), generator))
        return job

    def _prompt_ids(self, request: Request) -> list[int]:
        tokenizer = self.tokenizer
        if request.prompt is not None:
            ids = tokenizer(request.prompt).input_ids
            return ids or [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0]
        if not (self.spec.chat_template or tokenizer.chat_template):
            raise BackendError(
                f"models.{self.spec.name}: the tokenizer has no chat template; set chat_template "
                "in models.toml or send raw prompts"
            )
        text = tokenizer.apply_chat_template(
            [dict(m) for m in request.messages],
            chat_template=self.spec.chat_template,
            add_generation_prompt=True,
            tokenize=False,
        )
        return tokenizer(text, add_special_tokens=False).input_ids  # the template has them

    def _decode(self, rows: list[_Row]) -> None:
        """Decode a batch of rows to the end, token by token, with a shared KV cache."""
        torch, device = self.torch, self.device
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            mask[b, width - len(row.prompt_ids) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        with torch.inference_mode():
            for _ in range(max(r.max_tokens for r in rows)):
                out = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    **{self.cache_key: past},
                )
                past, logits = getattr(out, self.cache_key), out.logits[:, -1, :].float()
                chosen = []
                for b, row in enumerate(rows):
                    if row.finish is None:
                        token = row.choose(logits[b], torch)
                        row.push(token, self.eos, self.tokenizer)
                        chosen.append(token)
                    else:
                        chosen.append(self.pad)  # finished rows ride along; their output is unused
                if all(r.finish is not None for r in rows):
                    break
                ids = torch.tensor(chosen, device=device).unsqueeze(1)
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1


@dataclass(eq=False)
class _Row:
    """One sample being decoded."""

    request: Request
    prompt_ids: list[int]
    max_tokens: int
    generator: object | None  # torch.Generator when sampling
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None

    def choose(self, logits, torch) -> int:
        if self.generator is None:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.request.temperature, dim=-1)
        if self.request.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            # keep the smallest head of the distribution whose mass reaches top_p
            outside = sorted_probs.cumsum(-1) - sorted_probs >= self.request.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def push(self, token: int, eos: set[int], tokenizer) -> None:
        if token in eos:
            self.finish = "stop"
            return
        self.tokens.append(token)
        self.text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        cuts = [i for i in (self.text.find(s) for s in self.request.stop if s) if i >= 0]
        if cuts:
            self.text, self.finish = self.text[: min(cuts)], "stop"
        elif len(self.tokens) >= self.max_tokens:
            self.finish = "length"


@dataclass(eq=False)
class _Job:
    request: Request
    prompt_tokens: int
    rows: list[_Row] = field(default_factory=list)

    def result(self) -> Result:
        samples = [Sample(r.text, r.finish or "length", len(r.tokens)) for r in self.rows]
        if len(samples) < self.request.n:  # greedy: one decoded, the rest identical
            samples = samples * self.request.n
        return Result(self.request, tuple(samples), self.prompt_tokens)


def _take_finished(jobs: list[_Job]) -> Iterator[Result]:
    while jobs and all(r.finish is not None for r in jobs[0].rows):
        yield jobs.pop(0).result()


def from_pretrained_args(path: Path, where: str = "") -> dict:
    """from_pretrained's arguments for a Hugging Face directory or a GGUF file."""
    prefix = f"{where}: " if where else ""
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"{prefix}{path} has no config.json (not a HF model)")
        return {"pretrained_model_name_or_path": str(path)}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BackendError(f"{prefix}{path} is neither a GGUF file nor a Hugging Face "
                               "directory")
    from localdistill.models.converted import converted_directory

    converted = converted_directory(path)  # dequantised once, then read back (models/converted.py)
    if converted is not None:
        return {"pretrained_model_name_or_path": str(converted)}
    return {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}


def _with_adapter(model, adapter: Path, spec: ModelSpec):
    try:
        from peft import PeftModel
    except ImportError:
        raise BackendError("a LoRA adapter needs peft: pip install 'localdistill[cpu]'") from None
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BackendError(
            f"models.{spec.name}.adapter: could not load {adapter}: {_first_line(e)}"
        ) from None


def _eos_ids(model, tokenizer) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load(spec: ModelSpec) -> TransformersBackend:
    return TransformersBackend(spec)


class TransformersScorer:
    """Scores token sequences with a transformers model (this module's loading)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.torch = backend.torch
        self.n_vocab = backend.model.get_output_embeddings().weight.shape[0]

    def token_texts(self) -> list[str]:
        tokenizer = self.backend.tokenizer
        texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        return [t or "" for t in texts]

    def score(self, ids: list[int], start: int, top_k: int) -> list[Position]:
        if not 0 < start <= len(ids):
            raise ValueError(f"start must be within 1..{len(ids)}, got {start}")
        bad = next((t for t in ids if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise BackendError(f"token id {bad} is not in the teacher's vocabulary")
        torch = self.torch
        with torch.no_grad():
            tensor = torch.tensor([ids], device=self.backend.device)
            logits = self.backend.model(input_ids=tensor).logits[0, start - 1:len(ids) - 1]
            rows = logits.double().cpu().numpy()
        return [position(rows[i], ids[start + i], top_k) for i in range(len(rows))]

    def close(self) -> None:
        pass


def scorer(spec: ModelSpec, context_length: int) -> tuple[TransformersScorer, TransformersBackend]:
    """Token-level distillation's teacher (backends/scoring.py): scorer and backend to close."""
    backend = TransformersBackend(spec)
    return TransformersScorer(backend), backend
