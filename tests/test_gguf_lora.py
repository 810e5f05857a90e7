"""Proof that the GGUF adapter is the adapter, on the tiny model (SmolLM2-135M, GGUF Q4_1) on CPU.

transformers loads the GGUF dequantised (fp32 weights equal to the Q4_1 values); llama.cpp runs the
Q4_1 weights themselves, with activations quantised to 8 bits in its matrix products. So even
without an adapter the two disagree a little, and that measured gap is the tolerance: llama.cpp
with the exported GGUF adapter must be as close to transformers+PEFT as the bare base is, and far
closer than the adapter's own effect. A wrong q/k permutation or a wrong scale must break that.

Measured on the 2-core CI machine (llama-cpp-python 0.3.36, AVX-512; 3 prompts, 45 positions,
vocabulary 49,152; lora_B ~ N(0, 0.04) with rsLoRA, rank_pattern and alpha_pattern), mean / max
|logit difference| and argmax agreement over all positions:
- base, transformers vs llama.cpp (quantisation alone):  0.195 / 1.80, argmax 100 %
- adapted, transformers+PEFT vs llama.cpp+GGUF adapter:   0.204 / 2.23, argmax 93 %
- the adapter's own effect (llama.cpp with vs without):   2.73  / 18.2, argmax 71 %
- exported without the q/k permutation, vs PEFT:          0.71  / 6.07
- exported ignoring rsLoRA (scale 16/8, not 16/sqrt(8)):  2.25  / 17.1
Over four other random adapters of that size the adapted gap was 0.20 to 0.27 and the
unpermuted one 0.56 to 0.88. Memorising two answers: loss 3.51 -> 0.001 in 20 AdamW steps.
"""

from __future__ import annotations

import http.client
import json
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

from localdistill.backends import get_model  # noqa: E402
from localdistill.backends.serving import free_port  # noqa: E402
from localdistill.models import weights_path  # noqa: E402
from localdistill.stages.train import gguf_lora  # noqa: E402
from localdistill.stages.train.gguf_lora import AdapterError, export_gguf_lora, merge_adapter  # noqa: E402

TINY = weights_path(get_model("tiny"))
PROJECTIONS = list(gguf_lora.GGUF_TENSOR)
# lora_B ~ N(0, STD): the adapter moves the logits about 14 times as far as quantisation does, yet
# leaves the model sane. Much stronger random adapters make it chaotic, and then the 8-bit noise
# of llama.cpp's activations is amplified along with everything else (at 0.07 the adapted gap
# was 0.3 to 0.65 over four seeds, at 0.02 it was the base gap).
STD = 0.04
PROMPTS = [
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "The capital of France is",
    "import numpy as np\n\nx = np.arange(10)\nprint(x.sum())",
]
# Two unusual facts the model learns by heart; the answers end with the template's end of turn.
MEMORISED = {
    "What is the secret word?": "The secret word is pomegranate.",
    "Who guards the lighthouse?": "A retired walrus named Bartholomew.",
}


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from localdistill.backends.hf import from_pretrained_args

    # The GGUF file as transformers dequantises it, kept after the first load (the very weights
    # of a load from the file: tests/test_models.py).
    where = from_pretrained_args(TINY)
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def prompt_ids(tiny):
    return [tiny[1](p).input_ids for p in PROMPTS]


def hf_logits(model, prompt_ids) -> list[np.ndarray]:
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].numpy() for ids in prompt_ids]


def cpp_logits(prompt_ids, adapter: Path | None = None) -> list[np.ndarray]:
    kwargs = {"lora_path": str(adapter)} if adapter else {}
    llm = llama_cpp.Llama(model_path=str(TINY), n_ctx=256, logits_all=True, verbose=False,
                          n_threads=2, **kwargs)
    try:
        logits = []
        for ids in prompt_ids:
            llm.reset()
            llm.eval(ids)
            logits.append(np.array(llm.scores[: len(ids)]))
        return logits
    finally:
        llm.close()


