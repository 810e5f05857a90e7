"""The run's memory: every model answer and every sandbox verdict, keyed by what determines it.

A model request is keyed by a hash of the model's identity (the weights' and adapter's sha256, or
the server and the name it serves, the chat template, the context length) and the request itself
(messages, sampling settings, seed). A verdict is keyed by a hash of the program, its tests and the
limits. So a rerun of any stage asks the model only what it was never asked, a changed template or
model re-asks only what depends on it, and kill -9 at any moment loses nothing that finished.

Files, in the run directory:
  cache/requests.jsonl    one answer per line (append-only; `key` is the request hash)
  cache/sent.jsonl        one line each time a request is handed to a model (an audit trail:
                          a request answered once is never sent again)
  cache/executions.jsonl  one verdict per line (append-only; `key` is the program hash)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localdistill.backends import open_backend
from localdistill.backends.base import Request
from localdistill.execute import Limits, Program, run_many
from localdistill.models import ModelSpec, adapter_path, weights_path
from localdistill.progress import Bar
from localdistill.rundir import RunDir, write_atomic

REQUESTS = "cache/requests"
SENT = "cache/sent"
EXECUTIONS = "cache/executions"


@dataclass(frozen=True)
class Answer:
    key: str  # the caller's key (request.key)
    request_hash: str
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int
    cached: bool  # True: read from the run's cache, the model was not asked now


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
        backend.close()
    return answers


def _reusable(run: RunDir, wanted: set[str]) -> dict[str, dict]:
    """Answers to `wanted` request hashes found in the caches of the run's `reuse` directories.

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
                        found.setdefault(record["key"], record)
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
                  record["completion_tokens"], record["prompt_tokens"], cached)


def request_hash(identity: dict, request: Request) -> str:
    return _digest({"model": identity, "messages": request.messages, "prompt": request.prompt,
                    "temperature": request.temperature, "top_p": request.top_p,
                    "max_tokens": request.max_tokens, "stop": request.stop,
                    "seed": request.seed})


def model_identity(spec: ModelSpec) -> dict:
    """What about a model determines its answers (not its name in models.toml, nor threads)."""
    identity: dict = {"backend": spec.backend, "chat_template": spec.chat_template,
                      "context_length": spec.context_length}
    if spec.backend == "openai":
        identity |= {"served": spec.served_name or spec.url, "extra": spec.request_extra}
    else:
        identity["weights"] = file_digest(weights_path(spec))
    if spec.parallel > 1:  # batched decoding can round differently (backends/llamacpp_batched.py)
        identity["parallel"] = spec.parallel
    if spec.adapter:
        identity["adapter"] = file_digest(adapter_path(spec))
    return identity


# --- verdicts ----------------------------------------------------------------------------------


def judge(run: RunDir, programs: Sequence[Program], limits: Limits = Limits(),
          workers: int | None = None, bar: Bar | None = None) -> dict[str, dict]:
    """Verdicts for all programs (by `program.key`), running only those the cache lacks.

    A verdict: {"passed", "status", "feedback", "outcomes" (each test's status), "runtime"}.
    """
    bar = bar or Bar()
    limits_identity = dataclasses.asdict(limits)
    hashes = {p.key: _digest({"program": p.program, "tests": p.tests, "entry": p.entry_point,
                              "setup": p.setup, "limits": limits_identity}) for p in programs}
    wanted = set(hashes.values())
    cached = {rec["key"]: rec for rec in run.records(EXECUTIONS) if rec["key"] in wanted}
    verdicts: dict[str, dict] = {}
    missing: dict[str, Program] = {}
    waiting: dict[str, list[str]] = {}
    for program in programs:
        h = hashes[program.key]
        if h in cached:
            verdicts[program.key] = cached[h]
            bar.advance(passed=cached[h]["passed"])
        else:
            missing.setdefault(h, dataclasses.replace(program, key=h))
            waiting.setdefault(h, []).append(program.key)
    if not missing:
        return verdicts
    with run.appender(EXECUTIONS) as out:
        for program, result in run_many(list(missing.values()), limits, workers):
            record = {"key": program.key, "passed": result.passed, "status": result.status,
                      "feedback": result.feedback,
                      "outcomes": [o.status for o in result.outcomes],
                      "runtime": round(result.runtime, 4)}
            out.add(record)
            for key in waiting[program.key]:
                verdicts[key] = record
                bar.advance(passed=record["passed"])
    return verdicts


# --- hashing -----------------------------------------------------------------------------------


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents); remembered per file
    (path, size, mtime) in ~/.cache/localdistill/digests.json, so a 10 GB model is read once."""
    path = Path(path)
    if path.is_dir():
        parts = [(str(f.relative_to(path)), _file_sha256(f))
                 for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        return _digest(parts)
    return _file_sha256(path)


def _memo_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "localdistill" / "digests.json"


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(stamp), str):
        return memo[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    memo = memo if isinstance(memo, dict) else {}
    memo[stamp] = value
    try:
        write_atomic(memo_file, json.dumps(memo, indent=0).encode())
    except OSError:
        pass  # a read-only home only costs hashing again next time
    return value


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
