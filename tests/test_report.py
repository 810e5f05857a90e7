"""`localdistill report` over a real chain on the tiny model: collect on four MBPP training tasks,
train an adapter on the PERsD set, evaluate the base and the adapter with self-rectification,
and compare them. Every figure in the report must come from those runs' own files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import SCRIPT, needs_mbpp

from localdistill.stages.report import (
    claims,
    claims_markdown,
    compare,
    load_entries,
    moves,
    report,
    sign_test,
    table,
    teacher_tokens,
)

pytestmark = [needs_mbpp, pytest.mark.timeout(900)]  # the first test may make the shared runs


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def chain(tiny_loop, tiny_collect, tmp_path_factory):
    """The loop's runs (conftest.py: collect on four MBPP training tasks, an adapter trained on the
    PERsD set, the base and the adapter evaluated with a repair step), reported again by the
    `report` command, in a directory laid out as the test reads it."""
    tmp = tmp_path_factory.mktemp("report")
    loop = tiny_loop.run
    for name, where in (("collect", loop / "collect"), ("persd", loop / "train" / "persd"),
                        ("base", loop / "eval" / "base" / "tasks"),
                        ("tuned", loop / "eval" / "persd" / "tasks"),
                        ("all-sets", tiny_collect.run)):
        (tmp / name).symlink_to(where, target_is_directory=True)
    (tmp / "tasks.jsonl").symlink_to(tiny_loop.tasks)
    result = _run("report", str(tmp / "base"), str(tmp / "tuned"), "-o", str(tmp / "out"))
    return tmp, result.stdout


@pytest.mark.slow
def test_the_table_holds_each_runs_own_numbers(chain):
    tmp, stdout = chain
    rows = {r["label"]: r for r in json.loads((tmp / "out" / "report.json").read_text())}
    assert set(rows) == {"base", "persd"}
    persd_rows = (tmp / "collect" / "data" / "persd.jsonl").read_text().splitlines()
    assert rows["persd"]["examples"] == len(persd_rows) > 0
    assert rows["base"]["examples"] is None and rows["base"]["method"] == "base"
    manifest = json.loads((tmp / "collect" / "manifest.json").read_text())
    assert rows["persd"]["teacher_tokens"] == \
        manifest["stages"]["refine + verify"]["teacher_tokens"] > 0
    for label, run in (("base", "base"), ("persd", "tuned")):
        summary = json.loads((tmp / run / "summary.json").read_text())
        assert rows[label]["pass_at_k"] == summary["pass_at_k"]
        assert set(summary["pass_at_k"]) == {"step 0", "step 1"}
    train = json.loads((tmp / "persd" / "train.json").read_text())
    assert rows["persd"]["train_seconds"] == train["report"]["seconds"]
    assert rows["persd"]["train_peak_gib"] == train["report"]["peak_memory_gib"] > 0
    assert rows["persd"]["eval_peak_gib"] == json.loads(
        (tmp / "tuned" / "summary.json").read_text())["peak_memory_gib"] > 0
    for text in ("pass@1 step 0", "pass@1 step 1", "persd", "base", f"{len(persd_rows)}"):
        assert text in stdout


@pytest.mark.slow
def test_the_adapter_was_used(chain):
    """The adapted run's answers are not the base model's (the adapter reached llama.cpp)."""
    tmp, _ = chain

    def answers(run):
        return [json.loads(line)["answer"] for line in (tmp / run / "samples.jsonl").open()]

    assert answers("base") != answers("tuned")
    summary = json.loads((tmp / "tuned" / "summary.json").read_text())
    assert summary["adapter"].endswith("adapter.gguf")


@pytest.mark.slow
def test_inpd_costs_only_the_failed_tasks(chain):
    tmp, _ = chain
    data = tmp / "all-sets" / "data"  # the collect that built all five sets, StanD among them
    executions = [json.loads(line) for line in (tmp / "all-sets" / "executions.jsonl").open()]
    assert not any(r["passed"] for r in executions)  # the student failed every task here...
    # ...so InpD took every direct answer, as StanD did.
    assert teacher_tokens(data / "inpd", "inpd") == teacher_tokens(data / "standd", "standd") > 0


@pytest.mark.slow
def test_the_plots_are_written(chain):
    tmp, stdout = chain
    for name in ("pass_at_1_by_method.png", "pass_at_1_by_size.png"):
        path = tmp / "out" / name
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000
        assert str(path) in stdout


@pytest.mark.slow
def test_two_runs_of_one_method_keep_their_own_names(chain):
    tmp, _ = chain
    entries = load_entries([tmp / "base", tmp / "base"])
    assert [e.label for e in entries] == ["base", "base"]  # same run twice: the same name
    (tmp / "base2").mkdir(exist_ok=True)
    (tmp / "base2" / "summary.json").write_text((tmp / "base" / "summary.json").read_text())
    assert [e.label for e in load_entries([tmp / "base", tmp / "base2"])] == ["base", "base2"]


@pytest.mark.parametrize("content, message", [
    (None, "not an evaluation run"),
    ("{", "not valid JSON"),
    ('{"model": "tiny"}', "missing or wrong field"),
])
def test_bad_runs_are_one_line_and_exit_2(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "summary.json").write_text(content)
    result = subprocess.run([str(SCRIPT), "report", str(run), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_chain_report_compares_the_adapter_with_the_base_task_by_task(chain):
    tmp, stdout = chain
    assert "paired by task" in stdout
    paired = json.loads((tmp / "out" / "comparisons.json").read_text())
    assert [(c["a"], c["b"], c["step"]) for c in paired] == [("persd", "base", 0),
                                                            ("persd", "base", 1)]
    base, tuned = (json.loads((tmp / n / "summary.json").read_text()) for n in ("base", "tuned"))
    for c in paired:
        step = f"step {c['step']}"
        a, b = tuned["correct_per_task"][step], base["correct_per_task"][step]
        assert c["a_better"] == sum(a[t] > b[t] for t in a)
        assert c["b_better"] == sum(a[t] < b[t] for t in a)
        assert c["difference"] == pytest.approx(
            tuned["pass_at_k"][step]["pass@1"] - base["pass_at_k"][step]["pass@1"])


def test_the_sign_test_is_exact():
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 3) == 1.0
    assert sign_test(0, 6) == pytest.approx(2 / 64)  # McNemar: 6 discordant tasks, all one way
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(7, 2) == pytest.approx(2 * (1 + 9 + 36) / 512)


def _summary(run: Path, label: str, correct: dict[str, int], samples: int = 1) -> Path:
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "model": label, "benchmark": "bench", "tasks": len(correct), "samples": samples,
        "pass_at_k": {"step 0": {"pass@1": sum(correct.values()) / samples / len(correct)}},
        "correct_per_task": {"step 0": correct}}))
    return run


def test_paired_comparisons_need_the_same_tasks(tmp_path):
    tasks = [f"t{i}" for i in range(40)]
    base = _summary(tmp_path / "base", "m", {t: int(i < 10) for i, t in enumerate(tasks)})
    better = _summary(tmp_path / "better", "m", {t: int(i < 25) for i, t in enumerate(tasks)})
    fewer = _summary(tmp_path / "fewer", "m", {t: 1 for t in tasks[:30]})
    entries = load_entries([base, better, fewer])
    entries[1].method = "persd"
    entries[2].method = "standd"
    (c,) = compare(entries)  # fewer ran on other tasks: not paired with either
    assert (c.a, c.b, c.a_better, c.b_better) == ("better", "base", 15, 0)
    assert c.difference == pytest.approx(15 / 40) and c.p_value == pytest.approx(2 / 2 ** 15)
    assert 0 < c.difference - c.half_width < c.difference


def test_two_base_models_are_named_by_their_runs(tmp_path):
    # Both are "base" (no adapter): each takes its run's name, the second one too (it kept
    # "base" when the names were decided one at a time).
    tasks = {f"t{i}": int(i < 5) for i in range(10)}
    runs = [_summary(tmp_path / "student", "demo-student", tasks),
            _summary(tmp_path / "teacher", "demo-teacher", tasks)]
    assert [e.label for e in load_entries(runs)] == ["student", "teacher"]


def test_a_replayed_evaluation_says_so_instead_of_a_time(tmp_path):
    # `eval --replay` judged recorded answers again: its wall time is not the model's.
    tasks = {f"t{i}": int(i < 5) for i in range(10)}
    replayed = _summary(tmp_path / "replayed", "demo-student", tasks)
    summary = json.loads((replayed / "summary.json").read_text())
    summary |= {"replayed_from": "/x/cache/requests.jsonl", "wall_seconds": 3.0}
    (replayed / "summary.json").write_text(json.dumps(summary))
    timed = _summary(tmp_path / "timed", "demo-teacher", tasks)
    entries, _ = report([replayed, timed], tmp_path / "out")
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(table(entries))
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines()
            if line.startswith("│")}
    assert "replayed" in rows["replayed"] and "3.0 s" not in rows["replayed"]
    assert "replayed" not in rows["timed"]
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written[0]["replayed_from"] == "/x/cache/requests.jsonl"
    assert "replayed_from" not in written[1]


def test_a_run_with_fewer_steps_gets_no_bar_at_zero(tmp_path, monkeypatch):
    # One run evaluated with a repair step, one without: the second has no "after repair" bar
    # (a bar at 0% would read as a model that solves nothing).
    import matplotlib.axes

    from localdistill.stages.report import plot

    tasks = {f"t{i}": int(i < 5) for i in range(10)}
    with_repair = _summary(tmp_path / "with_repair", "a", tasks)
    summary = json.loads((with_repair / "summary.json").read_text())
    summary["pass_at_k"]["step 1"] = {"pass@1": 0.6}
    summary["correct_per_task"]["step 1"] = {t: int(i < 6) for i, t in enumerate(tasks)}
    (with_repair / "summary.json").write_text(json.dumps(summary))
    one_step = _summary(tmp_path / "one_step", "b", tasks)
    drawn = []
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, xs, values, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(values)))
        return real_bar(self, xs, values, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    plot(load_entries([with_repair, one_step]), tmp_path / "out")
    assert drawn == [("one step", [50.0, 50.0]), ("after 1 repair step", [60.0])]


def test_inpd_cost_is_unknown_not_zero_without_the_teachers_answers(tmp_path):
    # A collect run that built only the PERsD sets has no direct answers: an InpD set named
    # beside it has an unknown cost, not a cost of 0.
    run = tmp_path / "collect"
    (run / "data").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {}}))
    (run / "executions.jsonl").write_text(json.dumps({"task_id": "t", "passed": False}) + "\n")
    (run / "direct.jsonl").write_text("")  # written, but empty
    assert teacher_tokens(run / "data" / "inpd", "inpd") is None


@pytest.mark.slow
def test_eval_with_an_adapter_gives_what_the_loop_gave(chain, tmp_path):
    """`eval --adapter OUT` names the trained student as `run` does: asked the same requests, it
    finds every answer among the loop's (--reuse) and scores the same, with no model call."""
    tmp, _ = chain
    tasks = tmp / "tasks.jsonl"
    done = _run("eval", str(tasks), "--model", "tiny", "--adapter", str(tmp / "persd"),
                "--run", str(tmp_path / "again"), "--temperature", "0", "--max-tokens", "48",
                "--steps", "1", "--reuse", str(tmp / "tuned"))
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    loop = json.loads((tmp / "tuned" / "summary.json").read_text())
    assert again["model_calls"] == 0, done.stdout[-2000:]
    assert again["correct_per_task"] == loop["correct_per_task"]
    assert again["adapter"] == loop["adapter"] and again["adapter"].endswith("adapter.gguf")


