"""Secrets in the environment stay there: the real CLI (collect, then eval, on the tiny model over
MBPP tasks read from ../shared/data/mbpp.jsonl) and a sandboxed program that prints and returns its
whole environment run with planted tokens and passwords, and not one of them appears in anything
they print, in any file of the run directories, of the home and temporary directories, or in any
other file written anywhere under /tmp or in the home's cache while they ran."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from localdistill.sandbox import Limits, run_tests

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "localdistill"
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
MBPP = DATA / "mbpp.jsonl"
TASK_IDS = ("mbpp/602", "mbpp/603")
MAX_SCANNED = 64 << 20  # bytes: bigger new files (model weights, say) are not read

pytestmark = pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP}")


@pytest.fixture
def secrets() -> dict[str, str]:
    """Fake credentials, unique to this test run, in the shapes real ones have."""
    tag = uuid.uuid4().hex
    return {
        "HF_TOKEN": f"hf_{tag}",
        "OPENAI_API_KEY": f"sk-proj-{tag[::-1]}",
        "AWS_SECRET_ACCESS_KEY": f"aws{tag[:20]}/{tag[20:]}",
        "GITHUB_TOKEN": f"ghp_{tag.upper()}",
        "MY_APP_PASSWORD": f"correct-horse-{tag[5:25]}",
    }


def _leaks(text: str | bytes, secrets: dict[str, str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in secrets.items() if value.encode() in data]


def _files(root: Path, since: float | None = None) -> list[Path]:
    """Every regular file under `root` (written at or after `since`, when given)."""
    found = []
    for folder, _, names in os.walk(root, onerror=lambda e: None):
        for name in names:
            path = Path(folder, name)
            try:
                stat = path.lstat()
            except OSError:
                continue
            if path.is_symlink() or not path.is_file() or stat.st_size > MAX_SCANNED:
                continue
            if since is None or max(stat.st_mtime, stat.st_ctime) >= since:
                found.append(path)
    return found


def _scan(paths: list[Path], secrets: dict[str, str]) -> dict[str, list[str]]:
    leaked = {}
    for path in paths:
        try:
            names = _leaks(path.read_bytes(), secrets)
        except OSError:  # gone since it was listed (another program's temporary file)
            continue
        if names:
            leaked[str(path)] = names
    return leaked


@pytest.mark.slow
def test_secrets_never_leave_the_environment(tmp_path, secrets, monkeypatch):
    from localdistill.tasks import load_tasks, save_jsonl

    tasks = tmp_path / "tasks.jsonl"
    save_jsonl([t for t in load_tasks(f"mbpp:train={MBPP}") if t.task_id in TASK_IDS], tasks)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "TMPDIR")}
    env.update(secrets, HOME=str(home), TMPDIR=str(tmp))
    real_cache = Path.home() / ".cache" / "localdistill"
    started = time.time() - 1  # mtimes have a coarse grain on some file systems

    collect_run, eval_run = tmp_path / "collect", tmp_path / "eval"
    commands = [
        [str(SCRIPT), "collect", str(tasks), "--student", "tiny", "--teacher", "tiny",
         "--run", str(collect_run), "--max-tokens", "8", "--teacher-max-tokens", "8",
         "--rounds", "1", "--unchanged-retries", "0"],
        [str(SCRIPT), "eval", str(tasks), "--model", "tiny", "--run", str(eval_run),
         "--max-tokens", "8"],
    ]
    printed = []
    for command in commands:
        result = subprocess.run(command, capture_output=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        printed += [result.stdout, result.stderr]

    # A sandboxed program that prints its environment and returns it as a wrong answer: the
    # feedback the teacher reads shows what it returned.
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    spy = run_tests("import os\nprint(dict(os.environ))\ndef f():\n    return dict(os.environ)\n",
                    ["assert f() == {}"], "f", limits=Limits(test_timeout=2))
    assert "'PATH'" in spy.output and "OUTPUT: {" in spy.feedback  # it did print and return it
    printed += [spy.output, spy.feedback]

    assert [_leaks(text, secrets) for text in printed] == [[]] * len(printed)
    requests = collect_run / "cache" / "requests.jsonl"
    assert requests.is_file() and b'"messages"' in requests.read_bytes()  # the prompts were kept
    written = [*_files(collect_run), *_files(eval_run), *_files(home), *_files(tmp)]
    assert len(written) >= 10  # manifests, caches, stage outputs, data sets, samples, digests
    written += _files(Path("/tmp"), since=started)
    if real_cache.is_dir():
        written += _files(real_cache, since=started)
    assert _scan(written, secrets) == {}


def test_the_leak_check_finds_a_planted_secret(tmp_path, secrets):
    # The scan above must be able to fail: a file holding one secret, among others, is reported.
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "log.jsonl").write_text(f'{{"token": "{secrets["HF_TOKEN"]}"}}\n')
    (tmp_path / "clean.txt").write_text("nothing here")
    leaked = _scan(_files(tmp_path), secrets)
    assert leaked == {str(tmp_path / "deep" / "er" / "log.jsonl"): ["HF_TOKEN"]}
