"""LoRA training for real on the tiny model on the CPU: prompts rendered as at inference, the loss
on the completion only, the loss falls, an interrupted run resumes to the same adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localdistill.backends import get_model
from localdistill.models import ModelsFileError, weights_path
from localdistill.stages.train import TrainConfig, data, loop, train
from localdistill.stages.train.config import SMALL_SET

SCRIPT = Path(sys.executable).parent / "localdistill"
SYSTEM = {"role": "system", "content": "You are an expert Python programmer."}
ROWS = [
    {"messages": [SYSTEM, {"role": "user", "content": f"Write f{i}, returning {i}."},
                  {"role": "assistant", "content": f"```python\ndef f{i}():\n    return {i}\n```"}]}
    for i in range(6)
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    path = weights_path(get_model("tiny"))
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_the_prompt_is_the_text_llama_cpp_sends_at_inference(tokenizer):
    """The training prompt, rendered by transformers, equals what llama-cpp-python renders from
    the same GGUF's chat template for the same messages."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = weights_path(get_model("tiny"))
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template, eos_token=tokenizer.eos_token or "",
                                    bos_token=tokenizer.bos_token or "")
    for row in ROWS[:2]:
        prompt, target = data.render(row, tokenizer)
        assert prompt == formatter(messages=row["messages"][:-1]).prompt
        assert target.startswith(row["messages"][-1]["content"])
        assert target.endswith(tokenizer.eos_token)  # the student learns to stop
    llm.close()


def test_the_loss_covers_the_completion_only(tokenizer):
    examples, too_long = data.tokenize(ROWS, tokenizer, max_length=1024)
    assert len(examples) == len(ROWS) and too_long == 0
    ids, labels, mask = loop._pad(examples[:2], pad_id=0, device="cpu")
    for row, example in enumerate(examples[:2]):
        n = len(example.input_ids)
        assert (labels[row, :example.prompt_tokens] == -100).all()
        assert labels[row, example.prompt_tokens:n].tolist() == list(
            example.input_ids[example.prompt_tokens:])
        assert (labels[row, n:] == -100).all() and mask[row, n:].sum() == 0
    answer = tokenizer.decode(examples[0].input_ids[examples[0].prompt_tokens:])
    assert answer.startswith("```python\ndef f0():")
    _, too_long = data.tokenize(ROWS, tokenizer, max_length=20)
    assert too_long == len(ROWS)  # left out, never cut


