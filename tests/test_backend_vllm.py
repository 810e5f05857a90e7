"""The vLLM backend: a clear refusal without a GPU, and what it asks of vLLM, checked on a fake.

vLLM needs a CUDA GPU and cannot be installed on the CPU machines the tests run on, so the middle
tests inject a FAKE `vllm` module (recording what the backend asks for) into sys.modules and make
torch claim a GPU. They check the backend's side of the contract: one batched LLM.chat call for
chat requests and one LLM.generate call for raw prompts, with one SamplingParams per request and
the LoRARequest, and outputs mapped back to their requests. The last test runs the real vLLM and
is skipped unless a CUDA GPU and the vllm package are present.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from localdistill.backends import BackendError, Request, Sample, open_backend, parse_models
from localdistill.backends.base import CONTEXT

TINY = parse_models('[models.tiny-vllm]\nbackend = "vllm"\npath = "demo:tiny"\n'
                    'quantisation = "Q4_1"\ncontext_length = 2048\n', "test.toml")["tiny-vllm"]


def test_without_a_gpu_or_vllm_it_refuses_in_one_line(monkeypatch):
    for cuda in (False, True):  # no GPU; a GPU but no vllm package
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setitem(sys.modules, "vllm", None)  # importing it raises ImportError
        with pytest.raises(BackendError) as raised:
            open_backend(TINY)
        message = str(raised.value)
        assert "\n" not in message
        assert "needs a CUDA GPU and the vllm package" in message
        assert "use backend 'llama.cpp' or 'transformers'" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_on_this_machine_open_backend_refuses():
    with pytest.raises(BackendError, match="^the vLLM backend needs a CUDA GPU[^\n]*$"):
        open_backend(TINY)


@dataclass
class FakeOutput:  # vllm.CompletionOutput
    text: str
    finish_reason: str | None
    token_ids: list[int]


@dataclass
class FakeRequestOutput:  # vllm.RequestOutput
    prompt_token_ids: list[int]
    outputs: list[FakeOutput]
    prompt_logprobs: list | None = None


@dataclass
class FakeLogprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None


def FAKE_LOGITS(previous: int) -> np.ndarray:  # noqa: N802 - a fixed table, read as one
    """A 12-token vocabulary whose next-token logits depend on the previous token."""
    return np.cos(np.arange(12, dtype=np.float64) * (previous + 1.3)) * 4.0


class FakeLLM:
    made: list[FakeLLM] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.calls = kwargs, []
        FakeLLM.made.append(self)

    @staticmethod
    def get_tokenizer():  # one token per character; a chat prompt is its last message
        return types.SimpleNamespace(
            encode=lambda text: [1] * len(text),
            apply_chat_template=lambda messages, **kwargs: [1] * len(messages[-1]["content"]))

    def chat(self, messages, sampling_params, **kwargs):
        self.calls.append(("chat", messages, sampling_params, kwargs))
        pairs = zip(messages, sampling_params, strict=True)
        return [self._answer(c[-1]["content"], p) for c, p in pairs]

    def generate(self, prompts, sampling_params, **kwargs):
        self.calls.append(("generate", prompts, sampling_params, kwargs))
        if getattr(sampling_params, "prompt_logprobs", None):  # scoring a token sequence
            return [self._scored(p["prompt_token_ids"], sampling_params.prompt_logprobs)
                    for p in prompts]
        return [self._answer(text, p) for text, p in zip(prompts, sampling_params, strict=True)]

    @staticmethod
    def _scored(ids: list[int], k: int) -> FakeRequestOutput:
        """vLLM's prompt_logprobs over FAKE_LOGITS: None first, then each position's top-k
        (ranks 1..k) and the token written there, whatever its rank."""
        rows = [None]
        for previous, token in zip(ids, ids[1:], strict=False):
            logprobs = FAKE_LOGITS(previous) - np.logaddexp.reduce(FAKE_LOGITS(previous))
            order = list(np.argsort(-logprobs, kind="stable"))
            shown = {int(t) for t in order[:k]} | {token}
            rows.append({t: FakeLogprob(float(logprobs[t]), order.index(t) + 1) for t in shown})
        return FakeRequestOutput(ids, [FakeOutput("", "length", [0])], rows)

    @staticmethod
    def _answer(text: str, params) -> FakeRequestOutput:
        # text i of "abc" is "abc#i", i + 1 tokens long; the last sample hit max_tokens
        outputs = [
            FakeOutput(f"{text}#{i}", "length" if i == params.n - 1 else "stop", [7] * (i + 1))
            for i in range(params.n)
        ]
        return FakeRequestOutput([1] * len(text), outputs)


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    lora = types.ModuleType("vllm.lora")
    lora_request = types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = lambda *args: ("LoRARequest", *args)
    for name, module in [("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", lora_request)]:
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    FakeLLM.made = []
    return FakeLLM.made


def test_all_requests_go_in_one_batched_call_each(fake_vllm, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 48}))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = TINY.with_keys(path=str(model_dir), adapter=str(adapter), quantisation="AWQ",
                   tensor_parallel_size=2, gpu_memory_utilization=0.5)
    backend = open_backend(spec)
    (llm,) = fake_vllm
    assert llm.kwargs == {
        "model": str(model_dir), "quantization": "awq", "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5, "max_model_len": 2048, "enable_lora": True, "seed": 0,
        "max_lora_rank": 64,  # the adapter's rank 48, rounded up to one vLLM accepts
    }
    requests = [
        Request(messages=({"role": "user", "content": "one"},), n=3, key="greedy chat"),
        Request(prompt="two", n=2, temperature=0.7, top_p=0.9, max_tokens=9, stop=("\n",),
                seed=5, key="sampled raw"),
        Request(messages=({"role": "user", "content": "three"},), temperature=1.0, key="chat"),
        Request(prompt="four", key="raw"),
    ]
    results = list(backend.generate(requests))

    assert [r.request for r in results] == requests
    assert [c[0] for c in llm.calls] == ["chat", "generate"]
    _, conversations, chat_params, chat_kwargs = llm.calls[0]
    assert conversations == [[{"role": "user", "content": "one"}],
                             [{"role": "user", "content": "three"}]]
    _, prompts, raw_params, raw_kwargs = llm.calls[1]
    assert prompts == ["two", "four"]
    lora = ("LoRARequest", "tiny-vllm", 1, str(adapter))
    assert chat_kwargs["lora_request"] == raw_kwargs["lora_request"] == lora
    assert chat_kwargs["add_generation_prompt"] is True
    # greedy samples are identical: n=1 is asked for, the sample repeated
    assert vars(chat_params[0]) == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 512,
                                    "stop": None, "seed": None}
    assert vars(raw_params[0]) == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9,
                                   "stop": ["\n"], "seed": 5}
    by_key = {r.request.key: r for r in results}
    assert by_key["greedy chat"].texts == ["one#0"] * 3
    assert by_key["sampled raw"].texts == ["two#0", "two#1"]
    assert [(s.finish_reason, s.completion_tokens) for s in by_key["sampled raw"].samples] == [
        ("stop", 1), ("length", 2)]
    assert by_key["chat"].texts == ["three#0"] and by_key["raw"].texts == ["four#0"]
    assert by_key["raw"].prompt_tokens == 4 and by_key["chat"].prompt_tokens == 5
    backend.close()


def test_gguf_and_no_adapter(fake_vllm):
    backend = open_backend(TINY)
    (llm,) = fake_vllm
    # GGUF: vLLM reads the quantisation from the file; Q4_1 is not a name it accepts
    assert llm.kwargs["quantization"] is None and llm.kwargs["enable_lora"] is False
    assert "max_lora_rank" not in llm.kwargs
    (result,) = backend.generate([Request(prompt="x")])
    assert llm.calls[0][0] == "generate" and llm.calls[0][3]["lora_request"] is None
    assert result.texts == ["x#0"]
    assert list(backend.generate([])) == [] and len(llm.calls) == 1  # nothing to call vLLM for


def test_a_prompt_over_max_model_len_is_answered_empty_and_kept_out_of_the_batch(fake_vllm):
    """Real vLLM refuses the whole batch when one prompt is longer than max_model_len (the fake
    does not: it would answer; the test checks the long prompts never reach it)."""
    backend = open_backend(TINY)  # context_length 2048: max_model_len
    (llm,) = fake_vllm
    requests = [Request(prompt="x" * 3000, key="raw long"), Request(prompt="ok", key="raw"),
                Request(messages=({"role": "user", "content": "y" * 2048},), key="chat long"),
                Request(messages=({"role": "user", "content": "fine"},), key="chat")]
    got = {r.request.key: r for r in backend.generate(requests)}
    assert set(got) == {"raw long", "raw", "chat long", "chat"}
    assert got["raw long"].samples == (Sample("", CONTEXT, 0),)
    assert got["raw long"].prompt_tokens == 3000
    assert got["chat long"].samples == (Sample("", CONTEXT, 0),)
    assert got["raw"].texts == ["ok#0"] and got["chat"].texts == ["fine#0"]
    assert [c[1] for c in llm.calls] == [[[{"role": "user", "content": "fine"}]], ["ok"]]
    backend.close()


def test_a_vllm_teacher_scores_positions_as_the_full_distribution_gives_them(fake_vllm):
    """What vLLM returns (top-k by rank, the written token whatever its rank, None first) becomes
    the same Position a full-vocabulary computation gives: the rest is what the top-k leave."""
    from localdistill.backends import open_scorer
    from localdistill.backends.scoring import position

    scorer, backend = open_scorer(TINY, 256)
    ids = [3, 7, 0, 11, 5, 5, 2]
    got = scorer.score(ids, 3, top_k=4)
    (llm,) = fake_vllm
    [(_, prompts, params, kwargs)] = llm.calls
    assert prompts == [{"prompt_token_ids": ids}] and params.prompt_logprobs == 4
    assert params.max_tokens == 1 and kwargs["lora_request"] is None
    want = [position(FAKE_LOGITS(ids[i - 1]), ids[i], 4) for i in range(3, len(ids))]
    assert [p.token for p in got] == ids[3:]
    assert [p.top_ids for p in got] == [p.top_ids for p in want]
    for mine, full in zip(got, want, strict=True):
        assert mine.logprob == pytest.approx(full.logprob, abs=1e-9)
        assert mine.top_logprobs == pytest.approx(full.top_logprobs, abs=1e-9)
        assert mine.rest == pytest.approx(full.rest, abs=1e-9)
    assert any(p.token not in p.top_ids for p in got)  # a written token outside the top-k
    backend.close()


def test_a_served_model_cannot_score_and_says_which_can():
    from localdistill.backends import open_scorer
    from localdistill.errors import BadInput

    served = parse_models('[models.far]\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\n',
                          "test.toml")["far"]
    with pytest.raises(BadInput, match=r"^models.far: scoring needs the model in process "
                                       r"\(backend llama.cpp or transformers or vllm\)"):
        open_scorer(served, 256)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs the vllm package")
def test_real_vllm_on_the_tiny_model():
    backend = open_backend(TINY.with_keys(gpu_memory_utilization=0.3))
    try:
        chat = Request(messages=({"role": "user", "content": "Say hello."},), max_tokens=8)
        raw = Request(prompt="def fibonacci(n):", max_tokens=8, n=2, temperature=0.8, seed=1)
        stopped = Request(prompt="def fibonacci(n):", max_tokens=16, stop=("return",))
        results = list(backend.generate([chat, raw, stopped]))
        assert [r.request for r in results] == [chat, raw, stopped]
        assert results[0].texts[0].strip() and results[0].samples[0].completion_tokens <= 8
        assert len(results[1].samples) == 2 and results[1].prompt_tokens == 6
        assert "return" not in results[2].texts[0]
    finally:
        backend.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs the vllm package")
def test_real_vllm_scores_as_transformers_does():
    """The same tiny model, scored by vLLM and by transformers, agrees position by position."""
    from localdistill.backends import open_scorer

    vllm_scorer, vllm_backend = open_scorer(TINY.with_keys(gpu_memory_utilization=0.3), 256)
    hf_spec = parse_models('[models.tiny-hf]\nbackend = "transformers"\npath = "demo:tiny"\n',
                           "test.toml")["tiny-hf"]
    hf_scorer, hf_backend = open_scorer(hf_spec, 256)
    try:
        ids = hf_backend.tokenizer("def add(a, b):\n    return a + b\n")["input_ids"]
        got, want = vllm_scorer.score(ids, 4, 8), hf_scorer.score(ids, 4, 8)
        assert [p.token for p in got] == [p.token for p in want]
        assert max(abs(a.logprob - b.logprob) for a, b in zip(got, want, strict=True)) < 0.1
    finally:
        vllm_backend.close()
        hf_backend.close()
