"""The openai backend against real servers on loopback: llama-cpp-python's OpenAI server with the
tiny model, and small http.server servers that misbehave on purpose (down, garbage, HTTP 500...)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localdistill.backends import get_model, open_backend, parse_models
from localdistill.backends.base import CONTEXT, BackendError, Request, Result, Sample
from localdistill.backends.openai_http import OpenAIBackend
from localdistill.backends.serving import free_port
from localdistill.models import ModelsFileError, ModelSpec
from localdistill.models.demo import tiny_model_path

CHAT = ({"role": "user", "content": "Write a Python function that reverses a string."},)
CODE = "def fibonacci(n):\n"


def openai_spec(url: str, **keys) -> ModelSpec:
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    toml = f'[models.served]\nbackend = "openai"\nurl = "{url}"\n{lines}'
    return parse_models(toml, "test.toml")["served"]


def only(backend, request: Request) -> Result:
    try:
        (result,) = backend.generate([request])
    finally:
        backend.close()
    return result


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    """`python -m llama_cpp.server` with the tiny model on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "stderr.txt"  # a file: a full pipe would block it
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 60
        while not _lists_models(port):
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: "
                            f"{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer GET /v1/models within 60 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _lists_models(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        response = conn.getresponse()
        ok = response.status == 200 and bool(json.loads(response.read()).get("data"))
        conn.close()
        return ok
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def in_process_greedy() -> Iterator[Callable[[Request], Result]]:
    # One thread, like the server: llama.cpp with a thread per core slows down many times over
    # when another process holds a core (its threads wait on each other), and the tests share one.
    backend = open_backend(replace(get_model("tiny"), threads=1))
    yield lambda request: next(iter(backend.generate([request])))
    backend.close()


@pytest.mark.parametrize("what", [{"messages": CHAT}, {"prompt": CODE}], ids=["chat", "prompt"])
def test_chat_and_raw_prompts_generate_text_with_token_counts(server_url, what):
    result = only(open_backend(openai_spec(server_url)), Request(**what, max_tokens=24, key="k"))
    (sample,) = result.samples
    assert sample.text.strip() and result.request.key == "k"
    assert result.prompt_tokens > 0 and 0 < sample.completion_tokens <= 24
    assert result.metadata["model"]  # no served_name: the first model the server lists


def test_a_prompt_over_the_servers_context_comes_back_empty_and_the_others_answered(server_url):
    """The real server (n_ctx 1024) refuses a longer prompt with HTTP 400; that used to stop the
    stage. Now the request comes back empty with finish_reason "context"; the others go on."""
    backend = open_backend(openai_spec(server_url))
    try:
        got = {r.request.key: r for r in backend.generate([
            Request(prompt=CODE * 400, max_tokens=8, key="long"),
            Request(messages=CHAT, max_tokens=8, key="short")])}
    finally:
        backend.close()
    assert got["long"].samples == (Sample("", CONTEXT, 0),)
    assert got["short"].samples[0].text.strip()


@pytest.mark.parametrize("status, body, prompt_tokens", [
    (400, {"object": "error", "type": "BadRequestError", "code": 400, "message": (  # vLLM
        "This model's maximum context length is 2048 tokens. However, you requested 3732 "
        "tokens (3727 in the messages, 5 in the completion). Please reduce the length.")}, 3727),
    (400, {"error": {"code": 400, "type": "exceed_context_size_error",  # llama.cpp's server
                     "message": "the request exceeds the available context size, try increasing "
                                "it", "n_prompt_tokens": 3727, "n_ctx": 2048}}, 3727),
    (400, {"error": {"message": "prompt is too long", "code": "context_length_exceeded"}}, 0),
])
def test_servers_words_for_a_prompt_over_the_context_are_understood(status, body, prompt_tokens):
    with fake_server(lambda path, _: (status, json.dumps(body).encode())) as (url, seen):
        backend = OpenAIBackend(openai_spec(url, served_name="m"), backoff=0.01)
        result = only(backend, Request(prompt="x" * 100))
    assert result.samples == (Sample("", CONTEXT, 0),) and result.prompt_tokens == prompt_tokens
    assert len(seen) == 1  # not retried: it would be refused again


