"""Run thousands of programs on every core, streaming: results come back as they finish."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from localdistill.execute.sandbox import ExecutionResult, Limits, run_tests


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
    progress: bool = False,
    total: int | None = None,
) -> Iterator[tuple[Program, ExecutionResult]]:
    """Judge programs in parallel, yielding (program, result) in completion order.

    Each worker thread only waits on its sandbox process, so `workers` sandboxes run at once (one
    per core by default). At most 4 x workers programs are held in memory, so an iterator of any
    length streams through in flat memory.
    """
    workers = workers or os.cpu_count() or 1
    window = workers * 4
    bar = _Progress(total) if progress else None
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
                    if bar:
                        bar.advance(result.passed)
                    yield item, result
        finally:
            for future in pending:
                future.cancel()
            if bar:
                bar.close()


class _Progress:
    """A rich progress bar with counts, rate, ETA and how many passed."""

    def __init__(self, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.passed = 0
        self.progress = Progress(
            TextColumn("[bold]executing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} programs/s"),
            TextColumn("{task.fields[passed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task("execute", total=total, rate="-", passed="")
        self.progress.start()

    def advance(self, passed: bool) -> None:
        self.passed += passed
        task = self.progress.tasks[0]
        rate = f"{task.speed:.1f}" if task.speed else "-"
        self.progress.update(self.task, advance=1, rate=rate, passed=f"{self.passed} passed")

    def close(self) -> None:
        self.progress.stop()
