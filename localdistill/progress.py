"""What long work shows while it runs: one rich progress bar per stage, and a table at its end.

Library functions take an optional `Progress`; without one they are silent (tests, Python users),
with one every stage gets a bar with its count, rate, tokens, what passed and the ETA. Written to
something that is not a terminal (a log file), the bars become a plain line every 30 seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from localdistill import memory

LOG_EVERY = 30.0  # seconds between progress lines in a log
PEAK = "peak memory (GiB)"  # a stage table's row (training counts its own, per process too)


class Bar:
    """One stage's bar; `advance` after each finished item (silent when not shown)."""

    def __init__(self, progress=None, task_id=None, log=None) -> None:
        self._progress, self._task, self._log = progress, task_id, log
        self.tokens = 0
        self.passed = 0
        self.status = ""  # free text shown after the counts (e.g. the training loss)
        self._logged = time.monotonic()

    def advance(self, items: int = 1, tokens: int = 0, passed: int = 0,
                status: str | None = None) -> None:
        self.tokens += tokens
        self.passed += passed
        if status is not None:
            self.status = status
        if self._progress is None:
            return
        task = self._progress.tasks[self._task]
        speed = task.speed
        self._progress.update(
            self._task, advance=items, rate=f"{speed:,.2f}/s" if speed else "-",
            tokens=f"{self.tokens:,} tok" if self.tokens else "",
            passed=self.status or (f"{self.passed} passed" if self.passed else ""))
        if self._log is not None:
            now = time.monotonic()
            if now - self._logged >= LOG_EVERY or task.finished:
                self._logged = now
                self._log(self._line(task))

    def _line(self, task) -> str:
        """The bar as one plain line, for logs (a console that is not a terminal)."""
        parts = [f"{task.description}: {task.completed:.0f}/{task.total or '?'}"]
        if task.speed:
            parts.append(f"{task.speed:.2f}/s")
        if self.tokens:
            parts.append(f"{self.tokens:,} tok")
        if self.passed:
            parts.append(f"{self.passed} passed")
        if self.status:
            parts.append(self.status)
        if task.time_remaining is not None and not task.finished:
            parts.append(f"ETA {duration(task.time_remaining)}")
        return ", ".join(parts)


