"""Any OpenAI-compatible server on this machine: `vllm serve`, llama.cpp's llama-server, ...

Many requests in flight (a thread pool of `max_in_flight`) over a bounded window of the caller's
requests, so 10,000 of them stream through in flat memory. A server that is overloaded gets
retries with exponential backoff; one that is down from the start fails fast, but one that stops
answering after it has answered (a crash, a restart) is waited for, up to `wait_for_server`
seconds, with a line on stderr saying so. Standard library only, and http.client rather than
urllib.request: urllib honours HTTP_PROXY, and a loopback request must never go to a proxy.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlparse

from localdistill.backends.base import CONTEXT, BackendError, Kind, Request, Result, Sample
from localdistill.backends.openai_errors import (
    OVER_CONTEXT,
    DidNotFit,
    clip,
    error_message,
    prompt_length,
)
from localdistill.backends.openai_spread import SpreadBackend
from localdistill.models import ModelsFileError, ModelSpec

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
MAX_RESPONSE = 32 << 20  # bytes of one answer; a completion is kilobytes
WAIT_POLL = 2.0  # seconds between tries while waiting for a server to come back
# Connection refused before the server ever answered: nothing listens there (a wrong url, a server
# not started). One more try after the first backoff, in case it was just starting, then the error.
REFUSED_TRIES = 2


@dataclass(frozen=True)
class Options:
    """The keys of an openai entry of models.toml, beside the common ones."""

    url: str | None = field(default=None, metadata={
        "help": "base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                "(loopback only, unless allow_remote)"})
    more_urls: tuple[str, ...] = field(default=(), metadata={
        "help": "further servers of the same model; requests are spread over url and these, "
                "each server taking work as it frees a slot"})
    allow_remote: bool = field(default=False, metadata={
        "help": "let the URLs point at another machine of your network (off: loopback only)"})
    served_name: str | None = field(default=None, metadata={
        "help": "the model name the server expects (default: the server's first model)"})
    max_in_flight: int = field(default=4, metadata={"help": "requests sent at once"})
    timeout: float = field(default=600.0, metadata={"help": "seconds per request"})
    wait_for_server: float = field(default=120.0, metadata={
        "help": "seconds to wait for a server that stopped answering mid-stage (crashed or "
                "restarting) to come back before the stage fails; a server that never answered "
                "fails at once"})
    request_extra: dict = field(default_factory=dict, metadata={
        "help": "fields added to every request body, a server's own settings (e.g. "
                "repeat_penalty = 1.0 for llama-cpp-python's server, which defaults to 1.1)"})

    def check(self, where: str) -> None:
        if not self.url:
            raise ModelsFileError(f"{where}.url: required for backend 'openai'")
        check_local_url(self.url, self.allow_remote, f"{where}.url")
        for i, url in enumerate(self.more_urls):
            check_local_url(url, self.allow_remote, f"{where}.more_urls[{i}]")
        if self.max_in_flight < 1:
            raise ModelsFileError(f"{where}.max_in_flight: expected at least 1, got "
                                  f"{self.max_in_flight}")
        if self.wait_for_server < 0:
            raise ModelsFileError(f"{where}.wait_for_server: expected 0 (do not wait) or more "
                                  f"seconds, got {self.wait_for_server:g}")

    def identity(self) -> dict:
        # the weights are the server's: the name it serves them under stands for them
        return {"served": self.served_name or self.url, "extra": self.request_extra}


BACKEND = Kind("openai", Options, served=True,
               help="any OpenAI-compatible server on this machine (or, with allow_remote, your "
                    "own network): `localdistill serve`, `vllm serve`, llama.cpp's llama-server")


def check_local_url(url: str, allow_remote: bool, where: str) -> None:
    """A server URL must be loopback, unless the entry explicitly allows the local network."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ModelsFileError(f"{where}: expected http://HOST:PORT/v1, got {url!r}")
    host = parsed.hostname
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_loopback:
        return
    if not allow_remote:
        raise ModelsFileError(
            f"{where}: {host} is not this machine; localdistill talks only to "
            "loopback servers unless the entry sets allow_remote = true"
        )
    if address is not None and address.is_global:
        raise ModelsFileError(
            f"{where}: {host} is a public address; only servers on your own "
            "network are allowed, even with allow_remote"
        )


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class OpenAIBackend:
    def __init__(self, spec: ModelSpec, tries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 8.0, extra_body: dict | None = None,
                 say: Callable[[str], None] = _to_stderr) -> None:
        """`tries` and seconds of backoff, doubling up to `max_backoff`, for a failing server;
        `extra_body`: fields for every request, a server's own settings (llama-cpp-python's server
        penalises repeats unless sent {"repeat_penalty": 1.0}: llama.cpp and vLLM do not);
        `say`: where the lines about waiting for a server that went away go."""
        if not spec.options.url:
            raise BackendError(f"models.{spec.name}.url: required for backend 'openai'")
        check_local_url(spec.options.url, spec.options.allow_remote, f"{spec.source or 'models'}: "
                        f"models.{spec.name}.url")  # again: a spec need not come from parse_models
        self.spec, self.url = spec, spec.options.url.rstrip("/")
        self.tries, self.backoff, self.max_backoff = tries, backoff, max_backoff
        parsed = urlparse(self.url)
        self._host, self._port, self._path = parsed.hostname, parsed.port, parsed.path
        self._https = parsed.scheme == "https"
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._served_name = spec.options.served_name
        self._extra_body = dict(extra_body or {})
        self._closed = False
        self._say = say
        self._answered = False  # the server has answered: if it goes away now, wait for it
        self._outage = threading.Lock()
        self._down_since: float | None = None
        self._pool = ThreadPoolExecutor(spec.options.max_in_flight,
                                        thread_name_prefix="openai-http")

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        # One HTTP request per sample (not every server supports `n`), so a request with n = 8
        # still fills every slot; a request's result is yielded when its last sample is back.
        if self._closed:
            raise BackendError(f"the backend for {self.url} is closed: open the model again")
        model = self._model()
        calls = ((pending, i) for r in requests for pending in [_Pending(r)] for i in range(r.n))
        window = 2 * self.spec.options.max_in_flight  # keeps the pool busy while the caller works
        in_flight: dict[Future, tuple[_Pending, int]] = {}
        try:
            while True:
                for call in calls:
                    in_flight[self._pool.submit(self._sample, model, *call)] = call
                    if len(in_flight) >= window:
                        break
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    pending, i = in_flight.pop(future)
                    pending.samples[i], pending.prompt_tokens = future.result()
                    if all(s is not None for s in pending.samples):
                        yield Result(pending.request, tuple(pending.samples),
                                     pending.prompt_tokens, {"model": model, "url": self.url})
        finally:
            for future in in_flight:
                future.cancel()

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._drop_idle()

    def _model(self) -> str:
        with self._lock:
            if self._served_name is None:
                answer = self._call("GET", "/models")
                try:
                    self._served_name = str(answer["data"][0]["id"])
                except (KeyError, IndexError, TypeError):
                    raise BackendError(
                        f"the server at {self.url} lists no model (GET /models answered "
                        f"{clip(json.dumps(answer))}): set served_name in models.{self.spec.name}"
                    ) from None
            return self._served_name

    def _sample(self, model: str, pending: _Pending, i: int) -> tuple[Sample, int]:
        request = pending.request
        body: dict = {**self._extra_body, "model": model, "temperature": request.temperature,
                      "top_p": request.top_p, "max_tokens": request.max_tokens}
        if request.messages is not None:
            path, body["messages"] = "/chat/completions", list(request.messages)
        else:
            path, body["prompt"] = "/completions", request.prompt
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed + i
        try:
            answer = self._call("POST", path, body)
        except DidNotFit as e:  # one prompt too long must not stop the others
            return Sample("", CONTEXT, 0), e.prompt_tokens
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if "messages" in body else choice["text"]
            usage = answer.get("usage") or {}
            prompt_tokens, completion_tokens = (int(usage.get(k) or 0) for k in
                                                ("prompt_tokens", "completion_tokens"))
            reason = "length" if choice.get("finish_reason") == "length" else "stop"
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            what = f"no text in choices[0]: {clip(json.dumps(answer))}"
            raise self._garbage(path, what) from None
        if not isinstance(text, str | None):
            raise self._garbage(path, f"choices[0] text is {type(text).__name__}, not a string")
        return Sample(text or "", reason, completion_tokens), prompt_tokens

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call, retried on refused/reset connections, HTTP 429 and 5xx."""
        failures, delay = 0, self.backoff
        while True:
            conn, reused = self._connection()
            sent = time.monotonic()
            try:
                conn.request(method, self._path + path,
                             json.dumps(body) if body is not None else None, HEADERS)
                response = conn.getresponse()
                status, data = response.status, response.read(MAX_RESPONSE + 1)
                if len(data) > MAX_RESPONSE:  # a server gone wrong must not fill our memory
                    conn.close()
                    raise self._garbage(path, f"more than {MAX_RESPONSE >> 20} MiB (cut off)")
            except TimeoutError:
                conn.close()
                raise BackendError(
                    f"the server at {self.url} did not answer {path} within "
                    f"{self.spec.options.timeout:g} s: raise models.{self.spec.name}.timeout or "
                    "lower max_in_flight"
                ) from None
            except (ConnectionError, http.client.HTTPException) as e:
                conn.close()
                if reused:  # a keep-alive connection the server had closed: not a failure
                    self._drop_idle()
                    continue
                why: object = e
                status = 0
            except OSError as e:  # not a server's answer: an address this machine cannot use
                conn.close()
                raise BackendError(f"cannot reach the server at {self.url} ({e}): check "
                                   f"models.{self.spec.name}.url") from None
            else:
                self._release(conn, response.will_close)
                if status < 400:
                    self._answered = True
                    self._back(sent)
                    return self._json(path, data)
                if status != 429 and status < 500:
                    raise self._rejected(path, status, data)
                why = error_message(data)
            if status in (0, 503) and self._answered and self.spec.options.wait_for_server > 0 \
                    and not self._closed:
                self._wait(status, why)  # it was answering: a crash or a restart, not a bad url
                continue
            failures += 1
            never_there = isinstance(why, ConnectionRefusedError) and not self._answered
            if failures >= (REFUSED_TRIES if never_there else self.tries) or self._closed:
                raise self._gave_up(status, why, failures)
            time.sleep(delay)
            delay = min(2 * delay, self.max_backoff)

    def _wait(self, status: int, why: object) -> None:
        """Sleep a little while the server is away; BackendError once it has been away for
        `wait_for_server` seconds. Every thread in flight comes here: one line says it all."""
        now, limit = time.monotonic(), self.spec.options.wait_for_server
        reason = f"HTTP 503: {why}" if status else clip(str(why) or type(why).__name__)
        with self._outage:
            if self._down_since is None:
                self._down_since = now
                self._say(f"the server at {self.url} stopped answering ({reason}); waiting up "
                          f"to {limit:g} s for it to come back (models.{self.spec.name}."
                          "wait_for_server)")
            away = now - self._down_since
        if away >= limit:
            raise BackendError(
                f"the server at {self.url} stopped answering and was not back within {limit:g} s "
                f"({reason}): restart it and run the same command again (the answers it gave "
                f"are kept), or raise models.{self.spec.name}.wait_for_server")
        time.sleep(min(WAIT_POLL, limit - away))

    def _back(self, sent: float) -> None:
        """The server answered a request `sent` at that time: if it was sent after the server went
        away, it is back (an answer already on its way when the server died says nothing)."""
        if self._down_since is None or sent < self._down_since:
            return
        with self._outage:
            if self._down_since is not None and sent >= self._down_since:
                away, self._down_since = time.monotonic() - self._down_since, None
                self._say(f"the server at {self.url} is back after {away:.0f} s; going on")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            return kind(self._host, self._port, timeout=self.spec.options.timeout), False

    def _release(self, conn: http.client.HTTPConnection, will_close: bool) -> None:
        if will_close or self._closed:
            conn.close()
        else:
            self._idle.put(conn)

    def _drop_idle(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _json(self, path: str, data: bytes) -> dict:
        try:
            answer = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            what = f"not JSON: {clip(data.decode('utf-8', 'replace'))}"
            raise self._garbage(path, what) from None
        if not isinstance(answer, dict):
            raise self._garbage(path, f"a JSON {type(answer).__name__}, not an object")
        return answer

    def _garbage(self, path: str, what: str) -> BackendError:
        return BackendError(f"the server at {self.url} answered {path} with {what}: is it an "
                            "OpenAI-compatible server (a url ending in /v1)?")

    def _rejected(self, path: str, status: int, data: bytes) -> BackendError:
        text = data.decode("utf-8", "replace")
        if status == 400 and OVER_CONTEXT.search(text):
            return DidNotFit(f"the server at {self.url}: {error_message(data)}",
                             prompt_length(text))
        hint = "the prompt may be longer than the server's context, or a setting invalid"
        if status == 404:
            hint = "check that the url ends in /v1 and served_name is a model the server has"
        return BackendError(f"the server at {self.url} rejected {path} (HTTP {status}: "
                            f"{error_message(data)}): {hint}")

    def _gave_up(self, status: int, what: object, tries: int) -> BackendError:
        name, times = self.spec.name, f"after {tries} tries"
        if isinstance(what, ConnectionRefusedError):
            return BackendError(f"cannot reach the server at {self.url} (connection refused "
                                f"{times}): is it running? start it with 'localdistill serve "
                                f"MODEL' or fix models.{name}.url")
        if isinstance(what, BaseException):
            return BackendError(f"the server at {self.url} dropped the connection {times} "
                                f"({clip(str(what) or type(what).__name__)}): see its log; it "
                                "may have crashed or run out of memory")
        if status == 429:
            return BackendError(f"the server at {self.url} is overloaded (HTTP 429 {times}): "
                                f"lower models.{name}.max_in_flight")
        return BackendError(f"the server at {self.url} failed (HTTP {status} {times}: {what}): "
                            "see the server log")


class _Pending:
    """A request whose samples are still coming back."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.samples: list[Sample | None] = [None] * request.n
        self.prompt_tokens = 0


def load(spec: ModelSpec) -> OpenAIBackend | SpreadBackend:
    if not spec.options.more_urls:
        return OpenAIBackend(spec, extra_body=spec.options.request_extra)
    # Several servers: one that goes away hands its work to the others at once, not after
    # waiting for it.
    return SpreadBackend([OpenAIBackend(spec.with_keys(url=url, more_urls=(), wait_for_server=0.0),
                                        extra_body=spec.options.request_extra)
                          for url in (spec.options.url, *spec.options.more_urls)])
