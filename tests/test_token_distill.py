"""The token-level distillation loss (stages/train/token_distill.py) against a direct computation
over the whole vocabulary, on random distributions of a vocabulary the tiny model's size."""

from __future__ import annotations

import math

import pytest

from localdistill.tasks.record import Task

torch = pytest.importorskip("torch")

from localdistill.stages.train.token_distill import (  # noqa: E402
    bucketed,
    divergence,
    first_difference,
)

VOCAB = 49_152  # SmolLM2's


def _pair(positions=5, seed=0, sharp=3.0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(positions, VOCAB, generator=generator) * sharp
    teacher = torch.randn(positions, VOCAB, generator=generator) * sharp
    return student, torch.log_softmax(teacher, dim=-1)


def _full(student_logits, teacher_logprobs, kind, beta=0.5):
    s, t = torch.log_softmax(student_logits, -1), teacher_logprobs
    kl = lambda p, q: (p.exp() * (p - q)).sum(-1)  # noqa: E731
    if kind == "forward":
        return kl(t, s)
    if kind == "reverse":
        return kl(s, t)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), 0)
    return beta * kl(t, m) + (1 - beta) * kl(s, m)


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_with_the_whole_vocabulary_as_top_k_it_is_the_full_divergence(kind):
    student, teacher = _pair()
    ids = torch.arange(VOCAB).expand(student.shape[0], VOCAB)
    nothing_else = torch.full((student.shape[0],), float("-inf"))  # the rest: no token left
    got = divergence(student, ids, teacher, kind, beta=0.3, teacher_rest=nothing_else)
    assert torch.allclose(got, _full(student, teacher, kind, beta=0.3), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_with_a_top_k_it_is_the_divergence_of_the_merged_outcomes_and_never_more(kind):
    student, teacher = _pair(sharp=4.0)
    top, ids = teacher.topk(20, dim=-1)
    got = divergence(student, ids, top, kind)
    # the same K + 1 outcomes computed by hand: the K tokens, then everything else summed
    s_all, t_all = torch.softmax(student, -1), teacher.exp()
    s_k, t_k = s_all.gather(-1, ids), t_all.gather(-1, ids)
    s = torch.cat([s_k, 1 - s_k.sum(-1, keepdim=True)], -1).log()
    t = torch.cat([t_k, 1 - t_k.sum(-1, keepdim=True)], -1).log()
    expected = {"forward": lambda: (t.exp() * (t - s)).sum(-1),
                "reverse": lambda: (s.exp() * (s - t)).sum(-1)}.get(kind)
    if expected is not None:
        assert torch.allclose(got, expected(), rtol=1e-4, atol=1e-6)
    assert (got <= _full(student, teacher, kind) + 1e-5).all()  # merging never adds
    assert (got >= 0).all()


def test_identical_distributions_diverge_by_nothing_and_the_gradient_moves_the_student():
    student, _ = _pair(positions=3)
    teacher = torch.log_softmax(student, -1)
    top, ids = teacher.topk(50, -1)
    for kind in ("forward", "reverse", "jsd"):
        assert divergence(student, ids, top, kind).abs().max() < 1e-5
    logits = torch.zeros(3, VOCAB, requires_grad=True)
    divergence(logits, ids, top, "forward").sum().backward()
    # the teacher's most likely token gets its logit raised (a negative gradient)
    assert (logits.grad.gather(-1, ids[:, :1]) < 0).all()


def test_the_end_points_of_beta_are_the_two_kls_and_a_bad_kind_is_refused():
    student, teacher = _pair(positions=2)
    top, ids = teacher.topk(10, -1)
    assert torch.equal(divergence(student, ids, top, "jsd", beta=0),
                       divergence(student, ids, top, "forward"))
    assert torch.equal(divergence(student, ids, top, "jsd", beta=1),
                       divergence(student, ids, top, "reverse"))
    with pytest.raises(ValueError, match="unknown divergence"):
        divergence(student, ids, top, "tv")


def test_the_rest_bucket_is_exact_when_the_top_k_holds_almost_everything():
    student = torch.zeros(1, 8)
    student[0, 0] = 60.0  # the top token holds all but 7e-26 of the mass
    teacher = torch.log_softmax(student.double(), -1)
    rest = torch.logsumexp(teacher[:, 1:], -1)  # as the teacher's scoring stores it
    s, t = bucketed(student, torch.tensor([[0]]), teacher[:, :1], rest)
    exact = math.log(7) - 60
    assert abs(float(s[0, 1]) - exact) < 1e-3 and abs(float(t[0, 1]) - exact) < 1e-3
    # without the stored rest it is derived from the top-k, floored at float32's resolution
    s, t = bucketed(student, torch.tensor([[0]]), teacher[:, :1].float())
    assert torch.isfinite(t).all() and float(t[0, 1]) == pytest.approx(math.log(1e-7), abs=1e-3)


def test_vocabularies_are_compared_over_their_shared_size():
    assert first_difference(["a", "b", "c"], ["a", "b", "c", "<pad>"]) is None
    assert first_difference(["a", "x", "c"], ["a", "b", "c"]) == (1, "x", "b")


# --- the teacher's scoring, in process (llama.cpp), on the tiny model ---------------------------

def test_llama_cpp_scores_every_continuation_position_as_a_full_evaluation_does():
    np = pytest.importorskip("numpy")
    pytest.importorskip("llama_cpp")
    from llama_cpp import Llama

    from localdistill.backends import get_model
    from localdistill.backends.llamacpp_score import Scorer
    from localdistill.models import weights_path

    path = str(weights_path(get_model("tiny")))
    llm = Llama(model_path=path, n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    ids = llm.tokenize(b"def add(a, b):\n    return a + b\n\nprint(add(1, 2))")
    start = 6
    scorer = Scorer(llm, context_length=256, threads=2)
    try:
        positions = scorer.score(ids, start, top_k=8)
        assert scorer.token_texts()[ids[1]] == llm._model.token_get_text(ids[1])
    finally:
        scorer.close()
    assert [p.token for p in positions] == ids[start:]
    llm.reset()
    llm.eval(ids)  # every position's logits, the way llama-cpp-python computes them
    for p, i in zip(positions, range(start, len(ids)), strict=True):
        logits = np.asarray(llm.scores[i - 1], dtype=np.float64)
        expected = logits - np.logaddexp.reduce(logits)
        assert abs(p.logprob - expected[ids[i]]) < 0.05
        assert list(p.top_ids[:3]) == list(np.argsort(-logits)[:3])
        assert np.allclose(p.top_logprobs, expected[list(p.top_ids)], atol=0.05)
        assert p.top_logprobs == tuple(sorted(p.top_logprobs, reverse=True))
        mass = np.exp(np.array([*p.top_logprobs, p.rest])).sum()
        assert abs(mass - 1) < 1e-6  # the top-k and the rest: the whole distribution
    with pytest.raises(ValueError):
        Scorer.score(scorer, ids, 0, 8)


ADD = Task("add", 'def add(a, b):\n    """Return the sum of a and b."""\n', "add",
           ("assert add(1, 2) == 3",), reference="    return a + b\n")
WRONG_ADD = "```python\ndef add(a, b):\n    return a - b\n```"


def _one_refinement(run) -> None:
    """A run with one failed attempt at ADD and its verified refinement, written by hand."""
    run.write("attempts", [{"key": "add#0", "task_id": "add", "sample": 0, "model": "tiny",
                            "answer": WRONG_ADD,
                            "completion": "def add(a, b):\n    return a - b\n"}])
    run.write("executions", [{"key": "add#0", "task_id": "add", "passed": False,
                              "feedback": "AssertionError\nINPUT: 1, 2\nOUTPUT: -1\n"
                                          "EXPECTED: 3"}])
    run.write("refinements", [{"key": "add#0@1", "attempt_key": "add#0", "task_id": "add",
                               "round": 1, "teacher": "tiny", "passed": True,
                               "completion": "def add(a, b):\n    return a + b\n"}])


def test_the_students_failed_answers_are_scored_by_the_teacher_into_a_data_set(tmp_path):
    pytest.importorskip("llama_cpp")
    import json

    from localdistill.rundir import RunDir
    from localdistill.stages.score import score_refinements

    task, wrong = ADD, WRONG_ADD
    with RunDir(tmp_path / "run") as run:
        _one_refinement(run)
        report = score_refinements([task], run, "tiny", "tiny", tmp_path / "scores", top_k=5)
        [row] = [json.loads(line) for line in (tmp_path / "scores.jsonl").open()]
        answer = len(row["input_ids"]) - row["prompt_tokens"]
        assert report.counts["scored"] == 1 and answer > 5
        assert report.counts["answer tokens scored"] == answer
        assert all(len(x) == answer for x in (row["top_ids"], row["top_logprobs"], row["rest"],
                                               row["token_logprob"]))
        for ids, logprobs, rest, own in zip(row["top_ids"], row["top_logprobs"], row["rest"],
                                            row["token_logprob"], strict=True):
            assert len(ids) == 5 and logprobs == sorted(logprobs, reverse=True)
            assert own <= logprobs[0] + 1e-6 and rest < 0
        assert row["messages"][-1] == {"role": "assistant", "content": wrong}
        first = report.teacher_tokens
        again = score_refinements([task], run, "tiny", "tiny", tmp_path / "scores", top_k=5)
        assert first > 0 and again.teacher_tokens == 0  # every score from the run's cache
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "scores"))[0]["top_ids"] == row["top_ids"]


