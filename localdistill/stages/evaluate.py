"""Evaluation: pass@k of a model (optionally with an adapter) on a task set, in one step or with
multi-step self-rectification.

Step 0: every task gets `samples` answers to the same prompt the student sees in training
(prompts/attempt.jinja). Each answer is judged twice: on the task's hidden tests (the verdict that
pass@k counts) and on its seen tests (what the model may know: HumanEval's docstring examples,
MBPP's first test). Step s > 0: a sample whose code fails its seen tests gets
prompts/self_repair.jinja, holding its own code and the feedback of the *seen* tests only, and
answers again; a sample that passes them (or whose task has no seen tests) keeps its code. pass@k is
reported after every step, always on the hidden tests. Nothing of the hidden tests ever reaches a
prompt: the repair prompt is built from the seen-test verdict alone (tests/test_evaluate.py checks
every request sent).

RUN/samples.jsonl has one row per sample and step (the code, the hidden verdict and its feedback,
the seen verdict, whether this step asked for a repair and whether the repair changed the code);
RUN/summary.json has pass@k per step and per-task counts. Answers and verdicts go through the
run's cache, so a killed evaluation resumes without asking the model again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from localdistill import manifest
from localdistill.answers import SENT, generate
from localdistill.backends import get_model, request_for
from localdistill.backends.base import CONTEXT
from localdistill.errors import BadInput
from localdistill.extract import extract_completion, shown_code
from localdistill.models import ModelSpec
from localdistill.passk import label, mean_pass_at_k
from localdistill.progress import Measure, Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.records import (
    attempt_key,
    attempt_messages,
    check_tasks_have_tests,
    part_key,
    round_key,
)
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, program_for
from localdistill.tasks.record import Task
from localdistill.verdicts import Verdict, judge


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated (`localdistill eval`; the run config's [eval] shares it)."""

    samples: int = field(default=1, metadata={"help": "answers per task (n of pass@k)"})
    temperature: float | None = field(default=None, metadata={
        "help": "sampling temperature (0: greedy; default: models.toml)"})
    max_tokens: int | None = field(default=None, metadata={
        "help": "tokens per answer (default: models.toml)"})
    seed: int = field(default=0, metadata={"help": "seed of the first sample"})
    steps: int = field(default=0, metadata={
        "help": "self-rectification steps after the first answer: a sample failing the tests it "
                "may see repairs its code from their feedback, up to this many times (0: "
                "single-step)"})
    ks: tuple[int, ...] = field(default=(1,), metadata={
        "help": "the k of pass@k (those above samples are left out)"})
    plus: int = field(default=0, metadata={
        "help": "inputs generated per task from its tests' calls and checked against its "
                "reference: pass@k+ beside pass@k, on the tests plus those inputs (ours, not "
                "EvalPlus's test set; docs/sandbox.md); 0: none"})
    plus_second: str | None = field(default=None, metadata={
        "help": "an evaluation run of another model (a teacher) whose passing answers are the "
                "second solution: only the inputs on which it agrees with the reference count "
                "(default: the reference alone)"})

    def __post_init__(self) -> None:
        if self.samples < 1 or self.steps < 0 or any(k < 1 for k in self.ks) or self.plus < 0:
            raise BadInput("eval settings: samples >= 1, steps >= 0, plus >= 0 and every k >= 1")


@dataclass
class _Sample:
    task: Task
    index: int
    step: int  # the step that wrote the current code
    answer: str
    completion: str
    hidden: Verdict | None  # on the hidden tests (None until judged)
    seen: Verdict | None  # on the seen tests; None when the task has none
    plus: Verdict | None = None  # on the generated inputs (`eval --plus`), when checked
    checked_plus: bool = False  # whether the "+" check was made for this sample

    @property
    def key(self) -> str:
        return attempt_key(self.task.task_id, self.index)

    def needs_repair(self) -> bool:
        return self.seen is not None and not self.seen.passed


def sample_key(task_id: str, sample: int, step: int) -> str:
    return round_key(attempt_key(task_id, sample), step)


