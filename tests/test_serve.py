"""`localdistill serve`: a real llama.cpp server (xllamacpp) on loopback, stopped by Ctrl-C."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localdistill.backends import parse_models
from localdistill.backends.base import BackendError
from localdistill.backends.serving import free_port, start_server
from localdistill.backends.vllm import vllm_command

SCRIPT = Path(sys.executable).parent / "localdistill"


def _chat(port: int, content: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8,
            "temperature": 0}
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def _listening_addresses(port: int) -> list[str]:
    """The local addresses in /proc/net/tcp that listen on `port` (hex, as the kernel writes)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    listening = [row[1] for row in rows if row[3] == "0A"]  # state 0A: LISTEN
    return [addr for addr in listening if int(addr.split(":")[1], 16) == port]


def test_serve_listens_on_loopback_answers_and_stops_on_ctrl_c():
    # The server runs in its own process, as users run it: llama.cpp's server has been seen to hang
    # in its destructor now and then, which `serve` survives (it ends the process after a grace
    # period) but a test that stopped it inside pytest's process could not.
    port = free_port()
    proc = subprocess.Popen([str(SCRIPT), "serve", "tiny", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving tiny (llama.cpp, 4 parallel) at "
                                f"http://127.0.0.1:{port}/v1"), first + proc.stderr.read()
        assert _listening_addresses(port) == ["0100007F:" + f"{port:04X}"]  # 127.0.0.1 only
        answer = _chat(port, "Say hi.")
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] <= 8
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping the server" in out
    with pytest.raises(OSError):  # nothing listens any more
        _chat(port, "still there?")


def test_vllm_command_line(tmp_path):
    weights = tmp_path / "Qwen-AWQ"
    weights.mkdir()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    spec = parse_models(f'[models.t]\nbackend = "vllm"\npath = "{weights}"\nquantisation = "AWQ"\n'
                        f'tensor_parallel_size = 2\nadapter = "{adapter}"\n', "t.toml")["t"]
    command = vllm_command(spec, 8000, 4)
    assert command[1:3] == ["serve", str(weights)]
    joined = " ".join(command)
    for part in ("--host 127.0.0.1", "--port 8000", "--tensor-parallel-size 2",
                 "--quantization awq", f"--enable-lora --lora-modules t-adapter={adapter}"):
        assert part in joined


def test_models_without_a_server_kind_are_refused():
    spec = parse_models('[models.t]\nbackend = "openai"\nurl = "http://127.0.0.1:1/v1"\n',
                        "t.toml")["t"]
    with pytest.raises(BackendError, match="nothing to serve"):
        start_server(spec)