def test_a_teacher_of_another_vocabulary_is_refused_naming_the_token():
    from localdistill.stages.score import VocabularyMismatch, check_vocabularies

    class Student:
        def __len__(self):
            return 4

        def convert_ids_to_tokens(self, ids):
            return ["<s>", "a", "b", "c"][:len(ids)]

    check_vocabularies(["<s>", "a", "b", "c", "<extra>"], Student())  # padded table: fine
    with pytest.raises(VocabularyMismatch, match="token 2 is 'x' for the teacher and 'b'"):
        check_vocabularies(["<s>", "a", "x", "c"], Student())


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A `score` data set made for real: the tiny teacher on one failed answer of the tiny
    student."""
    tmp_path = tmp_path_factory.mktemp("scored")
    import json

    from localdistill.rundir import RunDir
    from localdistill.stages.score import score_refinements
    from localdistill.tasks.record import Task

    task = Task("sub", 'def sub(a, b):\n    """Return a minus b."""\n', "sub",
                ("assert sub(3, 1) == 2",), reference="    return a - b\n")
    with RunDir(tmp_path / "run") as run:
        run.write("attempts", [{"key": "sub#0", "task_id": "sub", "sample": 0, "model": "tiny",
                                "answer": "```python\ndef sub(a, b):\n    return b - a\n```",
                                "completion": "def sub(a, b):\n    return b - a\n"}])
        run.write("executions", [{"key": "sub#0", "task_id": "sub", "passed": False,
                                  "feedback": "AssertionError\nINPUT: 3, 1\nOUTPUT: -2\n"
                                              "EXPECTED: 2"}])
        run.write("refinements", [{"key": "sub#0@1", "attempt_key": "sub#0", "task_id": "sub",
                                   "round": 1, "teacher": "tiny", "passed": True,
                                   "completion": "def sub(a, b):\n    return a - b\n"}])
        score_refinements([task], run, "tiny", "tiny", tmp_path / "scores", top_k=16)
    return tmp_path / "scores.jsonl", [json.loads(line) for line in
                                       (tmp_path / "scores.jsonl").open()]


def test_training_on_scores_starts_from_the_divergence_computed_directly(tmp_path, scored):
    """The first step's loss (the LoRA weights start at zero: the base model) equals the
    divergence computed here from the base model's own logits, and training lowers it."""
    import json

    from transformers import AutoModelForCausalLM

    from localdistill.backends import get_model
    from localdistill.backends.hf import from_pretrained_args
    from localdistill.models import weights_path
    from localdistill.stages.train import TrainConfig, train

    kind = "jsd"  # (forward and reverse KL: its end points, checked above)
    path, rows = scored
    config = TrainConfig(max_steps=4, grad_accumulation=1, learning_rate=5e-4, rank=8,
                         distill=kind, distill_beta=0.3)
    train(path, "tiny", tmp_path / "out", config)
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").open()]
    model = AutoModelForCausalLM.from_pretrained(
        **from_pretrained_args(weights_path(get_model("tiny"))), local_files_only=True)
    [row] = rows
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0].float()
    start, end = row["prompt_tokens"] - 1, len(row["input_ids"]) - 1
    student, teacher = bucketed(logits[start:end], torch.tensor(row["top_ids"]),
                                torch.tensor(row["top_logprobs"]), torch.tensor(row["rest"]))
    if kind == "forward":
        direct = (teacher.exp() * (teacher - student)).sum(-1)
    else:
        mix = torch.logsumexp(torch.stack([teacher + math.log(0.3),
                                           student + math.log(0.7)]), 0)
        direct = (0.3 * (teacher.exp() * (teacher - mix)).sum(-1)
                  + 0.7 * (student.exp() * (student - mix)).sum(-1))
    expected = float(direct.sum()) / (end - start)
    assert log[0]["loss"] == pytest.approx(expected, rel=1e-3)
    assert log[-1]["loss"] < log[0]["loss"]
    # the student's own (wrong) tokens are never a cross-entropy target
    from localdistill.stages.train import data, loop
    from localdistill.stages.train.data import Example

    [example], _ = data.tokenize(rows, None, 1024)
    assert isinstance(example, Example) and example.teacher is not None
    _, labels, _ = loop._pad([example], 0, "cpu")
    assert (labels == -100).all()