def repair_messages(task: Task, completion: str, seen_feedback: str) -> list[dict[str, str]]:
    """The self-rectification prompt: the task, the model's own code, the seen tests' feedback."""
    return render("self_repair", prompt=task.prompt, description=task.description,
                  attempt=shown_code(task, completion), feedback=seen_feedback)


def evaluate(tasks: Sequence[Task], model: ModelSpec | str, run: RunDir,
             config: EvalConfig = EvalConfig(), limits: Limits = Limits(),
             workers: int | None = None, progress: Progress | None = None,
             benchmark: str = "") -> dict:
    """Evaluate `model` on `tasks` into `run`; returns the summary (also RUN/summary.json)."""
    spec = get_model(model) if isinstance(model, str) else model
    check_tasks_have_tests(tasks)
    with manifest.stage(run, "eval") as report:
        return _evaluate(tasks, spec, run, config, limits, workers, progress, benchmark, report)


def _evaluate(tasks: Sequence[Task], spec: ModelSpec, run: RunDir, config: EvalConfig,
              limits: Limits, workers: int | None, progress: Progress | None, benchmark: str,
              report: StageReport) -> dict:
    started = time.monotonic()
    tokens = 0
    plus = _plus_tests(tasks, run, config, limits, workers) if config.plus else None
    samples: list[_Sample] = []
    rows: list[dict] = []
    repairs: dict[str, int] = {}
    for step in range(config.steps + 1):
        if step == 0:
            todo = [(task, i, attempt_messages(task)) for task in tasks
                    for i in range(config.samples)]
        else:
            todo = [(s.task, s.index, repair_messages(s.task, s.completion, s.seen.feedback))
                    for s in samples if s.needs_repair()]
        label = "answer" if step == 0 else f"repair step {step}"
        requests = [request_for(spec, messages=messages, temperature=config.temperature,
                                max_tokens=config.max_tokens, seed=config.seed + i,
                                key=sample_key(task.task_id, i, step))
                    for task, i, messages in todo]
        answers = generate(run, spec, requests, "eval", bar(progress, label, len(requests)))
        tokens += sum(a.completion_tokens for a in answers.values())
        report.count_answers(answers.values())
        if step:  # a repair whose prompt did not fit leaves the code as it was
            todo = [(task, i, m) for task, i, m in todo
                    if answers[sample_key(task.task_id, i, step)].finish_reason != CONTEXT]
        fresh = [_judged_later(task, i, step, answers[sample_key(task.task_id, i, step)].text)
                 for task, i, _ in todo]
        _judge(fresh, run, limits, workers, progress, label, plus)
        before = {s.key: s.completion for s in samples}
        if step == 0:
            samples = fresh
        else:
            replaced = {s.key: s for s in fresh}
            samples = [replaced.get(s.key, s) for s in samples]
            changed = [s for s in fresh if _code(s.completion) != _code(before[s.key])]
            repairs[f"step {step}: repairs asked"] = len(fresh)
            repairs[f"step {step}: repairs that changed the code"] = len(changed)
            repairs[f"step {step}: repairs now passing the hidden tests"] = sum(
                s.hidden.passed for s in changed)
        rows += [_row(s, step, before.get(s.key)) for s in samples]
    run.write("samples", rows)
    report.student_tokens = tokens
    summary = _summary(tasks, spec, config, rows, benchmark)
    report.count_all({"tasks": len(tasks), "samples": len(tasks) * config.samples,
                     **{f"{name} {step_name}": Measure(value, ".1%")
                        for step_name, values in summary["pass_at_k"].items()
                        for name, value in values.items()}, **repairs})
    if plus is not None:
        summary.update(_summary_plus(tasks, config, rows, plus))
        report.count_all({f"{name}+ {step_name}": Measure(value, ".1%")
                          for step_name, values in summary["pass_at_k_plus"].items()
                          for name, value in values.items()})
        report.count("tasks with generated inputs (+)", summary["plus"]["tasks checked"])
    report.finish()
    summary["tokens"] = tokens
    summary["seconds"] = round(time.monotonic() - started, 2)
    history = manifest.record(run, report=report, model=manifest.model_entry(spec),
                              tasks=manifest.tasks_entry(benchmark, tasks), eval=summary_config(
                                  config))["history"]
    # Wall time over every invocation that worked on this evaluation (interrupted ones included).
    summary["wall_seconds"] = round(sum(h["seconds"] for h in history if h["stage"] == "eval"), 2)
    # The most memory any of them held (this process: the student, when it runs in process).
    summary["peak_memory_gib"] = max((h["peak_memory_gib"] for h in history
                                      if h["stage"] == "eval" and "peak_memory_gib" in h),
                                     default=None)
    # Requests ever handed to the model for this evaluation, from the cache's audit trail (an
    # invocation killed with -9 records no history, but what it sent is there). 0 when every
    # answer came from a cache (--reuse, --replay): the wall time is then the judging only.
    summary["model_calls"] = len({r["key"] for r in run.records(SENT) if r.get("stage") == "eval"})
    run.write_json("summary", summary)
    summary["report"] = report
    return summary


