"""The run's cache keys: what determines an answer changes its key, nothing else does."""

from __future__ import annotations

import dataclasses
import os

from localdistill.answers import model_identity, request_hash
from localdistill.backends import Request, get_model, parse_models
from localdistill.hashing import file_digest
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, program_for
from localdistill.tasks.record import Task
from localdistill.verdicts import EXECUTIONS, judge

MESSAGES = ({"role": "user", "content": "def f():"},)


def test_a_models_identity_is_its_weights_adapter_and_template_not_its_name(tmp_path):
    tiny = get_model("tiny")
    base = model_identity(tiny)
    assert len(base["weights"]) == 64  # the GGUF file's sha256
    assert model_identity(dataclasses.replace(tiny, name="renamed", threads=1)) == base
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"lora one")
    with_adapter = model_identity(dataclasses.replace(tiny, adapter=str(adapter)))
    assert with_adapter != base
    adapter.write_bytes(b"lora two")  # retrained: another adapter, other answers
    assert model_identity(dataclasses.replace(tiny, adapter=str(adapter))) != with_adapter
    assert model_identity(dataclasses.replace(tiny, chat_template="{{ x }}")) != base
    # batched decoding may round otherwise: its answers are kept apart from one-at-a-time ones
    assert model_identity(tiny.with_keys(parallel=4)) != base


def test_a_served_models_identity_is_what_the_server_serves():
    served = parse_models('[models.s]\nbackend = "openai"\nurl = "http://127.0.0.1:8000/v1"\n'
                          'served_name = "coder"\n', "t.toml")["s"]
    moved = served.with_keys(url="http://127.0.0.1:9000/v1")
    assert model_identity(served) == model_identity(moved)  # a new port is the same model
    assert model_identity(served) != model_identity(
        served.with_keys(request_extra={"repeat_penalty": 1.0}))


def test_every_setting_that_changes_an_answer_changes_its_key():
    identity = {"weights": "x"}
    base = Request(messages=MESSAGES, max_tokens=64, seed=0, key="a")
    key = request_hash(identity, base)
    assert request_hash(identity, dataclasses.replace(base, key="other")) == key
    for change in ({"seed": 1}, {"temperature": 0.5}, {"max_tokens": 65}, {"top_p": 0.9},
                   {"stop": ("\n",)},
                   {"messages": ({"role": "user", "content": "def g():"},)}):
        assert request_hash(identity, dataclasses.replace(base, **change)) != key, change
    assert request_hash({"weights": "y"}, base) != key


def test_file_digests_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"a" * 1000)
    first = file_digest(weights)
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size; put the old mtime back
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(weights) == first  # remembered, not read again
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_digest(weights) != first  # touched: read again


def test_identical_programs_are_judged_once_and_never_again(tmp_path):
    task = Task("t", "def f(x):\n", "f", ("assert f(1) == 2",))
    programs = [program_for(task, "    return x + 1\n", key="a"),
                program_for(task, "    return x + 1\n", key="b"),
                program_for(task, "    return x\n", key="c")]
    with RunDir(tmp_path) as run:
        verdicts = judge(run, programs, Limits())
        assert [verdicts[k].passed for k in "abc"] == [True, True, False]
        assert len(list(run.records(EXECUTIONS))) == 2
        assert judge(run, programs, Limits()) == verdicts
        assert len(list(run.records(EXECUTIONS))) == 2
        judge(run, programs[:1], Limits(test_timeout=2.0))  # other limits: judged again
        assert len(list(run.records(EXECUTIONS))) == 3


def test_a_ctrl_c_while_a_model_is_freed_is_not_lost(tmp_path, monkeypatch):
    """Freeing a model runs its native objects' finalizers, and Python drops an exception raised
    inside one ("Exception ignored in __del__"): a Ctrl-C that came just then was lost and the
    command went on (seen once in the suite: a collect ran to its end through a Ctrl-C). The
    backend here is a stand-in whose close() frees an object that receives the Ctrl-C in its
    finalizer, as llama-cpp-python's samplers did."""
    import signal

    from localdistill import answers
    from localdistill.backends.base import Result, Sample

    class Native:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))  # Python code runs in the finalizer: a KeyboardInterrupt lands here

    class Backend:
        def __init__(self):
            self.native = Native()

        def generate(self, requests):
            for r in requests:
                yield Result(r, (Sample("    return 1\n", "stop", 3),), 5)

        def close(self):
            self.native = None

    monkeypatch.setattr(answers, "open_backend", lambda spec: Backend())
    monkeypatch.setattr(answers, "model_identity", lambda spec: {"weights": "stand-in"})
    run = RunDir(tmp_path / "run")
    asked = [Request(messages=MESSAGES, key=f"k{i}", seed=i) for i in range(3)]
    # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &` in a script)
    # inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        answers.generate(run, get_model("tiny"), asked, "test")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the Ctrl-C was lost: generate returned as if never interrupted")
    finally:
        signal.signal(signal.SIGINT, previous)
    # what was answered before it is kept
    assert len((tmp_path / "run" / "cache" / "requests.jsonl").read_text().splitlines()) == 3