class Progress:
    """A live display for a command; `bar(description, total)` adds a stage's bar."""

    def __init__(self, console=None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = console
        self._rich = RichProgress(
            TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[tokens]}"),
            TextColumn("{task.fields[passed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False)

    def bar(self, description: str, total: int | None) -> Bar:
        task_id = self._rich.add_task(description, total=total, rate="-", tokens="", passed="")
        # Without a terminal (a log file, nohup) the live bar is not drawn: write lines instead.
        log = None if self._rich.console.is_terminal else self._rich.console.print
        return Bar(self._rich, task_id, log)

    def __enter__(self) -> Progress:
        self._rich.start()
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        if error is not None and not self._rich.console.is_terminal:
            # A log ends with the error's one line, not the bars' last state and a blank line.
            self._rich.live.transient = True
            self._rich.live.stop()
        else:
            self._rich.stop()


def bar(progress: Progress | None, description: str, total: int | None) -> Bar:
    return progress.bar(description, total) if progress is not None else Bar()


@dataclass(frozen=True)
class Parts:
    """Counts of one thing seen several ways, shown `a / b / c` (the label names the parts)."""

    values: tuple[int, ...]

    def __str__(self) -> str:
        return " / ".join(str(v) for v in self.values)


@dataclass(frozen=True)
class Measure:
    """A number shown in a given format (`.3f`, `+.3f`, `.1%`, `,.0f`); "-" when there is none."""

    value: float | None
    format: str

    def __str__(self) -> str:
        return "-" if self.value is None else f"{self.value:{self.format}}"


@dataclass(frozen=True)
class PerExample:
    """A cost (`total`: seconds, minutes or tokens) per example, for a cost table; "-" without
    examples. Answers taken from other runs (`reused`) cost this run nothing, so a figure that
    leaves them out says so."""

    total: float
    examples: int
    digits: int = 1
    reused: int = 0

    def __str__(self) -> str:
        if not self.examples:
            return "-"
        shown = f"{self.total / self.examples:,.{self.digits}f}"
        if self.reused:
            return f"{shown} (not counting {self.reused:,} answers from --reuse)"
        return shown


Count = int | str | Parts | Measure | PerExample


def shown(value: Count) -> int | str:
    """A count as tables and files show it: a whole number stays one, the rest is text."""
    return value if isinstance(value, int | str) else str(value)


@dataclass
class StageReport:
    """What a stage did: its counts (in order), tokens and wall time; printed as a table.

    `stage` is the stage's name as shown and kept in the manifest (each stage module declares it
    once, as STAGE). A count is a value (`Count`: a number, or `Parts`, `Measure`, `PerExample`
    that keep their numbers), added under a key with `count(key, value, label)` and read back with
    `value(key)`; its label and its formatting are applied only when it is shown (`counts`, the
    table, the manifest). Counts nobody reads back can be added by their label (`count_all`)."""

    stage: str
    values: dict[str, Count] = field(default_factory=dict)  # by key, in the order added
    labels: dict[str, str] = field(default_factory=dict, repr=False)  # key -> label, if not key
    student_tokens: int = 0  # generated by the student in this stage (cached answers count)
    teacher_tokens: int = 0
    new_requests: int = 0  # model calls made now (the rest came from the run's cache)
    reused: int = 0  # answers first asked in another run (--reuse): their time is not in `seconds`
    over_context: int = 0  # prompts longer than the model's context: no answer (backends/base.py)
    seconds: float = 0.0
    # this process's peak memory while the stage ran (memory.py: the resident set, or the GPU's
    # when training on one); set by `finish`, None until then
    peak_memory_gib: float | None = None
    started: float = field(default_factory=time.monotonic, repr=False)

    def count(self, key: str, value: Count, label: str | None = None) -> None:
        """Add a count under `key`, shown as `label` (default: the key)."""
        self.values[key] = value
        if label is not None:
            self.labels[key] = label

    def count_all(self, values: dict[str, Count]) -> None:
        """Add counts that are shown by their keys."""
        for key, value in values.items():
            self.count(key, value)

    def value(self, key: str, default: Count | None = None) -> Count | None:
        """A count by its key (`default` when it was not added)."""
        return self.values.get(key, default)

    @property
    def counts(self) -> dict[str, int | str]:
        """The counts as shown: by label, formatted (read-only: add with `count`)."""
        return {self.labels.get(key, key): shown(value) for key, value in self.values.items()}

    @classmethod
    def from_dict(cls, saved: dict) -> StageReport:
        """A report as `as_dict` saved it (train.json, the manifest): its counts as they were
        shown, each under its key (a count saved before counts had keys: its label)."""
        labels = dict(saved.get("keys", {}))
        key_of = {label: key for key, label in labels.items()}
        values = {key_of.get(label, label): v for label, v in saved.get("counts", {}).items()}
        return cls(saved["stage"], values, labels,
                   saved.get("student_tokens", 0), saved.get("teacher_tokens", 0),
                   saved.get("new_requests", 0), saved.get("reused", 0),
                   saved.get("over_context", 0), saved.get("seconds", 0.0),
                   saved.get("peak_memory_gib"))

    def count_answers(self, answers) -> None:
        """Add a batch of model answers (cache.Answer) to the model calls and to the prompts
        over the context."""
        for answer in answers:
            self.new_requests += not answer.cached
            self.reused += answer.reused
            self.over_context += answer.finish_reason == "context"  # backends.base.CONTEXT

    def per_example(self, value: float, examples: int, digits: int = 1) -> PerExample:
        """A cost `value` per example, noting the answers this run took from others."""
        return PerExample(value, examples, digits, self.reused)

    def finish(self) -> StageReport:
        self.seconds = round(time.monotonic() - self.started, 2)
        if self.peak_memory_gib is None:
            self.peak_memory_gib = round(memory.peak_gib(), 2)
        return self

    def as_dict(self) -> dict:
        return {"stage": self.stage, "counts": self.counts, "student_tokens": self.student_tokens,
                "teacher_tokens": self.teacher_tokens, "new_requests": self.new_requests,
                "reused": self.reused,
                "over_context": self.over_context, "seconds": self.seconds,
                **({"peak_memory_gib": self.peak_memory_gib}
                   if self.peak_memory_gib is not None else {}),
                **({"keys": self.labels} if self.labels else {})}

    def table(self):
        from rich.table import Table

        table = Table(title=self.stage, title_justify="left", show_header=False)
        table.add_column("")
        table.add_column("", justify="right")
        for name, value in self.counts.items():
            table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
        if self.student_tokens:
            table.add_row("student tokens", f"{self.student_tokens:,}")
        if self.teacher_tokens:
            table.add_row("teacher tokens", f"{self.teacher_tokens:,}")
        table.add_row("model calls made now", f"{self.new_requests:,}")
        if self.reused:
            table.add_row("answers taken from other runs (--reuse)", f"{self.reused:,}")
        if self.over_context:
            table.add_row("prompts over the context (no answer)", f"{self.over_context:,}")
        table.add_row("wall time", duration(self.seconds))
        if self.peak_memory_gib is not None and PEAK not in self.counts:
            table.add_row(PEAK, f"{self.peak_memory_gib:.2f}")
        return table


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"
