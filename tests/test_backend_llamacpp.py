"""The llama.cpp backend in process, on the real tiny model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from localdistill.backends import Sample, get_model, open_backend, request_for
from localdistill.backends.base import CONTEXT

CODE = "\n".join(
    f"def step_{i}(values):\n    total = 0\n    for v in values:\n        total += v * {i}\n"
    f"    return total\n"
    for i in range(24)
)


@pytest.mark.slow
def test_prompt_lookup_gives_the_same_greedy_answers_on_long_prompts():
    """Prompt lookup decoding only verifies drafted tokens, so greedy answers stay the same.

    The prompt is longer than llama.cpp's 512-token batch: llama-cpp-python 0.3 overflows its
    logits buffer there unless the backend also sets logits_all (it did before the fix)."""
    spec = replace(get_model("tiny"), threads=2)
    requests = [
        request_for(spec, messages=[{"role": "user", "content": f"Copy this code:\n{CODE}"}],
                    max_tokens=96, temperature=0.0),
        request_for(spec, messages=[{"role": "user", "content": "Write a function that adds."}],
                    max_tokens=48, temperature=0.0),
    ]
    plain = open_backend(spec)
    try:
        expected = list(plain.generate(requests))
    finally:
        plain.close()
    assert expected[0].prompt_tokens > 512
    drafting = open_backend(spec.with_keys(prompt_lookup=8))
    try:
        got = list(drafting.generate(requests))
    finally:
        drafting.close()
    for want, have in zip(expected, got, strict=True):
        assert have.samples[0].text == want.samples[0].text
        assert have.samples[0].completion_tokens == want.samples[0].completion_tokens > 0


def _answers(spec, requests):
    backend = open_backend(spec)
    try:
        return {r.request.key: r for r in backend.generate(requests)}
    finally:
        backend.close()


@pytest.mark.slow
def test_parallel_decoding_gives_the_sequential_answers():
    """`parallel = N` decodes N requests in one batch; every answer is the one the model gives
    alone: same text, same token counts, same finish reason. The requests cover chat and raw
    prompts, a prompt longer than one 512-token batch, stop strings, answers cut by max_tokens
    and ended by the model, and more requests than slots (slots are refilled as they free)."""
    spec = replace(get_model("tiny"), threads=2)
    asks = [
        ("long", dict(messages=[{"role": "user", "content": f"Copy this code:\n{CODE}"}],
                      max_tokens=40)),
        ("stop", dict(messages=[{"role": "user", "content": "Write a function that adds."}],
                      max_tokens=64, stop=["\n\n"])),
        ("raw", dict(prompt="def fibonacci(n):\n", max_tokens=30)),
        ("short", dict(messages=[{"role": "user", "content": "Say yes."}], max_tokens=64)),
    ] + [(f"task{i}", dict(messages=[{"role": "user", "content": f"Write a function that "
                                      f"returns the square of {i}."}], max_tokens=24 + 7 * i))
         for i in range(5)]
    requests = [replace(request_for(spec, temperature=0.0, **kw), key=key) for key, kw in asks]
    alone = _answers(spec, requests)
    together = _answers(spec.with_keys(parallel=3), requests)
    assert alone["long"].prompt_tokens > 512
    assert {a.samples[0].finish_reason for a in alone.values()} == {"stop", "length"}
    assert "\n\n" not in alone["stop"].samples[0].text
    for key, want in alone.items():
        have = together[key]
        assert have.samples[0] == want.samples[0], key
        assert have.prompt_tokens == want.prompt_tokens, key


@pytest.mark.slow
def test_parallel_sampling_follows_the_seed():
    """Sampled answers (temperature > 0) depend on the request's seed, not on which requests
    shared the batch: the same seeds give the same texts in another order and company."""
    spec = get_model("tiny").with_keys(threads=2, parallel=2)
    ask = [{"role": "user", "content": "Write a short poem about code."}]
    first = [replace(request_for(spec, messages=ask, temperature=0.9, max_tokens=24, seed=s),
                     key=str(s)) for s in (1, 2, 3)]
    again = [first[2], first[0], replace(first[1], n=2)]
    a, b = _answers(spec, first), _answers(spec, again)
    assert len({r.samples[0].text for r in a.values()}) > 1  # the seeds do matter
    for key in ("1", "3"):
        assert a[key].samples[0].text == b[key].samples[0].text
    assert b["2"].samples[0].text == a["2"].samples[0].text  # sample 0 of n=2 uses seed 2
    assert len(b["2"].samples) == 2


def test_a_prompt_over_the_context_comes_back_empty_and_the_others_are_answered():
    """A prompt longer than the context used to raise llama-cpp-python's ValueError, which
    stopped the whole stage (a collect over 3,000 tasks stopped at the first such refinement
    prompt, and again at every rerun). Now it is answered with no text, finish_reason "context",
    by the sequential and the batched decoder alike, and the requests around it go on."""
    spec = replace(get_model("tiny"), threads=2, context_length=256)
    requests = [replace(request_for(spec, temperature=0.0, max_tokens=8, **kw), key=key)
                for key, kw in [
                    ("short", dict(messages=[{"role": "user", "content": "Say yes."}])),
                    ("long", dict(messages=[{"role": "user", "content": f"Copy:\n{CODE}"}])),
                    ("raw long", dict(prompt=CODE)),
                    ("raw", dict(prompt="def add(a, b):\n"))]]
    for parallel in (1, 2):
        got = _answers(spec.with_keys(parallel=parallel), requests)
        assert set(got) == {"short", "long", "raw long", "raw"}, parallel
        for key in ("long", "raw long"):
            assert got[key].samples == (Sample("", CONTEXT, 0),), (parallel, key)
            assert got[key].prompt_tokens > 256, (parallel, key)
        for key in ("short", "raw"):
            assert got[key].samples[0].completion_tokens > 0, (parallel, key)
            assert got[key].samples[0].finish_reason in ("stop", "length"), (parallel, key)


def test_a_context_length_llama_cpp_rounds_up_is_kept_and_does_not_crash():
    """llama.cpp rounds its context up to a multiple of 256 (300 becomes 512) while
    llama-cpp-python sized its logits buffer by the 300 asked for: a prompt between the two
    raised a numpy broadcast error ("could not broadcast input array from shape (131,) into
    shape (0,)") that stopped the stage. Now the prompt under context_length is answered, the one
    over it (though under 512) comes back as over the context, sequential and batched alike."""
    spec = replace(get_model("tiny"), threads=2, context_length=300)
    ask = "Write a Python function that adds two numbers. "
    requests = [replace(request_for(spec, temperature=0.0, max_tokens=8,
                                    messages=[{"role": "user", "content": ask * times}]),
                        key=str(times))
                for times in (27, 40)]
    for parallel in (1, 2):
        got = _answers(spec.with_keys(parallel=parallel), requests)
        fits, over = got["27"], got["40"]
        assert 256 < fits.prompt_tokens < 300, (parallel, fits)
        assert fits.samples[0].finish_reason in ("stop", "length"), (parallel, fits)
        assert fits.samples[0].completion_tokens > 0, (parallel, fits)
        assert over.samples == (Sample("", CONTEXT, 0),), (parallel, over)
        assert 300 < over.prompt_tokens < 512, (parallel, over)
