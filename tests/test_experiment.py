"""`localdistill run CONFIG.toml`: the configuration is checked key by key before any work, and
the whole loop (collect -> train -> eval -> report) runs for real on the tiny model and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LOOP

from localdistill.experiment import ConfigError, load_config, slug

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "localdistill"
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
MBPP = DATA / "mbpp.jsonl"

# The loop the session makes once (conftest.py); the config tests below edit its text.
GOOD = LOOP


def _config(tmp_path: Path, text: str, tasks: str = "tasks.jsonl") -> Path:
    path = tmp_path / "loop.toml"
    path.write_text(text.replace("{tasks}", tasks))
    return path


def test_a_good_config_parses_with_its_types(tmp_path):
    config = load_config(_config(tmp_path, GOOD))
    assert config.loop.methods == ("inpd", "persd") and config.loop.tasks == ("tasks.jsonl",)
    assert config.collect.student == "tiny" and config.collect.max_tokens == 24
    assert config.collect.methods == ("inpd", "persd")  # only what is compared is built
    assert config.train.max_steps == 2 and config.train.learning_rate == 2e-4
    assert config.eval.temperature == 0.0 and isinstance(config.eval.temperature, float)
    assert config.eval.steps == 1 and config.eval.ks == (1,)


@pytest.mark.parametrize("change, message", [
    (('[run]', '[runn]'), "unknown table [runn]"),
    (('student = "tiny"\n', ''), "[run] missing key 'student'"),
    (('rank = 4', 'rnak = 4'), "[train] unknown key 'rnak'"),
    (('rank = 4', 'rank = "four"'), "[train] rank = 'four': expected an integer"),
    (('rank = 4', 'rank = 0'), "[train]: training settings: rank must be at least 1"),
    (('steps = 1', 'steps = 1.5'), "[eval] steps = 1.5: expected an integer"),
    (('methods = ["inpd", "persd"]', 'methods = ["persd", "magic"]'), "unknown data set 'magic'"),
    (('temperature = 0', 'temperature = true'), "expected a number"),
    (('max_tokens = 24', 'student = "other"'), "[collect] unknown key 'student'"),
    (('[eval]', '[eval]\nks = [0]'), "every k >= 1"),
    (('[run]', 'oops'), "not valid TOML"),
])
def test_a_bad_config_names_the_key(tmp_path, change, message):
    path = _config(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_slugs():
    assert slug("mbpp:test=/data/mbpp.jsonl") == "mbpp-test"
    assert slug("humaneval") == "humaneval"
    assert slug("/home/me/tasks/own.jsonl") == "own"


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two further runs: retraining and evaluating two adapters
def test_the_whole_loop_runs_moves_and_resumes(tiny_loop, tmp_path):
    """The loop of conftest.py, run once for the session; here its run directory is moved (a
    copy) and run again: nothing is asked or trained again; then a changed training setting
    retrains and re-evaluates the adapters, and nothing else."""
    import shutil

    rows = {r["label"]: r for r in json.loads((tiny_loop.run / "report" / "report.json")
                                              .read_text())}
    assert set(rows) == {"base", "inpd", "persd"}
    for label in rows:
        summary = json.loads((tiny_loop.run / "eval" / label / "tasks" / "summary.json")
                             .read_text())
        assert rows[label]["pass_at_k"] == summary["pass_at_k"] and summary["steps"] == 1
    assert rows["persd"]["examples"] == len(
        (tiny_loop.run / "collect" / "data" / "persd.jsonl").read_text().splitlines())
    assert not (tiny_loop.run / "collect" / "data" / "standd").exists()  # not compared: not built
    assert (tiny_loop.run / "report" / "pass_at_1_by_method.png").is_file()
    assert "localdistill report" in tiny_loop.stdout

    run = tmp_path / "run"
    shutil.copytree(tiny_loop.run, run, symlinks=True)
    sent = _text(run / "collect" / "cache" / "sent.jsonl")
    again = subprocess.run([str(SCRIPT), "run", str(tiny_loop.config), "--run", str(run)],
                           capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _text(run / "collect" / "cache" / "sent.jsonl") == sent  # nothing asked again
    assert "train persd: done before, kept" in again.stdout
    assert "train inpd: done before, kept" in again.stdout
    for label in rows:
        cache = run / "eval" / label / "tasks" / "cache"
        assert _text(cache / "sent.jsonl") == _text(
            tiny_loop.run / "eval" / label / "tasks" / "cache" / "sent.jsonl")
        assert len((cache / "sent.jsonl").read_text().splitlines()) == len(
            (cache / "requests.jsonl").read_text().splitlines())

    # A changed training setting retrains and re-evaluates the adapters, and nothing else.
    base_requests = (run / "eval" / "base" / "tasks" / "cache" / "sent.jsonl").read_text()
    changed = _config(tmp_path, GOOD.replace("rank = 4", "rank = 8"), str(tiny_loop.tasks))
    third = subprocess.run([str(SCRIPT), "run", str(changed), "--run", str(run)],
                           capture_output=True, text=True, timeout=1200)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "the configuration changed" in third.stdout
    assert _text(run / "collect" / "cache" / "sent.jsonl") == sent
    assert (run / "eval" / "base" / "tasks" / "cache" / "sent.jsonl").read_text() == \
        base_requests
    assert json.loads((run / "train" / "persd" / "train.json").read_text())["config"]["rank"] == 8
    assert "rank = 8" in (run / "config.toml").read_text()
    assert len(list(run.glob("config.*.toml"))) == 1  # the earlier one, kept


def test_the_shipped_configs_parse():
    quick = load_config(REPO / "examples" / "quickstart.toml")
    assert quick.loop.tasks == (str(REPO / "examples" / "quickstart_tasks.jsonl"),)
    reproduce = load_config(REPO / "examples" / "reproduce_cpu.toml")
    assert reproduce.loop.methods == ("standd", "inpd", "persd", "persd-refine", "persd-combine")
    assert reproduce.eval.benchmarks == ("humaneval", "mbpp:test")


def test_the_reproduction_script_runs_one_config_per_student(tmp_path):
    """scripts/reproduce_cpu.sh with `echo` in place of localdistill: the runs it would start,
    each with a config that parses and names its student; bad arguments are refused."""
    script = REPO / "scripts" / "reproduce_cpu.sh"
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "LOCALDISTILL": "echo"}
    done = subprocess.run(["bash", str(script), str(DATA), "tiny", "demo", "--", "--reuse", "x"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    started = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert started == [f"run {tmp_path}/runs/reproduce-{name}.toml --run {tmp_path}/runs/"
                       f"reproduce-{name} --reuse x" for name in ("tiny", "demo")]
    for name, student in (("tiny", "tiny"), ("demo", "demo-student")):
        config = load_config(tmp_path / "runs" / f"reproduce-{name}.toml")
        assert config.loop.student == student and config.loop.teacher == "demo-teacher"
    for args in ([str(tmp_path)], [str(DATA), "large"], []):
        refused = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                                 env=env, timeout=60)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the second round: a collect, a training, an evaluation
def test_a_second_distillation_round_uses_the_first_rounds_student(tiny_loop, tmp_path):
    """The loop of conftest.py (round 1, copied), run again with distill_rounds = 2: round 1 is
    kept, round 2's student is round 1's PERsD adapter."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_loop.run, run, symlinks=True)
    ids = [json.loads(x)["task_id"] for x in tiny_loop.tasks.read_text().splitlines()]
    text = GOOD.replace('methods = ["inpd", "persd"]',
                        'methods = ["inpd", "persd"]\ndistill_rounds = 2')
    config = _config(tmp_path, text, str(tiny_loop.tasks))
    assert load_config(config).loop.distill_rounds == 2
    first = subprocess.run([str(SCRIPT), "run", str(config), "--run", str(run)],
                           capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "train persd: done before, kept" in first.stdout  # round 1 is not redone

    one, two = run / "collect", run / "collect-round2" / "persd"
    round1 = [json.loads(x) for x in (one / "data" / "persd.jsonl").read_text().splitlines()]
    assert round1, "the tiny teacher verified no refinement: nothing to test a second round on"
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["distill_round"] == 2
    assert manifest["config"]["student_adapter"] == str(run / "train" / "persd")
    attempts = [json.loads(x) for x in (two / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == len(ids) and all(a["model"] == "tiny+persd" for a in attempts)
    # Only what the round-1 student still fails goes to the teacher.
    failed = sum(not json.loads(x)["passed"]
                 for x in (two / "executions.jsonl").read_text().splitlines())
    refine_sent = [json.loads(x) for x in (two / "cache" / "sent.jsonl").read_text().splitlines()
                   if json.loads(x)["stage"].startswith("refine")]
    assert (failed == 0) == (refine_sent == [])
    # Round 2's data set holds every round-1 row, and its own rows as round 2.
    round2 = [json.loads(x) for x in (two / "data" / "persd.jsonl").read_text().splitlines()]
    assert {r["id"] for r in round1} <= {r["id"] for r in round2}
    assert {r["distill_round"] for r in round2} <= {1, 2}
    assert len(round2) == len({r["id"] for r in round2})
    trained = json.loads((run / "train" / "persd-round2" / "train.json").read_text())
    assert trained["data_set"] == str(two / "data" / "persd")
    rows = {r["label"]: r for r in json.loads((run / "report" / "report.json").read_text())}
    assert set(rows) == {"base", "inpd", "persd", "persd-round2"}  # InpD is not personalised
    assert rows["persd-round2"]["examples"] == len(round2)

    sent = (two / "cache" / "sent.jsonl").read_text()
    again = subprocess.run([str(SCRIPT), "run", str(config), "--run", str(run)],
                           capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (two / "cache" / "sent.jsonl").read_text() == sent
    assert "train persd-round2: done before, kept" in again.stdout


def test_the_config_reference_page_is_in_step_with_the_code():
    page = (REPO / "docs" / "run.md").read_text()
    from localdistill.experiment import config_reference

    assert page.rstrip().endswith(config_reference().rstrip())


def test_an_adapter_trained_with_the_settings_given_is_not_trained_again(tmp_path):
    """`run` keeps an adapter whose settings and data match. train.json keeps the settings as
    given (epochs and grad_accumulation may be left to the set's size) and as resolved; one
    written before it kept the given ones matches by the resolved ones, for its examples."""
    from dataclasses import asdict

    from localdistill.experiment import _trained
    from localdistill.stages.train import TrainConfig
    from localdistill.stages.train.data import load_rows, rows_digest

    data_set = tmp_path / "rows.jsonl"
    data_set.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    digest = rows_digest(load_rows(data_set))

    def written(**fields) -> None:
        (out / "train.json").write_text(json.dumps({"data_digest": digest, **fields}))

    given = TrainConfig()
    written(config=asdict(given.for_examples(9)), settings=asdict(given),
            report={"counts": {"examples": 9}})
    assert _trained(out, data_set, given)
    assert not _trained(out, data_set, TrainConfig(epochs=3, grad_accumulation=2))
    written(config=asdict(given.for_examples(9)), report={"counts": {"examples": 9}})  # before
    assert _trained(out, data_set, given)
    assert _trained(out, data_set, TrainConfig(epochs=3, grad_accumulation=2))
    assert not _trained(out, data_set, TrainConfig(epochs=4))


def test_run_imports_unsloth_before_any_stage_when_it_will_train_with_it(tmp_path, monkeypatch):
    """Unsloth patches transformers and PEFT fully only when it is imported before them (on the
    H200 it warned when a test had loaded transformers first), and `run`'s collect may load
    transformers (a vLLM or transformers teacher does): `run` imports it before any stage. No GPU
    or Unsloth here: that Unsloth would train is stood in for, and the collect stage by a stub
    that records the order and stops the loop."""
    import localdistill.collect
    from localdistill.experiment import run_loop
    from localdistill.stages.train import unsloth_backend

    config = load_config(_config(tmp_path, GOOD))
    order = []
    monkeypatch.setattr(unsloth_backend, "available", lambda: True)
    monkeypatch.setattr(unsloth_backend, "import_first", lambda: order.append("unsloth"))

    def collect(*args, **kwargs):
        order.append("collect")
        raise KeyboardInterrupt  # enough: the loop stops here

    monkeypatch.setattr(localdistill.collect, "collect", collect)
    monkeypatch.setattr("localdistill.tasks.load_tasks", lambda spec: [])
    with pytest.raises(KeyboardInterrupt):
        run_loop(config, tmp_path / "run", say=lambda _: None)
    assert order == ["unsloth", "collect"]
    order.clear()
    monkeypatch.setattr(unsloth_backend, "available", lambda: False)  # PEFT: nothing imported
    with pytest.raises(KeyboardInterrupt):
        run_loop(config, tmp_path / "run", say=lambda _: None)
    assert order == ["collect"]
