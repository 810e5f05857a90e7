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
import os
import time
from collections import Counter
from collections.abc import Sequence
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
from localdistill.sandbox import Limits, Value
from localdistill.stages.gentests.calls import (
    CRASHED,
    DUPLICATE,
    FLOAT_NOISE,
    MAX_ANSWER_CHARS,
    MAX_CALL_CHARS,
    MAX_CALLS,
    MAX_EXPECTED_CHARS,
    NOT_A_LITERAL,
    NOT_DATA,
    NOT_DETERMINISTIC,
    NOT_LITERAL,
    OVER_COUNT,
    SAME_BEHAVIOUR,
    TASK_SKIPPED,
    TIMED_OUT,
    TOO_LONG,
    Proposal,
    parse_calls,
    split_method_call,
    state_of,
)
from localdistill.stages.gentests.outputs import (
    behaviour,
    judge_output,
    kind,
    materialise,
    outputs,
)
from localdistill.tasks.record import Task

__all__ = ["CRASHED", "DUPLICATE", "FLOAT_NOISE", "GenTestsConfig", "GenTestsReport",
           "MAX_ANSWER_CHARS", "MAX_CALLS", "MAX_CALL_CHARS", "MAX_EXPECTED_CHARS",
           "NOT_A_LITERAL", "NOT_DATA", "NOT_DETERMINISTIC", "NOT_LITERAL", "OVER_COUNT",
           "Proposal", "SAME_BEHAVIOUR", "TASK_SKIPPED", "TIMED_OUT", "TOO_LONG", "as_test",
           "behaviour", "generate_tests", "judge_output", "kind", "make_tests", "materialise",
           "outputs", "parse_calls", "split_method_call", "state_of"]


@dataclass(frozen=True)
class GenTestsConfig:
    """What `gen-tests` (and `mine`, which makes tests the same way) asks of the teacher."""

    count: int = field(default=10, metadata={"help": "inputs to ask the teacher for, per task"})
    min_tests: int = field(default=3, metadata={
        "help": "tasks left with fewer tests are reported and skipped"})
    temperature: float | None = field(default=None, metadata={"help": "default: models.toml"})
    max_tokens: int | None = field(default=None, metadata={"help": "default: models.toml"})
    per_behaviour: int = field(default=5, metadata={
        "help": "tests kept per behaviour (output type, sign, size, and the reference's path: "
                "outputs.kind); "
                "0: no limit"})


