"""Expensive artefacts made once per test run and shared by the modules that read them.

Each is real work on the tiny model (no mock): the collect run that test_pipeline checks stage by
stage, and the whole loop (`localdistill run`) that test_experiment and test_report read. They are
made the first time a test asks for them, in a session temporary directory. A test only reads them;
a test that must change a run copies it first (run directories can be moved: every step is keyed
by content, not by path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "localdistill"
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
MBPP = DATA / "mbpp.jsonl"
# MBPP training tasks the tiny model, as teacher, answers correctly for some and not others; the
# student (the same model held to a few tokens) fails them all, so every stage has work.
TASK_IDS = ("mbpp/601", "mbpp/602", "mbpp/606", "mbpp/616")
STUDENT_TOKENS, TEACHER_TOKENS = "24", "160"

# The loop on those four tasks: InpD and PERsD trained two optimiser steps each, the base and
# both adapters evaluated on the same tasks with one repair step. One refinement round: the
# tiny teacher's second round verifies nothing on these tasks, and a second distillation round
# (test_experiment) would pay for it again.
LOOP = """
[run]
student = "tiny"
teacher = "tiny"
tasks = ["{tasks}"]
methods = ["inpd", "persd"]

[collect]
max_tokens = 24
teacher_max_tokens = 160
rounds = 1

[train]
max_steps = 2
grad_accumulation = 1
rank = 4

[eval]
benchmarks = ["{tasks}"]
temperature = 0
max_tokens = 48
steps = 1
"""

# Property tests draw the same examples on every run (seeded from each test), so the suite passes
# or fails the same way each time; HYPOTHESIS_PROFILE=explore draws new ones at every run, to hunt.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

needs_mbpp = pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP}")


@dataclass(frozen=True)
class Done:
    """A finished command: its input, its run directory and what it printed."""

    tasks: Path
    run: Path
    stdout: str
    config: Path | None = None


def collect_command(tasks: Path, run: Path, *extra: str) -> list[str]:
    return [str(SCRIPT), "collect", str(tasks), "--student", "tiny", "--teacher", "tiny",
            "--run", str(run), "--max-tokens", STUDENT_TOKENS, "--teacher-max-tokens",
            TEACHER_TOKENS, *extra]


def loop_config(where: Path, tasks: Path, text: str = LOOP) -> Path:
    path = where / "loop.toml"
    path.write_text(text.replace("{tasks}", str(tasks)))
    return path


def four_mbpp_tasks(where: Path) -> Path:
    from localdistill.tasks import load_tasks, save_jsonl

    tasks = [t for t in load_tasks(f"mbpp:train={MBPP}") if t.task_id in TASK_IDS]
    assert len(tasks) == len(TASK_IDS)
    path = where / "tasks.jsonl"
    save_jsonl(tasks, path)
    return path


@pytest.fixture(scope="session")
def tiny_collect(tmp_path_factory) -> Done:
    """`localdistill collect` on the four tasks, uninterrupted: every stage, the five data sets."""
    if not MBPP.is_file():
        pytest.skip(f"MBPP not found at {MBPP}")
    where = tmp_path_factory.mktemp("tiny-collect")
    tasks = four_mbpp_tasks(where)
    run = where / "run"
    result = subprocess.run(collect_command(tasks, run), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return Done(tasks, run, result.stdout)


@pytest.fixture(scope="session")
def tiny_loop(tiny_collect, tmp_path_factory) -> Done:
    """`localdistill run LOOP`: collect, train InpD and PERsD, evaluate base and adapters, report.
    Its collect asks the tiny model nothing new: the same requests as tiny_collect's, whose
    answers it reuses (--reuse); training and evaluation run for real."""
    where = tmp_path_factory.mktemp("tiny-loop")
    config = loop_config(where, tiny_collect.tasks)
    run = where / "run"
    result = subprocess.run([str(SCRIPT), "run", str(config), "--run", str(run), "--reuse",
                             str(tiny_collect.run)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return Done(tiny_collect.tasks, run, result.stdout, config)
