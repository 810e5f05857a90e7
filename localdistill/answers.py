"""How every stage asks a model: through the run's memory of answers.

A model request is keyed by a hash of the model's identity (the weights' and adapter's sha256, or
the server and the name it serves, the chat template, the context length) and the request itself
(messages, sampling settings, seed). So a rerun of any stage asks the model only what it was never
asked, a changed template or model re-asks only what depends on it, and kill -9 at any moment
loses nothing that finished. (The sandbox's verdicts are remembered the same way: verdicts.py.)

Files, in the run directory:
  cache/requests.jsonl    one answer per line (append-only; `key` is the request hash; an
                          answer copied from another run by --reuse is marked `"reused": true`:
                          its time was spent there, and the time figures leave it out)
  cache/sent.jsonl        one line each time a request is handed to a model (an audit trail:
                          a request answered once is never sent again)
"""

from __future__ import annotations

import dataclasses
import gc
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from localdistill.backends import kind_of, open_backend
from localdistill.backends.base import Request, options_identity
from localdistill.hashing import digest, file_digest
from localdistill.models import ModelSpec, adapter_path, weights_path
from localdistill.progress import Bar
from localdistill.rundir import RunDir

REQUESTS = "cache/requests"
SENT = "cache/sent"
REUSED = "reused"  # marks a cached answer taken from another run (--reuse), not asked here


@dataclass(frozen=True)
class Answer:
    key: str  # the caller's key (request.key)
    request_hash: str
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int
    cached: bool  # True: read from the run's cache, the model was not asked now
    reused: bool = False  # True: first asked in another run (--reuse): its time is not this run's


def generate(run: RunDir, spec: ModelSpec, requests: Sequence[Request], stage: str,
             bar: Bar | None = None) -> dict[str, Answer]:
    """Answers to all `requests` (by `request.key`), asking the model only what the cache lacks.

    Each request must ask for one sample (`n == 1`); several samples are several requests with
    different seeds. The model is loaded only if something is missing.
    """
    bar = bar or Bar()
    keys = [r.key for r in requests]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{stage}: two requests share a key")
    if any(r.n != 1 for r in requests):
        raise ValueError(f"{stage}: one sample per request (use seeds for more)")
    identity = model_identity(spec)
    hashes = {r.key: request_hash(identity, r) for r in requests}
    wanted = set(hashes.values())
    cached = {rec["key"]: rec for rec in run.records(REQUESTS) if rec["key"] in wanted}
    answers: dict[str, Answer] = {}
    missing: dict[str, Request] = {}  # by hash: identical requests are asked once
    for request in requests:
        h = hashes[request.key]
        if h in cached:
            answers[request.key] = _answer(request.key, cached[h], cached=True)
            bar.advance(tokens=cached[h]["completion_tokens"])
        else:
            missing.setdefault(h, dataclasses.replace(request, key=h))
    if missing and run.reuse:
        found = _reusable(run, set(missing))
        if found:
            with run.appender(REQUESTS) as out:
                for request in requests:
                    record = found.get(hashes[request.key])
                    if record is None:
                        continue
                    if record["key"] in missing:
                        out.add(record)  # the run keeps its own copy: it stays self-contained
                        del missing[record["key"]]
                    answers[request.key] = _answer(request.key, record, cached=True)
                    bar.advance(tokens=record["completion_tokens"])
    if not missing:
        return answers
    waiting = {}
    for request in requests:
        waiting.setdefault(hashes[request.key], []).append(request.key)
    backend = open_backend(spec)
    try:
        with run.appender(REQUESTS) as out, run.appender(SENT) as sent:
            def handed_over():
                for h, request in missing.items():
                    sent.add({"key": h, "stage": stage, "model": spec.name, "time": time.time()})
                    yield request

            for result in backend.generate(handed_over()):
                h = result.request.key
                record = _record(h, spec, stage, result)
                out.add(record)
                for key in waiting[h]:
                    answers[key] = _answer(key, record, cached=False)
                    bar.advance(tokens=record["completion_tokens"])
    finally:
        with interrupts_held():
            backend.close()
            del backend
            gc.collect()  # the model's native objects are freed here, not at a random later point
    return answers


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C (and SIGTERM, which the CLI turns into one) held back until the block is done, then
    delivered. Freeing a model runs its native objects' finalizers (`__del__`), and Python prints
    and drops an exception raised inside one: a Ctrl-C that came then was lost, and the command
    went on as if never interrupted. (Signals are handled in the main thread only; elsewhere the
    block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in held}
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # as if it came now: the handler it would have met


def _reusable(run: RunDir, wanted: set[str]) -> dict[str, dict]:
    """Answers to `wanted` request hashes found in the caches of the run's `reuse` directories,
    marked as reused (the time they took was spent elsewhere: the time figures say so).

    A hash covers the model's weights and every setting that shapes the answer, so an answer
    found under the same hash is the answer this model would be asked for here."""
    found: dict[str, dict] = {}
    own = (run.path / REQUESTS).with_suffix(".jsonl").resolve()
    for where in run.reuse:
        for path in sorted(where.rglob("cache/requests.jsonl")):
            if path.resolve() == own:
                continue
            with open(path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("key") in wanted:
                        found.setdefault(record["key"], {**record, REUSED: True})
    return found


def _record(h: str, spec: ModelSpec, stage: str, result) -> dict:
    sample = result.samples[0]
    request = result.request
    return {"key": h, "model": spec.name, "stage": stage,
            "request": request.asked(),
            "text": sample.text, "finish_reason": sample.finish_reason,
            "completion_tokens": sample.completion_tokens, "prompt_tokens": result.prompt_tokens}


def _answer(key: str, record: dict, cached: bool) -> Answer:
    return Answer(key, record["key"], record["text"], record["finish_reason"],
                  record["completion_tokens"], record["prompt_tokens"], cached,
                  bool(record.get(REUSED)))


def request_hash(identity: dict, request: Request) -> str:
    return digest({"model": identity, "messages": request.messages, "prompt": request.prompt,
                    "temperature": request.temperature, "top_p": request.top_p,
                    "max_tokens": request.max_tokens, "stop": request.stop,
                    "seed": request.seed})


def model_identity(spec: ModelSpec) -> dict:
    """What about a model determines its answers (not its name in models.toml, nor threads)."""
    identity: dict = {"backend": spec.backend, "chat_template": spec.chat_template,
                      "context_length": spec.context_length}
    if not kind_of(spec).served:
        identity["weights"] = file_digest(weights_path(spec))
    identity |= options_identity(spec.options)  # the backend's own (its module says which)
    if spec.adapter:
        identity["adapter"] = file_digest(adapter_path(spec))
    return identity
