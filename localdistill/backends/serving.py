"""Serving a model (`localdistill serve`): start the right local server for it, on loopback,
and keep it up.

Each backend that can be served says how, in its own module (`serve(spec, port, parallel)`): GGUF
models get llama.cpp's own server (backends/llamacpp.py, from the `xllamacpp` wheel), vLLM models
`vllm serve` (backends/vllm.py). Either way the server speaks the OpenAI API, so the `openai`
backend (and any other client) can use it. What is here is common to all: the port, waiting
until the server answers, and stopping it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from localdistill.backends.base import BackendError
from localdistill.backends.registry import modules
from localdistill.models import ModelSpec

HOST = "127.0.0.1"  # never anything else: see docs on allow_remote for serving a network


@dataclass
class RunningServer:
    url: str  # base URL of the OpenAI API, ending in /v1
    stop: Callable[[], None]
    kind: str  # "llama.cpp" | "vllm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(spec: ModelSpec, port: int | None = None, parallel: int = 4,
                 timeout: float = 600.0) -> RunningServer:
    """Start a server for `spec` on 127.0.0.1 and return once it answers."""
    port = port or free_port()
    servable = [name for name, module in modules().items() if hasattr(module, "serve")]
    if spec.backend not in servable:
        raise BackendError(f"models.{spec.name}: nothing to serve for backend {spec.backend!r} "
                           f"(backends localdistill can serve: {', '.join(servable)})")
    server = modules()[spec.backend].serve(spec, port, parallel)
    try:
        wait_until_healthy(server.url, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_healthy(url: str, timeout: float) -> None:
    """Poll GET {url}/models until the server lists a model."""
    parsed = urlparse(url)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
            conn.request("GET", f"{parsed.path.rstrip('/')}/models")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200 and json.loads(body).get("data"):
                return
            last = f"HTTP {response.status}"
        except (OSError, ValueError) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.25)
    raise BackendError(f"the server at {url} did not become healthy within {timeout:g} s "
                       f"({last})")


STOP_GRACE = 20.0  # seconds a server gets to stop before the process ends without it


def serve_forever(server: RunningServer, echo: Callable[[str], None] = print) -> None:
    """Block until Ctrl-C (or SIGTERM), then stop the server; a server that does not stop within
    STOP_GRACE seconds (llama.cpp's has been seen to hang in its destructor now and then) is left
    to the operating system: the process ends anyway and frees everything it held."""
    import signal
    import threading

    # Ctrl-C stops it even when started from a script that ignores SIGINT (as a non-interactive
    # shell does for `cmd &`): Python keeps an inherited "ignore" unless told otherwise.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping the server")
    finally:
        stopper = threading.Thread(target=server.stop, daemon=True, name="stop-server")
        stopper.start()
        stopper.join(STOP_GRACE)
        if stopper.is_alive():
            echo(f"the server did not stop within {STOP_GRACE:g} s; ending the process")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    sys.stdout.flush()
