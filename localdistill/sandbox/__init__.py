"""Execute stage: run model-written code against a task's tests in the sandbox.

`execute(task, completion)` judges one completion; `run_many` judges thousands in parallel;
`evaluate(program, exprs)` brings back the values of expressions (gen-tests' expected outputs).
"""

from localdistill.sandbox.isolation import isolation_report
from localdistill.sandbox.limits import Limits, SandboxError
from localdistill.sandbox.pool import Program, run_many
from localdistill.sandbox.sandbox import (
    ExecutionResult,
    TestOutcome,
    Value,
    evaluate,
    evaluate_again,
    run_tests,
)
from localdistill.tasks.record import Task


def execute(
    task: Task, completion: str, limits: Limits = Limits(), seen_only: bool = False
) -> ExecutionResult:
    """Judge `completion` on the task's hidden tests (or only its seen tests, for self-repair)."""
    tests = task.seen_tests if seen_only else task.tests
    return run_tests(task.program(completion), tests, task.entry_point, task.test_setup, limits)


def program_for(
    task: Task, completion: str, key: str | None = None, seen_only: bool = False
) -> Program:
    tests = task.seen_tests if seen_only else task.tests
    return Program(
        key or task.task_id,
        task.program(completion),
        tuple(tests),
        task.entry_point,
        task.test_setup,
    )


__all__ = [
    "ExecutionResult",
    "Limits",
    "Program",
    "SandboxError",
    "TestOutcome",
    "Value",
    "evaluate",
    "evaluate_again",
    "execute",
    "isolation_report",
    "program_for",
    "run_many",
    "run_tests",
]
