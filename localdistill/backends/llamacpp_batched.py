"""llama.cpp decoding several requests at once in one process (continuous batching).

On a CPU, one decoding step of one sequence is bound by reading every weight from memory; a step
that carries N sequences reads the weights once for all of them, so N answers cost far less than
N times one (`scripts/bench_generation.py --parallel` measures it). Used by the llama.cpp backend
when models.toml sets `parallel = N` (N > 1).

Each of the N slots of one llama.cpp context holds a sequence; a slot that finishes takes the next
request at once. A request's prompt is rendered and tokenised as llama-cpp-python renders it for
`create_chat_completion`/`create_completion`, and sampled with the same sampler chain (greedy at
temperature 0), so a batched answer is an answer of the same model to the same prompt. It is not
always bit for bit the sequential one: the matrix kernels llama.cpp picks for a batch of N rows
round differently from those for one row, so a greedy answer can part ways after a near tie.
That is why `parallel` belongs to the model's identity in the run cache.

Drafting without a draft model (`ngram_draft = K`, models.toml). Code answers copy long spans of
their prompt (signatures, docstrings, the student's code in a refinement prompt, the guide) and
of themselves. Each sequence looks up the last few tokens it has (prompt and answer so far) where
they occurred before, and proposes the tokens that followed there as a draft of up to K tokens
(`NgramDrafter`, prompt_lookup.py).
The drafts ride in the same batch as every other sequence's next token (`_step`): one decode
computes the model's distribution at every drafted position, and the sequence's own sampler
(the same chain, the same seed) picks each next token from those distributions in order. A
drafted token is kept while it is the token the sampler picked; at the first that is not, the
picked token is kept instead, and the KV cells of the rest of the draft are removed. So every
token is sampled from the model's own distribution given the tokens before it, exactly as without
drafting, for greedy and sampled requests alike (for a draft that proposes one token with
certainty, "keep it if the sampler picks it" is the exact speculative-sampling acceptance rule,
and the sampler's random draws are the same ones, one per token kept). What can differ is
rounding: positions decoded in one pass go through other kernels than one token at a time, so a
greedy answer can part ways after a near tie, as with `parallel`; `ngram_draft` therefore belongs
to the model's identity in the run cache too.

What a decode costs is not proportional to its rows: llama.cpp's CPU kernels multiply some
quantised weights several rows at a time and the rest one row at a time, so on the demo student a
decode of 4 rows took 55 ms, 7 rows 129 ms and 8 rows 91 ms, and on the demo teacher 10 rows 309 ms
and 16 rows 280 ms (docs/results.md). The decoder therefore measures its model's cost of a decode
of 1 to 32 rows once, when it is made (`calibrate`, a few seconds; kept by decode_costs.py),
and at every step picks how many drafted tokens to add: each sequence's candidates are worth the
chance that they are kept (its own running acceptance rate, to the power of the token's place in
the draft), and the number of rows chosen is the one with the most expected tokens per second of
measured cost. So drafts ride in rows that would cost (nearly) nothing otherwise, a sequence whose
drafts keep failing stops drafting, and a full batch of sequences drafts only where it pays.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from localdistill.backends.base import BackendError, Request, Result, Sample, did_not_fit
from localdistill.backends.decode_costs import kept_costs
from localdistill.backends.llamacpp_context import chat_formatter, new_context, prompt_tokens
from localdistill.backends.prompt_lookup import DraftStats, NgramDrafter

# the backend, the scorer, tests and scripts import these helpers from here too
__all__ = ["BatchedDecoder", "DraftStats", "NgramDrafter", "chat_formatter", "new_context",
           "prompt_tokens"]


@dataclass
class _Job:
    """One sample of one request, while it occupies a slot."""

    request: Request
    index: int  # which of the request's n samples
    prompt: list[int]
    stops: tuple[str, ...]
    max_tokens: int
    sampler: object = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = ""
    next_token: int = -1  # sampled, not yet fed to the model
    drafter: NgramDrafter | None = None
    draft: list[int] = field(default_factory=list)  # drafted tokens fed in this step


class BatchedDecoder:
    """`parallel` sequences of `llm`'s model decoded together in a context of their own."""

    def __init__(self, llm, parallel: int, context_length: int, threads: int, formatter,
                 ngram_draft: int = 0, prefix_reuse: bool = False) -> None:
        """`formatter`: `chat_formatter`'s for the model (None: it has no chat template);
        `ngram_draft`: the longest draft a sequence may propose (0: no drafting);
        `prefix_reuse`: a prompt's first tokens held by another slot are copied from it."""
        import llama_cpp

        if formatter is None:
            raise BackendError("the model has no chat template; set chat_template in models.toml")
        self.formatter = formatter
        self.lib = llama_cpp
        self.llm = llm
        self.parallel = parallel
        self.context_length = context_length
        self.ngram_draft = ngram_draft
        self.prefix_reuse = prefix_reuse
        self.stats = DraftStats()
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.n_batch = 512
        # each sequence gets context_length
        self.ctx = new_context(llm, context_length * parallel, parallel, threads, self.n_batch,
                               f"{parallel} sequences of {context_length} tokens")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, parallel)
        # every slot's next token and its longest draft must fit one batch
        self.ngram_draft = min(ngram_draft, self.n_batch // parallel - 1)
        self.cost: list[float] = []  # cost[r]: seconds a decode of r rows takes (calibrate)
        if self.ngram_draft:
            self.cost = kept_costs(llm, threads, max(MAX_ROWS, parallel), self.calibrate)

    # --- requests in, results out -------------------------------------------------------------

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        queue = iter(requests)
        waiting: deque[_Job] = deque()
        slots: list[_Job | None] = [None] * self.parallel
        done: dict[int, list[Sample | None]] = {}  # id(request) -> its samples
        prompt_tokens: dict[int, int] = {}

        unfit: list[Result] = []  # prompts over the context: answered without a slot

        def take() -> _Job | None:
            while not waiting:
                request = next(queue, None)
                if request is None:
                    return None
                jobs = self._jobs(request)
                if isinstance(jobs, Result):
                    unfit.append(jobs)
                    continue
                done[id(request)] = [None] * request.n
                prompt_tokens[id(request)] = len(jobs[0].prompt)
                waiting.extend(jobs)
            return waiting.popleft()

        def finish(slot: int) -> Result | None:
            job = slots[slot]
            slots[slot] = None
            self._release(slot, job)
            samples = done[id(job.request)]
            samples[job.index] = Sample(job.text, job.finish_reason, len(job.tokens))
            if any(s is None for s in samples):
                return None
            del done[id(job.request)]
            return Result(job.request, tuple(samples), prompt_tokens.pop(id(job.request)))

        try:
            while True:
                for slot in range(self.parallel):
                    while slots[slot] is None:
                        job = take()
                        while unfit:
                            yield unfit.pop()
                        if job is None:
                            break
                        slots[slot] = job
                        self._prefill(slot, job, slots)
                        if job.finish_reason:  # ended at its first token
                            result = finish(slot)
                            if result is not None:
                                yield result
                active = [s for s in range(self.parallel) if slots[s] is not None]
                if not active:
                    return
                self._step(slots, active)
                for slot in active:
                    if slots[slot].finish_reason:
                        result = finish(slot)
                        if result is not None:
                            yield result
        finally:
            for slot, job in enumerate(slots):
                if job is not None:
                    self._release(slot, job)

    def _release(self, slot: int, job: _Job) -> None:
        """The slot's KV cells and the job's sampler, freed for the next request."""
        self.lib.llama_memory_seq_rm(self.memory, slot, -1, -1)
        self.lib.llama_sampler_free(job.sampler)

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    # --- the steps ----------------------------------------------------------------------------

    def _jobs(self, request: Request) -> list[_Job] | Result:
        prompt, extra = prompt_tokens(self.llm, self.formatter, request)
        stops = tuple(request.stop) + extra
        if len(prompt) >= self.context_length:  # where llama-cpp-python refuses it too
            return did_not_fit(request, len(prompt))
        # as llama-cpp-python does: an answer stops where the context ends
        max_tokens = min(request.max_tokens, self.context_length - len(prompt))
        return [_Job(request, i, prompt, stops, max_tokens) for i in range(request.n)]

    def _sampler(self, request: Request, index: int):
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if request.temperature == 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:  # llama-cpp-python's defaults: top_k 40, min_p 0.05
            seed = (request.seed + index) if request.seed is not None else 0xFFFFFFFF
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(40))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(0.05, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _prefill(self, slot: int, job: _Job, slots: list[_Job | None]) -> None:
        """The prompt into the slot's sequence (n_batch tokens a decode), then its first token."""
        job.sampler = self._sampler(job.request, job.index)
        prompt = job.prompt
        if self.ngram_draft:
            job.drafter = NgramDrafter(prompt, self.ngram_draft)
        for start in range(self._reuse(slot, job, slots), len(prompt), self.n_batch):
            piece = prompt[start:start + self.n_batch]
            self.batch.n_tokens = 0
            for i, token in enumerate(piece):
                self._add(token, start + i, slot, start + i == len(prompt) - 1)
            started = time.perf_counter()
            self._decode()
            self.stats.prefill_seconds += time.perf_counter() - started
            self.stats.prefill_tokens += len(piece)
        self._accept(job, self.batch.n_tokens - 1)

    def _reuse(self, slot: int, job: _Job, slots: list[_Job | None]) -> int:
        """How many of the job's first prompt tokens it takes from another slot that holds them
        (the same system prompt and instructions, or the same prompt sampled again: `-k4`
        strategies ask each refinement prompt 4 times): their KV cells are copied, not
        computed. The prompt's last token is always computed, its logits pick the first token."""
        if not self.prefix_reuse:
            return 0
        best, source = 0, -1
        for other, held in enumerate(slots):
            if held is None or other == slot:
                continue
            same = len(os.path.commonprefix([held.prompt, job.prompt]))
            if same > best:
                best, source = same, other
        best = min(best, len(job.prompt) - 1)
        if best < MIN_REUSE:
            return 0
        # another stream's cells are copied whole (llama.cpp copies across streams only so),
        # then everything past the shared prefix is dropped
        self.lib.llama_memory_seq_cp(self.memory, source, slot, -1, -1)
        self.lib.llama_memory_seq_rm(self.memory, slot, best, -1)
        self.stats.reused_tokens += best
        return best

    def _step(self, slots: list[_Job | None], active: list[int]) -> None:
        """One decode for every active sequence: its next token and, where it drafts, the
        drafted tokens after it; then each sequence keeps what its sampler confirms."""
        self._drafts([slots[slot] for slot in active])
        self.batch.n_tokens = 0
        first: dict[int, int] = {}  # slot -> batch index of its next token
        for slot in active:
            job = slots[slot]
            pos = len(job.prompt) + len(job.tokens) - 1
            first[slot] = self.batch.n_tokens
            self._add(job.next_token, pos, slot, True)
            for i, token in enumerate(job.draft, 1):
                self._add(token, pos + i, slot, True)
        started = time.perf_counter()
        self._decode()
        self.stats.step_seconds += time.perf_counter() - started
        self.stats.steps += 1
        self.stats.batch_tokens += self.batch.n_tokens
        for slot in active:
            job = slots[slot]
            output = first[slot]
            self._accept(job, output)
            kept = 0
            for token in job.draft:
                if job.finish_reason or job.next_token != token:
                    break
                kept += 1
                output += 1
                self._accept(job, output)
            if job.draft:
                self.stats.drafted += len(job.draft)
                self.stats.accepted += kept
                job.drafter.feedback(len(job.draft), kept)
                if not job.finish_reason:  # the cells of the draft's rejected tail
                    self.lib.llama_memory_seq_rm(
                        self.memory, slot, len(job.prompt) + len(job.tokens) - 1, -1)

    def _drafts(self, jobs: list[_Job]) -> None:
        """Each job's draft for this step: the rows with the most expected tokens per second.

        A candidate is the i-th token of a job's lookup, worth rate**i (rate: the job's running
        acceptance); the best candidates are taken first. Of every row count from one per job to
        all candidates, the one with the most expected tokens per second of calibrated cost
        wins."""
        for job in jobs:
            job.draft = []
        if not self.cost:
            return
        lookups, gains = [], []
        for i, job in enumerate(jobs):
            room = job.max_tokens - len(job.tokens)  # a draft past the limit is never kept
            lookup = job.drafter.lookup(min(room, self.ngram_draft)) if job.drafter else []
            lookups.append(lookup)
            worth = 1.0
            for _ in lookup:
                worth *= job.drafter.rate
                gains.append((worth, i))
        if not gains:
            return
        gains.sort(reverse=True)
        rows = len(jobs)
        best, best_rows, expected = len(jobs) / self._cost(rows), rows, float(len(jobs))
        for worth, _ in gains:
            rows += 1
            if rows >= len(self.cost):
                break
            expected += worth
            if expected / self._cost(rows) > best:
                best, best_rows = expected / self._cost(rows), rows
        taken = [0] * len(jobs)
        for _, i in gains[:best_rows - len(jobs)]:
            taken[i] += 1
        for i, job in enumerate(jobs):
            job.draft = lookups[i][:taken[i]]

    def _cost(self, rows: int) -> float:
        return self.cost[min(rows, len(self.cost) - 1)]

    def calibrate(self, most: int) -> list[float]:
        """Seconds a decode of 0..`most` rows takes on this model and machine (index: rows).

        Measured once, on a scratch sequence up to 256 tokens long, the best of two, at 1 to 8
        rows and every fourth count above; a count not measured costs what the next measured
        one does. More rows can cost less (8 rows against 7 on the demo student): that is kept,
        it is what the choice of rows is for."""
        lib = self.lib
        base = max(0, min(256, self.context_length - most - 1))
        filler = self.llm.tokenize(b"def f(values):\n    return [v + 1 for v in values]\n" * 40)
        filler = (filler * (1 + (base + most) // len(filler)))[:base + most]
        if base:
            self.batch.n_tokens = 0
            for i in range(base):
                self._add(filler[i], i, 0, False)
            self._decode()
        measured = {}
        for rows in [*range(1, 9), *range(12, most + 1, 4)]:
            best = float("inf")
            for _ in range(2):
                self.batch.n_tokens = 0
                for i in range(rows):
                    self._add(filler[base + i], base + i, 0, True)
                started = time.perf_counter()
                self._decode()
                best = min(best, time.perf_counter() - started)
                lib.llama_memory_seq_rm(self.memory, 0, base, -1)
            measured[rows] = best
        lib.llama_memory_seq_rm(self.memory, 0, -1, -1)
        return [0.0] + [measured[min(r for r in measured if r >= rows)]
                        for rows in range(1, most + 1)]

    def _accept(self, job: _Job, output: int) -> None:
        """Sample the job's next token from batch output `output`; end the job where it ends."""
        lib = self.lib
        token = lib.llama_sampler_sample(job.sampler, self.ctx, output)
        if lib.llama_vocab_is_eog(self.vocab, token):
            job.finish_reason = "stop"
            return
        job.tokens.append(token)
        if job.drafter is not None:
            job.drafter.append(token)
        text = self.llm.detokenize(job.tokens, prev_tokens=job.prompt).decode("utf-8", "ignore")
        cut = min((i for i in (text.find(s) for s in job.stops if s) if i >= 0), default=-1)
        if cut >= 0:
            job.text, job.finish_reason = text[:cut], "stop"
        elif len(job.tokens) >= job.max_tokens:
            job.text, job.finish_reason = text, "length"
        else:
            job.text, job.next_token = text, token

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        b, i = self.batch, self.batch.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
        b.seq_id[i][0] = seq
        b.n_tokens += 1

    def _decode(self) -> None:
        code = self.lib.llama_decode(self.ctx, self.batch)
        if code != 0:
            raise BackendError(f"llama.cpp failed to decode a batch (code {code}; out of "
                               "context memory? lower `parallel` or `context_length`)")


MIN_REUSE = 16  # a shared prefix shorter than this is computed again (copying costs too)
MAX_ROWS = 32  # the most rows a decode is calibrated for (more rarely pay on a CPU)
