"""gen-tests: tests for tasks that have a reference solution but none (Code-Alpaca, users' own).

1. The teacher proposes inputs (prompts/gen_tests.jinja): calls of the task's function.
2. `parse_calls` keeps the calls `f(<args>)` whose arguments are all Python literals, in the
   answer's fenced code (or the whole answer when it has no fence), without duplicates, at most
   `count`.
3. The reference runs in the sandbox, twice and in two separate runs (the second with the calls in
   reverse order, from a different heap), and gives each call's output as plain data. A call is
   dropped when it crashes the reference, times out, returns something that is not plain data,
   or gives different outputs in the two runs (randomness, time, memory addresses, state left by
   earlier calls); also when the output's repr is not a Python literal that reads back equal
   (NaN, inf, Decimal), shows float rounding noise (`0.30000000000000004`: a correct solution
   that adds in another order fails it), or is too long to make a readable test.
   A call whose output is an iterator or generator is run again as `list(f(<args>))` (see
   `materialise`), so lazy functions get tests of their items.
4. Each call left becomes `assert f(<args>) == <repr of the output>`, a value test: the sandbox
   that judges a student's code later never sees the expected value. A task left with fewer than
   `min_tests` tests, or whose outputs are all None (its reference prints or changes its arguments
   instead of returning), is skipped with the reason. The others come out as Tasks with `tests`
   set and the first test as their `seen_test` (as MBPP's first test is).

The teacher's answers go through the run's request cache, so a rerun asks the teacher nothing it
has answered; the sandbox part is cheap and simply runs again. Every task's inputs, their fate and
its tests are written to the run directory's gen_tests.jsonl.
"""

from __future__ import annotations

import ast
import math
import os
import re
import time
import tokenize
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from localdistill.answers import generate
from localdistill.backends import get_model, request_for
from localdistill.errors import BadInput
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, Value, evaluate
from localdistill.sandbox.judge import equal
from localdistill.tasks.record import Task

MAX_ANSWER_CHARS = 20_000  # of a teacher's answer searched for calls
MAX_CALL_CHARS = 1_000  # a longer call makes an unreadable test
MAX_CALLS = 200  # looked at in one block of an answer (a small model may repeat itself forever)
MAX_EXPECTED_CHARS = 1_000  # the same for the expected output's repr

# Why a proposed call gives no test, in the order a call meets them.
NOT_LITERAL = "arguments not literal"
DUPLICATE = "duplicate"
OVER_COUNT = "over count"
CRASHED = "crashed the reference"
TIMED_OUT = "timed out"
NOT_DATA = "output not plain data"
NOT_DETERMINISTIC = "not deterministic"
NOT_A_LITERAL = "output repr not a literal"
FLOAT_NOISE = "float rounding noise"
TOO_LONG = "output too long"
TASK_SKIPPED = "task skipped"  # a good test of a task left with too few


@dataclass(frozen=True)
class Proposal:
    """The calls found in one teacher answer."""

    calls: tuple[str, ...]  # `f(<literal args>)`, normalised, distinct, at most `count`
    found: int  # calls of the function in the answer, any arguments
    dropped: Counter[str]  # reason -> calls not kept (found = len(calls) + sum(dropped))


@dataclass
class GenTestsReport:
    """What gen-tests made and why the rest was dropped.

    Counts add up: proposed = parsed + the parsing drops (arguments not literal, duplicate,
    over count), and parsed = kept + the running drops (crashed ... task skipped).
    """

    tasks: list[Task]  # tasks with their new tests, in the order given
    skipped: dict[str, str]  # task id -> why it got no tests
    proposed: int = 0  # calls of the function found in the teacher's answers
    parsed: int = 0  # calls with literal arguments, distinct, capped: run on the reference
    kept: int = 0  # tests written
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> calls
    teacher_tokens: int = 0
    new_requests: int = 0  # teacher calls made now (the rest came from the run's cache)
    seconds: float = 0.0

    def stage_report(self) -> StageReport:
        """The counts as the stage table every command prints."""
        counts: dict[str, int | str] = {
            "tasks with tests": len(self.tasks),
            "tasks skipped": len(self.skipped),
            "calls proposed": self.proposed,
            "inputs run": self.parsed,
            "tests kept": self.kept,
        }
        counts |= {f"dropped: {reason}": n for reason, n in self.dropped.most_common()}
        stage = StageReport(
            "gen-tests", counts, teacher_tokens=self.teacher_tokens, new_requests=self.new_requests
        )
        stage.seconds = self.seconds
        return stage


