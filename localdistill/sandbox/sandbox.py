"""Run one untrusted program and its tests in a fresh, confined process.

Each run gets: a new session and process group (killed as a group), new PID and network namespaces
where the kernel allows them (the program cannot see or signal our processes, reach the network, or
leave daemons behind: when the sandbox's first process ends, the kernel kills the whole namespace),
a pids cgroup when we may create one (fork bombs stop at a fixed count even for root), rlimits on
address space, CPU time, processes, file size and open files, a fresh temporary working directory
(removed afterwards, also HOME and TMPDIR), an environment with nothing of the user's, stdin
closed, and stdout/stderr captured up to a cap. Tests get their own timeouts; a test that hangs
costs only itself: the rest run in a fresh process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from localdistill.sandbox import judge
from localdistill.sandbox.isolation import isolation
from localdistill.sandbox.limits import Limits, SandboxError
from localdistill.sandbox.worker import _execute

__all__ = [
    "ExecutionResult",
    "Limits",
    "SandboxError",
    "TestOutcome",
    "Value",
    "evaluate",
    "run_tests",
]

R = TypeVar("R")


@dataclass(frozen=True)
class TestOutcome:
    test: str
    status: str  # passed | failed | error | timeout | not_run
    feedback: str = ""


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    outcomes: tuple[TestOutcome, ...]
    feedback: str  # the first failure's feedback, for the teacher; "" when passed
    runtime: float  # seconds, wall clock
    output: str = ""  # what the program printed (capped)
    notes: tuple[str, ...] = field(default=())  # how processes ended, for the record

    @property
    def status(self) -> str:
        if self.passed:
            return "passed"
        return next((o.status for o in self.outcomes if o.status != "passed"), "failed")


# --- isolation -------------------------------------------------------------------------------


def run_tests(
    program: str,
    tests: Sequence[str],
    entry_point: str,
    setup: str = "",
    limits: Limits = Limits(),
) -> ExecutionResult:
    """Run `program`, then `setup`, then each test; the verdict never trusts the program."""
    plans = [judge.plan_test(t, entry_point) for t in tests]
    outcomes, output, notes, runtime = _run_plans(
        program,
        setup,
        plans,
        limits,
        lambda plan, report: _outcome(plan, report, limits),
        lambda outcome: limits.stop_at_first_failure and outcome.status != "passed",
    )
    final = tuple(
        o or TestOutcome(p.source, "not_run") for o, p in zip(outcomes, plans, strict=False)
    )
    passed = bool(final) and all(o.status == "passed" for o in final)
    feedback = next((o.feedback for o in final if o.status not in ("passed", "not_run")), "")
    return ExecutionResult(passed, final, feedback, runtime, output, notes)


@dataclass(frozen=True)
class Value:
    """What one expression evaluated to in the sandbox: a decoded plain value, or why not."""

    status: str  # ok | error | timeout | not_data | not_run
    value: Any = None  # the decoded value (None, bool, int, float, str, containers...) when ok
    detail: str = ""  # the error, or what the value was when it is not plain data
    path: tuple[int, ...] | None = None  # traced (`evaluate(trace=True)`): the program's lines run

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def evaluate(
    program: str, exprs: Sequence[str], setup: str = "", limits: Limits = Limits(),
    trace: bool = False,
) -> list[Value]:
    """Run `program` and `setup`, then evaluate each expression in its namespace, in order.

    Each expression is evaluated as the left side of a value test (its own timeout, a fresh
    process after a crash or a hang), and its value comes back decoded as plain data: the program
    never runs here. A program that does not load gives the same error for every expression.
    `trace`: each value also says which lines of the program (and setup) its call ran, as
    `Value.path` (a line tracer: slower, so only where the path is wanted).
    """
    plans = [judge.TestPlan(expr, "value", expr=expr, trace=trace) for expr in exprs]
    values, _, _, _ = _run_plans(
        program, setup, plans, limits, lambda _, report: _value(report, limits), lambda _: False
    )
    return [v or Value("not_run") for v in values]


# Live objects of every small size: allocations after it land elsewhere than in a run without it.
SHIFT_HEAP = "__localdistill_heap = [(object(), float(n), bytes(n)) for n in range(520)]\n"


def evaluate_again(
    program: str, exprs: Sequence[str], setup: str = "", limits: Limits = Limits(),
    run: Callable[[str, list[str], str, Limits], list[Value]] | None = None,
) -> list[Value]:
    """The expressions evaluated once more, in a separate run that differs where a deterministic
    function cannot tell: in reverse order (a value that depends on the calls before it
    changes) and from a different heap (one that shows a memory address changes: id(), default
    reprs, hashes of objects). The values come back in the order given. A reference whose value
    differs between `evaluate` and this gives no test (gen-tests, the differential check).
    `run`: another evaluator with evaluate's signature (one that bounds timeouts, say)."""
    run = run or evaluate
    return run(program, list(exprs)[::-1], setup + "\n" + SHIFT_HEAP, limits)[::-1]


def _value(report: dict, limits: Limits) -> Value:
    if "load_failed" in report:
        return Value("timeout" if report.get("timeout") else "error", detail=report["load_failed"])
    if report.get("timeout"):
        return Value("timeout", detail=f"did not finish within {limits.test_timeout:g} s")
    if "error" in report:
        return Value("error", detail=str(report["error"])[:600])
    if "not_data" in report:
        return Value("not_data", detail=str(report["not_data"])[:100])
    path = report.get("path")
    path = tuple(n for n in path[:2000] if type(n) is int) if isinstance(path, list) else None
    try:
        return Value("ok", judge.decode(report.get("value")), path=path)
    except judge.ProtocolError as e:
        return Value("error", detail=str(e))


