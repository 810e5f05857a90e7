"""Interruptions, for real, through the command line: `collect`, `train` and `eval` are stopped
again and again at seeded-random points, in turn by Ctrl-C (SIGINT to the process group, as a
terminal sends it), SIGKILL and (eval) SIGTERM, and resumed each time; in the end they hold
exactly what a run never interrupted holds, with nothing duplicated and no finished answer asked
again, and a resumed evaluation's wall time counts the time of the runs stopped cleanly. A second
command pointed at a directory in use is refused in one line. A model server killed in the middle
of a stage is waited for while it restarts; one that never comes back ends the stage in one line,
keeping every answer it gave.

Small budgets keep it cheap: the tiny model on one thread (llama.cpp spinning on two threads of a
busy two-core machine is several times slower), three MBPP tasks (six for eval), a few dozen
tokens per answer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from localdistill.backends.serving import free_port
from localdistill.stages.build import load_dataset_rows
from localdistill.stages.build.methods import default_methods
from localdistill.tasks import load_tasks, save_jsonl

SCRIPT = Path(sys.executable).parent / "localdistill"
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
MBPP = DATA / "mbpp.jsonl"
TRAIN_TASKS = ("mbpp/601", "mbpp/602", "mbpp/606")
MESSAGE = "interrupted: run the same command again to resume (nothing that finished is lost)"
TINY = '[models.tiny]\nbackend = "llama.cpp"\npath = "demo:tiny"\ncontext_length = 2048\n' \
       "threads = 1\n"
SYSTEM = {"role": "system", "content": "You are an expert Python programmer."}
ROWS = [{"messages": [SYSTEM, {"role": "user", "content": f"Write f{i}, returning {i}."},
                      {"role": "assistant",
                       "content": f"```python\ndef f{i}():\n    return {i}\n```"}]}
        for i in range(6)]

pytestmark = [pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP}"),
              pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A models.toml with the tiny model on one thread, the training tasks and a small data set."""
    here = tmp_path_factory.mktemp("interruptions")
    (here / "models.toml").write_text(TINY)
    tasks = [t for t in load_tasks(f"mbpp:train={MBPP}") if t.task_id in TRAIN_TASKS]
    assert len(tasks) == len(TRAIN_TASKS)
    save_jsonl(tasks, here / "tasks.jsonl")
    (here / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return here


def _env(work: Path, models: Path | None = None) -> dict:
    return {**os.environ, "LOCALDISTILL_MODELS": str(models or work / "models.toml")}


def _collect(work: Path, run: Path, *extra: str) -> list[str]:
    return [str(SCRIPT), "collect", str(work / "tasks.jsonl"), "--student", "tiny", "--teacher",
            "tiny", "--run", str(run), "--max-tokens", "16", "--teacher-max-tokens", "48",
            "--rounds", "1", "--unchanged-retries", "0", *extra]


def _eval(run: Path) -> list[str]:
    # Six tasks (six answers, then a repair for each failure: the tiny model fails them all):
    # enough left after the first two stops for the third, SIGKILL, to land before the end.
    return [str(SCRIPT), "eval", f"mbpp:test={MBPP}", "--limit", "6", "--model", "tiny",
            "--run", str(run), "--temperature", "0", "--max-tokens", "32", "--steps", "1"]


def _train(work: Path, out: Path) -> list[str]:
    return [str(SCRIPT), "train", str(work / "rows.jsonl"), "--student", "tiny", "-o", str(out),
            "--max-steps", "4", "--save-every", "1", "--grad-accumulation", "1", "--rank", "4",
            "--lr", "2e-3"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _without(rows: list[dict], *keys: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in keys} for row in rows]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str,
              limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"it ended ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s"
        time.sleep(0.05)


# --- two commands, one directory -----------------------------------------------------------------


def _beside_a_second(command: list[str], second: list[str], held: Path, env: dict,
                     logs: Path) -> tuple[subprocess.CompletedProcess, subprocess.Popen, str]:
    """Run `command` to its end; once it holds `held`'s lock, run `second` beside it. Returns
    the second's outcome, the first process (finished) and the first's stdout."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "first.out", "w") as out, open(logs / "first.err", "w") as err:
        first = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        try:
            lock = held / ".lock"
            _wait_for(lambda: lock.exists() and lock.read_text() == str(first.pid), first,
                      "it held the lock")
            refused = subprocess.run(second, env=env, capture_output=True, text=True,
                                     timeout=300)
            assert first.poll() is None, "the first ended before the second was refused"
            first.wait(timeout=900)
        finally:
            if first.poll() is None:
                first.kill()
    assert first.returncode == 0, (logs / "first.err").read_text()[-2000:]
    return refused, first, (logs / "first.out").read_text()


def _assert_refused(refused: subprocess.CompletedProcess, held: Path, pid: int) -> None:
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert len(lines) == 1 and str(held) in lines[0] and f"(pid {pid})" in lines[0], lines
    assert "in use by another localdistill run" in lines[0]


# --- interrupting a command again and again ----------------------------------------------------


def _interrupt_and_resume(command: list[str], env: dict, logs: Path, rng: random.Random,
                          progress: Callable[[], int], times: int, during_start_up: bool = True,
                          between: Callable[[], None] = lambda: None,
                          signals: tuple[int, ...] = (signal.SIGINT, signal.SIGKILL),
                          ) -> list[tuple[int, int]]:
    """Run `command` until it finishes, stopping it up to `times` times on the way: first at a
    random moment of its start-up (unless not `during_start_up`), then each time at a random
    moment after it has made progress (`progress()` grew), by each of `signals` in turn, sent
    to its process group. After each interruption `between()` checks the directory.
    Returns (signal, exit code) of each."""
    stops = []
    for attempt in range(times + 1):
        sig = signals[attempt % len(signals)]
        log = logs / f"{attempt}.err"
        before = progress()
        with open(log, "w") as err:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                       start_new_session=True, preexec_fn=_ctrl_c_reaches_it)
            try:
                if attempt == times:  # the last time, to the end
                    process.wait(timeout=900)
                    break
                landed = {s for s, _ in stops}
                if attempt == 0 and during_start_up:
                    # start-up ends at the first answer: on a fast machine the whole small
                    # command can finish within seconds (CI's did, before the signal came)
                    deadline = time.monotonic() + rng.uniform(0.5, 4.0)
                    while time.monotonic() < deadline and progress() <= before and \
                            process.poll() is None:
                        time.sleep(0.02)
                else:
                    deadline = time.monotonic() + 600
                    while progress() <= before and process.poll() is None:
                        assert time.monotonic() < deadline, "no progress within 600 s"
                        time.sleep(0.02)
                    # a random moment after the progress, but a signal that has not landed
                    # yet is sent at once, so that each is seen even when resumes are quick
                    delay = rng.uniform(0.0, 0.5)
                    time.sleep(delay if sig in landed else 0.0)
                if process.poll() is not None:
                    break  # it finished before the signal: nothing left to interrupt
                os.killpg(process.pid, sig)
                process.wait(timeout=300)
                if process.returncode == 0:
                    break  # it finished just before the signal came
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        stderr = log.read_text()
        stops.append((sig, process.returncode))
        if sig == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        else:
            # Ctrl-C or SIGTERM: a clean exit, exit code 130 and one line saying how to go on.
            assert process.returncode == 130, stderr[-2000:]
            assert "Traceback" not in stderr, stderr[-3000:]
            assert stderr.strip().splitlines()[-1] == MESSAGE, stderr[-2000:]
        between()
    assert process.returncode == 0, log.read_text()[-2000:]
    landed = Counter(sig for sig, _ in stops)
    assert all(landed[sig] >= 1 for sig in signals), stops
    return stops


def _ctrl_c_reaches_it() -> None:
    """SIGINT as a terminal's Ctrl-C delivers it. A test run started in the background by a
    shell without job control (as CI may be) inherits SIGINT ignored, and so would the command:
    it would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class AskedOnce:
    """Checks, after each interruption, that no request answered before it is sent again."""

    def __init__(self, run: Path) -> None:
        self.answers, self.sent = run / "cache" / "requests.jsonl", run / "cache" / "sent.jsonl"
        self.answered: set[str] = set()
        self.seen = 0  # lines of sent.jsonl checked

    def __call__(self) -> None:
        sent = _jsonl(self.sent) if self.sent.exists() else []
        again = {s["key"] for s in sent[self.seen:]} & self.answered
        assert not again, f"answered requests sent again: {sorted(again)}"
        self.seen = len(sent)
        if self.answers.exists():
            self.answered |= {r["key"] for r in _jsonl(self.answers)}


def _unique_keys(*paths: Path) -> None:
    for path in paths:
        keys = Counter(r["key"] for r in _jsonl(path))
        assert all(n == 1 for n in keys.values()), (path, keys.most_common(3))


# --- collect ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collected(work):
    """An uninterrupted `collect`, with a second one started beside it while it runs."""
    run = work / "collect"
    refused, first, stdout = _beside_a_second(
        _collect(work, run), _collect(work, run), run, _env(work), work / "collect-logs")
    return run, refused, first.pid, stdout


def test_a_second_collect_in_the_same_run_directory_is_refused(collected):
    run, refused, pid, stdout = collected
    _assert_refused(refused, run, pid)
    assert "build" in stdout and (run / "data" / "standd.jsonl").exists()  # the first finished


def test_collect_interrupted_again_and_again_ends_as_if_never_interrupted(collected, work,
                                                                          tmp_path):
    reference = collected[0]
    run = tmp_path / "run"
    cache = run / "cache"
    asked_once = AskedOnce(run)
    _interrupt_and_resume(
        _collect(work, run), _env(work), tmp_path, random.Random(9), times=4,
        progress=lambda: _lines(cache / "requests.jsonl") + _lines(cache / "executions.jsonl"),
        between=asked_once)
    asked_once()
    _unique_keys(cache / "requests.jsonl", cache / "executions.jsonl",
                 *(run / f"{name}.jsonl" for name in ("attempts", "executions", "refinements",
                                                       "direct")))
    assert _lines(cache / "requests.jsonl") == _lines(reference / "cache" / "requests.jsonl")
    for name in ("attempts", "executions", "refinements", "direct"):
        assert _without(_jsonl(run / f"{name}.jsonl"), "runtime") == \
            _without(_jsonl(reference / f"{name}.jsonl"), "runtime"), name
    for method in default_methods():
        rows = _jsonl(run / "data" / f"{method}.jsonl")
        assert rows == _jsonl(reference / "data" / f"{method}.jsonl"), method
        if rows:  # (datasets cannot load the directory of an empty one, interrupted or not)
            assert load_dataset_rows(run / "data" / method) == rows, method
        assert len({r["id"] for r in rows}) == len(rows), method
    assert _files(run) == _files(reference)  # and nothing half-written left behind


# --- eval ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(work):
    run = work / "eval"
    refused, first, _ = _beside_a_second(_eval(run), _eval(run), run, _env(work),
                                         work / "eval-logs")
    return run, refused, first.pid


def test_a_second_eval_in_the_same_run_directory_is_refused(evaluated):
    run, refused, pid = evaluated
    _assert_refused(refused, run, pid)
    assert (run / "summary.json").exists()


def test_eval_interrupted_again_and_again_ends_as_if_never_interrupted(evaluated, work, tmp_path):
    reference = evaluated[0]
    run = tmp_path / "run"
    cache = run / "cache"
    asked_once = AskedOnce(run)
    stops = _interrupt_and_resume(
        _eval(run), _env(work), tmp_path, random.Random(5), times=3,
        progress=lambda: _lines(cache / "requests.jsonl"), between=asked_once,
        signals=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL))
    asked_once()
    _unique_keys(cache / "requests.jsonl", cache / "executions.jsonl")
    samples = _jsonl(run / "samples.jsonl")
    assert len({(s["task_id"], s["sample"], s["step"]) for s in samples}) == len(samples)
    assert _without(samples, "runtime") == _without(_jsonl(reference / "samples.jsonl"),
                                                    "runtime")
    timing = ("seconds", "wall_seconds")
    summary = json.loads((run / "summary.json").read_text())
    assert _without([summary], *timing) == _without(
        [json.loads((reference / "summary.json").read_text())], *timing)
    assert _files(run) == _files(reference)
    # The SIGTERM came mid-evaluation (after an answer): the time that invocation ran is in
    # the history, marked interrupted, and the evaluation's wall time counts it.
    assert stops[1] == (signal.SIGTERM, 130), stops
    history = [h for h in json.loads((run / "manifest.json").read_text())["history"]
               if h["stage"] == "eval"]
    interrupted = [h["seconds"] for h in history if h.get("interrupted")]
    assert interrupted and all(seconds > 0 for seconds in interrupted), history
    assert summary["wall_seconds"] == pytest.approx(summary["seconds"] + sum(interrupted),
                                                    abs=0.05), history


