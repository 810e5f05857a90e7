"""Answers recorded earlier, played back: re-judging an evaluation whose model is gone.

`localdistill eval --replay FILE` scores the answers in FILE (an evaluation's own
cache/requests.jsonl) instead of asking a model: for instance after the adapter that wrote them
was lost with a machine, or to judge the same answers again under other sandbox limits. A request
is matched by what it asks (messages or prompt, temperature, top_p, max_tokens, seed), since the
request hash in FILE names a model that may no longer exist. Nothing is generated: a request with
no recorded answer is an error, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from localdistill.backends.base import BackendError, Kind, Request, Result, Sample
from localdistill.models import ModelSpec, weights_path


@dataclass(frozen=True)
class Options:
    """`parallel`: the recording model's batch size (llama.cpp), in the replayed model's identity
    as it was in the recording's, so that run caches keep the two apart the same way."""

    parallel: int = 1

    def identity(self) -> dict:
        return {"parallel": self.parallel} if self.parallel > 1 else {}


BACKEND = Kind("replay", Options, in_models_toml=False,
               help="the answers an evaluation recorded, asked again (`eval --replay`); `path` "
                    "is its cache/requests.jsonl")


def content_key(asked: dict) -> str:
    """What a request asks (`Request.asked()`, a cache record's "request"), independent of the
    model it was asked of."""
    return json.dumps(asked, sort_keys=True, ensure_ascii=False)


def read_answers(path: Path) -> tuple[dict[str, dict], str]:
    """The recorded answers of `path` by content key, and the model that wrote them."""
    answers: dict[str, dict] = {}
    models: set[str] = set()
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError as e:
        raise BackendError(f"--replay {path}: cannot read it ({e.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            break  # a line cut by a kill: never finished, never counted
        try:
            record = json.loads(line)
            key = content_key(record["request"])
            text = record["text"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackendError(f"--replay {path}:{number}: not an answer record of a run's "
                               "cache/requests.jsonl") from None
        if key in answers and answers[key]["text"] != text:
            raise BackendError(f"--replay {path}:{number}: two different answers to the same "
                               "request (answers of more than one model?)")
        answers[key] = record
        models.add(str(record.get("model")))
    if not answers:
        raise BackendError(f"--replay {path}: holds no answers")
    if len(models) > 1:
        raise BackendError(f"--replay {path}: answers of several models "
                           f"({', '.join(sorted(models))}); give one evaluation's cache")
    return answers, models.pop()


class ReplayBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers, self.model = read_answers(path)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        missing: list[Request] = []
        for request in requests:
            record = self.answers.get(content_key(request.asked()))
            if record is None:
                missing.append(request)
                continue
            sample = Sample(record["text"], record.get("finish_reason", "stop"),
                            int(record.get("completion_tokens", 0)))
            yield Result(request, (sample,) * request.n, int(record.get("prompt_tokens", 0)))
        if missing:
            raise BackendError(
                f"--replay {self.path}: no recorded answer for {len(missing)} request(s) "
                f"(other prompts or settings than those {self.model} was asked, or an "
                "evaluation that had not finished)")

    def close(self) -> None:
        self.answers = {}


def load(spec: ModelSpec) -> ReplayBackend:
    return ReplayBackend(weights_path(spec))
