"""The token-level data-set methods (tokd, persd+tokd, tokd-self, tokd-plain: methods.py) built
by `collect`: the scoring stage runs between refinement and build, and its rows train by
distillation beside PERsD's ordinary rows. Real work on the tiny model (student and teacher), on
a copy of the session's tiny collect run (its attempts and refinements come from the run's
cache)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import REPO, SCRIPT, needs_mbpp


@pytest.fixture(scope="module")
def token_run(tiny_collect, tmp_path_factory):
    where = tmp_path_factory.mktemp("token-methods")
    run = where / "run"
    shutil.copytree(tiny_collect.run, run, symlinks=True)
    result = subprocess.run(
        [str(SCRIPT), "collect", str(tiny_collect.tasks), "--student", "tiny", "--teacher",
         "tiny", "--run", str(run), "--max-tokens", "24", "--teacher-max-tokens", "160",
         "--methods", "persd,tokd,persd+tokd,tokd-self,tokd-plain"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result.stdout


def _rows(run, name: str) -> list[dict]:
    return [json.loads(x) for x in (run / "data" / f"{name}.jsonl").read_text().splitlines()]


@needs_mbpp
def test_collect_scores_every_attempt_and_builds_the_token_level_sets(token_run):
    run, shown = token_run
    attempts = {a["key"]: a for a in map(json.loads, (run / "attempts.jsonl").open())}
    tokd = _rows(run, "tokd")
    # every attempt (the four MBPP tasks have references: a correct solution is known for each)
    assert {r["attempt_key"] for r in tokd} == set(attempts)
    for r in tokd:
        answer = len(r["input_ids"]) - r["prompt_tokens"]
        assert answer > 0 and all(len(r[c]) == answer for c in
                                  ("top_ids", "top_logprobs", "rest", "token_logprob"))
        assert all(len(ids) == 20 for ids in r["top_ids"])  # ScoreConfig's top_k
        # the student's own answer is what was scored, in its own prompt
        assert r["messages"][-1]["content"] == (attempts[r["attempt_key"]].get("answer")
                                                or attempts[r["attempt_key"]]["completion"])
        assert "Correct solution" not in r["prompt"]  # the privileged context stays the teacher's
    scored = [json.loads(x) for x in (run / "scores" / "teacher.jsonl").open()]
    solutions = {s["attempt_key"]: s["solution_from"] for s in scored}
    refined = {r["attempt_key"] for r in map(json.loads, (run / "refinements.jsonl").open())
               if r["passed"]}
    assert {k for k, v in solutions.items() if v == "refinement"} == refined & set(attempts)
    assert set(solutions.values()) <= {"refinement", "reference"}
    # persd+tokd: both sets' rows, the ordinary ones without scores
    persd, both = _rows(run, "persd"), _rows(run, "persd+tokd")
    assert len(both) == len(persd) + len(tokd)
    assert sum("top_ids" in r for r in both) == len(tokd)
    # tokd-self: the same model scores, so the same scores (from the run's cache)
    self_rows = _rows(run, "tokd-self")
    assert [r["top_ids"] for r in self_rows] == [r["top_ids"] for r in tokd]
    # tokd-plain: the same attempts, scored in a stage of its own with the task alone shown
    plain = _rows(run, "tokd-plain")
    assert [r["attempt_key"] for r in plain] == [r["attempt_key"] for r in tokd]
    assert [r["input_ids"] for r in plain] == [r["input_ids"] for r in tokd]
    assert [r["token_logprob"] for r in plain] != [r["token_logprob"] for r in tokd]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["teacher scoring"]["counts"]["scored"] == len(tokd)
    assert manifest["stages"]["teacher scoring"]["counts"]["context"] == "privileged"
    assert manifest["stages"]["teacher scoring (plain context)"]["counts"]["context"] == "plain"
    assert manifest["stages"]["teacher scoring (plain context)"]["teacher_tokens"] > 0
    assert manifest["stages"]["self scoring"]["teacher_tokens"] == 0
    assert "tokd: attempts scored (passed / failed)" in shown


@needs_mbpp
def test_a_mixed_set_trains_scored_rows_by_distillation_and_the_rest_by_cross_entropy(
        token_run, tmp_path):
    from localdistill.stages.train import TrainConfig, train
    from localdistill.stages.train.data import load_rows, tokenize

    run, _ = token_run
    data_set = run / "data" / "persd+tokd"
    rows = load_rows(data_set)  # the datasets directory: empty score columns in persd's rows
    examples, _ = tokenize(rows, _tokenizer(), 4096)
    kinds = [e.teacher is not None for e in examples]
    assert sum(kinds) == len(_rows(run, "tokd")) and not all(kinds)
    # one step on one row of each kind, from the JSONL (the ordinary row has no score columns)
    lines = (run / "data" / "persd+tokd.jsonl").read_text().splitlines()
    mixed = [next(x for x in lines if '"top_ids"' not in x), next(x for x in lines
                                                                  if '"top_ids"' in x)]
    (tmp_path / "mixed.jsonl").write_text("\n".join(mixed) + "\n")
    result = train(tmp_path / "mixed.jsonl", "tiny", tmp_path / "out", TrainConfig(
        max_steps=1, grad_accumulation=1, rank=4, batch_size=2))
    [entry] = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").open()]
    assert result.report.value("examples") == 2 and 0 < entry["loss"] < 100


def _tokenizer():
    from transformers import AutoTokenizer

    from localdistill.backends import get_model
    from localdistill.backends.hf import from_pretrained_args
    from localdistill.models import weights_path

    return AutoTokenizer.from_pretrained(**from_pretrained_args(weights_path(get_model("tiny"))),
                                         local_files_only=True)


def test_a_teacher_that_cannot_score_is_refused_before_any_work(tmp_path):
    """A served teacher (no process of ours holds it) cannot score given tokens: `collect` with a
    token-level method says so in one line before the student attempts anything."""
    models = tmp_path / "models.toml"
    models.write_text((REPO / "models.toml").read_text()
                      + '\n[models.far]\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\n')
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": "add", "prompt": "def add(a, b):\n",
                                 "entry_point": "add", "tests": ["assert add(1, 2) == 3"]}) + "\n")
    result = subprocess.run(
        [str(SCRIPT), "--models", str(models), "collect", str(tasks), "--student", "tiny",
         "--teacher", "far", "--run", str(tmp_path / "run"), "--methods", "persd+tokd"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "models.far: scoring needs the model in process" in line
    assert not (tmp_path / "run" / "attempts.jsonl").exists()