def test_settings_without_distillation_keep_the_digest_they_had():
    from localdistill.stages.train import TrainConfig

    plain = TrainConfig(epochs=2, grad_accumulation=8)
    assert plain.digest() == TrainConfig(epochs=2, grad_accumulation=8,
                                         distill="forward").digest()
    assert plain.digest() != TrainConfig(epochs=2, grad_accumulation=8, distill="jsd").digest()


def test_a_transformers_teacher_scores_as_the_llama_cpp_one_does():
    """The same weights (the tiny GGUF, dequantised by transformers) scored by both backends:
    the same top tokens and nearly the same log-probabilities (llama.cpp multiplies the
    quantised weights, transformers their float32 copy)."""
    import dataclasses

    from localdistill.backends import get_model, open_scorer

    llama_spec = get_model("tiny")
    hf_spec = dataclasses.replace(llama_spec, backend="transformers")
    llama, llama_backend = open_scorer(llama_spec, 256)
    hf, hf_backend = open_scorer(hf_spec, 256)
    try:
        ids = llama_backend.llm.tokenize(b"def double(x):\n    return 2 * x\n")
        a, b = llama.score(ids, 4, 5), hf.score(ids, 4, 5)
        assert hf.token_texts()[:1000] == llama.token_texts()[:1000]
    finally:
        llama.close()
        llama_backend.close()
    assert [p.token for p in a] == [p.token for p in b] == ids[4:]
    gaps = [abs(x.logprob - y.logprob) for x, y in zip(a, b, strict=True)]
    assert all(x.top_ids[0] == y.top_ids[0] for x, y in zip(a, b, strict=True))
    assert sum(gaps) / len(gaps) < 0.25 and max(gaps) < 0.75, gaps


