"""Run thousands of programs on every core, streaming: results come back as they finish."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from localdistill.progress import Bar
from localdistill.sandbox.sandbox import ExecutionResult, Limits, run_tests


@dataclass(frozen=True)
class Program:
    """One program to judge: a task's program (prompt + completion) and the tests to run."""

    key: str  # the caller's id for it, e.g. "HumanEval/0#3"
    program: str
    tests: tuple[str, ...]
    entry_point: str
    setup: str = ""


def run_many(
    programs: Iterable[Program],
    limits: Limits = Limits(),
    workers: int | None = None,
    bar: Bar | None = None,
) -> Iterator[tuple[Program, ExecutionResult]]:
    """Judge programs in parallel, yielding (program, result) in completion order.

    Each worker thread only waits on its sandbox process, so `workers` sandboxes run at once (one
    per core by default). At most 4 x workers programs are held in memory, so an iterator of any
    length streams through in flat memory.
    """
    workers = workers or os.cpu_count() or 1
    window = workers * 4
    source = iter(programs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        pending: dict[Future, Program] = {}
        exhausted = False
        try:
            while pending or not exhausted:
                while not exhausted and len(pending) < window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    pending[
                        pool.submit(
                            run_tests,
                            item.program,
                            item.tests,
                            item.entry_point,
                            item.setup,
                            limits,
                        )
                    ] = item
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    result = future.result()
                    if bar is not None:
                        bar.advance(passed=result.passed)
                    yield item, result
        finally:
            for future in pending:
                future.cancel()