def test_another_400_still_stops_with_the_servers_message():
    body = json.dumps({"error": {"message": "temperature must be non-negative"}}).encode()
    with fake_server(lambda path, _: (400, body)) as (url, _):
        assert "(HTTP 400: temperature must be non-negative)" in fails(url)


def test_n_2_gives_two_samples(server_url):
    request = Request(prompt=CODE, n=2, temperature=0.8, seed=7, max_tokens=16)
    result = only(open_backend(openai_spec(server_url)), request)
    assert len(result.samples) == 2 and all(s.text for s in result.samples)


def test_max_tokens_reached_is_finish_reason_length(server_url):
    result = only(open_backend(openai_spec(server_url)), Request(prompt=CODE, max_tokens=5))
    assert result.samples[0].finish_reason == "length"
    assert 0 < result.samples[0].completion_tokens <= 5


@pytest.mark.parametrize("what", [{"messages": CHAT}, {"prompt": CODE}], ids=["chat", "prompt"])
def test_greedy_through_the_server_equals_greedy_in_process(server_url, in_process_greedy, what):
    request = Request(**what, max_tokens=32)
    expected = in_process_greedy(request)
    # llama-cpp-python's server (unlike llama.cpp's llama-server and vLLM) penalises repeats by
    # default (repeat_penalty 1.1); in process there is none, so the server must be told.
    neutral = {"repeat_penalty": 1.0}
    served = only(OpenAIBackend(openai_spec(server_url), extra_body=neutral), request)
    assert served.texts == expected.texts
    assert served.samples == expected.samples and served.prompt_tokens == expected.prompt_tokens


def test_the_server_default_repeat_penalty_changes_greedy_output(server_url, in_process_greedy):
    request = Request(prompt=CODE, max_tokens=32)
    served = only(OpenAIBackend(openai_spec(server_url)), request)
    assert served.texts != in_process_greedy(request).texts  # why extra_body exists


def test_many_requests_in_flight_each_come_back_with_their_request(server_url):
    sent = {f"r{i}": Request(prompt=f"# {i} squared is", max_tokens=4, key=f"r{i}")
            for i in range(8)}
    backend = open_backend(openai_spec(server_url, max_in_flight=4))
    try:
        results = list(backend.generate(sent.values()))
    finally:
        backend.close()
    assert sorted(r.request.key for r in results) == sorted(sent)
    assert all(r.request is sent[r.request.key] and r.samples[0].text for r in results)


# --- servers that misbehave: real HTTP on loopback, no mocks -------------------------------------

