"""Scoring given tokens with a model: the teacher of token-level distillation.

A scorer is given token ids and the index where the continuation starts, and returns, at each
continuation position, a `Position`: the log-probability of the token written there, the model's
top-k tokens with theirs, and every other token together (the rest, computed from the whole
distribution). `scorer_for` opens one for a model of models.toml: a GGUF model in process
(backends/llamacpp_score.py) or a transformers model (`TransformersScorer`, here). A served
model cannot score: the llama.cpp server cannot return a prompt's log-probabilities (an open
upstream request); vLLM's `prompt_logprobs` is not wired yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from localdistill.backends.base import BackendError
from localdistill.errors import BadInput


@dataclass(frozen=True)
class Position:
    """The teacher at one continuation position."""

    token: int  # the token written there
    logprob: float  # its log-probability under the teacher
    top_ids: tuple[int, ...]
    top_logprobs: tuple[float, ...]
    rest: float  # log-probability of every token outside the top-k


def position(logits, token: int, top_k: int) -> Position:
    """One position from the model's logits over the whole vocabulary (float64 numpy)."""
    import numpy as np

    total = np.logaddexp.reduce(logits)
    logprobs = logits - total
    k = min(top_k, len(logits))
    top = np.argpartition(-logits, k - 1)[:k]
    top = top[np.argsort(-logits[top], kind="stable")]
    others = np.ones(len(logits), dtype=bool)
    others[top] = False
    rest = float(np.logaddexp.reduce(logits[others]) - total) if others.any() else float("-inf")
    return Position(token, float(logprobs[token]), tuple(int(i) for i in top),
                    tuple(float(logprobs[i]) for i in top), rest)


class TransformersScorer:
    """Scores token sequences with a transformers model (backends/hf.py's loading)."""

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


def scorer_for(spec, context_length: int):
    """(scorer, backend to close) for a model of models.toml."""
    from localdistill.backends import kind_of

    if spec.backend == "llama.cpp" and not kind_of(spec).served:
        from localdistill.backends.llamacpp import LlamaCppBackend
        from localdistill.backends.llamacpp_score import Scorer

        backend = LlamaCppBackend(spec)
        return Scorer(backend.llm, context_length, spec.threads or 2), backend
    if spec.backend == "transformers":
        from localdistill.backends.hf import TransformersBackend

        backend = TransformersBackend(spec)
        return TransformersScorer(backend), backend
    raise BadInput(f"models.{spec.name}: scoring needs the model in process (backend llama.cpp "
                   "or transformers); a served model cannot score given tokens (the llama.cpp "
                   "server cannot return a prompt's log-probabilities)")
