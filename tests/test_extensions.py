"""Each kind of extension takes one place (docs/architecture.md, "To add X, touch Y"): a throwaway
benchmark (one module in the tasks package), a refinement strategy (one declaration and its
prompt template), a data-set method (one declaration) and a generation backend (one module in the
backends package) are written here, each in one new file of its own, and run together through
`collect` with the tiny real model as teacher. Nothing else in the package is edited."""

from __future__ import annotations

import json
import sys

import pytest

from localdistill import backends, tasks
from localdistill.backends import parse_models
from localdistill.rundir import RunDir
from localdistill.stages.build import load_dataset_rows

BENCHMARK_MODULE = '''
import json

from localdistill.tasks.benchmark import Benchmark
from localdistill.tasks.record import Task


def load_throwaway(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    return [Task(r["id"], r["prompt"], r["entry_point"], tuple(r["tests"]),
                 reference=r["reference"], source="throwaway") for r in rows]


BENCHMARK = Benchmark("throwaway", "Throwaway", "two functions for a test", load=load_throwaway,
                      data_file="throwaway.jsonl")
'''

STRATEGY_MODULE = '''
from localdistill.stages.refine.strategies import Strategy, register

register(Strategy("throwaway-strategy", "refine_throwaway", guide="reference",
                  help="shows the reference and asks for it back"))
'''

TEMPLATE = (
    "{#- A throwaway strategy.\n    Variables:\n      prompt  p\n      attempt  a\n"
    "      feedback  f\n      guide  g\n-#}\nTHROWAWAY. Copy this correct code exactly:\n"
    "```python\n{{ guide }}\n```\nTask:\n{{ prompt }}\nWrong code:\n{{ attempt }}\n")

METHOD_MODULE = '''
from localdistill.extract import shown_code
from localdistill.records import attempt_messages
from localdistill.stages.build.methods import Method, register, row, unique


def reference_rows(inputs, rows_of):
    """The reference solution of every task the student failed."""
    return unique([row("throwaway-method", inputs.tasks[t], attempt_messages(inputs.tasks[t]),
                       shown_code(inputs.tasks[t], inputs.tasks[t].reference),
                       teacher="reference", student=inputs.student, teacher_round=0,
                       distill_round=inputs.distill_round, id_=t)
                   for t in sorted(inputs.failed_tasks)])


register(Method("throwaway-method", "Throwaway", rows=reference_rows, cost=lambda files: 0,
                default=False, help="the references of the failed tasks"))
'''

# A backend that always answers the same wrong code: the student that fails every task.
BACKEND_MODULE = '''
from localdistill.backends.base import Kind, NoOptions, Result, Sample

BACKEND = Kind("throwaway-backend", NoOptions, help="answers every request with `return None`")


class Wrong:
    def generate(self, requests):
        for request in requests:
            yield Result(request, (Sample("```python\\n    return None\\n```", "stop", 5),), 1)

    def close(self):
        pass


def load(spec):
    return Wrong()
'''

TASKS = [
    {"id": "throwaway/add", "entry_point": "add",
     "prompt": 'def add(a, b):\n    """Return the sum of a and b."""\n',
     "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
     "reference": "    return a + b\n"},
    {"id": "throwaway/double", "entry_point": "double",
     "prompt": 'def double(x):\n    """Return twice x."""\n',
     "tests": ["assert double(2) == 4", "assert double(0) == 0"],
     "reference": "    return 2 * x\n"},
]


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """The four extensions, each one new file, found where the package looks for its kind."""
    from localdistill.stages.build.methods import METHODS
    from localdistill.stages.refine.strategies import STRATEGIES

    found = tmp_path / "found"  # on the tasks' and the backends' package paths
    found.mkdir()
    (found / "throwaway_benchmark.py").write_text(BENCHMARK_MODULE)
    (found / "throwaway_backend.py").write_text(BACKEND_MODULE)
    users = tmp_path / "users"  # a user's own modules, imported as a user would
    users.mkdir()
    (users / "throwaway_strategy.py").write_text(STRATEGY_MODULE)
    (users / "throwaway_method.py").write_text(METHOD_MODULE)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "refine_throwaway.jinja").write_text(TEMPLATE)
    data = tmp_path / "data"
    data.mkdir()
    (data / "throwaway.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))

    monkeypatch.setenv("LOCALDISTILL_PROMPTS", str(prompts))
    monkeypatch.setenv("LOCALDISTILL_DATA", str(data))
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(found)])
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(found)])
    monkeypatch.syspath_prepend(str(users))
    tasks.benchmarks.cache_clear()
    backends.modules.cache_clear()
    before = (dict(METHODS), dict(STRATEGIES))
    __import__("throwaway_strategy")
    __import__("throwaway_method")
    yield tmp_path
    METHODS.clear()
    METHODS.update(before[0])
    STRATEGIES.clear()
    STRATEGIES.update(before[1])
    for name in ("throwaway_strategy", "throwaway_method", "localdistill.tasks.throwaway_benchmark",
                 "localdistill.backends.throwaway_backend"):
        sys.modules.pop(name, None)
    monkeypatch.undo()
    tasks.benchmarks.cache_clear()
    backends.modules.cache_clear()


@pytest.mark.slow
def test_a_benchmark_strategy_method_and_backend_each_added_in_one_file_run_through_collect(
        throwaway, monkeypatch):
    from localdistill.backends.models_toml import REPO_MODELS_TOML
    from localdistill.collect import CollectConfig, collect

    models = throwaway / "models.toml"
    models.write_text(REPO_MODELS_TOML.read_text()
                      + '\n[models.wrong]\nbackend = "throwaway-backend"\npath = "demo:tiny"\n')
    monkeypatch.setenv("LOCALDISTILL_MODELS", str(models))
    assert parse_models(models.read_text(), str(models))["wrong"].backend == "throwaway-backend"

    loaded = tasks.load_tasks("throwaway")
    assert [t.task_id for t in loaded] == ["throwaway/add", "throwaway/double"]
    config = CollectConfig(student="wrong", teacher="tiny", teacher_max_tokens=64, rounds=1,
                           unchanged_retries=0, strategy="throwaway-strategy",
                           methods=("persd", "throwaway-method"), differential_inputs=0)
    with RunDir(throwaway / "run") as run:
        reports = {r.stage: r for r in collect(loaded, config, run, tasks_spec="throwaway")}
        refinements = list(run.records("refinements"))
        asked = [json.loads(line) for line in (throwaway / "run/cache/requests.jsonl").open()]
    assert reports["execute"].counts["attempts failed"] == 2  # the backend's wrong answers
    assert reports["refine + verify"].counts["strategy"] == "throwaway-strategy"
    assert {r["strategy"] for r in refinements} == {"throwaway-strategy"}
    refine_prompts = [json.dumps(a["request"]) for a in asked if a["stage"] == "refine"]
    assert len(refine_prompts) == 2 and all("THROWAWAY" in p for p in refine_prompts)
    assert reports["build"].counts["throwaway-method examples"] == 2
    rows = load_dataset_rows(throwaway / "run/data/throwaway-method.jsonl")
    assert sorted(r["completion"] for r in rows) == [
        '```python\ndef add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n```',
        '```python\ndef double(x):\n    """Return twice x."""\n    return 2 * x\n```']
    assert {r["source"] for r in rows} == {"throwaway"}
    manifest = json.loads((throwaway / "run/manifest.json").read_text())
    assert manifest["student"]["backend"] == "throwaway-backend"