# --- train --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(work):
    out = work / "train"
    refused, first, _ = _beside_a_second(_train(work, out), _train(work, out), out, _env(work),
                                         work / "train-logs")
    return out, refused, first.pid


def test_a_second_training_into_the_same_directory_is_refused(trained):
    out, refused, pid = trained
    _assert_refused(refused, out, pid)
    assert [r["step"] for r in _jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4]


def test_training_interrupted_again_and_again_ends_with_the_same_adapter(trained, work,
                                                                         tmp_path):
    reference = trained[0]
    out = tmp_path / "out"
    step = out / "checkpoint" / "step"
    # Not during start-up (collect and eval cover that): each start costs torch's import and
    # the model's load, so the two interruptions land mid-training.
    _interrupt_and_resume(_train(work, out), _env(work), tmp_path, random.Random(3), times=2,
                          during_start_up=False,
                          progress=lambda: int(step.read_text()) if step.exists() else 0)
    assert [r["step"] for r in _jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4]  # each once
    # The same adapter up to CPU floating-point noise. The forward pass itself is not bitwise
    # reproducible here (about one process in ten computes step 1's loss 5e-5 apart, in torch's
    # rotary embedding), and Adam turns that into sign flips of near-zero gradients: measured,
    # two uninterrupted runs differ by 0.7% in the LoRA products B @ A (3% in the worst module),
    # while resuming without the optimiser state differs by 59% and without the schedule by 21%.
    whole, cut = _lora_products(reference), _lora_products(out)
    assert whole.keys() == cut.keys()
    gap = sum(((whole[k] - cut[k]) ** 2).sum() for k in whole) ** 0.5
    size = sum((whole[k] ** 2).sum() for k in whole) ** 0.5
    assert gap / size < 0.05, f"resumed adapter {gap / size:.1%} away from the uninterrupted one"
    losses = [r["loss"] for r in _jsonl(out / "train_log.jsonl")]
    assert losses == pytest.approx([r["loss"] for r in _jsonl(reference / "train_log.jsonl")],
                                   rel=0.05, abs=1e-3)
    assert (out / "adapter.gguf").stat().st_size > 0
    assert _files(out) == _files(reference)