def _two_steps(run: Path, correct0: dict[str, int], correct1: dict[str, int]) -> Path:
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "model": "m", "benchmark": "bench", "tasks": len(correct0), "samples": 1,
        "pass_at_k": {f"step {s}": {"pass@1": sum(c.values()) / len(c)}
                      for s, c in enumerate((correct0, correct1))},
        "correct_per_task": {"step 0": correct0, "step 1": correct1}}))
    return run


def test_the_claims_are_called_only_as_the_sign_test_allows(tmp_path):
    tasks = [f"t{i}" for i in range(40)]
    solved = {"base": (10, 12), "persd": (22, 24), "inpd-matched": (20, 22),
              "persd-refine": (14, 26), "standd-third": (30, 31)}
    runs = [_two_steps(tmp_path / name, {t: int(i < s0) for i, t in enumerate(tasks)},
                       {t: int(i < s1) for i, t in enumerate(tasks)})
            for name, (s0, s1) in solved.items()]
    entries = load_entries(runs)
    for e, name in zip(entries, solved, strict=True):
        e.method = name
    results = {(r.claim, r.a_method, r.b_method, r.comparison.step): r for r in claims(entries)}
    lifts = "distillation lifts the student"
    # persd: 12 tasks won, none lost at step 0: holds (p = 2 / 2^12)
    assert results[(lifts, "persd", "base", 0)].verdict == "holds"
    assert results[(lifts, "persd", "base", 0)].comparison.p_value == pytest.approx(2 / 2 ** 12)
    # PERsD against InpD on the same tasks: 2 won, 0 lost: p = 0.5, cannot tell
    same = results[("PERsD beats InpD on the same tasks", "persd", "inpd-matched", 0)]
    assert (same.comparison.a_better, same.comparison.b_better, same.verdict) == \
        (2, 0, "cannot tell")
    # StanD at a third beats PERsD by 8 tasks to 0: the claim does not hold (p = 2 / 2^8)
    third = results[("PERsD beats StanD with a third of StanD's data", "persd", "standd-third",
                     0)]
    assert third.verdict == "does not hold" and third.comparison.difference < 0
    # the repair claim is read at step 1 only
    repair = [k for k in results if k[0] == "PERsD-refine improves multi-step repair"]
    assert sorted(repair) == [("PERsD-refine improves multi-step repair", "persd-refine", m, 1)
                              for m in ("base", "persd")]
    assert results[repair[0]].verdict == "cannot tell"  # 2 tasks to 0 over persd
    # pairs with a method nobody evaluated are left out, not shown empty
    assert not [k for k in results if "persd-combine" in k or "standd" in k[1:3]]
    text = claims_markdown(list(results.values()))
    assert "| distillation lifts the student | bench | 0 | persd | base | +30.0 |" in text
    assert text.count("\n") == len(results) + 2


