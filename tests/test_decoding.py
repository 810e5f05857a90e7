"""The batched llama.cpp decoder's levers: n-gram drafting (`ngram_draft`) and prefix reuse.

The drafter and the choice of rows are checked on their own, then on the real tiny model: with
drafting on, every greedy answer is the one the same batch gives without it (the tiny model's
batched kernels give the sequential answers bit for bit, see test_backend_llamacpp.py, so any
difference here would be drafting's own), sampled answers are drafted and follow their seeds,
stop strings, the token limit and an interrupted generation behave as without drafting, and a
prompt prefix copied from a sequence in the batch gives the answers computing it gives. Last, the
kept answers keep their keys under the decoding they were made with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from localdistill.backends import get_model, open_backend, parse_models, request_for
from localdistill.backends.llamacpp_batched import NgramDrafter
from localdistill.errors import BadInput
from localdistill.models import ModelsFileError, weights_path

CODE = "\n".join(
    f"def scale_{i}(values, factor={i}):\n    \"\"\"Multiply every value by {i}.\"\"\"\n"
    f"    return [v * factor for v in values]\n"
    for i in range(12)
)


def test_the_drafter_proposes_what_followed_the_latest_occurrence():
    drafter = NgramDrafter([1, 2, 3, 4, 5, 9, 2, 3, 4, 7, 8], limit=8)
    assert drafter.lookup(4) == []  # the tail 7, 8 occurred nowhere before
    drafter.append(2)
    drafter.append(3)
    # "2 3" ended twice before: the latest (followed by 4, 7, 8, 2) wins
    assert drafter.lookup(4) == [4, 7, 8, 2]
    assert drafter.lookup(2) == [4, 7]  # never past the caller's limit
    drafter.append(4)
    drafter.append(5)  # "3 4 5" only occurred in the first copy: the longest match wins
    assert drafter.lookup(4) == [9, 2, 3, 4]


def test_the_acceptance_rate_follows_recent_drafts():
    drafter = NgramDrafter(list(range(40)) * 2, limit=16)
    assert drafter.rate == 0.5  # before any draft: 1 kept of 2
    for _ in range(10):
        drafter.feedback(8, 8)  # every token kept
    assert drafter.rate > 0.95
    for _ in range(10):
        drafter.feedback(8, 0)  # the first token already wrong: one tried, none kept
    assert drafter.rate < 0.25  # recent drafts weigh most
    assert len(drafter.lookup(100)) == 16  # never past the limit


def test_rows_are_chosen_by_expected_tokens_per_second():
    """The decoder's choice of drafted rows, with a cost curve like the demo student's (8 rows
    cheaper than 7): drafts fill rows that cost little, and none are added where they do not
    pay."""
    from localdistill.backends.llamacpp_batched import BatchedDecoder, _Job

    ms = {1: 21, 2: 46, 3: 51, 4: 55, 5: 82, 6: 104, 7: 129, 8: 91}
    decoder = BatchedDecoder.__new__(BatchedDecoder)
    decoder.cost = [0.0] + [ms[min(r, 8)] / 1000 if r <= 8 else 10.0 for r in range(1, 33)]
    decoder.ngram_draft = 16

    def job(rate: float):
        j = _Job(request=None, index=0, prompt=[], stops=(), max_tokens=100)
        j.drafter = NgramDrafter(list(range(20)) * 2, limit=16)
        j.drafter.kept, j.drafter.tried = rate, 1.0
        return j

    sure = [job(0.95) for _ in range(4)]
    decoder._drafts(sure)  # 4 rows cost 55 ms, 8 rows 91: one more token each pays
    assert [len(j.draft) for j in sure] == [1, 1, 1, 1]
    hopeless = [job(0.05) for _ in range(4)]
    decoder._drafts(hopeless)
    assert [len(j.draft) for j in hopeless] == [0, 0, 0, 0]
    alone = [job(0.8)]  # one sequence left: 4 rows for 2.6x the cost of 1, 2.95 tokens expected
    decoder._drafts(alone)
    assert len(alone[0].draft) == 3
    assert alone[0].draft == alone[0].drafter.lookup(3)


def test_ngram_draft_is_a_models_toml_key_and_part_of_the_identity():
    from localdistill.backends.base import options_identity

    spec = get_model("tiny")
    assert options_identity(spec.with_keys(parallel=4, ngram_draft=12).options) == {
        "parallel": 4, "ngram_draft": 12}
    assert options_identity(spec.with_keys(parallel=4, ngram_draft=0).options) == {
        "parallel": 4}
    # with one sequence at a time the batched decoder is not used: nothing to tell apart
    assert options_identity(spec.with_keys(parallel=1, ngram_draft=12).options) == {}
    with pytest.raises(ModelsFileError, match="ngram_draft"):
        parse_models('[models.x]\nbackend = "llama.cpp"\npath = "demo:tiny"\nparallel = 4\n'
                     'ngram_draft = -1\n', "models.toml")


def _decode(spec, requests):
    backend = open_backend(spec)
    try:
        results = {r.request.key: r for r in backend.generate(requests)}
        return results, backend.batched.stats
    finally:
        backend.close()


@pytest.mark.slow
def test_drafting_keeps_every_greedy_answer_and_stop_and_limit_behave():
    spec = replace(get_model("tiny"), threads=2)
    asks = [
        ("copy", dict(messages=[{"role": "user", "content": f"Repeat this code exactly:\n{CODE}"}],
                      max_tokens=200)),
        ("copy cut", dict(messages=[{"role": "user", "content": f"Repeat this code:\n{CODE}"}],
                          max_tokens=37)),  # the limit falls inside a draft
        ("copy stop", dict(messages=[{"role": "user", "content": f"Repeat this code:\n{CODE}"}],
                           max_tokens=200, stop=["scale_3"])),  # the stop string in a draft
        ("raw", dict(prompt=CODE + "\ndef scale_12(values, factor=12):\n", max_tokens=60)),
        ("scratch", dict(messages=[{"role": "user", "content": "Write a haiku about rain."}],
                         max_tokens=40)),
    ]
    requests = [replace(request_for(spec, temperature=0.0, **kw), key=k) for k, kw in asks]
    plain, _ = _decode(spec.with_keys(parallel=3, ngram_draft=0), requests)
    drafted, stats = _decode(spec.with_keys(parallel=3, ngram_draft=16), requests)
    assert stats.accepted > 100  # drafting did happen, and most drafts of copied code held
    assert stats.batch_tokens > 2 * stats.steps
    for key, want in plain.items():
        assert drafted[key].samples == want.samples, key
        assert drafted[key].prompt_tokens == want.prompt_tokens, key
    assert plain["copy cut"].samples[0].finish_reason == "length"
    assert plain["copy cut"].samples[0].completion_tokens == 37
    stop = plain["copy stop"].samples[0]
    assert stop.finish_reason == "stop" and "scale_3" not in stop.text
    assert "scale_2" in stop.text  # it did copy up to the stop string


@pytest.mark.slow
def test_sampled_answers_are_drafted_and_follow_their_seeds():
    """Sampled requests draft too: each token is still drawn by the sequence's own seeded
    sampler from the model's distribution at its position, and a drafted token is kept only when
    it is the one drawn (the exact acceptance rule for a draft that proposes one token). The same
    requests give the same texts again, and the seeds matter. What drafting gives up: positions
    decoded in one pass get logits that differ in rounding from one token at a time (a KL of
    about 1e-3 measured on the tiny model), and how many positions share a pass depends on the
    other sequences' drafts, so a sampled answer can depend on its company in the batch (without
    drafting it does not; test_backend_llamacpp.py). docs/models.md says so."""
    spec = replace(get_model("tiny"), threads=2).with_keys(parallel=2, ngram_draft=16)
    ask = [{"role": "user", "content": f"Repeat this code:\n{CODE}"}]
    requests = [replace(request_for(spec, messages=ask, temperature=0.7, max_tokens=60, seed=s),
                        key=str(s)) for s in (1, 2, 3)]
    a, stats = _decode(spec, requests)
    b, _ = _decode(spec, requests)
    assert stats.accepted > 20
    assert len({r.samples[0].text for r in a.values()}) > 1  # the seeds do matter
    for key in ("1", "2", "3"):
        assert b[key].samples[0] == a[key].samples[0], key


@pytest.mark.slow
def test_a_generation_stopped_midway_leaves_the_decoder_as_new():
    """Ctrl-C reaches the stage as KeyboardInterrupt inside the generator, often with drafted
    cells in the cache: closing it frees every slot, and the same backend answers the same
    requests as a fresh one."""
    spec = replace(get_model("tiny"), threads=2).with_keys(parallel=2, ngram_draft=16)
    ask = [{"role": "user", "content": f"Repeat this code:\n{CODE}"}]
    requests = [replace(request_for(spec, messages=ask, temperature=0.0, max_tokens=m),
                        key=str(m)) for m in (50, 70, 90)]
    fresh, _ = _decode(spec, requests)
    backend = open_backend(spec)
    try:
        stream = backend.generate(requests)
        next(stream)
        with pytest.raises(KeyboardInterrupt):
            stream.throw(KeyboardInterrupt)
        again = {r.request.key: r for r in backend.generate(requests)}
    finally:
        backend.close()
    for key, want in fresh.items():
        assert again[key].samples == want.samples, key


@pytest.mark.slow
def test_a_prompt_shared_with_the_batch_is_copied_not_computed():
    """`prefix_reuse`: a new sequence takes the KV cells of the prompt tokens it shares with a
    sequence already in the batch (the same instructions; the same prompt sampled again with
    other seeds, as the -k4 strategies ask), and its answer is the one computed from scratch
    gives."""
    spec = replace(get_model("tiny"), threads=2).with_keys(parallel=3)
    shared = f"Here is some code:\n{CODE}\n"
    asks = [(f"q{i}", dict(messages=[{"role": "user", "content": shared + question}],
                           temperature=0.0, max_tokens=30))
            for i, question in enumerate(["Name the first function.", "What does scale_3 do?",
                                          "Repeat scale_5."])]
    asks += [(f"s{seed}", dict(messages=[{"role": "user", "content": shared + "Repeat it."}],
                               temperature=0.7, seed=seed, max_tokens=30)) for seed in (1, 2)]
    requests = [replace(request_for(spec, **kw), key=k) for k, kw in asks]
    plain, plain_stats = _decode(spec, requests)
    reused, stats = _decode(spec.with_keys(prefix_reuse=True), requests)
    assert plain_stats.reused_tokens == 0
    assert stats.reused_tokens > 4 * 300  # four of the five prompts took the shared code
    assert stats.prefill_tokens < plain_stats.prefill_tokens - 4 * 300
    for key, want in plain.items():
        assert reused[key].samples == want.samples, key
        assert reused[key].prompt_tokens == want.prompt_tokens, key


def test_the_kept_answers_keep_their_keys_under_the_decoding_they_were_made_with():
    """A decoding lever left off adds nothing to a model's identity: with
    examples/models-parallel4.toml (the demo models as they decoded before the levers existed)
    a kept answer of the base student's HumanEval evaluation has the key it was stored under, so
    resuming or rebuilding a kept run asks no model; with the repository's models.toml
    (parallel 16, prefix_reuse) it is another request."""
    import json

    from localdistill.answers import model_identity, request_hash

    repo = Path(__file__).resolve().parent.parent
    kept = repo / "docs/results/answers/reproduce-demo/eval/base/humaneval/cache/requests.jsonl"
    record = json.loads(kept.read_text().splitlines()[0])
    asked = record["request"]
    then = get_model("demo-student", repo / "examples/models-parallel4.toml")
    now = get_model("demo-student", repo / "models.toml")
    try:
        weights_path(then)
    except BadInput:
        pytest.skip("the demo student is not installed (setup.sh --no-demo)")
    request = request_for(then, messages=asked["messages"], temperature=asked["temperature"],
                          top_p=asked["top_p"], max_tokens=asked["max_tokens"],
                          seed=asked["seed"])
    assert request_hash(model_identity(then), request) == record["key"]
    assert request_hash(model_identity(now), request) != record["key"]
