"""Every benchmark reference solution passes its tests in our sandbox, and the seen tests too.

This is the executor and the task loaders checked against each other on real data: a wrong
conversion of a test, or a sandbox that rejects correct code, fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localdistill.sandbox import Limits, program_for, run_many
from localdistill.tasks import load_humaneval, load_mbpp

REPO = Path(__file__).resolve().parents[1]
MBPP = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data") / "mbpp.jsonl"
# What is checked here is the conversion, not speed: mbpp/123's reference (amicable numbers up to
# 9999) takes about 3.2 s on an idle 2-core CI machine and went over 5 s once under load. The
# benchmarks' 3 s default and what it means for that task are in docs/run.md.
GENEROUS = Limits(test_timeout=60.0, total_timeout=300.0)


def _failures(tasks, seen_only: bool) -> list[tuple[str, str]]:
    programs = [program_for(t, t.reference, seen_only=seen_only) for t in tasks
                if (t.seen_tests if seen_only else t.tests)]
    assert programs
    return sorted((p.key, r.feedback) for p, r in run_many(programs, GENEROUS)
                  if not r.passed)


@pytest.mark.parametrize("seen_only", [False, True], ids=["hidden", "seen"])
def test_humaneval_canonical_solutions_pass(seen_only):
    assert _failures(load_humaneval(), seen_only) == []


@pytest.mark.slow
@pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP} (set LOCALDISTILL_DATA)")
@pytest.mark.parametrize("seen_only", [False, True], ids=["hidden", "seen"])
def test_mbpp_reference_solutions_pass(seen_only):
    assert _failures(load_mbpp(MBPP, split="all"), seen_only) == []


def test_a_wrong_solution_fails_nearly_everywhere():
    tasks = load_humaneval()
    programs = [program_for(t, "    return None\n") for t in tasks]
    assert [p.key for p, r in run_many(programs) if r.passed] == []
