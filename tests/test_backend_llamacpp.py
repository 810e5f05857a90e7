"""The llama.cpp backend in process, on the real tiny model."""

from __future__ import annotations

from dataclasses import replace

from localdistill.backends import open_backend, request_for
from localdistill.models import get_model

CODE = "\n".join(
    f"def step_{i}(values):\n    total = 0\n    for v in values:\n        total += v * {i}\n"
    f"    return total\n"
    for i in range(24)
)


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
    drafting = open_backend(replace(spec, prompt_lookup=8))
    try:
        got = list(drafting.generate(requests))
    finally:
        drafting.close()
    for want, have in zip(expected, got, strict=True):
        assert have.samples[0].text == want.samples[0].text
        assert have.samples[0].completion_tokens == want.samples[0].completion_tokens > 0