def parse_calls(answer: str, entry_point: str, count: int) -> Proposal:
    """The calls `entry_point(<literal args>)` a teacher's answer proposes, in order."""
    found, calls, dropped = 0, [], Counter()
    for segment in _code_segments(answer[:MAX_ANSWER_CHARS]):
        for call in _calls_in(segment, entry_point):
            found += 1
            if call is None:
                dropped[NOT_LITERAL] += 1
            elif call in calls:
                dropped[DUPLICATE] += 1
            elif len(calls) >= count:
                dropped[OVER_COUNT] += 1
            else:
                calls.append(call)
    return Proposal(tuple(calls), found, dropped)


def _code_segments(answer: str) -> list[str]:
    """The contents of the fenced blocks (an unterminated one runs to the end), or the whole
    answer when it has no fence."""
    blocks, current = [], None
    for line in answer.split("\n"):
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks or [answer]


def _calls_in(code: str, entry_point: str) -> Iterator[str | None]:
    """Each call of `entry_point` (not a method, not its `def`): its normalised source when all
    its arguments are literals, else None."""
    start = re.compile(rf"(?P<define>\bdef\s+)?(?<![\w.]){re.escape(entry_point)}\s*\(")
    for number, match in enumerate(start.finditer(code)):
        if number >= MAX_CALLS:
            return
        if match["define"]:
            continue
        call = _call_at(code[match.start() :])
        if call is None:
            continue  # not a call (cut short, or a syntax error): no input proposed
        yield _literal_call(call, entry_point)


def _call_at(code: str) -> ast.Call | None:
    """The call expression `code` starts with: up to its closing parenthesis (found by tokens, so
    parentheses in strings do not count)."""
    lines = code[:MAX_CALL_CHARS].splitlines(keepends=True)
    depth = 0
    try:
        for token in tokenize.generate_tokens(iter(lines).__next__):
            if token.type != tokenize.OP or token.string not in "()[]{}":
                continue
            depth += 1 if token.string in "([{" else -1
            if depth == 0:
                row, column = token.end
                source = "".join(lines[: row - 1]) + lines[row - 1][:column]
                node = ast.parse(source, mode="eval").body
                return node if isinstance(node, ast.Call) else None
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return None


def _literal_call(call: ast.Call, entry_point: str) -> str | None:
    arguments = [*call.args, *(k.value for k in call.keywords)]
    if any(k.arg is None for k in call.keywords) or any(
        isinstance(a, ast.Starred) for a in call.args
    ):
        return None
    for argument in arguments:
        try:
            ast.literal_eval(argument)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return ast.unparse(ast.Call(ast.Name(entry_point, ast.Load()), call.args, call.keywords))


def outputs(
    task: Task, calls: Sequence[str], limits: Limits = Limits()
) -> tuple[list[Value], list[Value]]:
    """The reference's values for the calls, from two separate sandbox runs that differ where a
    deterministic function cannot tell: the second makes the calls in reverse order (an output
    that depends on the calls before it changes) from a different heap (one that shows a memory
    address changes: id(), default reprs and hashes of objects)."""
    program = task.program(task.reference or "")
    first = evaluate(program, calls, task.test_setup, limits)
    second = evaluate(program, calls[::-1], task.test_setup + "\n" + _SHIFT_HEAP, limits)[::-1]
    return first, second


