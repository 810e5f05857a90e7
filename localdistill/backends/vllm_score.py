"""A vLLM model scoring given tokens: the teacher of token-level distillation on a GPU.

vLLM returns, for a prompt, the log-probability of every prompt token and the top-k tokens at each
position (`SamplingParams(prompt_logprobs=k)`; `RequestOutput.prompt_logprobs`, None at the first
position). The student's sequence is the prompt; one token is generated and thrown away. vLLM's
log-probabilities are those of the whole softmax, so the rest (every token outside the top-k) is
1 minus the top-k's mass, computed here in log space. k is bounded by the engine's
`max_logprobs` (20 unless the model is loaded with more): a larger `--top-k` gets vLLM's refusal
in one line.
"""

from __future__ import annotations

import math

from localdistill.backends.base import BackendError
from localdistill.backends.scoring import Position


class Scorer:
    """Scores token sequences with a loaded vLLM engine (backends/vllm.py's VLLMBackend)."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def token_texts(self) -> list[str]:
        tokenizer = self.backend.llm.get_tokenizer()
        texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        return [t or "" for t in texts]

    def score(self, ids: list[int], start: int, top_k: int) -> list[Position]:
        if not 0 < start <= len(ids):
            raise ValueError(f"start must be within 1..{len(ids)}, got {start}")
        params = self.backend.vllm.SamplingParams(max_tokens=1, temperature=0.0,
                                                  prompt_logprobs=top_k)
        try:
            [output] = self.backend.llm.generate([{"prompt_token_ids": list(ids)}],
                                                 sampling_params=params, use_tqdm=False,
                                                 lora_request=self.backend.lora)
        except ValueError as e:  # e.g. top-k over the engine's max_logprobs
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(f"vLLM refused to score: {first}") from None
        rows = output.prompt_logprobs
        return [from_prompt_logprobs(rows[i], ids[i], top_k) for i in range(start, len(ids))]

    def close(self) -> None:
        pass


def from_prompt_logprobs(row: dict, token: int, top_k: int) -> Position:
    """One position from vLLM's {token id: Logprob(logprob, rank, ...)}: its top-k (rank 1..k)
    and the token written there (which may rank lower)."""
    if not row or token not in row:
        raise BackendError(f"vLLM returned no log-probability for token {token}")
    top = sorted(((t, lp.logprob) for t, lp in row.items()
                  if lp.rank is not None and lp.rank <= top_k), key=lambda p: -p[1])[:top_k]
    mass = _logsumexp([lp for _, lp in top])
    rest = math.log(-math.expm1(mass)) if mass < 0 else float("-inf")
    return Position(token, float(row[token].logprob), tuple(int(t) for t, _ in top),
                    tuple(float(lp) for _, lp in top), rest)


def _logsumexp(values: list[float]) -> float:
    if not values:
        return float("-inf")
    most = max(values)
    return most + math.log(sum(math.exp(v - most) for v in values))