def summary_config(config: EvalConfig) -> dict:
    extra = {"plus": config.plus, "plus_second": config.plus_second} if config.plus else {}
    return {"samples": config.samples, "temperature": config.temperature,
            "max_tokens": config.max_tokens, "seed": config.seed, "steps": config.steps,
            "ks": list(config.ks), **extra}


@dataclass
class _Plus:
    """The "+" evaluation's generated tests per task, and why some tasks have none."""

    tests: dict[str, tuple[str, ...]]
    oracle: str
    not_checked: dict[str, int]


def _plus_tests(tasks: Sequence[Task], run: RunDir, config: EvalConfig, limits: Limits,
                workers: int | None) -> _Plus:
    """Each task's generated tests, made once per task and seed and kept in the run
    (oracles.jsonl), so that every model evaluated with the same settings meets the same
    inputs; with `plus_second`, only those the second run's passing answer agrees on."""
    import json
    from collections import Counter
    from pathlib import Path

    from localdistill.stages.differential import agreed_tests, oracles_for

    oracles = oracles_for(tasks, run, config.plus, config.seed, limits, workers)
    reasons: Counter = Counter(o.skipped.split(" (")[0] for o in oracles.values() if o.skipped)
    tests = {t: o.tests for t, o in oracles.items() if not o.skipped}
    oracle = "the reference alone"
    if config.plus_second:
        second_run = Path(config.plus_second)
        path = second_run / "samples.jsonl"
        if not path.is_file():
            raise BadInput(f"--plus-second: {second_run} is not an evaluation run "
                           "(no samples.jsonl)")
        second: dict[str, str] = {}
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("step") == 0 and row.get("passed") and row["task_id"] in tests:
                second.setdefault(row["task_id"], row["completion"])
        by_id = {t.task_id: t for t in tasks}
        agreed = agreed_tests(run, [(t, by_id[t], second[t], oracles[t]) for t in second],
                              limits, workers)
        reasons.update({"no passing answer in the second run": len(tests.keys() - second)})
        reasons.update({"no input the second solution agrees on":
                        sum(not agreed[t] for t in second)})
        tests = {t: agreed[t] for t in second if agreed[t]}
        oracle = f"the reference where {second_run} agrees"
    return _Plus(tests, oracle, dict(reasons))


def _judged_later(task: Task, index: int, step: int, answer: str) -> _Sample:
    return _Sample(task, index, step, answer, extract_completion(answer, task), None, None)