def materialise(
    task: Task, calls: Sequence[str], first: Sequence[Value], second: Sequence[Value],
    limits: Limits = Limits(),
) -> tuple[list[str], list[Value], list[Value]]:
    """Calls whose output was not plain data in both runs are tried again as `list(call)`.

    Much Python returns iterators and generators (itertools-style libraries, most of all), and
    their items are what a test should check. A call is rewritten only when `list(call)` gives
    plain data in both runs; otherwise it keeps its first outcome (and is dropped as not data).
    The test becomes `assert list(f(...)) == [...]`: still a value test, judged outside the
    sandbox."""
    calls, first, second = list(calls), list(first), list(second)
    lazy = [i for i, (a, b) in enumerate(zip(first, second, strict=True))
            if a.status == b.status == "not_data"]
    if not lazy:
        return calls, first, second
    again_first, again_second = outputs(task, [f"list({calls[i]})" for i in lazy], limits)
    for i, a, b in zip(lazy, again_first, again_second, strict=True):
        if a.status == b.status == "ok":
            calls[i], first[i], second[i] = f"list({calls[i]})", a, b
    return calls, first, second


# Live objects of every small size: later allocations land elsewhere than in the first run.
_SHIFT_HEAP = "__gen_tests_heap = [(object(), float(n), bytes(n)) for n in range(520)]\n"


def judge_output(first: Value, second: Value) -> str | None:
    """Why a call whose reference gave these two values cannot be a test; None if it can."""
    statuses = {first.status, second.status}
    if statuses & {"timeout", "not_run"}:
        return TIMED_OUT
    if statuses == {"error"}:
        return CRASHED
    if statuses == {"not_data"}:
        return NOT_DATA
    if statuses != {"ok"}:
        return NOT_DETERMINISTIC
    try:
        text = repr(first.value)
    except ValueError:  # an int past Python's str-conversion limit
        return TOO_LONG
    if len(text) > MAX_EXPECTED_CHARS:
        return TOO_LONG
    if not _reads_back(text, first.value):
        return NOT_A_LITERAL
    if not _same(first.value, second.value):
        return NOT_DETERMINISTIC
    if any(_noisy(x) for x in _floats(first.value)):
        return FLOAT_NOISE
    return None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and equal(a, b)