def test_our_claims_beyond_the_paper_are_read_off_the_same_pairs(tmp_path):
    tasks = [f"t{i}" for i in range(20)]
    solved = {"base": 5, "tokd": 12, "inpd-matched": 10, "inpd-matched-unrefuted": 10}
    runs = [_two_steps(tmp_path / name, {t: int(i < s) for i, t in enumerate(tasks)},
                       {t: int(i < s) for i, t in enumerate(tasks)})
            for name, s in solved.items()]
    entries = load_entries(runs)
    for e, name in zip(entries, solved, strict=True):
        e.method = name
    results = {(r.claim, r.a_method, r.b_method, r.comparison.step): r for r in claims(entries)}
    tokens = "ours: token-level distillation from the teacher's log-probabilities helps"
    assert results[(tokens, "tokd", "base", 0)].verdict == "holds"  # 7 won, 0 lost
    assert results[(tokens, "tokd", "inpd-matched", 0)].verdict == "cannot tell"  # 2 to 0
    unrefuted = results[("ours: training without the rows differential checking refutes helps",
                         "inpd-matched-unrefuted", "inpd-matched", 1)]
    assert (unrefuted.comparison.difference, unrefuted.verdict) == (0, "cannot tell")
    # only the pairs both of whose methods were evaluated
    assert {k[1:3] for k in results if k[0].startswith("ours:")} == {
        ("tokd", "base"), ("tokd", "inpd-matched"), ("inpd-matched-unrefuted", "inpd-matched")}


