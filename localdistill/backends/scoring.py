"""Scoring given tokens with a model: the teacher of token-level distillation.

A scorer is given token ids and the index where the continuation starts, and returns, at each
continuation position, a `Position`: the log-probability of the token written there, the model's
top-k tokens with theirs, and every other token together (the rest, computed from the whole
distribution). A backend that can score declares `scorer(spec, context_length)` in its module
(`backends.open_scorer` finds it): a GGUF model in process (llamacpp_score.py), a
transformers model (hf.py) or a vLLM model on a GPU (vllm_score.py, `prompt_logprobs`). A
served model cannot score: the llama.cpp server cannot return a prompt's log-probabilities (an
open upstream request).
"""

from __future__ import annotations

from dataclasses import dataclass


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
