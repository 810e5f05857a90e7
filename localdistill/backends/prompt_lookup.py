"""Prompt-lookup drafting: a sequence proposes its next tokens from what followed the same few
tokens earlier in its own prompt or answer, with no draft model.

Kept apart from the batched decoder (llamacpp_batched.py) because it is plain bookkeeping over
token ids: it needs no model, and its lookups and acceptance rate are tested on their own. The
decoder verifies the drafts and chooses how many of them a decode carries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DraftStats:
    """What drafting did in one decoder's life (the benchmark prints it)."""

    steps: int = 0  # decodes of the generation loop (prefills not counted)
    batch_tokens: int = 0  # tokens those decodes carried
    drafted: int = 0
    accepted: int = 0
    step_seconds: float = 0.0  # in those decodes
    prefill_tokens: int = 0  # prompt tokens decoded
    prefill_seconds: float = 0.0
    reused_tokens: int = 0  # prompt tokens copied from another slot instead (prefix_reuse)


class NgramDrafter:
    """One sequence's drafts: the tokens that followed the last time its last `n` tokens occurred
    (n = 4, then 3, then 2: the longest match first), in its prompt or its answer so far, and
    how often its drafted tokens have been kept (`rate`, for the decoder's choice of rows).

    Every n-gram's latest end is indexed as tokens arrive, so a lookup costs a dictionary read.
    `rate` is the share of drafted tokens kept, counted as a draft is verified (its kept tokens,
    and the first one not kept; the rest were never tested), older drafts weighing less, starting
    from 1 kept of 2.
    """

    SIZES = (4, 3, 2)
    DECAY = 0.7  # the weight of what earlier drafts showed, at each new one

    def __init__(self, prompt: list[int], limit: int) -> None:
        self.tokens: list[int] = []
        self.ends: dict[tuple[int, ...], int] = {}  # n-gram -> where its latest occurrence ends
        self.limit = limit
        self.kept, self.tried = 1.0, 2.0
        for token in prompt:
            self.append(token)

    @property
    def rate(self) -> float:
        return self.kept / self.tried

    def append(self, token: int) -> None:
        tokens = self.tokens
        tokens.append(token)
        end = len(tokens)
        # index the n-grams ending just before this token: indexing the one that ends here too
        # would make every lookup find the sequence's own tail
        for n in self.SIZES:
            if end - 1 >= n:
                self.ends[tuple(tokens[end - 1 - n:end - 1])] = end - 1

    def lookup(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest occurrence of the longest tail that
        occurred before."""
        if limit <= 0:
            return []
        tokens = self.tokens
        for n in self.SIZES:
            if len(tokens) <= n:
                continue
            end = self.ends.get(tuple(tokens[-n:]))
            if end is not None:
                return tokens[end:end + min(limit, self.limit)]
        return []

    def feedback(self, drafted: int, accepted: int) -> None:
        self.kept = self.kept * self.DECAY + accepted
        self.tried = self.tried * self.DECAY + accepted + (accepted < drafted)