def test_the_report_draws_the_paired_differences(tmp_path):
    tasks = [f"t{i}" for i in range(30)]
    runs = [_summary(tmp_path / "base", "m", {t: int(i < 10) for i, t in enumerate(tasks)}),
            _summary(tmp_path / "persd", "m", {t: int(i < 20) for i, t in enumerate(tasks)})]
    result = subprocess.run([str(SCRIPT), "report", *map(str, runs), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    path = tmp_path / "out" / "paired_differences.png"
    assert path.read_bytes()[:4] == b"\x89PNG" and str(path) in result.stdout
    assert json.loads((tmp_path / "out" / "claims.json").read_text()) == []  # no method known


def test_wins_and_losses_are_counted_by_how_the_base_student_failed(tmp_path):
    # base: t0 wrong answer, t1 exception, t2 syntax error, t3 timeout, t4 and t5 passed
    kinds = {"t0": ("failed", "AssertionError\nINPUT: 1"), "t1": ("error", "KeyError: 8"),
             "t2": ("error", "SyntaxError: invalid syntax (line 3)"),
             "t3": ("timeout", "did not finish within 3 s"), "t4": ("passed", ""),
             "t5": ("passed", "")}
    # the adapter: passes t0 and t2, still times out on t3, fails t1 and loses t5 to an exception
    adapter = {"t0": ("passed", ""), "t1": ("failed", "AssertionError"),
               "t2": ("passed", ""), "t3": ("timeout", ""), "t4": ("passed", ""),
               "t5": ("error", "IndexError: list index out of range")}
    runs = []
    for name, outcome in (("base", kinds), ("persd", adapter)):
        run = _summary(tmp_path / name, "m", {t: int(s == "passed") for t, (s, _) in
                                               outcome.items()})
        (run / "samples.jsonl").write_text("".join(
            json.dumps({"task_id": t, "sample": 0, "step": 0, "passed": s == "passed",
                        "status": s, "feedback": f}) + "\n" for t, (s, f) in outcome.items()))
        runs.append(run)
    (m,) = moves(load_entries(runs))
    assert (m.model, m.base, m.step) == ("persd", "base", 0)
    assert m.base_failed == {"wrong answer": 1, "exception": 1, "timeout": 1,
                             "syntax error": 1, "not run": 0}
    assert m.now_passing == {"wrong answer": 1, "exception": 0, "timeout": 0,
                             "syntax error": 1, "not run": 0}
    assert m.lost == {"wrong answer": 0, "exception": 1, "timeout": 0, "syntax error": 0,
                      "not run": 0}
    result = subprocess.run([str(SCRIPT), "report", *map(str, runs), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "wins and loses" in result.stdout
    assert json.loads((tmp_path / "out" / "moves.json").read_text())[0]["lost"]["exception"] == 1
    shown = (tmp_path / "out" / "side_by_side.md").read_text()
    assert "### bench t0: persd won against base" in shown
    assert "### bench t5: persd lost against base" in shown and "exception: IndexError" in shown