def gap(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, float]:
    a, b = np.concatenate(a), np.concatenate(b)
    diff = np.abs(a - b)
    return {"mean": float(diff.mean()), "max": float(diff.max()),
            "argmax": float((a.argmax(-1) == b.argmax(-1)).mean())}


@pytest.fixture(scope="module")
def random_adapter(tiny, prompt_ids, tmp_path_factory):
    """A LoRA with random lora_B (so it really changes the model), exercising every scale rule:
    rsLoRA, a smaller rank for down_proj and a larger alpha for v_proj. Returns its directory and
    the transformers logits of the base and of base + adapter."""
    model, _ = tiny
    base = hf_logits(model, prompt_ids)
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, lora_dropout=0.0,
                             use_rslora=True, rank_pattern={"down_proj": 4},
                             alpha_pattern={"v_proj": 32})
    torch.manual_seed(0)  # lora_A's initialisation
    adapted = peft.get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * STD)
    logits = hf_logits(adapted, prompt_ids)
    directory = tmp_path_factory.mktemp("random") / "adapter"
    adapted.save_pretrained(directory, save_embedding_layers=False)
    adapted.unload()  # the base model again, for the other tests
    return directory, base, logits


@pytest.fixture(scope="module")
def cpp_base(prompt_ids):
    return cpp_logits(prompt_ids)


@pytest.mark.slow
def test_the_file_has_what_llamacpp_expects(random_adapter, tmp_path):
    directory, _, _ = random_adapter
    out = export_gguf_lora(directory, TINY, tmp_path / "adapter.gguf")
    reader = gguf.GGUFReader(out)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    # rsLoRA: PEFT's scale 16/sqrt(8); llama.cpp's is alpha/8, so alpha = 16*sqrt(8)
    assert fields["adapter.lora.alpha"] == pytest.approx(16 * math.sqrt(8), rel=1e-6)
    tensors = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}  # ggml order
    assert len(tensors) == 30 * 7 * 2
    assert tensors["blk.0.attn_q.weight.lora_a"] == (576, 8)  # torch (r, in)
    assert tensors["blk.0.attn_k.weight.lora_b"] == (8, 192)  # torch (out, r): 3 kv heads x 64
    assert tensors["blk.29.ffn_down.weight.lora_b"] == (4, 576)  # rank_pattern
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.gguf"]  # no temporary file left


@pytest.mark.slow
def test_llamacpp_with_the_gguf_adapter_matches_transformers_with_peft(random_adapter, cpp_base,
                                                                       prompt_ids, tmp_path):
    directory, hf_base, hf_adapted = random_adapter
    cpp_adapted = cpp_logits(prompt_ids, export_gguf_lora(directory, TINY, tmp_path / "a.gguf"))
    base_gap = gap(hf_base, cpp_base)  # quantisation alone
    adapted_gap = gap(hf_adapted, cpp_adapted)
    effect = gap(cpp_base, cpp_adapted)
    print(f"\nbase gap {base_gap}\nadapted gap {adapted_gap}\nadapter effect {effect}")
    assert effect["mean"] > 8 * base_gap["mean"] and effect["argmax"] < 0.8  # it does something
    assert adapted_gap["mean"] < 1.5 * base_gap["mean"]  # as close as quantisation allows
    assert adapted_gap["mean"] < effect["mean"] / 5
    assert adapted_gap["argmax"] >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("mistake", ["no q/k permutation", "rsLoRA ignored"])
def test_a_wrong_permutation_or_scale_breaks_parity(mistake, random_adapter, cpp_base,
                                                  prompt_ids, tmp_path, monkeypatch):
    if mistake == "no q/k permutation":
        monkeypatch.setattr(gguf_lora, "_rope_permute", lambda lora_b, n_head: lora_b)
    else:
        monkeypatch.setattr(gguf_lora, "_scale", lambda config, rank, alpha: alpha / rank)
    directory, hf_base, hf_adapted = random_adapter
    wrong = cpp_logits(prompt_ids, export_gguf_lora(directory, TINY, tmp_path / "wrong.gguf"))
    wrong_gap = gap(hf_adapted, wrong)
    print(f"\n{mistake}: gap {wrong_gap}")
    assert wrong_gap["mean"] > 2 * gap(hf_base, cpp_base)["mean"]


