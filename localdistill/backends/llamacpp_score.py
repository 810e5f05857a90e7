"""A GGUF model scoring given tokens in process: what it would have written at each position.

For token-level distillation the teacher reads a sequence the *student* wrote (its tokens, as
the student's tokenizer made them: the vocabularies are checked to agree) and returns, at every
position of the continuation, the log-probability of the token written there, its top-k tokens
with their log-probabilities, and the log-probability of all other tokens together (the "rest",
computed from the full distribution, so that a top-k holding nearly all the mass still leaves an
exact rest). One decode carries up to 512 tokens with the logits of the continuation's positions
requested; the logits come from `llama_get_logits_ith` (llama-cpp-python's `Llama.scores` stays
zero unless the model was loaded with `logits_all`). The llama.cpp server cannot return a
prompt's log-probabilities (an open upstream request): scoring needs the model in process.
"""

from __future__ import annotations

from localdistill.backends.base import BackendError
from localdistill.backends.llamacpp_batched import new_context
from localdistill.backends.scoring import Position, position


class Scorer:
    """Scores token sequences with a loaded llama-cpp-python model (`Llama`)."""

    def __init__(self, llm, context_length: int, threads: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llm
        model = llm._model.model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_batch = 512
        self.context_length = context_length
        self.ctx = new_context(llm, context_length, 1, threads, self.n_batch,
                               f"scoring {context_length} tokens")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

    def token_texts(self) -> list[str]:
        """Every token's text, by id (for the vocabulary check)."""
        out = []
        for i in range(self.n_vocab):
            raw = self.lib.llama_vocab_get_text(self.vocab, i)
            out.append(raw.decode("utf-8", "replace") if raw is not None else "")
        return out

    def score(self, ids: list[int], start: int, top_k: int) -> list[Position]:
        """The teacher at positions `start`..len(ids)-1 of `ids` (the continuation), each given
        every token before it."""
        import numpy as np

        if not 0 < start <= len(ids):
            raise ValueError(f"start must be within 1..{len(ids)}, got {start}")
        if len(ids) > self.context_length:
            raise BackendError(f"a sequence of {len(ids)} tokens is over the scoring context "
                               f"({self.context_length})")
        bad = next((t for t in ids if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise BackendError(f"token id {bad} is not in the teacher's vocabulary "
                               f"({self.n_vocab} tokens)")
        self.lib.llama_memory_clear(self.memory, True)
        positions: list[Position] = []
        for begin in range(0, len(ids), self.n_batch):
            chunk = ids[begin:begin + self.n_batch]
            b = self.batch
            b.n_tokens = 0
            wanted = []  # (row in the batch, position whose next token it predicts)
            for j, token in enumerate(chunk):
                pos = begin + j
                predicts = start - 1 <= pos < len(ids) - 1
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, 1, predicts
                b.seq_id[j][0] = 0
                b.n_tokens += 1
                if predicts:
                    wanted.append((j, pos + 1))
            code = self.lib.llama_decode(self.ctx, b)
            if code != 0:
                raise BackendError(f"llama.cpp failed to decode a scoring batch (code {code})")
            for row, target in wanted:
                pointer = self.lib.llama_get_logits_ith(self.ctx, row)
                logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)
                positions.append(position(logits, ids[target], top_k))
        return positions

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
