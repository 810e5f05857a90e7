"""What differential checking costs per task, against today's verification, side by side.

On the first N tasks of a task set that have a reference (default: HumanEval's 164 canonical
solutions), one invocation measures, per task, with the same workers:

  baseline   verifying one answer on the task's own tests (today's verification)
  oracle     making the task's generated inputs: the reference run twice on each
  check      one answer run on the generated tests (what each later answer costs)

and prints the seconds per task of each, and the ratio of (verification + check) to
verification alone: what an answer's verdict costs with the check on, once the inputs exist.

    .venv/bin/python scripts/bench_differential.py [--tasks humaneval] [--limit 164] \
        [--inputs 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor

from localdistill.sandbox import Limits, program_for, run_many
from localdistill.sandbox.differential import make_oracle
from localdistill.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="humaneval")
    parser.add_argument("--limit", type=int, default=164)
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    tasks = [t for t in load_tasks(args.tasks) if t.reference is not None][:args.limit]
    limits = Limits()

    started = time.monotonic()
    baseline = list(run_many([program_for(t, t.reference, key=t.task_id) for t in tasks],
                             limits, args.workers))
    verify = time.monotonic() - started
    failing = {program.key for program, r in baseline if not r.passed}
    tasks = [t for t in tasks if t.task_id not in failing]  # (MBPP has a few)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        oracles = list(pool.map(lambda t: make_oracle(t, args.inputs, 0, limits), tasks))
    making = time.monotonic() - started

    checks = [dataclasses.replace(program_for(t, t.reference, key=t.task_id), tests=o.tests)
              for t, o in zip(tasks, oracles, strict=True) if o.tests]
    started = time.monotonic()
    checked = list(run_many(checks, limits, args.workers))
    check = time.monotonic() - started
    assert all(r.passed for _, r in checked), "a reference fails its own generated tests"
    if failing:
        print(f"  left out: {len(failing)} references that fail their own tests "
              f"({', '.join(sorted(failing)[:5])})")

    n = len(tasks)
    kept = sum(len(o.tests) for o in oracles)
    print(f"{args.tasks}: {n} tasks with a reference, {args.workers} workers, "
          f"{args.inputs} inputs asked a task")
    print(f"  tasks with generated inputs: {len(checks)} ({kept} tests, "
          f"{kept / max(len(checks), 1):.1f} a task); skipped: {n - len(checks)}")
    for what, seconds, note in (("verification on the task's tests", verify, ""),
                                ("making the inputs (reference x2)", making,
                                 " (once per task and seed)"),
                                ("an answer on the generated tests", check, "")):
        print(f"  {what:34} {seconds:6.2f} s  {1000 * seconds / n:6.1f} ms a task{note}")
    print(f"  an answer's verdict with the check, against without: "
          f"{(verify + check) / verify:.2f}x")


if __name__ == "__main__":
    main()