def _reads_back(text: str, value: Any) -> bool:
    try:
        again = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return _same(again, value)


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, complex):
        yield from (value.real, value.imag)
    elif isinstance(value, dict):
        for item in value.items():
            yield from _floats(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _floats(item)


def _noisy(x: float) -> bool:
    """A float whose shortest repr is the tail of a rounding error: 0.30000000000000004,
    2.9999999999999996 (15+ significant digits with a run of zeros or nines)."""
    if not math.isfinite(x):
        return False
    digits = repr(abs(x)).split("e")[0].replace(".", "").lstrip("0")
    return len(digits) >= 15 and re.search(r"0{5,}|9{5,}", digits) is not None


def make_tests(
    calls: Sequence[str], first: Sequence[Value], second: Sequence[Value]
) -> tuple[list[tuple[str, Any]], Counter[str]]:
    """The (call, expected output) pairs that make tests, and why the other calls were dropped."""
    kept, dropped = [], Counter()
    for call, a, b in zip(calls, first, second, strict=True):
        reason = judge_output(a, b)
        if reason:
            dropped[reason] += 1
        else:
            kept.append((call, a.value))
    return kept, dropped


def as_test(call: str, output: Any) -> str:
    return f"assert {call} == {output!r}"


def generate_tests(
    tasks: Sequence[Task],
    teacher: ModelSpec | str,
    run: RunDir,
    count: int = 10,
    min_tests: int = 3,
    limits: Limits = Limits(),
    workers: int | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    progress: Progress | None = None,
) -> GenTestsReport:
    """Make tests for `tasks` from their references (see the module docstring).

    Tasks that already have tests get new ones in their place.
    """
    if count < 1 or min_tests < 1:
        raise BadInput(f"count and min_tests must be at least 1, got {count} and {min_tests}")
    started = time.monotonic()
    spec = get_model(teacher) if isinstance(teacher, str) else teacher
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise BadInput(f"task ids must be unique: {duplicate!r} is there twice")
    report = GenTestsReport([], {})
    with_reference = [t for t in tasks if t.reference is not None]
    requests = [
        request_for(
            spec,
            messages=render(
                "gen_tests", prompt=task.prompt, entry_point=task.entry_point, count=count
            ),
            key=f"gen-tests:{task.task_id}",
            temperature=temperature,
            max_tokens=max_tokens,
        )
        for task in with_reference
    ]
    answers = generate(run, spec, requests, "gen-tests", bar(progress, "gen-tests", len(requests)))
    report.teacher_tokens = sum(a.completion_tokens for a in answers.values())
    report.new_requests = sum(not a.cached for a in answers.values())
    proposals = {t.task_id: Proposal((), 0, Counter()) for t in tasks}  # no reference: none
    for t in with_reference:
        answer = answers[f"gen-tests:{t.task_id}"].text
        proposals[t.task_id] = parse_calls(answer, t.entry_point, count)
    to_run = [t for t in with_reference if proposals[t.task_id].calls]
    running = bar(progress, "run reference", len(to_run))
    records, made = [], {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        def run_reference(task: Task) -> tuple[list[str], list[Value], list[Value]]:
            calls = proposals[task.task_id].calls
            return materialise(task, calls, *outputs(task, calls, limits), limits)

        for task, done in zip(to_run, pool.map(run_reference, to_run), strict=True):
            made[task.task_id] = done
            running.advance()
    for task in tasks:
        proposal = proposals[task.task_id]
        report.proposed += proposal.found
        report.parsed += len(proposal.calls)
        report.dropped.update(proposal.dropped)
        calls, first, second = made.get(task.task_id, ([], [], []))
        kept, dropped = make_tests(calls, first, second)
        tests = [as_test(call, output) for call, output in kept]
        reason = _skip_reason(task, proposal, kept, dropped, first, min_tests)
        if reason:
            report.skipped[task.task_id] = reason
            if tests:
                dropped[TASK_SKIPPED] += len(tests)
        else:
            report.kept += len(tests)
            metadata = {
                **task.metadata,
                "gen_tests": {
                    "teacher": spec.name,
                    "inputs": len(proposal.calls),
                    "dropped": dict(dropped),
                },
            }
            report.tasks.append(
                replace(task, tests=tuple(tests), seen_tests=(tests[0],), metadata=metadata)
            )
        report.dropped.update(dropped)
        records.append(
            {
                "key": task.task_id,
                "calls": calls,
                "outcomes": [_describe(a, b) for a, b in zip(first, second, strict=True)],
                "tests": [] if reason else tests,
                "skipped": reason,
            }
        )
    run.write("gen_tests", records)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _skip_reason(
    task: Task,
    proposal: Proposal,
    kept: list[tuple[str, Any]],
    dropped: Counter[str],
    first: Sequence[Value],
    min_tests: int,
) -> str | None:
    name = task.entry_point
    if task.reference is None:
        return "no reference solution to run"
    if not proposal.found:
        return f"the teacher proposed no call of {name}"
    if not proposal.calls:
        return f"none of the teacher's {proposal.found} calls of {name} has literal arguments"
    if dropped[CRASHED] == len(proposal.calls):
        details = [v.detail for v in first]
        shown = details[0] if len(set(details)) == 1 else f"first: {details[0]}"
        return f"the reference fails on every input ({shown[:200]})"
    if len(kept) < min_tests:
        why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common())
        return (
            f"{len(kept)} of {len(proposal.calls)} inputs gave a test, fewer than "
            f"{min_tests}" + (f" ({why})" if why else "")
        )
    if all(output is None for _, output in kept):
        return (
            "the reference returns None for every input (it prints or changes its "
            "arguments instead of returning)"
        )
    return None


def _describe(first: Value, second: Value) -> dict:
    reason = judge_output(first, second)
    if reason is None:
        return {"kept": True}
    details = [v.detail for v in (first, second) if v.detail]
    return {"kept": False, "why": reason, **({"detail": details[0]} if details else {})}