def _run_plans(
    program: str,
    setup: str,
    plans: Sequence[judge.TestPlan],
    limits: Limits,
    judge_report: Callable[[judge.TestPlan, dict], R],
    stop: Callable[[R], bool],
) -> tuple[list[R | None], str, tuple[str, ...], float]:
    """Run the plans, restarting after a test that kills its process; each test's report (the
    sandbox's, or one made here when the process died or the program did not load) goes through
    `judge_report`; a result for which `stop` is true ends the run.

    Returns (one result per plan, None where not run; what the program printed; how processes
    ended; seconds).
    """
    started = time.monotonic()
    mode = isolation()
    results: list[R | None] = [None] * len(plans)
    output, notes = bytearray(), []
    start, careful = 0, False
    while True:
        remaining = limits.total_timeout - (time.monotonic() - started)
        events, end, printed = _execute(
            program, setup, plans, start, limits, remaining, mode, careful=careful
        )
        output += printed.encode()[: limits.max_output_kb * 1024 - len(output)]
        next_start = _judge_events(plans, events, results, limits, judge_report, stop)
        if next_start is None:  # the program itself did not load: every test fails alike
            break
        if next_start >= len(plans):
            break
        if not careful and time.monotonic() - started < limits.total_timeout:
            # Reports are batched; the ones lost with the process are needed to know which test
            # it died in. Run the rest again, reporting each test as it finishes.
            careful, start = True, next_start
            continue
        # The process ended before test `next_start` reported: that test pays for it.
        if end == "done":  # it said it had finished, without a report for this test
            end = "the program stopped reporting before this test finished"
        notes.append(end)
        died = {"timeout": True} if end.startswith("timeout") else {"error": end}
        results[next_start] = judge_report(plans[next_start], died)
        start = next_start + 1
        out_of_time = time.monotonic() - started >= limits.total_timeout
        if start >= len(plans) or stop(results[next_start]) or out_of_time:
            break
    printed_text = output.decode("utf-8", "replace")
    return results, printed_text, tuple(notes), time.monotonic() - started


def _judge_events(plans, events, results, limits, judge_report, stop) -> int | None:
    """Fill results from the sandbox's reports; return the first test without a report."""
    expected_next = None
    for event in events:
        if "load" in event:
            what = "the program" if event["load"] == "program" else "the test setup"
            text = (
                f"Timeout: {what} did not finish loading within {limits.test_timeout:g} s"
                if event.get("timeout")
                else str(event.get("error", "error"))[:600]
            )
            report = {"load_failed": text, "timeout": bool(event.get("timeout"))}
            for i, plan in enumerate(plans):
                if results[i] is None:
                    results[i] = judge_report(plan, report)
            return None
        if event.get("ready"):
            continue
        i = event.get("test")
        if not isinstance(i, int) or not 0 <= i < len(plans) or results[i] is not None:
            continue  # stray or duplicate lines are ignored, never trusted
        if expected_next is not None and i != expected_next:
            continue
        event = {k: v for k, v in event.items() if k != "load_failed"}  # only we say that
        results[i] = judge_report(plans[i], event)
        expected_next = i + 1
        if stop(results[i]):
            return len(plans)
    return next((i for i, r in enumerate(results) if r is None), len(plans))


def _outcome(plan: judge.TestPlan, event: dict, limits: Limits) -> TestOutcome:
    if "load_failed" in event:  # the program or its setup did not load: no INPUT line
        return TestOutcome(plan.source, "error", event["load_failed"])
    if event.get("timeout"):
        return TestOutcome(plan.source, "timeout", judge.timeout(plan, limits.test_timeout))
    if "error" in event:
        text = str(event["error"])[:600]
        # An assertion of the test itself failing is a wrong answer; anything else is an error.
        status = "failed" if text.split(":")[0] == "AssertionError" else "error"
        return TestOutcome(plan.source, status, judge.error(plan, text))
    if plan.kind == "exec":
        return TestOutcome(
            plan.source,
            "passed" if event.get("ok") is True else "failed",
            "" if event.get("ok") is True else judge.error(plan, "AssertionError"),
        )
    if "not_data" in event:
        expected = judge.show(plan.expected) if plan.has_expected else ""
        return TestOutcome(
            plan.source,
            "failed",
            judge.wrong_value(
                plan, f"<{str(event['not_data'])[:100]}, not plain data>", expected or "?"
            ),
        )
    if plan.kind == "compare" and "ok" in event:  # the test's own expected value is an object
        ok = event["ok"] is True
        return TestOutcome(
            plan.source,
            "passed" if ok else "failed",
            ""
            if ok
            else judge.wrong_value(
                plan, str(event.get("output", ""))[:300], str(event.get("expected_repr", ""))[:300]
            ),
        )
    try:
        got = judge.decode(event.get("value"))
        expected = plan.expected if plan.kind == "value" else judge.decode(event.get("expected"))
    except judge.ProtocolError as e:
        return TestOutcome(plan.source, "error", judge.error(plan, str(e)))
    if plan.truth is not None:
        ok = bool(got) is plan.truth
        expected_text = "a true value" if plan.truth else "a false value"
    else:
        ok = judge.close(got, expected) if plan.close else judge.equal(got, expected)
        expected_text = judge.show(expected)
    if ok:
        return TestOutcome(plan.source, "passed")
    return TestOutcome(
        plan.source, "failed", judge.wrong_value(plan, judge.show(got), expected_text)
    )