def _lora_products(out: Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(out / "adapter" / "adapter_model.safetensors")
    return {name: tensors[name.replace("lora_A", "lora_B")] @ tensors[name]
            for name in tensors if "lora_A" in name}


# --- run ------------------------------------------------------------------------------------------


def test_a_second_run_in_the_same_directory_is_refused(work, collected, tmp_path):
    """`localdistill run` (the whole loop), cheap: the collect run's answers are reused, and the
    PERsD data set of these tasks is empty (the tiny teacher repairs none of the three), so
    nothing is trained; the base student's evaluation asks the model, so the first run is still
    at work when the second starts."""
    config = tmp_path / "loop.toml"
    config.write_text(f"""
[run]
student = "tiny"
teacher = "tiny"
tasks = ["{work / 'tasks.jsonl'}"]
methods = ["persd"]
models = "{work / 'models.toml'}"

[collect]
max_tokens = 16
teacher_max_tokens = 48
rounds = 1
unchanged_retries = 0

[train]
max_steps = 1
grad_accumulation = 1
rank = 4

[eval]
benchmarks = ["mbpp:test={MBPP}"]
limit = 1
max_tokens = 32
steps = 0
""")
    run = tmp_path / "run"
    command = [str(SCRIPT), "run", str(config), "--run", str(run), "--reuse", str(collected[0])]
    refused, first, stdout = _beside_a_second(command, command, run, _env(work), tmp_path)
    _assert_refused(refused, run, first.pid)
    assert "everything is in" in stdout and (run / "report" / "report.json").exists()
    assert (run / "eval" / "base" / "mbpp-test" / "summary.json").exists()


# --- a model server that goes away --------------------------------------------------------------


def _attempt(run: Path) -> list[str]:
    return [str(SCRIPT), "attempt", f"mbpp:train={MBPP}", "--limit", "5", "--model", "served",
            "--run", str(run), "--max-tokens", "16"]


def _serve(work: Path, port: int, log: Path) -> subprocess.Popen:
    """`localdistill serve tiny` (llama.cpp's server) on `port`, once it lists its model."""
    with open(log, "w") as out:
        server = subprocess.Popen([str(SCRIPT), "serve", "tiny", "--port", str(port),
                                   "--parallel", "1"], env=_env(work), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for(lambda: _lists_models(port), server, "the server answered", limit=300)
    return server


def _lists_models(port: int) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _crash(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_a_server_that_dies_mid_stage_is_waited_for_and_one_that_stays_away_ends_it(work,
                                                                                     tmp_path):
    port = free_port()
    models = tmp_path / "models.toml"
    models.write_text(TINY + f'[models.served]\nbackend = "openai"\n'
                      f'url = "http://127.0.0.1:{port}/v1"\nmax_in_flight = 1\n'
                      "wait_for_server = 10\n")
    env, run = _env(work, models), tmp_path / "run"
    answers, sent = run / "cache" / "requests.jsonl", run / "cache" / "sent.jsonl"

    # Nothing listening from the start: a wrong url or a server never started. Fail fast.
    started = time.monotonic()
    down = subprocess.run(_attempt(tmp_path / "never"), env=env, capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 1 and time.monotonic() - started < 30, down.stderr[-2000:]
    assert down.stderr.strip().splitlines()[-1].startswith(
        f"Error: cannot reach the server at http://127.0.0.1:{port}/v1 (connection refused")

    servers = [_serve(work, port, tmp_path / "server-1.log")]
    try:
        with open(tmp_path / "stage.err", "w") as err:
            stage = subprocess.Popen(_attempt(run), env=env, stdout=subprocess.DEVNULL,
                                     stderr=err)
        stderr = (tmp_path / "stage.err").read_text
        try:
            # It answered, then crashed: the stage waits, and goes on once it is back.
            _wait_for(lambda: _lines(answers) >= 1, stage, "a first answer")
            _crash(servers[-1])
            _wait_for(lambda: "stopped answering" in stderr(), stage, "a line saying it waits")
            time.sleep(2)
            servers.append(_serve(work, port, tmp_path / "server-2.log"))
            before = _lines(answers)
            _wait_for(lambda: _lines(answers) > before, stage, "an answer after the restart")
            assert "is back after" in stderr()
            # Crashed again, and this time it stays away: the stage ends in one line.
            _crash(servers[-1])
            crashed = time.monotonic()
            stage.wait(timeout=300)
            assert time.monotonic() - crashed >= 10  # it did wait
        finally:
            if stage.poll() is None:
                stage.kill()
        lines = stderr().strip().splitlines()
        assert stage.returncode == 1, stderr()[-2000:]
        assert lines[-1].startswith(f"Error: the server at http://127.0.0.1:{port}/v1 stopped "
                                    "answering and was not back within 10 s"), lines[-3:]
        assert "models.served.wait_for_server" in lines[-1]
        answered = [r["key"] for r in _jsonl(answers)]
        assert 2 <= len(answered) < 5 and len(set(answered)) == len(answered)
        assert Counter(s["key"] for s in _jsonl(sent)).most_common(1)[0][1] == 1

        # Back for good: the rerun asks only what was never answered.
        servers.append(_serve(work, port, tmp_path / "server-3.log"))
        seen = _lines(sent)
        again = subprocess.run(_attempt(run), env=env, capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
                server.wait(timeout=60)
    assert not {s["key"] for s in _jsonl(sent)[seen:]} & set(answered)
    _unique_keys(answers)
    assert _lines(answers) == 5 and len(_jsonl(run / "attempts.jsonl")) == 5