@contextmanager
def fake_server(respond: Callable[[str, dict | None], tuple[int, bytes]], hang_up: bool = False):
    """A loopback HTTP server answering every request with respond(path, body) -> (status, data);
    yields its /v1 URL and the list of (path, body) it received. `hang_up`: close each connection
    after answering, without saying so (as a server does when a keep-alive connection idles out)."""
    seen: list[tuple[str, dict | None]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def do_GET(self) -> None:
            self._answer(None)

        def do_POST(self) -> None:
            self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def _answer(self, body: dict | None) -> None:
            seen.append((self.path, body))
            status, data = respond(self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass
            self.close_connection = hang_up

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def completion(text: str = "ok", reason: str = "stop") -> bytes:
    return json.dumps({"choices": [{"text": text, "finish_reason": reason}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()


def fails(url: str, tries: int = 3, **keys) -> str:
    backend = OpenAIBackend(openai_spec(url, served_name="m", **keys), tries=tries, backoff=0.01)
    with pytest.raises(BackendError) as error:
        only(backend, Request(prompt="x"))
    message = str(error.value)
    assert "\n" not in message and url in message, message
    return message


def test_server_down_fails_fast_in_one_line_that_says_how_to_fix_it():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    backend = OpenAIBackend(openai_spec(url))  # no served_name: asks /models first
    with pytest.raises(BackendError) as error:
        only(backend, Request(prompt="x"))
    # Refused before it ever answered: one more try after the first backoff (0.5 s), not the
    # five tries with doubling waits an overloaded server gets (7.5 s).
    assert time.monotonic() - started < 2
    assert str(error.value) == (
        f"cannot reach the server at {url} (connection refused after 2 tries): is it running? "
        "start it with 'localdistill serve MODEL' or fix models.served.url")


def test_a_server_answering_garbage_is_named_with_what_was_wrong():
    with fake_server(lambda path, body: (200, b"<html>hello</html>")) as (url, seen):
        assert "answered /completions with not JSON: <html>hello</html>" in fails(url)
    assert len(seen) == 1  # garbage is not retried
    with fake_server(lambda path, body: (200, b'{"id": "x"}')) as (url, _):
        assert "with no text in choices[0]" in fails(url)


def test_http_500_is_retried_then_reported_with_the_server_message():
    error = json.dumps({"error": {"message": "CUDA out of memory"}}).encode()
    with fake_server(lambda path, body: (500, error)) as (url, seen):
        message = fails(url, tries=3)
    assert len(seen) == 3
    assert "failed (HTTP 500 after 3 tries: CUDA out of memory): see the server log" in message


def test_4xx_is_not_retried_and_429_is():
    with fake_server(lambda path, body: (404, b'{"detail": "Not Found"}')) as (url, seen):
        assert "(HTTP 404: Not Found): check that the url ends in /v1" in fails(url)
    assert len(seen) == 1
    answers = iter([(429, b"{}"), (503, b"loading"), (200, completion("fine"))])
    with fake_server(lambda path, body: next(answers)) as (url, seen):
        backend = OpenAIBackend(openai_spec(url, served_name="m"), backoff=0.01)
        assert only(backend, Request(prompt="x")).texts == ["fine"]
    assert len(seen) == 3


def test_a_server_that_hangs_up_on_every_request_is_reported_as_dropping_connections():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at the end of the test
                return
            accepted.append(conn.recv(65536))
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        message = fails(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", tries=3)
    finally:
        listener.close()
    assert "dropped the connection after 3 tries" in message and len(accepted) == 3


def test_a_keep_alive_connection_the_server_closed_is_not_a_failed_try():
    with fake_server(lambda path, body: (200, completion()), hang_up=True) as (url, seen):
        backend = OpenAIBackend(openai_spec(url, served_name="m", max_in_flight=1), tries=1)
        try:
            for _ in range(3):  # each call after the first finds a dead pooled connection
                assert [r.texts for r in backend.generate([Request(prompt="x")])] == [["ok"]]
        finally:
            backend.close()
    assert len(seen) == 3


def test_a_slow_server_times_out_with_the_setting_to_change():
    def slow(path, body):
        time.sleep(1)
        return 200, completion()

    with fake_server(slow) as (url, _):
        assert "did not answer /completions within 0.2 s: raise models.served.timeout" in fails(
            url, timeout=0.2)


def test_bodies_carry_the_request_and_each_sample_its_own_seed():
    def respond(path, body):
        if path == "/v1/models":
            return 200, b'{"data": [{"id": "first"}, {"id": "second"}]}'
        return 200, completion(reason="length")

    with fake_server(respond) as (url, seen):
        request = Request(prompt="p", n=3, seed=10, temperature=0.5, top_p=0.9, max_tokens=7,
                          stop=("\n",))
        result = only(open_backend(openai_spec(url)), request)
    assert [s.finish_reason for s in result.samples] == ["length"] * 3
    posts = sorted((b for p, b in seen if b is not None), key=lambda b: b["seed"])
    assert [p for p, _ in seen].count("/v1/models") == 1
    assert posts == [{"model": "first", "prompt": "p", "temperature": 0.5, "top_p": 0.9,
                      "max_tokens": 7, "stop": ["\n"], "seed": s} for s in (10, 11, 12)]


def test_proxy_settings_never_apply_to_the_server(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a proxy that would refuse everything
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with fake_server(lambda path, body: (200, completion("direct"))) as (url, _):
        backend = OpenAIBackend(openai_spec(url, served_name="m"), tries=1)
        assert only(backend, Request(prompt="x")).texts == ["direct"]


def test_max_in_flight_bounds_concurrency_and_a_long_stream_is_read_lazily():
    lock, now, most = threading.Lock(), [0], [0]

    def respond(path, body):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return 200, completion()

    pulled = [0]

    def endless() -> Iterator[Request]:
        for i in range(10_000):
            pulled[0] += 1
            yield Request(prompt=str(i), key=str(i))

    with fake_server(respond) as (url, _):
        backend = OpenAIBackend(openai_spec(url, served_name="m", max_in_flight=4))
        results = backend.generate(endless())
        first = [next(results) for _ in range(12)]
        results.close()
        backend.close()
    assert most[0] == 4
    assert len({r.request.key for r in first}) == 12
    assert pulled[0] <= 12 + 2 * 4  # a window of 8 in flight, not the whole stream


def test_a_url_off_this_machine_is_refused_at_parse_time_and_at_load():
    with pytest.raises(ModelsFileError, match="192.168.1.10 is not this machine"):
        openai_spec("http://192.168.1.10:8000/v1")
    spec = openai_spec("http://127.0.0.1:8000/v1").with_keys(url="http://192.168.1.10:8000/v1")
    with pytest.raises(ModelsFileError, match="not this machine"):
        open_backend(spec)


# --- one model on several servers (more_urls) ----------------------------------------------------

def _numbered(path, body):
    if path.endswith("/models"):
        return 200, json.dumps({"data": [{"id": "m"}]}).encode()
    time.sleep(0.01)
    return 200, completion(body["prompt"].upper())


def test_requests_are_spread_over_every_server_and_each_comes_back_once():
    with fake_server(_numbered) as (first, seen_first), \
            fake_server(_numbered) as (second, seen_second):
        backend = open_backend(openai_spec(first, more_urls=[second], served_name="m",
                                           max_in_flight=2))
        try:
            results = list(backend.generate(Request(prompt=f"p{i}") for i in range(40)))
        finally:
            backend.close()
    assert sorted(r.request.prompt for r in results) == sorted(f"p{i}" for i in range(40))
    assert all(r.samples[0].text == r.request.prompt.upper() for r in results)
    assert len(seen_first) >= 5 and len(seen_second) >= 5  # both worked
    assert len(seen_first) + len(seen_second) == 40  # and nothing was asked twice


def test_a_server_that_is_down_leaves_its_work_to_the_others():
    from localdistill.backends.openai_http import SpreadBackend

    down = f"http://127.0.0.1:{free_port()}/v1"
    with fake_server(_numbered) as (up, seen):
        backend = SpreadBackend([
            OpenAIBackend(openai_spec(url, served_name="m", max_in_flight=2), tries=2,
                          backoff=0.01) for url in (down, up)])
        try:
            results = list(backend.generate(Request(prompt=f"p{i}") for i in range(12)))
        finally:
            backend.close()
    assert sorted(r.request.prompt for r in results) == sorted(f"p{i}" for i in range(12))
    assert len(seen) == 12


def test_every_server_down_is_one_error():
    from localdistill.backends.openai_http import SpreadBackend

    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    backend = SpreadBackend([OpenAIBackend(openai_spec(url, served_name="m"), tries=2,
                                           backoff=0.01) for url in urls])
    with pytest.raises(BackendError, match="connection refused"):
        list(backend.generate(Request(prompt=f"p{i}") for i in range(3)))
    backend.close()


def test_more_urls_are_checked_like_url():
    with pytest.raises(ModelsFileError, match=r"more_urls\[0\]"):
        openai_spec("http://127.0.0.1:8000/v1", more_urls=["http://10.1.2.3:8000/v1"])


def test_an_endless_answer_is_cut_off_not_held_in_memory():
    from localdistill.backends import openai_http

    huge = b'{"choices": [{"text": "' + b"x" * (openai_http.MAX_RESPONSE + 10) + b'"}]}'
    with fake_server(lambda path, body: (200, huge)) as (url, seen):
        assert f"with more than {openai_http.MAX_RESPONSE >> 20} MiB (cut off)" in fails(url)
    assert len(seen) == 1
