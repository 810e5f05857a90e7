"""The transformers backend on the real tiny model (SmolLM2-135M GGUF, dequantised by transformers).

One backend is loaded for the module (about 15 s on two CPU cores); every test generates at most a
few dozen tokens.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from localdistill.backends import Request, Sample, open_backend, parse_models
from localdistill.backends.base import CONTEXT

TOML = """
[models.tiny-hf]
backend = "transformers"
path = "demo:tiny"
context_length = 2048

[models.tiny-cpp]
backend = "llama.cpp"
path = "demo:tiny"
context_length = 2048
"""
SPECS = parse_models(TOML, "test.toml")
HELLO = ({"role": "user", "content": "Say hello."},)
CODE = "def fibonacci(n):"


@pytest.fixture(scope="module")
def hf():
    backend = open_backend(SPECS["tiny-hf"])
    yield backend
    backend.close()


def one(backend, request: Request):
    (result,) = backend.generate([request])
    assert result.request is request
    return result


def test_chat_and_raw_prompt_generate_text(hf):
    chat = one(hf, Request(messages=HELLO, max_tokens=12))
    raw = one(hf, Request(prompt=CODE, max_tokens=12))
    assert chat.texts[0].strip() and raw.texts[0].strip()
    # the chat template wraps the message (system prompt, role markers); a raw prompt is as is
    assert chat.prompt_tokens > 20
    assert raw.prompt_tokens == len(hf.tokenizer(CODE).input_ids) == 6
    assert raw.samples[0].completion_tokens == 12 and raw.samples[0].finish_reason == "length"


def test_max_tokens_is_respected(hf):
    result = one(hf, Request(prompt=CODE, max_tokens=5))
    sample = result.samples[0]
    assert (sample.completion_tokens, sample.finish_reason) == (5, "length")
    assert len(hf.tokenizer(sample.text, add_special_tokens=False).input_ids) <= 5


def test_greedy_is_deterministic_and_n_samples_are_identical(hf):
    request = Request(prompt=CODE, max_tokens=16, n=3)
    first, second = one(hf, request), one(hf, request)
    assert first.texts == second.texts
    assert len(set(first.texts)) == 1 and len(first.texts) == 3


def test_sampling_is_seeded_per_sample(hf):
    request = Request(prompt=CODE, max_tokens=16, n=3, temperature=1.0, top_p=0.95, seed=7)
    first, again = one(hf, request), one(hf, request)
    assert first.texts == again.texts  # same seed, same samples
    assert len(set(first.texts)) > 1  # seed + i: the samples differ from one another
    other = one(hf, replace(request, seed=8))
    assert other.texts != first.texts


def test_a_stop_string_cuts_the_text(hf):
    full = one(hf, Request(prompt=CODE, max_tokens=16)).samples[0]
    # a stop string taken from the greedy text itself, so the test does not depend on the model
    stop = full.text.strip().splitlines()[1].strip()
    cut = one(hf, Request(prompt=CODE, max_tokens=16, stop=("never there", stop))).samples[0]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens


def test_batched_requests_match_one_at_a_time(hf):
    """Left padding must not change what a request generates."""
    requests = [
        Request(prompt=CODE, max_tokens=12, key="short"),
        Request(prompt="import numpy as np\n\ndef mean(xs):", max_tokens=12, key="longer"),
        Request(messages=HELLO, max_tokens=12, key="chat"),
    ]
    batched = {r.request.key: r for r in hf.generate(requests)}
    assert set(batched) == {"short", "longer", "chat"}
    for request in requests:
        alone = one(hf, request)
        assert batched[request.key].texts == alone.texts
        assert batched[request.key].prompt_tokens == alone.prompt_tokens


def test_chat_template_override(hf):
    plain = copy.copy(hf)  # the same loaded model, another models.toml entry
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    plain.spec = replace(hf.spec, chat_template=template)
    result = one(plain, Request(messages=HELLO, max_tokens=4))
    assert result.prompt_tokens == len(hf.tokenizer("Say hello.").input_ids)


def test_a_prompt_longer_than_the_context_is_answered_empty_and_the_rest_go_on(hf):
    """One prompt over the context must not stop the batch (it used to raise, and a stage of
    thousands stopped there at every rerun): it comes back empty, finish_reason "context"."""
    small = copy.copy(hf)
    small.spec = replace(hf.spec, context_length=8)
    results = {r.request.key: r for r in small.generate([
        Request(prompt=CODE * 3, max_tokens=4, key="long"),
        Request(prompt=CODE, max_tokens=2, key="short")])}
    assert results["long"].samples == (Sample("", CONTEXT, 0),)
    assert results["long"].prompt_tokens > 8
    assert results["short"].samples[0].finish_reason == "length"
    assert results["short"].samples[0].completion_tokens == 2


def test_greedy_agrees_with_llama_cpp_at_first(hf):
    """Same weights, different numerics: llama.cpp runs the Q4_1 GGUF with quantised dot
    products, transformers the dequantised floats. Measured on this prompt (16 tokens): the
    first 13 tokens (44 characters) agree; only the first few are asserted."""
    request = Request(prompt=CODE, max_tokens=16)
    cpp = open_backend(SPECS["tiny-cpp"])
    try:
        theirs = one(cpp, request).texts[0]
    finally:
        cpp.close()
    ours = one(hf, request).texts[0]
    tokens = [hf.tokenizer(t, add_special_tokens=False).input_ids for t in (ours, theirs)]
    agree, chars = _common_prefix(*tokens), _common_prefix(ours, theirs)
    print(f"llama.cpp vs transformers greedy: {agree}/16 tokens, {chars} characters agree")
    assert agree >= 4, (ours, theirs)


def _common_prefix(a, b) -> int:
    differ = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return next(differ, min(len(a), len(b)))


@pytest.mark.slow
def test_a_lora_adapter_is_applied(hf, tmp_path):
    """A PEFT adapter written by hand (random LoRA on every q_proj) changes the greedy text."""
    import torch
    from safetensors.torch import save_file

    config = hf.model.config
    rank, width = 8, config.hidden_size
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for layer in range(config.num_hidden_layers):
        name = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        weights[f"{name}.lora_A.weight"] = torch.randn(rank, width, generator=generator)
        weights[f"{name}.lora_B.weight"] = torch.randn(width, rank, generator=generator)
    save_file(weights, tmp_path / "adapter_model.safetensors")
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": rank,
        "target_modules": ["q_proj"],
        "lora_dropout": 0.0,
        "bias": "none",
    }
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config))

    adapted = open_backend(replace(SPECS["tiny-hf"], adapter=str(tmp_path)))
    try:
        request = Request(prompt=CODE, max_tokens=8)
        assert type(adapted.model).__name__.startswith("Peft")
        assert one(adapted, request).texts != one(hf, request).texts
    finally:
        adapted.close()