def test_the_plain_context_shows_the_teacher_only_the_task(tmp_path):
    """`score --context plain` (the comparison the issue asks for): the teacher reads the task as
    the student did, without the feedback or the correct solution the privileged prompt adds;
    both are scored, and the scores differ."""
    pytest.importorskip("llama_cpp")
    import json

    from localdistill.rundir import RunDir
    from localdistill.stages.score import CONTEXTS, _items, score_refinements

    task = ADD
    with RunDir(tmp_path / "run") as run:
        _one_refinement(run)
        [plain], _ = _items([task], run, CONTEXTS["plain"])
        [privileged], _ = _items([task], run, CONTEXTS["privileged"])
        plain_text = json.dumps(plain["teacher_prompt"])
        assert "return a + b" not in plain_text and "EXPECTED: 3" not in plain_text
        assert "def add(a, b)" in plain_text
        privileged_text = json.dumps(privileged["teacher_prompt"])
        assert "return a + b" in privileged_text and "EXPECTED: 3" in privileged_text
        rows = {}
        for context in CONTEXTS:
            report = score_refinements([task], run, "tiny", "tiny", tmp_path / context, top_k=5,
                                       context=context)
            assert report.counts["context"] == context and report.counts["scored"] == 1
            [rows[context]] = [json.loads(line) for line in (tmp_path / f"{context}.jsonl").open()]
    assert rows["plain"]["input_ids"] == rows["privileged"]["input_ids"]  # the student's own
    assert rows["plain"]["token_logprob"] != rows["privileged"]["token_logprob"]
