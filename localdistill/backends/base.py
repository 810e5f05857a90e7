"""One generation interface for every backend: requests in, results out, in batches.

The stages hand a backend thousands of requests at once; the backend decides how to run them fast
(one after another in process, many in flight to a server, or one batched call to vLLM).

A backend is one module of this package that declares itself once, with `BACKEND = Kind(...)`:
its name in models.toml, its own keys (a frozen dataclass, `Kind.options`), what its weights and
adapters are; the module also has `load(spec) -> Backend`, and `serve(spec, port, parallel)` if
`localdistill serve` can start a server for it. localdistill/backends/__init__.py finds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from localdistill.errors import BadInput


@dataclass(frozen=True)
class Request:
    """What to generate: chat `messages` (list of {"role", "content"}) or a raw `prompt`."""

    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    n: int = 1  # samples
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    key: str = ""  # the caller's id for this request, carried to its result

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request needs exactly one of `messages` or `prompt`")
        if self.messages is not None:
            object.__setattr__(self, "messages", tuple(self.messages))
            for m in self.messages:
                if not isinstance(m, dict) or not {"role", "content"} <= m.keys():
                    raise ValueError(f"a chat message needs 'role' and 'content', got {m!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.n < 1:
            raise BadInput(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise BadInput(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BadInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise BadInput(f"max_tokens must be at least 1, got {self.max_tokens}")

    def asked(self) -> dict:
        """What the request asks, as a run's cache records it (cache/requests.jsonl)."""
        return {"messages": list(self.messages) if self.messages else None,
                "prompt": self.prompt, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "seed": self.seed}


# A sample's finish_reason when the prompt does not fit the model's context: nothing was generated.
# One such request must not stop a stage of thousands (it would stop again at every rerun): the
# backend answers it with empty text, and the stage tables count it.
CONTEXT = "context"


@dataclass(frozen=True)
class Sample:
    text: str
    # "stop" (end of text or a stop string) | "length" (max_tokens reached) | CONTEXT
    finish_reason: str
    completion_tokens: int


@dataclass(frozen=True)
class Result:
    request: Request
    samples: tuple[Sample, ...]
    prompt_tokens: int
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]


def did_not_fit(request: Request, prompt_tokens: int) -> Result:
    """The result for a request whose prompt (`prompt_tokens` long) leaves no room in the
    model's context: every sample empty, finish_reason CONTEXT."""
    return Result(request, (Sample("", CONTEXT, 0),) * request.n, prompt_tokens)


class BackendError(RuntimeError):
    """A backend could not generate (server down, model failed to load, GPU missing...)."""


class Backend(Protocol):
    """What every backend module provides (see llamacpp.py, openai_http.py, vllm.py, hf.py)."""

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Results for all requests, in completion order (match them by `result.request`)."""
        ...

    def close(self) -> None:
        """Free the model / connections; the backend is unusable afterwards."""
        ...


@dataclass(frozen=True)
class Kind:
    """A backend as models.toml and the stages see it; declared once, in its module.

    `options` is a frozen dataclass of the backend's own keys (written flat in a models.toml
    entry beside the common ones of ModelSpec); each field's metadata "help" documents it
    (docs/models.md is generated from them) and an optional "hint" is added when the key is
    given to another backend. The dataclass may define `check(self, where)`, raising
    ModelsFileError for an impossible value, and `identity(self) -> dict`: what of its options
    changes the answers, added to the model's identity in the run cache (answers.py).
    """

    name: str  # the value of `backend` in models.toml
    options: type
    help: str
    served: bool = False  # the weights live on a server (the options' `url`): none here to hash,
    #                       train or serve
    adapter: str | None = None  # the adapter `train` writes that it loads: "gguf" | "peft" | None
    in_models_toml: bool = True  # False: made by the tool itself (replay), never declared

    def option_names(self) -> tuple[str, ...]:
        from dataclasses import fields

        return tuple(f.name for f in fields(self.options))


@dataclass(frozen=True)
class NoOptions:
    """A backend with no keys of its own."""


def options_identity(options: Any) -> dict:
    """What a backend's options add to the model's identity (nothing unless it says)."""
    identity = getattr(options, "identity", None)
    return identity() if identity else {}
