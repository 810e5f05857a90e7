"""`localdistill probe`: refinement strategies compared on the same failed attempts, before a
long collect.

Which strategy turns a teacher's refinements into the most useful data differs from teacher to
teacher: a small one copies the student (unchanged) or copies the guide (not personalised). The
probe draws one seeded sample of a run's failed attempts and runs each strategy's first round on
exactly that sample, into its own run directory (the source run is only read), and prints one
table: verified, personalised, copied, unchanged, answers with no code or cut off, the mean
similarity to the student's attempt and the gain over the guide's, teacher tokens and seconds
per verified example, and the CPU minutes the teacher took (summed over every invocation, an
interrupted one included). Answers go through the probe run's cache, so a rerun (or `--reuse` of
a collect run that already asked the same) costs nothing, and RUN/probe.json is rewritten after
each strategy: an interrupted probe keeps the rows it finished.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from localdistill.backends import get_model
from localdistill.errors import BadInput
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport
from localdistill.records import Direct, Refinement, read
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits
from localdistill.stages.refine import STRATEGIES, failed_attempts, get_strategy
from localdistill.stages.refine.guides import teacher_solutions
from localdistill.stages.refine.rounds import FailedAttempt, Settings, run_round
from localdistill.tasks.record import Task


@dataclass(frozen=True)
class ProbeConfig:
    """What `probe` compares, on how many failed attempts."""

    strategies: tuple[str, ...] | None = field(default=None, metadata={
        "help": "strategies to compare (default: all declared)"})
    size: int = field(default=60, metadata={
        "help": "failed attempts to try every strategy on (the same for all)"})
    seed: int = field(default=0, metadata={"help": "seed of the sample"})
    temperature: float | None = field(default=None, metadata={
        "help": "teacher temperature for strategies that set none (default: models.toml)"})
    max_tokens: int | None = field(default=None, metadata={
        "help": "default: the strategy's, else models.toml"})


DEFAULTS = ProbeConfig()


def sample_failures(items: Sequence[FailedAttempt], size: int, seed: int) -> list[FailedAttempt]:
    """`size` failed attempts drawn with `seed` (all of them when there are fewer), in key order:
    the same attempts for every strategy, whatever order the run lists them in."""
    ordered = sorted(items, key=lambda i: i.attempt_key)
    if size >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, size), key=lambda i: i.attempt_key)


def probe(tasks: Sequence[Task], teacher: ModelSpec | str, source: RunDir, run: RunDir,
          strategies: Sequence[str] | None = DEFAULTS.strategies, size: int = DEFAULTS.size,
          seed: int = DEFAULTS.seed, temperature: float | None = DEFAULTS.temperature,
          max_tokens: int | None = DEFAULTS.max_tokens, limits: Limits = Limits(),
          workers: int | None = None, progress: Progress | None = None) -> list[dict]:
    """One row per strategy (None: every declared one; see the module docstring); also written
    to RUN/probe.json and each strategy's records to RUN/probe-<strategy>.jsonl."""
    chosen = [get_strategy(name) for name in strategies or STRATEGIES]  # all checked first
    spec = get_model(teacher) if isinstance(teacher, str) else teacher
    teacher_answers = teacher_solutions(read(source, Direct))
    # the teacher's time on each strategy, summed over every invocation of the probe (one cut
    # short by Ctrl-C or SIGTERM included), so a resumed probe still shows what it cost
    saved = run.read_json("probe")
    costs: dict[str, dict] = saved.get("costs", {}) if saved.get("seed") == seed else {}
    rows, sample_keys = [], None
    for strategy in chosen:
        items = sample_failures(failed_attempts(source, tasks, strategy, teacher_answers),
                                size, seed)
        if not items:
            raise BadInput(f"--from {source.path}: no failed attempts to refine (run "
                           "`attempt` and `execute` there first, or `collect`)")
        sample_keys = [i.attempt_key for i in items]
        report = StageReport(f"probe {strategy.name}")
        cpu, sent = time.process_time(), _sent(run)
        try:
            records = run_round(run, spec, strategy, items, 1,
                                Settings(temperature, max_tokens, 0), limits, workers, progress,
                                report)
        finally:
            report.finish()
            cost = costs.setdefault(strategy.name, {"cpu_seconds": 0.0, "seconds": 0.0,
                                                    "new_requests": 0})
            asked = _sent(run) - sent  # counted as handed over: an interrupted call counts too
            if asked:  # an invocation that only read the cache made nothing
                cost["cpu_seconds"] = round(cost["cpu_seconds"] + time.process_time() - cpu, 1)
                cost["seconds"] = round(cost["seconds"] + report.seconds, 1)
                cost["new_requests"] += asked
            run.write_json("probe", {**saved, "costs": costs, "seed": seed})
        run.write(f"probe-{strategy.name}", [r.as_record() for r in records])
        rows.append(_row(strategy.name, records, report.teacher_tokens, costs[strategy.name]))
        saved = {"teacher": spec.name, "sample": sample_keys, "seed": seed, "size": size,
                 "rows": rows, "costs": costs}
        run.write_json("probe", saved)
    return rows