@pytest.mark.slow
def test_a_memorised_answer_comes_out_of_llamacpp(tiny, tmp_path):
    """Train on two prompt → answer pairs (loss on the answers only), then greedy chat through
    llama.cpp with the exported adapter says them; without the adapter it does not."""
    model, tokenizer = tiny
    examples = []
    for question, answer in MEMORISED.items():
        chat = [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False).input_ids
        ids = torch.tensor([prompt_ids + answer_ids])
        labels = ids.clone()
        labels[0, : len(prompt_ids)] = -100
        examples.append((ids, labels))
    torch.manual_seed(0)
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, lora_dropout=0.0)
    student = peft.get_peft_model(model, config)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-3)
    losses = []
    student.train()
    for _ in range(20):
        total = 0.0
        for ids, labels in examples:
            loss = student(input_ids=ids, labels=labels).loss
            loss.backward()
            total += loss.item()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(total / len(examples))
    student.eval()
    student.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)
    student.unload()
    print(f"\nmemorising: loss {losses[0]:.3f} -> {losses[-1]:.4f} in {len(losses)} steps")
    assert losses[-1] < losses[0] / 20, losses

    adapter = export_gguf_lora(tmp_path / "adapter", TINY, tmp_path / "adapter.gguf")
    for lora, expect_memorised in ((adapter, True), (None, False)):
        kwargs = {"lora_path": str(lora)} if lora else {}
        llm = llama_cpp.Llama(model_path=str(TINY), n_ctx=512, verbose=False, n_threads=2,
                              **kwargs)
        try:
            for question, answer in MEMORISED.items():
                out = llm.create_chat_completion(
                    messages=[{"role": "user", "content": question}], temperature=0,
                    max_tokens=24)
                said = out["choices"][0]["message"]["content"].strip()
                assert (said == answer) == expect_memorised, (lora, question, said)
        finally:
            llm.close()

    # Our llama.cpp backend (`localdistill generate NAME+ADAPTER`) says it too.
    question, answer = next(iter(MEMORISED.items()))
    said = subprocess.run([str(Path(sys.executable).parent / "localdistill"), "generate",
                           f"tiny+{adapter}", "-p", question, "--max-tokens", "24",
                           "--temperature", "0"], capture_output=True, text=True, timeout=300)
    assert said.returncode == 0 and answer in said.stdout, said.stdout + said.stderr

    # ...and so does its batched decoding (`parallel = 2`): the adapter is on the batch's context.

    from localdistill.backends import open_backend, request_for

    spec = get_model("tiny").with_keys(adapter=str(adapter), parallel=2, threads=2)
    backend = open_backend(spec)
    try:
        asked = [request_for(spec, messages=[{"role": "user", "content": q}], max_tokens=24,
                             temperature=0.0) for q in MEMORISED]
        said = [r.samples[0].text.strip() for r in backend.generate(asked)]
    finally:
        backend.close()
    assert sorted(said) == sorted(MEMORISED.values()), said

    # llama.cpp's server loads it as well: `localdistill serve tiny+ADAPTER`, asked over HTTP.
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "localdistill"), "serve",
                               f"tiny+{adapter}", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith("serving tiny+"), first + server.stderr.read()
        for question, answer in MEMORISED.items():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/v1/chat/completions", json.dumps({
                "messages": [{"role": "user", "content": question}], "max_tokens": 24,
                "temperature": 0}), {"Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read())
            assert reply["choices"][0]["message"]["content"].strip() == answer, reply
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)