def _judge(fresh: list[_Sample], run: RunDir, limits: Limits, workers: int | None,
           progress: Progress | None, label: str, plus: _Plus | None = None) -> None:
    """Each new sample's verdicts, hidden and seen tests in one sandbox batch (and, with
    `plus`, the generated tests of each sample that passed the hidden ones)."""
    import dataclasses

    programs = []
    for s in fresh:
        programs.append(program_for(s.task, s.completion, key=part_key(s.key, "hidden")))
        if s.task.seen_tests:
            programs.append(program_for(s.task, s.completion, key=part_key(s.key, "seen"),
                                        seen_only=True))
    verdicts = judge(run, programs, limits, workers,
                     bar(progress, f"{label}: tests", len(programs)))
    for s in fresh:
        s.hidden = verdicts[part_key(s.key, "hidden")]
        s.seen = verdicts.get(part_key(s.key, "seen"))
    if plus is None:
        return
    checks = [dataclasses.replace(program_for(s.task, s.completion, key=part_key(s.key, "plus")),
                                  tests=plus.tests[s.task.task_id])
              for s in fresh if s.hidden.passed and plus.tests.get(s.task.task_id)]
    extra = judge(run, checks, limits, workers, bar(progress, f"{label}: +", len(checks)))
    for s in fresh:
        s.plus, s.checked_plus = extra.get(part_key(s.key, "plus")), True


def _code(completion: str) -> str:
    """A completion with blank lines and trailing spaces ignored, to tell a real change."""
    return "\n".join(line.rstrip() for line in completion.strip().splitlines() if line.strip())


def _row(s: _Sample, step: int, previous: str | None) -> dict:
    repaired = step > 0 and s.step == step
    return {"task_id": s.task.task_id, "sample": s.index, "step": step,
            "repaired": repaired,
            "changed": repaired and previous is not None and _code(s.completion) != _code(previous),
            "answer": s.answer, "completion": s.completion,
            "passed": s.hidden.passed, "status": s.hidden.status,
            "feedback": s.hidden.feedback,
            "seen_passed": None if s.seen is None else s.seen.passed,
            "seen_feedback": None if s.seen is None else s.seen.feedback,
            **({"passed_plus": s.hidden.passed and (s.plus is None or s.plus.passed),
                "feedback_plus": "" if s.plus is None else s.plus.feedback}
               if s.checked_plus else {})}


def _per_step(tasks: Sequence[Task], config: EvalConfig, rows: list[dict],
              passed) -> tuple[dict, dict]:
    """(pass@k by step, correct samples per task by step), a sample counting when
    `passed(row)`."""
    correct = {(r["step"], r["task_id"]): 0 for r in rows}
    for r in rows:
        correct[(r["step"], r["task_id"])] += bool(passed(r))
    ks = sorted(k for k in set(config.ks) if k <= config.samples)
    pass_at_k, per_task = {}, {}
    for step in range(config.steps + 1):
        counts = [(config.samples, correct[(step, t.task_id)]) for t in tasks]
        pass_at_k[f"step {step}"] = {label(k): mean_pass_at_k(counts, k) for k in ks}
        per_task[f"step {step}"] = {t.task_id: correct[(step, t.task_id)] for t in tasks}
    return pass_at_k, per_task


def _summary(tasks: Sequence[Task], spec: ModelSpec, config: EvalConfig, rows: list[dict],
             benchmark: str) -> dict:
    pass_at_k, per_task = _per_step(tasks, config, rows, lambda r: r["passed"])
    replayed = {"replayed_from": spec.path} if spec.backend == "replay" else {}
    return {"model": spec.name, "adapter": spec.adapter, **replayed, "benchmark": benchmark,
            "tasks": len(tasks), "tasks_with_seen_tests": sum(bool(t.seen_tests) for t in tasks),
            **summary_config(config), "pass_at_k": pass_at_k, "correct_per_task": per_task}


def _summary_plus(tasks: Sequence[Task], config: EvalConfig, rows: list[dict],
                  plus: _Plus) -> dict:
    """pass@k+ per step: a sample counts when it passes the hidden tests and its task's
    generated tests (a task without generated tests: the hidden tests alone, as HumanEval+)."""
    pass_at_k, per_task = _per_step(tasks, config, rows,
                                    lambda r: r.get("passed_plus", r["passed"]))
    return {"pass_at_k_plus": pass_at_k, "correct_per_task_plus": per_task,
            "plus": {"inputs": config.plus, "oracle": plus.oracle,
                     "tasks checked": len(plus.tests),
                     "generated tests": sum(len(t) for t in plus.tests.values()),
                     "tasks not checked": plus.not_checked,
                     "label": "ours: inputs mutated from the tests' calls, expected values the "
                              "reference's (not EvalPlus's test set)"}}
