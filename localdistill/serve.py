"""`localdistill serve`: start the right local server for a model, on loopback, and keep it up.

GGUF models get llama.cpp's own server (from the `xllamacpp` wheel): parallel slots and continuous
batching, unlike llama-cpp-python's server, which answers one request at a time. vLLM models get
`vllm serve`. Either way the server speaks the OpenAI API, so the `openai` backend (and any other
client) can use it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from localdistill.backends.base import BackendError
from localdistill.models import ModelSpec, adapter_path, weights_path

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
    if spec.backend == "llama.cpp":
        server = _start_llamacpp(spec, port, parallel)
    elif spec.backend == "vllm":
        server = _start_vllm(spec, port, parallel)
    else:
        raise BackendError(f"models.{spec.name}: nothing to serve for backend {spec.backend!r} "
                           "(serve GGUF models with llama.cpp, or Hugging Face models with vLLM)")
    try:
        wait_until_healthy(server.url, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _start_llamacpp(spec: ModelSpec, port: int, parallel: int) -> RunningServer:
    try:
        import xllamacpp
    except ImportError:
        raise BackendError("llama.cpp's server is not installed: pip install xllamacpp "
                           "(part of 'localdistill[cpu]')") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(weights_path(spec))
    params.n_parallel = parallel
    params.n_ctx = spec.context_length * parallel  # every slot gets its model's full context
    params.port = port
    params.hostnames = [HOST]
    params.verbosity = 0  # llama.cpp's per-request timing lines would drown the user's terminal
    params.offline = True
    params.n_gpu_layers = spec.gpu_layers
    if spec.gpu_layers == 0:
        # Flash attention (xllamacpp's default) changes the arithmetic: with it off, greedy
        # answers match llama-cpp-python's in process, and on a CPU it gains nothing.
        params.flash_attn_type = 0
    params.cpuparams.n_threads = spec.threads or os.cpu_count() or 1
    params.cpuparams_batch.n_threads = spec.threads or os.cpu_count() or 1
    if spec.chat_template:
        params.chat_template = spec.chat_template
    adapter = adapter_path(spec)
    if adapter is not None:
        lora = xllamacpp.CommonAdapterLoraInfo()
        lora.path = str(adapter)
        lora.scale = 1.0
        params.lora_adapters = [lora]
    holder = [xllamacpp.Server(params)]

    def stop() -> None:
        holder.clear()  # the server's destructor stops its loop and frees the model

    return RunningServer(f"http://{HOST}:{port}/v1", stop, "llama.cpp")


def vllm_command(spec: ModelSpec, port: int, parallel: int) -> list[str]:
    """The `vllm serve` command line for a model of models.toml."""
    command = [shutil.which("vllm") or "vllm", "serve", str(weights_path(spec)),
               "--host", HOST, "--port", str(port),
               "--tensor-parallel-size", str(spec.tensor_parallel_size),
               "--max-model-len", str(spec.context_length),
               "--gpu-memory-utilization", str(spec.gpu_memory_utilization),
               "--served-model-name", spec.served_name or spec.name,
               "--disable-log-requests"]
    if spec.quantisation:
        command += ["--quantization", spec.quantisation.lower()]
    adapter = adapter_path(spec)
    if adapter is not None:
        command += ["--enable-lora", "--lora-modules", f"{spec.name}-adapter={adapter}"]
    if spec.chat_template:
        command += ["--chat-template", spec.chat_template]
    return command


def _start_vllm(spec: ModelSpec, port: int, parallel: int) -> RunningServer:
    if shutil.which("vllm") is None:
        raise BackendError("vLLM is not installed here (it needs a CUDA GPU: pip install "
                           "'localdistill[gpu]'); serve GGUF models with backend 'llama.cpp'")
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(vllm_command(spec, port, parallel), env=env, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return RunningServer(f"http://{HOST}:{port}/v1", stop, "vllm")


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