DEFAULTS = GenTestsConfig()


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
    variety: list[tuple[int, int]] = field(default_factory=list)  # per task: tests, behaviours
    asked_again: int = 0  # tasks whose first calls behaved alike: the teacher asked once more

    def stage_report(self) -> StageReport:
        """The counts as the stage table every command prints."""
        counts: dict[str, int | str] = {
            "tasks with tests": len(self.tasks),
            "tasks skipped": len(self.skipped),
            "calls proposed": self.proposed,
            "inputs run": self.parsed,
            "tests kept": self.kept,
            "tasks asked again (first calls alike or too few)": self.asked_again,
        }
        if self.variety:
            tests = sorted(t for t, _ in self.variety)
            kinds = sorted(b for _, b in self.variety)
            counts |= {"tests per task (median)": tests[len(tests) // 2],
                       "behaviours per task (median)": kinds[len(kinds) // 2],
                       "tasks whose tests all behave alike": sum(b == 1 for b in kinds)}
        counts |= {f"dropped: {reason}": n for reason, n in self.dropped.most_common()}
        stage = StageReport(
            "gen-tests", counts, teacher_tokens=self.teacher_tokens, new_requests=self.new_requests
        )
        stage.seconds = self.seconds
        return stage


def make_tests(
    calls: Sequence[str], first: Sequence[Value], second: Sequence[Value],
    per_behaviour: int = 0, kinds: list[tuple] | None = None,
) -> tuple[list[tuple[str, Any]], Counter[str]]:
    """The (call, expected output) pairs that make tests, and why the other calls were dropped;
    at most `per_behaviour` of one kind (outputs.kind: the output's behaviour and the path the
    reference took) when it is not 0. `kinds`, when given, gets each kept test's kind."""
    kept, dropped, seen = [], Counter(), Counter()
    for call, a, b in zip(calls, first, second, strict=True):
        reason = judge_output(a, b)
        if reason is None and per_behaviour:
            seen[kind(a)] += 1
            reason = SAME_BEHAVIOUR if seen[kind(a)] > per_behaviour else None
        if reason:
            dropped[reason] += 1
        else:
            kept.append((call, a.value))
            if kinds is not None:
                kinds.append(kind(a))
    return kept, dropped


def as_test(call: str, output: Any, mutates: bool = False) -> str:
    """`assert call == output`; for a method that changes its object (`Cls(...).m(...)`), the
    object built, the method called, and its attributes after the call compared."""
    if not mutates:
        return f"assert {call} == {output!r}"
    built, method = split_method_call(call)
    return f"obj = {built}\nobj.{method}\nassert vars(obj) == {output!r}"


def generate_tests(
    tasks: Sequence[Task],
    teacher: ModelSpec | str,
    run: RunDir,
    count: int = DEFAULTS.count,
    min_tests: int = DEFAULTS.min_tests,
    limits: Limits = Limits(),
    workers: int | None = None,
    temperature: float | None = DEFAULTS.temperature,
    max_tokens: int | None = DEFAULTS.max_tokens,
    progress: Progress | None = None,
    per_behaviour: int = DEFAULTS.per_behaviour,
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
    proposals = {t.task_id: Proposal((), 0, Counter()) for t in tasks}  # no reference: none
    proposals |= _ask(report, run, spec, with_reference, "gen_tests", count, temperature,
                      max_tokens, progress)
    made = _run_references(with_reference, proposals, limits, workers, progress)
    # Tests that all behave alike, or too few: ask once more, for calls that exercise other
    # cases ("alike": the calls behaved alike or repeated each other; "few": too few of them gave
    # tests for other reasons: not literal, crashed the reference...).
    why: dict[str, str] = {}
    for task in with_reference:
        calls, first, second = made.get(task.task_id, ([], [], []))
        kinds: list[tuple] = []
        kept, dropped = make_tests(calls, first, second, per_behaviour, kinds)
        if len(kept) > 1 and len(set(kinds)) == 1:
            why[task.task_id] = "alike"
        elif len(kept) < min_tests:
            alike = dropped[SAME_BEHAVIOUR] or proposals[task.task_id].dropped[DUPLICATE]
            why[task.task_id] = "alike" if alike else "few"
    again = [t for t in with_reference if t.task_id in why]
    if again:
        more = _ask(report, run, spec, again, "gen_tests_again", count, temperature, max_tokens,
                    progress, before=proposals, why=why)
        fresh = {t.task_id: Proposal(tuple(c for c in more[t.task_id].calls
                                           if c not in proposals[t.task_id].calls),
                                     0, Counter()) for t in again}
        new_made = _run_references(again, fresh, limits, workers, progress)
        for task in again:
            first_round, second_round = proposals[task.task_id], more[task.task_id]
            repeated = len(second_round.calls) - len(fresh[task.task_id].calls)
            proposals[task.task_id] = Proposal(
                first_round.calls + fresh[task.task_id].calls,
                first_round.found + second_round.found,
                first_round.dropped + second_round.dropped + Counter({DUPLICATE: repeated}))
            old = made.get(task.task_id, ([], [], []))
            add = new_made.get(task.task_id, ([], [], []))
            made[task.task_id] = tuple(a + b for a, b in zip(old, add, strict=True))
        report.asked_again = len(again)
    records = []
    for task in tasks:
        proposal = proposals[task.task_id]
        report.proposed += proposal.found
        report.parsed += len(proposal.calls)
        report.dropped.update(proposal.dropped)
        calls, first, second = made.get(task.task_id, ([], [], []))
        kinds = []
        kept, dropped = make_tests(calls, first, second, per_behaviour, kinds)
        tests = [as_test(call, output, bool(task.metadata.get("mutates")))
                 for call, output in kept]
        reason = _skip_reason(task, proposal, kept, dropped, first, min_tests)
        if reason:
            report.skipped[task.task_id] = reason
            if tests:
                dropped[TASK_SKIPPED] += len(tests)
        else:
            report.kept += len(tests)
            report.variety.append((len(tests), len(set(kinds))))
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
                "asked_again": task in again,
            }
        )
    run.write("gen_tests", records)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _ask(report: GenTestsReport, run: RunDir, spec: ModelSpec, tasks: Sequence[Task],
         template: str, count: int, temperature: float | None, max_tokens: int | None,
         progress: Progress | None, before: dict[str, Proposal] | None = None,
         why: dict[str, str] | None = None) -> dict[str, Proposal]:
    """The calls the teacher proposes for each task (`template`; `before`: the calls proposed
    already, shown to it, with `why` they are asked again), its tokens counted in `report`."""
    stage = template.replace("_", "-")
    classes = {t.task_id: defined_classes(t) for t in tasks}
    requests = [
        request_for(
            spec,
            messages=render(
                template, prompt=task.prompt, entry_point=task.entry_point, count=count,
                **_method_of(task), classes=sorted(classes[task.task_id]),
                **({"calls": "\n".join(before[task.task_id].calls), "why": why[task.task_id]}
                   if before and why else {}),
            ),
            key=f"{stage}:{task.task_id}",
            temperature=temperature,
            max_tokens=max_tokens,
        )
        for task in tasks
    ]
    answers = generate(run, spec, requests, stage, bar(progress, stage, len(requests)))
    report.teacher_tokens += sum(a.completion_tokens for a in answers.values())
    report.new_requests += sum(not a.cached for a in answers.values())
    return {t.task_id: parse_calls(answers[f"{stage}:{t.task_id}"].text, t.entry_point, count,
                                   **_method_of(t), classes=classes[t.task_id]) for t in tasks}


def _run_references(tasks: Sequence[Task], proposals: dict[str, Proposal], limits: Limits,
                    workers: int | None, progress: Progress | None
                    ) -> dict[str, tuple[list[str], list[Value], list[Value]]]:
    """Each task's calls as run (`list(...)` around a lazy one) and the reference's two values
    for each, for the tasks that have calls."""
    to_run = [t for t in tasks if proposals[t.task_id].calls]
    running = bar(progress, "run reference", len(to_run))
    made = {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        def run_reference(task: Task) -> tuple[list[str], list[Value], list[Value]]:
            calls = proposals[task.task_id].calls
            if task.metadata.get("mutates"):  # its tests compare the object's state after it
                return list(calls), *outputs(task, [state_of(c) for c in calls], limits)
            return materialise(task, calls, *outputs(task, calls, limits), limits)

        for task, done in zip(to_run, pool.map(run_reference, to_run), strict=True):
            made[task.task_id] = done
            running.advance()
    return made


def defined_classes(task: Task) -> frozenset[str]:
    """The classes the task's program defines at its top level (a mined task carries the
    repository's classes its function takes or uses; a method's task, its own class): a proposed
    call may pass their objects, built from literals. Exceptions are left out."""
    try:
        tree = ast.parse(task.program(task.reference or ""))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    return frozenset(node.name for node in tree.body if isinstance(node, ast.ClassDef)
                     and not node.name.endswith(("Error", "Exception", "Warning")))


def _method_of(task: Task) -> dict:
    """A mined method's name and how it is called (stages/mine: the entry point is its class);
    None for a function."""
    method = task.metadata.get("method")
    if not isinstance(method, str):
        return {"method": None, "binding": None}
    return {"method": method, "binding": task.metadata.get("binding", "instance")}


def _skip_reason(
    task: Task,
    proposal: Proposal,
    kept: list[tuple[str, Any]],
    dropped: Counter[str],
    first: Sequence[Value],
    min_tests: int,
) -> str | None:
    method = _method_of(task)
    name = task.entry_point if not method["method"] else (
        f"{task.entry_point}(...).{method['method']}" if method["binding"] == "instance"
        else f"{task.entry_point}.{method['method']}")
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