def test_rows_with_prompt_and_completion_only(tokenizer):
    prompt, target = data.render({"prompt": "Say hi.", "completion": "hi"}, tokenizer)
    assert "Say hi." in prompt and target.startswith("hi")


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_every_output(tmp_path, rows_file):
    config = TrainConfig(max_steps=8, grad_accumulation=2, learning_rate=2e-3, rank=8,
                         save_every=4)
    result = train(rows_file, "tiny", tmp_path / "out", config)
    log = [json.loads(line) for line in (tmp_path / "out" / loop.LOG).open()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert log[-1]["loss"] < 0.5 * log[0]["loss"], log
    adapter_config = json.loads((result.adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(weights_path(get_model("tiny")))
    assert not adapter_config.get("modules_to_save")
    assert sorted(adapter_config["target_modules"]) == sorted(config.target_modules)
    assert (tmp_path / "out" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "out" / "train.json").read_text())
    assert summary["report"]["counts"]["optimiser steps"] == 8


def test_settings_left_open_are_chosen_by_the_sets_size():
    """Measured on held-out tasks (docs/results.md): on a small set, the larger sets' 2 epochs of
    8 examples a step cost the 0.5B student 11-12 points; 3 epochs of 2 did not measurably."""
    small, large = TrainConfig().for_examples(SMALL_SET - 1), TrainConfig().for_examples(SMALL_SET)
    assert (small.epochs, small.grad_accumulation) == (3, 2)
    assert (large.epochs, large.grad_accumulation) == (2, 8)
    # a checkpoint made when these were fixed defaults still resumes
    assert large.digest() == TrainConfig(epochs=2, grad_accumulation=8).digest()
    given = TrainConfig(epochs=1, grad_accumulation=4).for_examples(5)
    assert (given.epochs, given.grad_accumulation) == (1, 4)  # what the user set stands
    assert TrainConfig(processes=4).for_examples(5).grad_accumulation == 4
    assert TrainConfig(processes=3).for_examples(100).grad_accumulation == 9


@pytest.mark.slow
def test_a_small_set_trains_with_the_small_set_settings(tmp_path, rows_file):
    result = train(rows_file, "tiny", tmp_path / "out", TrainConfig(rank=4))
    assert result.report.value("settings for the set's size") == \
        "epochs 3, grad_accumulation 2 (small set)"
    assert result.report.value("optimiser steps") == 9  # 3 epochs of 6 examples, 2 a step
    assert "only 6 examples" in result.report.value("warning")
    summary = json.loads((tmp_path / "out" / "train.json").read_text())
    assert (summary["config"]["epochs"], summary["config"]["grad_accumulation"]) == (3, 2)
    assert (summary["settings"]["epochs"], summary["settings"]["grad_accumulation"]) == \
        (None, None)


MEMORY = """
import json, sys
import peft, torch, transformers  # the libraries' own memory is the baseline
from localdistill.stages.train import TrainConfig, train

def rss_mb():
    status = open("/proc/self/status").read().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024

before = rss_mb()
earlier = b"x" * (3 * 2**30)  # an earlier stage's 3 GiB, freed before training starts
del earlier
result = train(sys.argv[1], "tiny", sys.argv[2], TrainConfig(max_steps=1, grad_accumulation=1,
                                                             rank=8))
print(json.dumps({"before": before, "after": rss_mb(),
                  "peak": float(result.report.counts["peak memory (GiB)"]) * 1024}))
"""


@pytest.mark.slow
def test_training_gives_its_memory_back_and_reports_its_own_peak(tmp_path, rows_file):
    """`run` trains several adapters and then evaluates for hours in one process: the model,
    gradients and optimiser state must not stay resident (they did: glibc kept the freed heap,
    8.5 GB on the 0.5B student), and each training's peak is its own, not the process's (it was:
    a later adapter reported the earlier ones' peak). A fresh process, so no other test counts."""
    done = subprocess.run([sys.executable, "-c", MEMORY, str(rows_file), str(tmp_path / "out")],
                          check=True, capture_output=True, text=True)
    mb = json.loads(done.stdout.strip().splitlines()[-1])
    grew = mb["peak"] - mb["before"]
    assert 200 < grew < 2500, mb  # training the tiny model takes memory; not the freed 3 GiB
    assert mb["after"] - mb["before"] < 0.25 * grew, mb


# An interrupted training resuming to the same adapter (SIGKILL and Ctrl-C, again and again, each
# step logged once, the adapter and losses those of an uninterrupted run): test_interruptions.py.


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, rows_file):
    train(rows_file, "tiny", tmp_path / "out", TrainConfig(max_steps=1, rank=4))
    with pytest.raises(ValueError, match="checkpoint of another training"):
        train(rows_file, "tiny", tmp_path / "out", TrainConfig(max_steps=2, rank=8))


def test_adapters_that_backends_reject_are_refused_up_front():
    with pytest.raises(ValueError, match="embedding or output layer"):
        TrainConfig(target_modules=("q_proj", "lm_head"))
    with pytest.raises(ValueError, match="rank must be at least 1"):
        TrainConfig(rank=0)


def test_a_trained_student_is_named_base_plus_output(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelsFileError, match="holds no GGUF adapter"):
        get_model(f"tiny+{tmp_path}")
    (tmp_path / "adapter.gguf").write_bytes(b"GGUF")
    spec = get_model(f"tiny+{tmp_path}")
    assert spec.adapter == str(tmp_path / "adapter.gguf") and spec.backend == "llama.cpp"
    hf = get_model(f"demo-student-hf+{tmp_path}")
    assert hf.adapter == str(tmp_path / "adapter")


@pytest.mark.slow
def test_the_train_command(tmp_path, rows_file):
    result = subprocess.run([str(SCRIPT), "train", str(rows_file), "--student", "tiny", "-o",
                             str(tmp_path / "out"), "--max-steps", "2", "--rank", "4"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "optimiser steps" in result.stdout and f"tiny+{tmp_path / 'out'}" in result.stdout
    assert f"warning: only {len(ROWS)} examples: too few to expect a gain" in result.stderr
    missing = subprocess.run([str(SCRIPT), "train", str(tmp_path / "none.jsonl"), "--student",
                              "tiny", "-o", str(tmp_path / "o2")], capture_output=True, text=True)
    assert missing.returncode == 2


def test_a_tampered_checkpoint_is_refused_not_executed(tmp_path):
    """A checkpoint is loaded with weights_only: a pickle that runs code on load (a run directory
    someone else handed over) is refused in one line, and its code never runs."""
    import torch

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / loop.CHECKPOINT).mkdir()
    torch.save({"step": 1, "payload": Payload()}, tmp_path / loop.CHECKPOINT / "state.pt")
    with pytest.raises(ValueError, match="not a checkpoint localdistill can trust"):
        loop._resume(None, None, None, tmp_path, "fingerprint")
    assert not marker.exists()
