"""inpd-matched, InpD on exactly PERsD's tasks (the paper's controlled comparison), built from a run
directory written by hand: no model, no sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localdistill.extract import shown_code
from localdistill.records import attempt_messages
from localdistill.rundir import RunDir
from localdistill.stages.build import build
from localdistill.stages.build.methods import METHODS, a_third, answer_text, default_methods
from localdistill.stages.report import compare, load_entries, teacher_tokens
from localdistill.tasks.record import Task


def _task(name: str, reference: str | None) -> Task:
    return Task(name, f'def {name}(a, b):\n    """Return {name} of a and b."""\n', name,
                (f"assert {name}(1, 2) is not None",), reference=reference)


# Five tasks, one per case (the student's attempt / the teacher's refinement / its own answer):
ADD = _task("add", "    return a + b\n")  # failed / verified / verified: the teacher's answer
SUB = _task("sub", "    return a - b\n")  # failed / verified / failed: the reference
BIG = _task("big", None)  # failed / verified / failed, no reference: left out
MUL = _task("mul", "    return a * b\n")  # failed / failed twice / verified: InpD only
NEG = _task("neg", "    return -a\n")  # passed / - / verified: StanD only
TASKS = [ADD, SUB, BIG, MUL, NEG]
TEACHER_ANSWER = "\ndef add(a, b):\n    return b + a\n"
TOKENS = {"add": 30, "sub": 50, "big": 70, "mul": 110, "neg": 130}  # the teacher's, per answer


def _write_run(path: Path) -> None:
    failed = {"add", "sub", "big", "mul"}
    with RunDir(path) as run:
        run.write("attempts", [{"key": f"{t.task_id}#0", "task_id": t.task_id, "sample": 0,
                                "model": "student", "completion": "    return 0\n"}
                               for t in TASKS])
        run.write("executions", [{"key": f"{t.task_id}#0", "task_id": t.task_id,
                                  "passed": t.task_id not in failed,
                                  "feedback": "" if t.task_id not in failed else "wrong"}
                                 for t in TASKS])
        refinements = []
        for task_id, rounds in (("add", [True]), ("sub", [True]), ("big", [True]),
                                ("mul", [False, False])):
            for round_, passed in enumerate(rounds, 1):
                refinements.append({
                    "key": f"{task_id}#0@{round_}", "attempt_key": f"{task_id}#0",
                    "task_id": task_id, "round": round_, "teacher": "teacher",
                    "completion": f"    return 1  # refined {task_id}\n", "passed": passed,
                    "refined_from": "code", "feedback_given": "wrong",
                    "feedback": "" if passed else "still wrong"})
        run.write("refinements", refinements)
        run.write("direct", [{"key": f"{t.task_id}#0", "task_id": t.task_id, "sample": 0,
                              "teacher": "teacher", "request_hash": f"hash-{t.task_id}",
                              "completion": TEACHER_ANSWER if t.task_id == "add" else
                              "    return 2\n",
                              "passed": t.task_id in ("add", "mul", "neg")} for t in TASKS])
    (path / "cache").mkdir(exist_ok=True)
    (path / "cache" / "requests.jsonl").write_text("".join(
        json.dumps({"key": f"hash-{task_id}", "completion_tokens": tokens}) + "\n"
        for task_id, tokens in TOKENS.items()))
    (path / "manifest.json").write_text(json.dumps({"stages": {}, "config": {}}))


def _rows(run: Path, method: str) -> list[dict]:
    return [json.loads(line) for line in (run / "data" / f"{method}.jsonl").read_text()
            .splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("matched") / "run"
    _write_run(run_dir)
    with RunDir(run_dir) as run:
        report = build(TASKS, run)
    return run_dir, report


def test_inpd_matched_has_exactly_persds_tasks(built):
    run, _ = built
    persd = {r["task_id"] for r in _rows(run, "persd")}
    assert persd == {"add", "sub", "big"}
    matched = _rows(run, "inpd-matched")
    # big has neither a teacher answer nor a reference: the one PERsD task left out; mul (no
    # verified refinement) and neg (never failed) have teacher answers but are not PERsD's.
    assert [r["task_id"] for r in matched] == ["add", "sub"]
    assert {r["task_id"] for r in _rows(run, "inpd")} == {"add", "mul"}
    assert all(r["method"] == "inpd-matched" and r["id"].startswith("inpd-matched/")
               for r in matched)


def test_the_teachers_answer_first_the_reference_otherwise(built):
    run, _ = built
    add, sub = _rows(run, "inpd-matched")
    assert add["teacher"] == "teacher" and add["teacher_round"] == 0
    assert add["completion"] == answer_text(shown_code(ADD, TEACHER_ANSWER))
    assert add["completion"] == next(r["completion"] for r in _rows(run, "inpd")
                                     if r["task_id"] == "add")  # the very row InpD has
    assert sub["teacher"] == "reference"
    assert sub["completion"] == answer_text(shown_code(SUB, SUB.reference))
    assert sub["completion"] == "```python\ndef sub(a, b):\n" \
        '    """Return sub of a and b."""\n    return a - b\n```'
    for row, task in ((add, ADD), (sub, SUB)):  # the student's own prompt, as InpD and PERsD
        assert row["messages"] == [*attempt_messages(task),
                                   {"role": "assistant", "content": row["completion"]}]
        assert row["attempt"] is None and row["feedback"] is None


def test_the_build_report_gives_both_sizes_side_by_side(built):
    _, report = built
    counts = report.counts
    assert counts["persd examples"] == 3 and counts["inpd-matched examples"] == 2
    assert counts["inpd-matched tasks without a teacher answer (reference used)"] == 1
    assert counts["inpd-matched tasks left out (no teacher answer, no reference)"] == 1
    assert list(counts).index("inpd-matched examples") < list(counts).index("persd examples")
    assert list(METHODS).index("inpd-matched") == list(METHODS).index("inpd") + 1


def test_persd_is_counted_even_when_only_inpd_matched_is_built(tmp_path):
    _write_run(tmp_path / "run")
    with RunDir(tmp_path / "run") as run:
        report = build(TASKS, run, ["inpd-matched"])
    assert report.counts["persd examples"] == 3 and report.counts["inpd-matched examples"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "data").glob("*.jsonl")) == \
        ["inpd-matched.jsonl"]


def test_a_second_round_carries_the_first_rounds_rows(built, tmp_path):
    first, _ = built
    _write_run(tmp_path / "round2")
    with RunDir(tmp_path / "round2") as run:
        report = build(TASKS, run, ["inpd-matched"], previous=first, distill_round=2)
    rows = _rows(tmp_path / "round2", "inpd-matched")
    # Same tasks and answers in both rounds: the rows are the first round's, kept once.
    assert rows == _rows(first, "inpd-matched")
    assert report.counts["persd examples"] == 3  # round 1's persd rows, carried, same as these


def test_its_teacher_cost_is_the_teachers_answers_to_persds_tasks(built):
    run, _ = built
    # add, sub and big were answered (sub's and big's answers failed, and still cost); mul and
    # neg are not PERsD's tasks.
    assert teacher_tokens(run / "data" / "inpd-matched", "inpd-matched") == 30 + 50 + 70
    assert teacher_tokens(run / "data" / "inpd", "inpd") == 30 + 50 + 70 + 110


def test_persd_variants_are_compared_with_inpd_matched(tmp_path):
    runs = []
    for name, solved in (("persd", 6), ("inpd-matched", 3), ("base", 2)):
        run = tmp_path / name
        run.mkdir()
        correct = {f"t{i}": int(i < solved) for i in range(8)}
        (run / "summary.json").write_text(json.dumps({
            "model": "m", "benchmark": "bench", "tasks": 8, "samples": 1,
            "pass_at_k": {"step 0": {"pass@1": solved / 8}},
            "correct_per_task": {"step 0": correct}}))
        runs.append(run)
    entries = load_entries(runs)
    entries[0].method, entries[1].method = "persd", "inpd-matched"
    pairs = {(c.a, c.b): c for c in compare(entries)}
    assert pairs[("persd", "inpd-matched")].a_better == 3


def test_a_distillation_round_rebuilds_inpd_matched():
    assert METHODS["inpd-matched"].follows_student  # its tasks follow the student's failures


def test_the_ablations_are_built_only_when_asked_for(built):
    run, _ = built
    assert "persd-personal" not in default_methods() and "standd-third" not in default_methods()
    assert not (run / "data" / "persd-personal.jsonl").exists()
    assert not (run / "data" / "standd-third.jsonl").exists()


def test_persd_without_copies_leaves_out_the_refinements_judged_copies(tmp_path):
    _write_run(tmp_path / "run")
    path = tmp_path / "run" / "refinements.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record["copied"] = record["task_id"] == "sub"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with RunDir(tmp_path / "run") as run:
        report = build(TASKS, run, ["persd", "persd-personal"])
    personal = _rows(tmp_path / "run", "persd-personal")
    assert [r["task_id"] for r in personal] == ["add", "big"]
    assert report.counts["persd-personal: copies of the guide left out"] == 1
    persd = {r["task_id"]: r for r in _rows(tmp_path / "run", "persd")}
    for row in personal:  # the very rows of persd, under their own name
        assert row["method"] == "persd-personal" and row["id"].startswith("persd-personal/")
        assert row["messages"] == persd[row["task_id"]]["messages"]


def test_standd_at_a_third_is_a_seeded_third_of_standds_tasks(tmp_path):
    ids = [f"mbpp/{i}" for i in range(300)]
    third = a_third(ids)
    assert len(third) == 100 and third <= set(ids)
    assert a_third(list(reversed(ids))) == third  # the order they come in does not matter
    assert a_third(ids[:150]) != a_third(ids[150:])
    assert len(a_third(ids[:278])) == 93
    _write_run(tmp_path / "run")
    with RunDir(tmp_path / "run") as run:
        build(TASKS, run, ["standd", "standd-third"])
    standd = {r["task_id"] for r in _rows(tmp_path / "run", "standd")}
    rows = _rows(tmp_path / "run", "standd-third")
    assert {r["task_id"] for r in rows} == a_third(sorted(standd)) and len(rows) == 1
    assert teacher_tokens(tmp_path / "run" / "data" / "standd-third", "standd-third") == \
        TOKENS[rows[0]["task_id"]]
