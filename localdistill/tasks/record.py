"""The coding task: the one record every stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    """A Python function to write, with the tests that judge it.

    `program = prompt + completion` must define `entry_point`. Each test is a self-contained Python
    snippet (normally one `assert`) that calls the function by its name; tests run in order in the
    program's namespace after `test_setup`. Tests of the form `assert f(...) == <literal>` are
    judged outside the sandbox (the sandboxed program never sees the expected value).
    """

    task_id: str
    prompt: str  # the text the model completes: imports, signature, docstring
    entry_point: str  # the function the tests call
    tests: tuple[str, ...]  # hidden tests: the verdict
    seen_tests: tuple[str, ...] = ()  # tests a model may look at (docstring examples, MBPP's first)
    test_setup: str = ""  # code run once after the program and before the tests (imports, helpers)
    reference: str | None = None  # a completion known to pass (appended to `prompt`)
    source: str = "user"  # humaneval, mbpp, alpaca, user, mined...
    description: str = ""  # natural-language statement, when the prompt is not self-describing
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Accept lists from JSON or datasets; store tuples so a Task is immutable.
        object.__setattr__(self, "tests", tuple(self.tests))
        object.__setattr__(self, "seen_tests", tuple(self.seen_tests))

    def program(self, completion: str) -> str:
        """The program a completion makes: the prompt followed by the model's text."""
        return self.prompt + completion
