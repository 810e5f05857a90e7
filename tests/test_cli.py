"""The command line as a user runs it: the installed `localdistill` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localdistill import __version__
from localdistill.models.demo import tiny_model_path

SCRIPT = Path(sys.executable).parent / "localdistill"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    assert "doctor" in result.stdout and "tasks" in result.stdout


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"localdistill, version {__version__}"
    as_module = subprocess.run([sys.executable, "-m", "localdistill", "--version"],
                               capture_output=True, text=True, timeout=300)
    assert as_module.returncode == 0 and as_module.stdout == result.stdout


def test_doctor_reports_truthfully():
    result = run("doctor")
    assert result.returncode == 0, result.stderr
    lines = {line.split(":", 1)[0][4:]: line for line in result.stdout.splitlines()}
    # What we know about this machine must be what doctor says.
    assert lines["tiny model"].startswith("ok") and str(tiny_model_path()) in lines["tiny model"]
    assert lines["offline mode"].startswith("ok")
    assert lines["CUDA GPU"].startswith("--")  # no GPU on the CPU test machines
    assert lines["llama.cpp backend"].startswith("ok")
    assert "AMX" not in lines["llama.cpp backend"]
    assert lines["HumanEval"].startswith("ok")
    from localdistill.sandbox.isolation import isolation

    assert lines["sandbox network"].startswith("ok" if isolation().prefix else "no")
    assert lines["sandbox file system"].startswith("ok" if isolation().lockdown else "no")


@pytest.mark.slow
def test_doctor_sees_offline_variables_even_if_the_user_unsets_them():
    result = run("doctor", env={"HF_HUB_OFFLINE": "0"})
    assert "ok  offline mode" in result.stdout


def test_tasks_info_on_humaneval():
    result = run("tasks", "info", "humaneval")
    assert result.returncode == 0, result.stderr
    assert "164 tasks" in result.stdout


def test_malformed_task_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = {"task_id": "t1", "prompt": "def f(x):\n", "entry_point": "f",
            "tests": ["assert f(1) == 1"]}
    bad.write_text(json.dumps(good) + "\n" + '{"task_id": "t2", "prompt": 3}\n')
    result = run("tasks", "info", str(bad))
    assert result.returncode == 2
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1
    assert f"{bad}:2" in error_lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_task_spec_is_bad_input():
    result = run("tasks", "info", "no-such-benchmark")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


# `localdistill [ARGS] tasks info t.jsonl` with the library's load_tasks raising {error}: what a
# bug (or bad input) inside a command looks like to the user
PLANTED = """
import localdistill.tasks
from localdistill.cli import main
from localdistill.errors import BadInput

def load_tasks(spec):
    raise {error}

localdistill.tasks.load_tasks = load_tasks
main()
"""
BUG = "(a bug in localdistill: run with --debug for the traceback, and please report it)"


def planted(error: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PLANTED.format(error=error), *args, "tasks",
                           "info", "t.jsonl"], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("error, code, line", [
    ("KeyError('x')", 1, f"internal error: KeyError: 'x' {BUG}"),
    ("ValueError('a plain ValueError\\nsecond line')", 1,
     f"internal error: ValueError: a plain ValueError {BUG}"),
    ("TypeError()", 1, f"internal error: TypeError {BUG}"),
    ("BadInput('t.jsonl: no tasks')", 2, "Error: t.jsonl: no tasks"),
    ("FileNotFoundError(2, 'No such file or directory', 't.jsonl')", 2,
     "Error: [Errno 2] No such file or directory: 't.jsonl'"),
])
def test_errors_say_whose_fault_they_are(error, code, line):
    result = planted(error)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines() == [line]


def test_debug_shows_the_traceback_of_an_internal_error():
    result = planted("KeyError('x')", "--debug")
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "in load_tasks" in result.stderr and "internal error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "KeyError: 'x'"


def test_each_kind_of_error_has_its_exit_code():
    import errno

    from localdistill.backends.base import BackendError
    from localdistill.cli.base import _as_click_error
    from localdistill.errors import BadInput
    from localdistill.experiment import ConfigError
    from localdistill.models import ModelsFileError
    from localdistill.prompts import PromptError
    from localdistill.rundir import RunDirError
    from localdistill.sandbox.limits import SandboxError
    from localdistill.stages.build.examples import NoRefinements
    from localdistill.stages.refine.strategies import StrategyError
    from localdistill.stages.report import ReportError
    from localdistill.stages.train.gguf_lora import AdapterError
    from localdistill.stages.train.launch import LaunchError, TrainingFailed
    from localdistill.tasks import TaskFileError
    from localdistill.tasks.errors import TaskSpecError
    from localdistill.tasks.rows import RowError

    for kind in (ConfigError, NoRefinements, ModelsFileError, PromptError, StrategyError,
                 ReportError, RunDirError, TaskSpecError, AdapterError, LaunchError):
        assert _as_click_error(kind("what, where, the fix")).exit_code == 2, kind
    assert issubclass(TaskFileError, BadInput) and issubclass(RowError, BadInput)
    assert issubclass(BadInput, ValueError) and issubclass(RunDirError, RuntimeError)
    for error, code, starts in [
        (PermissionError(13, "Permission denied", "t.jsonl"), 2, "[Errno 13]"),
        (OSError(errno.ENOSPC, "No space left on device", "out.jsonl"), 1, "cannot write"),
        (SandboxError("the sandbox cannot start"), 1, "the sandbox"),
        (BackendError("the server is down"), 1, "the server"),
        (TrainingFailed("rank 1 failed"), 1, "rank 1"),
        (ImportError("pip install datasets"), 1, "ImportError: pip install datasets"),
        (AssertionError(), 1, "internal error: AssertionError (a bug"),
        (AttributeError("'NoneType' object has no attribute 'x'"), 1, "internal error"),
    ]:
        converted = _as_click_error(error)
        assert converted.exit_code == code and converted.message.startswith(starts), error


def test_tasks_check_runs_references_and_fails_on_a_wrong_test(tmp_path):
    rows = [
        {"task_id": "ok", "prompt": "def add(a, b):\n", "entry_point": "add",
         "tests": ["assert add(1, 2) == 3"], "reference": "    return a + b\n"},
        {"task_id": "wrong-test", "prompt": "def sub(a, b):\n", "entry_point": "sub",
         "tests": ["assert sub(3, 1) == 4"], "reference": "    return a - b\n"},
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("tasks", "check", str(path))
    assert result.returncode == 1
    assert "wrong-test" in result.stdout and "EXPECTED: 4" in result.stdout
    assert "1 of 2 reference solutions failed" in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "dataset"])
def test_tasks_export_round_trips(tmp_path, fmt):
    out = tmp_path / ("t.jsonl" if fmt == "jsonl" else "t_ds")
    assert run("tasks", "export", "humaneval", "-o", str(out)).returncode == 0
    result = run("tasks", "info", str(out))
    assert result.returncode == 0, result.stderr
    assert "164 tasks" in result.stdout
