"""The quickstart's own task set (examples/quickstart_tasks.jsonl) is sound and is our own.

Sound: it loads through the user-task loader, every reference passes its hidden and seen tests
in the sandbox, a wrong answer fails everywhere, and each seen test is the docstring's example.
Our own: no docstring is a near-copy of a HumanEval prompt or an MBPP problem text, so the
quickstart never trains on the benchmarks it is judged by.
"""

from __future__ import annotations

import ast
import difflib
import os
from pathlib import Path

import pytest

from localdistill.sandbox import Limits, program_for, run_many
from localdistill.tasks import Task, load_humaneval, load_mbpp, load_tasks
from localdistill.tasks.examples import docstring_examples

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart_tasks.jsonl"
MBPP = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data") / "mbpp.jsonl"
NEAR_COPY = 0.6  # SequenceMatcher ratio at or above which two problem texts are one problem


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return load_tasks(str(QUICKSTART))


def _same_code(a: str, b: str) -> bool:
    return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))


def test_the_file_holds_enough_well_formed_tasks(tasks):
    assert len(tasks) >= 30
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert len({t.entry_point for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.source == "quickstart", task.task_id
        assert task.reference, task.task_id
        assert len(task.tests) >= 4, task.task_id
        assert len(task.seen_tests) == 1, task.task_id
        assert task.seen_tests[0] == task.tests[0], task.task_id


def test_each_seen_test_is_the_docstring_example(tasks):
    for task in tasks:
        examples = docstring_examples(task.prompt, task.entry_point)
        assert len(examples) == 1, task.task_id
        assert _same_code(examples[0], task.seen_tests[0]), task.task_id


def _failures(tasks: list[Task], completion: str | None, seen_only: bool) -> list[tuple]:
    programs = [program_for(t, completion or t.reference, seen_only=seen_only) for t in tasks]
    return sorted((p.key, r.feedback) for p, r in run_many(programs, Limits(test_timeout=5.0))
                  if not r.passed)


@pytest.mark.parametrize("seen_only", [False, True], ids=["hidden", "seen"])
def test_references_pass_in_the_sandbox(tasks, seen_only):
    assert _failures(tasks, None, seen_only) == []


def test_a_wrong_answer_fails_every_task(tasks):
    failed = {key for key, _ in _failures(tasks, "    return None\n", seen_only=False)}
    assert failed == {t.task_id for t in tasks}


def _docstring(task: Task) -> str:
    for node in ast.walk(ast.parse(task.prompt)):
        if isinstance(node, ast.FunctionDef) and node.name == task.entry_point:
            return ast.get_docstring(node) or task.prompt
    return task.prompt


def _near_copies(ours: list[Task], theirs: dict[str, str]) -> list[tuple[str, str, float]]:
    copies = []
    for task in ours:
        matcher = difflib.SequenceMatcher(None, b=_docstring(task))
        for their_id, text in theirs.items():
            matcher.set_seq1(text)  # b stays: SequenceMatcher caches what it learns of b
            if matcher.real_quick_ratio() < NEAR_COPY or matcher.quick_ratio() < NEAR_COPY:
                continue  # both are upper bounds of ratio(): it cannot reach the threshold
            if (ratio := matcher.ratio()) >= NEAR_COPY:
                copies.append((task.task_id, their_id, round(ratio, 2)))
    return copies


@pytest.mark.slow
def test_no_prompt_copies_a_humaneval_prompt(tasks):
    humaneval = {t.task_id: _docstring(t) for t in load_humaneval()}
    assert _near_copies(tasks, humaneval) == []


@pytest.mark.slow
@pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP} (set LOCALDISTILL_DATA)")
def test_no_prompt_copies_an_mbpp_problem(tasks):
    mbpp = {t.task_id: t.description for t in load_mbpp(MBPP, split="all")}
    assert _near_copies(tasks, mbpp) == []


def test_the_near_copy_check_catches_a_copy():
    """A copied HumanEval docstring, lightly reworded, is caught: the check above can fail."""
    original = load_humaneval()[0]
    copied = _docstring(original).replace("given threshold", "threshold given")
    task = Task("copy/1", f'def f():\n    """{copied}"""\n', "f", ("assert f() is None",))
    assert _near_copies([task], {original.task_id: _docstring(original)}) != []
