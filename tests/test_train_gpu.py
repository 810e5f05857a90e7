"""LoRA training on a CUDA GPU, with each backend: Unsloth (4-bit base, its kernels) and PEFT.

Marked `gpu`: skipped where torch sees no CUDA GPU (the Unsloth test also where the package is not
installed). The base is a Qwen2-shaped model with random weights made on the spot
(tests/random_model.py): no real model can travel to the GPU machine these run on, and what is
checked here (the backend loads the base on the GPU, the shared loop trains its LoRA weights, the
adapter comes out in PEFT's format and changes the model's answers the way the training asked) does
not depend on what the weights know. The same tests on the CPU are test_train.py's, on the real
tiny model.
"""

from __future__ import annotations

import json

import pytest

from localdistill.backends import parse_models
from localdistill.stages.train import TrainConfig, choose_backend, loop, train, unsloth_backend

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SYSTEM = {"role": "system", "content": "You are an expert Python programmer."}
ROWS = [{"messages": [SYSTEM, {"role": "user", "content": f"Write f{i}, returning {i}."},
                      {"role": "assistant",
                       "content": f"```python\ndef f{i}():\n    return {i}\n```"}]}
        for i in range(8)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from random_model import make_random_model

    return make_random_model(tmp_path_factory.mktemp("random-qwen2") / "model", "tiny")


@pytest.fixture(scope="module")
def spec(base):
    toml = f'[models.random]\nbackend = "transformers"\npath = "{base}"\ncontext_length = 1024\n'
    return parse_models(toml, "test.toml")["random"]


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def completion_loss(base, adapter, rows) -> float:
    """Mean loss of the rows' answers under the base (adapter None) or base + adapter, in bf16
    with PEFT on the GPU (how a user would load the result)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from localdistill.stages.train import data

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).to("cuda")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    examples, _ = data.tokenize(rows, tokenizer, 1024)
    losses = []
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e.input_ids], device="cuda")
            logits = model(input_ids=ids).logits[0, e.prompt_tokens - 1:-1].float()
            losses.append(torch.nn.functional.cross_entropy(
                logits, ids[0, e.prompt_tokens:]).item())
    return sum(losses) / len(losses)


def _check_trained(result, out, base, rows, backend: str, steps: int) -> None:
    log = [json.loads(line) for line in (out / loop.LOG).open()]
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    assert log[-1]["loss"] < 0.5 * log[0]["loss"], log
    summary = json.loads((out / "train.json").read_text())
    assert summary["report"]["counts"]["backend"] == backend
    assert float(summary["report"]["counts"]["peak memory (GiB)"]) > 0  # the GPU's, measured
    adapter_config = json.loads((result.adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base)
    assert (result.adapter / "adapter_model.safetensors").exists()
    assert result.gguf_adapter is None  # a Hugging Face base: no llama.cpp adapter to make
    # loaded back with PEFT, the adapter makes the trained answers far more likely
    before, after = completion_loss(base, None, rows), completion_loss(base, result.adapter, rows)
    assert after < 0.5 * before, (before, after)


def test_peft_trains_on_the_gpu(base, spec, rows_file, tmp_path):
    config = TrainConfig(backend="peft", max_steps=12, grad_accumulation=2, learning_rate=5e-3,
                         rank=8)
    result = train(rows_file, spec, tmp_path / "out", config)
    _check_trained(result, tmp_path / "out", base, ROWS, "peft", 12)


@pytest.mark.skipif(not unsloth_backend.available(), reason="needs the unsloth package")
def test_unsloth_is_chosen_on_a_gpu_and_trains(base, spec, rows_file, tmp_path):
    assert choose_backend(TrainConfig()) == "unsloth"  # backend = "auto"
    config = TrainConfig(max_steps=12, grad_accumulation=2, learning_rate=5e-3, rank=8)
    result = train(rows_file, spec, tmp_path / "out", config)
    _check_trained(result, tmp_path / "out", base, ROWS, "unsloth", 12)
