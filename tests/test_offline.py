"""Offline for real: generation opens no connection beyond this machine, and nothing is downloaded.

Each check runs in a subprocess whose sockets are guarded before localdistill is imported: a
connection (or a name lookup) for anything but loopback raises and is recorded, so an attempt
shows up even where a library would swallow the error and carry on. The guard dies with the
subprocess and cannot leak into other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

GUARD = '''
import ipaddress, json, socket

attempts = []


def _loopback(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(what, original, where):
    def guarded(*args, **kwargs):
        address = where(args)
        host = address[0] if isinstance(address, tuple) else None  # a str is a Unix socket
        if not _loopback(host):
            attempts.append(f"{what}({address!r})")
            raise OSError(f"network blocked by the test: {what}({address!r})")
        return original(*args, **kwargs)
    return guarded


socket.socket.connect = _guarded("connect", socket.socket.connect, lambda a: a[1])
socket.socket.connect_ex = _guarded("connect_ex", socket.socket.connect_ex, lambda a: a[1])
socket.create_connection = _guarded("create_connection", socket.create_connection,
                                    lambda a: a[0])
socket.getaddrinfo = _guarded("getaddrinfo", socket.getaddrinfo, lambda a: (a[0],))
'''


def run_guarded(body: str, tmp_path, **env: str) -> dict:
    """Run `body` (which sets `result`) under the guard; return {"result", "attempts"}."""
    script = GUARD + textwrap.dedent(body) + (
        '\nprint("RESULT " + json.dumps({"result": result, "attempts": attempts}))\n'
    )
    environment = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),  # an empty cache: nothing there to find
        "HF_HUB_OFFLINE": "0",  # the caller says online: localdistill must not listen
        "TRANSFORMERS_OFFLINE": "0",
        **env,
    }
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=environment, timeout=240)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.slow
def test_generation_with_llama_cpp_and_transformers_attempts_no_connection(tmp_path):
    out = run_guarded('''
        import localdistill
        from localdistill.backends import Request, get_model, open_backend, parse_models

        request = Request(messages=({"role": "user", "content": "Say hi."},), max_tokens=4)
        result = {}
        tiny_hf = parse_models('[models.tiny-hf]\\nbackend = "transformers"\\n'
                               'path = "demo:tiny"\\n', "test.toml")["tiny-hf"]
        for name, spec in [("llama.cpp", get_model("tiny")), ("transformers", tiny_hf)]:
            backend = open_backend(spec)
            (answer,) = backend.generate([request])
            backend.close()
            result[name] = [answer.texts[0], answer.samples[0].completion_tokens]
    ''', tmp_path)
    assert out["attempts"] == []
    for name in ("llama.cpp", "transformers"):
        text, tokens = out["result"][name]
        assert text.strip() and 1 <= tokens <= 4, (name, text, tokens)


def test_a_hub_id_not_in_the_cache_fails_in_one_line_without_a_download(tmp_path):
    out = run_guarded('''
        import localdistill
        from localdistill.backends import open_backend, parse_models
        from localdistill.models import ModelsFileError

        spec = parse_models('[models.remote]\\nbackend = "transformers"\\n'
                            'hub_id = "someorg/not-cached"\\n', "test.toml")["remote"]
        try:
            open_backend(spec)
            result = "opened"
        except ModelsFileError as e:
            result = str(e)
    ''', tmp_path)
    assert out["attempts"] == []
    message = out["result"]
    assert "\n" not in message
    assert message.startswith("test.toml: models.remote.hub_id: someorg/not-cached")
    assert "not in the local Hugging Face cache" in message and "never downloads" in message
    assert not list((tmp_path / "hf-home").rglob("*not-cached*"))


def test_importing_localdistill_forces_offline_mode_over_the_callers_setting(tmp_path):
    out = run_guarded('''
        import os
        import localdistill
        import huggingface_hub.constants

        result = {
            "env": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")},
            "hub": huggingface_hub.constants.HF_HUB_OFFLINE,
        }
    ''', tmp_path, HF_HUB_DISABLE_TELEMETRY="0")
    assert out["result"] == {"env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                             "hub": True}
    assert out["attempts"] == []


def test_the_guard_itself_blocks_and_records(tmp_path):
    """Without this, a broken guard would make the tests above pass vacuously."""
    out = run_guarded('''
        import socket

        result = []
        for host in ("192.0.2.1", "127.0.0.1"):  # TEST-NET-1 (never routed), loopback
            s = socket.socket()
            s.settimeout(0.2)
            try:
                s.connect((host, 9))
            except OSError as e:
                result.append(str(e).split(":")[0])
            finally:
                s.close()
    ''', tmp_path)
    assert out["attempts"] == ["connect(('192.0.2.1', 9))"]
    assert out["result"][0] == "network blocked by the test"
    assert out["result"][1] != "network blocked by the test"  # loopback was allowed through