@pytest.mark.slow
def test_merged_weights_compute_what_peft_computes(random_adapter, prompt_ids, tmp_path):
    from transformers import AutoModelForCausalLM

    directory, _, hf_adapted = random_adapter
    merged_dir = merge_adapter(TINY, directory, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    for got, want in zip(hf_logits(merged, prompt_ids), hf_adapted, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert (merged_dir / "tokenizer_config.json").is_file()


def toy_base(tmp_path: Path, arch: str, n_head: int = 2, n_head_kv: int = 1, hidden: int = 8):
    """A one-layer base GGUF of architecture `arch` with just the attention projections."""
    path = tmp_path / f"{arch}.gguf"
    writer = gguf.GGUFWriter(path, arch)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    head = hidden // n_head
    for name, rows in (("attn_q", hidden), ("attn_k", n_head_kv * head), ("attn_v", hidden)):
        writer.add_tensor(f"blk.0.{name}.weight", np.zeros((rows, hidden), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_q_and_k_rows_are_permuted_for_llama_only(tmp_path):
    """Within each head, llama.cpp's rotary layout interleaves the two halves of the rows
    (q: 2 heads, k: 1 kv head, of 4 rows each); Qwen2 GGUFs keep Hugging Face's layout."""
    rows = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)  # lora_B, rank 2: row i = (2i, 2i+1)
    pairs = {
        "model.layers.0.self_attn.q_proj": (np.ones((2, 8)), rows),
        "model.layers.0.self_attn.k_proj": (np.ones((2, 8)), rows[:4]),
        "model.layers.0.self_attn.v_proj": (np.ones((2, 8)), rows),
    }
    directory = fake_adapter(tmp_path, pairs, r=2, alpha=2)
    for arch, q_order, k_order in (("llama", [0, 2, 1, 3, 4, 6, 5, 7], [0, 2, 1, 3]),
                                   ("qwen2", list(range(8)), list(range(4)))):
        out = export_gguf_lora(directory, toy_base(tmp_path, arch), tmp_path / f"{arch}.lora")
        written = {t.name: np.array(t.data) for t in gguf.GGUFReader(out).tensors}
        np.testing.assert_array_equal(written["blk.0.attn_q.weight.lora_b"], rows[q_order])
        np.testing.assert_array_equal(written["blk.0.attn_k.weight.lora_b"], rows[k_order])
        np.testing.assert_array_equal(written["blk.0.attn_v.weight.lora_b"], rows)
        np.testing.assert_array_equal(written["blk.0.attn_q.weight.lora_a"], np.ones((2, 8)))


def test_an_architecture_without_a_checked_layout_is_refused(tmp_path):
    directory = fake_adapter(tmp_path, {"model.layers.0.self_attn.v_proj": (
        np.ones((2, 8)), np.ones((8, 2)))}, r=2, alpha=2)
    with pytest.raises(AdapterError, match="architecture 'phi3' is not supported"):
        export_gguf_lora(directory, toy_base(tmp_path, "phi3"), tmp_path / "a.gguf")


def fake_adapter(tmp_path: Path, pairs: dict, r: int = 8, alpha: float = 16, **config) -> Path:
    """A PEFT-format adapter directory without a model: the config and the A/B matrices."""
    from safetensors.numpy import save_file

    directory = Path(tempfile.mkdtemp(prefix="adapter", dir=tmp_path))
    targets = sorted({module.rsplit(".", 1)[-1] for module in pairs})
    body = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets,
            "bias": "none", "modules_to_save": None, "use_dora": False, **config}
    (directory / "adapter_config.json").write_text(json.dumps(body))
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.asarray(a, np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.asarray(b, np.float32)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory


Q0 = "model.layers.0.self_attn.q_proj"
GOOD = {Q0: (np.zeros((8, 576)), np.zeros((576, 8)))}


@pytest.mark.parametrize(
    ("pairs", "config", "message"),
    [
        (GOOD, {"modules_to_save": ["lm_head"]}, "modules_to_save"),
        (GOOD, {"use_dora": True}, "use_dora is set"),
        (GOOD, {"bias": "lora_only"}, "bias='lora_only'"),
        (GOOD, {"target_modules": ["q_proj", "embed_tokens"]}, "embedding and lm_head"),
        (GOOD, {"target_modules": ["q_proj", "c_attn"]}, "unknown target module 'c_attn'"),
        (GOOD, {"init_lora_weights": "pissa"}, "changed the base weights"),
        (GOOD, {"peft_type": "IA3"}, "not LoRA"),
        ({"model.embed_tokens": (np.zeros((8, 49152)), np.zeros((576, 8)))},
         {"target_modules": "embed"}, "embedding and lm_head"),
        ({"model.layers.0.mlp.c_fc": (np.zeros((8, 576)), np.zeros((1536, 8)))},
         {"target_modules": ".*c_fc"}, "unknown target module model.layers.0.mlp.c_fc"),
        # a Qwen2-0.5B adapter (hidden 896) on the SmolLM2 base (hidden 576)
        ({Q0: (np.zeros((8, 896)), np.zeros((896, 8)))}, {}, "trained on another base model"),
        ({"model.layers.31.self_attn.q_proj": GOOD[Q0]}, {}, "is absent"),
    ],
    ids=["modules_to_save", "dora", "bias", "embedding-target", "unknown-target", "pissa",
         "not-lora", "embedding-tensor", "unknown-tensor", "other-base", "no-such-layer"],
)
def test_adapters_llamacpp_cannot_load_are_refused(pairs, config, message, tmp_path):
    directory = fake_adapter(tmp_path, pairs, **config)
    out = tmp_path / "out" / "adapter.gguf"
    with pytest.raises(AdapterError, match=message) as refused:
        export_gguf_lora(directory, TINY, out)
    assert "\n" not in str(refused.value)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # nothing half-written


def test_an_adapter_for_another_architecture_is_refused(tmp_path):
    trained_on = tmp_path / "qwen"
    trained_on.mkdir()
    (trained_on / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    directory = fake_adapter(tmp_path, GOOD, base_model_name_or_path=str(trained_on))
    with pytest.raises(AdapterError, match="trained on a qwen2 model .* base GGUF is llama"):
        export_gguf_lora(directory, TINY, tmp_path / "a.gguf")


def test_a_bias_tensor_in_the_file_is_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = fake_adapter(tmp_path, GOOD)
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    tensors[f"base_model.model.{Q0}.lora_B.bias"] = np.zeros(576, np.float32)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="not a LoRA A/B matrix"):
        export_gguf_lora(directory, TINY, tmp_path / "a.gguf")


def test_merging_into_a_quantised_base_is_refused(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(
        {"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes",
                                                        "load_in_4bit": True}}))
    with pytest.raises(AdapterError, match="quantised"):
        merge_adapter(base, fake_adapter(tmp_path, GOOD), tmp_path / "merged")


@pytest.mark.slow
def test_loading_an_adapter_keeps_stderr_clean(tmp_path):
    """llama.cpp prints a line per adapted tensor when it loads a LoRA adapter onto weights it
    repacks for the CPU (the demo student's Q4_K_M; not the tiny model's Q4_1), right across the
    progress bars, whatever `verbose` says. Our backend silences them (12 lines before the fix)."""
    from localdistill.models.demo import ModelNotInstalled

    try:
        student = weights_path(get_model("demo-student"))
    except ModelNotInstalled as e:
        pytest.skip(str(e))
    # Qwen2.5-Coder-0.5B: hidden 896, MLP 4864; a zero adapter on every layer's MLP projections.
    pairs = {}
    for layer in range(24):
        for name, (fan_in, fan_out) in {"gate_proj": (896, 4864), "up_proj": (896, 4864),
                                        "down_proj": (4864, 896)}.items():
            pairs[f"model.layers.{layer}.mlp.{name}"] = (np.zeros((4, fan_in)),
                                                         np.zeros((fan_out, 4)))
    adapter = export_gguf_lora(fake_adapter(tmp_path, pairs, r=4, alpha=8), student,
                               tmp_path / "adapter.gguf")
    said = subprocess.run([str(Path(sys.executable).parent / "localdistill"), "generate",
                           f"demo-student+{adapter}", "-p", "Say hi.", "--max-tokens", "4"],
                          capture_output=True, text=True, timeout=300)
    assert said.returncode == 0 and said.stdout.strip(), said.stderr[-1000:]
    assert "lora" not in said.stderr.lower(), said.stderr[:500]