def _sent(run: RunDir) -> int:
    """Requests ever handed to the model in this run (cache/sent.jsonl, written before each)."""
    from localdistill.answers import SENT

    return sum(1 for _ in run.records(SENT))


def _row(name: str, records: Sequence[Refinement], teacher_tokens: int, cost: dict) -> dict:
    verified = [r for r in records if r.passed]
    answers = [c for r in records for c in r.candidates]
    gains = [r.similarity - r.guide_similarity for r in verified
             if r.guide_similarity is not None]
    return {
        "strategy": name, "tried": len(records), "verified": len(verified),
        "personalised": sum(bool(r.personalised) for r in verified),
        "copied": sum(bool(r.copied) for r in verified),
        "unchanged": sum(r.unchanged for r in records),
        "answers": len(answers), "no_code": sum(c.no_code for c in answers),
        "cut_off": sum(c.cut_off for c in answers),
        "mean_similarity": _mean([r.similarity for r in verified]),
        "mean_guide_similarity": _mean([r.guide_similarity for r in verified
                                        if r.guide_similarity is not None]),
        "mean_gain": _mean(gains),
        "teacher_tokens": teacher_tokens, "new_requests": cost["new_requests"],
        "seconds": cost["seconds"], "cpu_seconds": cost["cpu_seconds"]}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def table(rows: Sequence[dict]):
    """The probe's rich table. Time and CPU are summed over the probe's invocations; a strategy
    whose every answer came from another run's cache shows "cached" (its tokens still count:
    they are what the teacher wrote)."""
    from rich.table import Table

    out = Table(title="refinement strategies on the same failed attempts", title_justify="left")
    for column in ("strategy", "verified", "personalised", "copied", "unchanged",
                   "no code / cut off", "sim. to attempt", "gain over guide",
                   "tokens / verified", "s / verified", "CPU min"):
        out.add_column(column, justify="left" if column == "strategy" else "right")
    for r in rows:
        tried, verified = r["tried"], r["verified"]

        def share(n: int, tried: int = tried) -> str:
            return f"{n} ({n / tried:.0%})" if tried else "0"

        fresh = r["new_requests"] > 0
        out.add_row(
            r["strategy"], share(verified), share(r["personalised"]), share(r["copied"]),
            share(r["unchanged"]), f"{r['no_code']} / {r['cut_off']} of {r['answers']}",
            _fmt(r["mean_similarity"]), _fmt(r["mean_gain"], signed=True),
            f"{r['teacher_tokens'] / verified:,.0f}" if verified else "-",
            (f"{r['seconds'] / verified:,.1f}" if verified else "-") if fresh else "cached",
            f"{r['cpu_seconds'] / 60:.1f}" if fresh else "cached")
    return out


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
