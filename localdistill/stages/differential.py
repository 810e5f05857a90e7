"""Differential check: the answers that passed their task's tests, run on generated inputs.

A task's own tests are few, so a wrong answer can pass them (sandbox/differential.py generates
more inputs from the tests' calls and takes the reference's values on them). Measured on the kept
MBPP collect (docs/sandbox.md), the reference alone is not an oracle to train on: MBPP's
references have bugs, and mutated inputs leave what the task means, where correct programs
differ. So an answer is judged only on the generated inputs on which the reference and a
**second solution** that passed the same tests agree:

    student attempt   the second solution is the teacher's verified answer from scratch
    teacher answer    the second solution is a passing student attempt of the task
    refinement        (refine stage) the teacher's verified answer from scratch, if not refuted

An answer that fails one of those inputs is *refuted*: a refuted student attempt counts as failed
and goes to refinement with the failing input as its feedback (the PERsD format); a refuted
teacher answer leaves the StanD and InpD sets. An answer whose task has no reference, no usable
generated input, or no second solution is not checked, and counted as such.

Files, in the run directory:
  oracles.jsonl       each task's generated tests (Oracle.to_dict), and the setting
  differential.jsonl  one record per answer judged: key, kind (attempt | direct), task_id,
                      checked, refuted, feedback (the first failing generated input), reason
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from localdistill import manifest
from localdistill.progress import Count, Measure, Parts, Progress, StageReport, bar
from localdistill.records import (
    Attempt,
    Check,
    Direct,
    Execution,
    candidate_key,
    kind_key,
    read,
    write,
)
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, Program
from localdistill.sandbox.differential import DEFAULT_INPUTS, Oracle, make_oracle
from localdistill.stages.refine.guides import teacher_solutions
from localdistill.tasks.record import Task
from localdistill.verdicts import judge

STAGE = "differential check"
ORACLES = "oracles"
__all__ = ["DEFAULT_INPUTS", "STAGE", "agreed_tests", "counts", "differential_check",
           "oracles_for"]


def oracles_for(tasks: Sequence[Task], run: RunDir, inputs: int, seed: int, limits: Limits,
                workers: int | None = None) -> dict[str, Oracle]:
    """Each task's generated tests, made once per (task, inputs, seed) and kept in the run."""
    kept = {(r["task_id"], r["seed"], r.get("inputs")): Oracle.from_dict(r)
            for r in run.records(ORACLES)}
    wanted = {t.task_id: t for t in tasks}
    missing = [t for t in wanted.values() if (t.task_id, seed, inputs) not in kept]
    if missing:
        with ThreadPoolExecutor(max_workers=workers or 2) as pool:
            made = list(pool.map(lambda t: make_oracle(t, inputs, seed, limits), missing))
        for oracle in made:
            kept[(oracle.task_id, seed, inputs)] = oracle
        run.write(ORACLES, [{**o.to_dict(), "inputs": n} for (_, _, n), o in kept.items()])
    return {task_id: kept[(task_id, seed, inputs)] for task_id in wanted}


def agreed_tests(run: RunDir, pairs: Sequence[tuple[str, Task, str, Oracle]], limits: Limits,
                 workers: int | None = None) -> dict[str, tuple[str, ...]]:
    """For each (name, task, second solution's completion, oracle): the generated tests the
    second solution passes, i.e. the inputs on which it and the reference agree."""
    programs = [Program(kind_key("second", name), task.program(completion), oracle.tests,
                        task.entry_point, task.test_setup)
                for name, task, completion, oracle in pairs if oracle.tests]
    verdicts = judge(run, programs, limits, workers)
    agreed = {}
    for name, _, _, oracle in pairs:
        verdict = verdicts.get(kind_key("second", name))
        agreed[name] = () if verdict is None else tuple(
            test for test, status in zip(oracle.tests, verdict.outcomes, strict=False)
            if status == "passed")
    return agreed


def differential_check(tasks: Sequence[Task], run: RunDir, inputs: int, seed: int = 0,
                       limits: Limits = Limits(), workers: int | None = None,
                       progress: Progress | None = None) -> StageReport:
    """The student's passing attempts and the teacher's verified answers, judged on the
    generated inputs their second solution agrees on -> differential.jsonl (see the module)."""
    with manifest.stage(run, STAGE) as report:
        by_id = {t.task_id: t for t in tasks}
        executions = {e.key: e for e in read(run, Execution)}
        passing = [a for a in read(run, Attempt)
                   if executions.get(a.key) and executions[a.key].passed]
        direct = [d for d in read(run, Direct) if d.passed]
        teacher = teacher_solutions(direct)
        student = {}
        for a in passing:
            student.setdefault(a.task_id, a.completion)
        answers = [("attempt", a.key, a.task_id, a.completion, teacher.get(a.task_id))
                   for a in passing] + \
                  [("direct", d.key, d.task_id, d.completion, student.get(d.task_id))
                   for d in direct]
        oracles = oracles_for([by_id[i] for i in dict.fromkeys(a[2] for a in answers)], run,
                              inputs, seed, limits, workers)
        seconds = {(task_id, second) for _, _, task_id, _, second in answers if second}
        names = {pair: candidate_key(pair[0], i) for i, pair in enumerate(sorted(seconds))}
        agreed = agreed_tests(run, [(names[pair], by_id[pair[0]], pair[1], oracles[pair[0]])
                                    for pair in names], limits, workers)
        programs, records = [], []
        for kind, key, task_id, completion, second in answers:
            oracle = oracles[task_id]
            record = Check(key, kind, task_id)
            tests = agreed.get(names.get((task_id, second)), ()) if second else ()
            if oracle.skipped:
                record = replace(record, reason=oracle.skipped)
            elif not second:
                record = replace(record, reason="no second solution")
            elif not tests:
                record = replace(record,
                                 reason="no generated input the second solution agrees on")
            else:
                record = replace(record, checked=True)
                task = by_id[task_id]
                programs.append(Program(kind_key(kind, key), task.program(completion), tests,
                                        task.entry_point, task.test_setup))
            records.append(record)
        verdicts = judge(run, programs, limits, workers,
                         bar(progress, "differential", len(programs)))
        for i, record in enumerate(records):
            verdict = verdicts.get(kind_key(record.kind, record.key))
            if verdict is not None and not verdict.passed:
                records[i] = replace(record, refuted=True, feedback=verdict.feedback)
        write(run, Check, records)
        report.count_all(counts(records, oracles.values(), inputs))
        return report.finish()


def counts(records: Sequence[Check], oracles, inputs: int) -> dict[str, Count]:
    """The stage table: per kind, passed the tests / checked / refuted / verified, and why the
    rest were not checked."""
    made = [o for o in oracles if not o.skipped]
    result: dict[str, Count] = {
        "generated inputs a task (asked)": inputs,
        "tasks with generated inputs": len(made),
        "generated tests kept (mean a task)": (
            Measure(sum(len(o.tests) for o in made) / len(made) if made else None, ".1f"))}
    for kind, label in (("attempt", "student passes"), ("direct", "teacher answers")):
        mine = [r for r in records if r.kind == kind]
        checked = [r for r in mine if r.checked]
        refuted = sum(r.refuted for r in checked)
        result[f"{label}: passed the tests / checked / refuted / verified"] = Parts(
            (len(mine), len(checked), refuted, len(mine) - refuted))
    reasons = Counter(r.reason.split(" (")[0] for r in records if not r.checked)
    for reason, n in reasons.most_common():
        result[f"not checked: {reason}"] = n
    return result
