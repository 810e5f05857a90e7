"""Read a run's personalised examples side by side: the student's failed attempt, the execution
feedback it got, the teacher's refinement, the correct solution the teacher was shown (the
guide, if any) and a diff from attempt to refinement.

Numbers say whether a refinement is personalised; reading twenty of them says whether it is a
small repair of the student's code or the guide pasted in. This reads a collect run's
refinements.jsonl (with attempts.jsonl and executions.jsonl), takes no lock (a running collect
may be looked at) and writes nothing to the run. Records of older runs lack the fields of later
versions (strategy, guide, similarities...): those are shown as unknown.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput
from localdistill.extract import shown_code
from localdistill.rundir import read_records, write_atomic
from localdistill.tasks.record import Task


class NoRefinements(BadInput):
    """The directory holds no refinements.jsonl: not a collect run, or refine has not run."""


@dataclass(frozen=True)
class Example:
    """One refinement of a student's failed attempt, with what it came from."""

    key: str
    task_id: str
    round: int
    teacher: str
    passed: bool
    attempt: str  # the student's code, as the teacher was shown it
    refinement: str
    feedback: str  # the execution feedback of the student's attempt
    feedback_given: str  # what the teacher was shown (a round > 1: its previous refinement's)
    strategy: str | None = None
    guide: str | None = None
    guide_source: str | None = None  # "reference" | "teacher"
    similarity: float | None = None  # refinement vs attempt, 0..1
    guide_similarity: float | None = None  # guide vs attempt: what copying the guide would score
    copied: bool | None = None
    personalised: bool | None = None

    @property
    def diff(self) -> str:
        """A unified diff from the student's attempt to the refinement."""
        return "".join(difflib.unified_diff(
            _lines(self.attempt), _lines(self.refinement), "student's attempt",
            "teacher's refinement"))


def refinements_file(run_dir: Path | str) -> Path:
    """RUN/refinements.jsonl; NoRefinements when there is none."""
    path = Path(run_dir) / "refinements.jsonl"
    if not path.is_file():
        raise NoRefinements(f"{path}: no such file; {run_dir} is not a collect run with "
                            "refinements (run `localdistill collect` or `refine` on it first)")
    return path


def load_examples(run_dir: Path | str, *, include_failed: bool = False,
                  task_id: str | None = None, limit: int | None = None,
                  tasks: Sequence[Task] = ()) -> tuple[list[Example], int]:
    """The run's refinements (verified ones only unless `include_failed`), those of one task
    with `task_id`, at most `limit`; and how many refinements the run holds in all.

    `tasks`, when given, show a refinement that is only a function body under its prompt's
    header, as the teacher and the tests saw it; without them it is shown as extracted."""
    run_dir = Path(run_dir)
    records = list(read_records(refinements_file(run_dir)))
    attempts = {a["key"]: a for a in read_records(run_dir / "attempts.jsonl") if "key" in a}
    executions = {e["key"]: e for e in read_records(run_dir / "executions.jsonl") if "key" in e}
    first_rounds = {r.get("attempt_key"): r for r in records if r.get("round") == 1}
    by_id = {t.task_id: t for t in tasks}
    order = {key: i for i, key in enumerate(dict.fromkeys(r.get("attempt_key") for r in records))}
    chosen = [r for r in records if (include_failed or r.get("passed"))
              and (task_id is None or r.get("task_id") == task_id)]
    chosen.sort(key=lambda r: (order[r.get("attempt_key")], r.get("round", 0)))
    examples = [_example(r, attempts, executions, first_rounds, by_id.get(r.get("task_id")))
                for r in chosen[:limit]]
    return examples, len(records)


def run_tasks(run_dir: Path | str) -> tuple[list[Task], str | None]:
    """The tasks the run's manifest names, to show body-only refinements under their header;
    ([], why not) when they cannot be loaded here (a relative path read from elsewhere, a file
    since moved): the examples are still shown, as extracted."""
    from localdistill.tasks import load_tasks

    try:
        spec = json.loads((Path(run_dir) / "manifest.json").read_text())["tasks"]["spec"]
    except (OSError, ValueError, KeyError, TypeError):
        return [], "the run's manifest names no task set"
    try:
        return load_tasks(spec), None  # `localdistill run` records its sets joined by commas
    except (OSError, ValueError) as error:
        return [], f"its task set {spec!r} cannot be loaded here ({error})"


def _example(record: dict, attempts: Mapping[str, dict], executions: Mapping[str, dict],
             first_rounds: Mapping[str, dict], task: Task | None) -> Example:
    key = record.get("attempt_key", "")
    attempt = record.get("attempt")
    if not isinstance(attempt, str):  # an older run: round 1 was shown the attempt itself
        attempt = first_rounds.get(key, {}).get("refined_from")
    if not isinstance(attempt, str):
        completion = attempts.get(key, {}).get("completion", "")
        attempt = shown_code(task, completion) if task else completion
    refinement = record.get("completion") or ""
    if task is not None:
        refinement = shown_code(task, refinement)
    feedback = executions.get(key, {}).get("feedback") or ""
    return Example(
        key=str(record.get("key", "")), task_id=str(record.get("task_id", "")),
        round=int(record.get("round", 0)), teacher=str(record.get("teacher", "")),
        passed=bool(record.get("passed")), attempt=attempt.strip("\n"),
        refinement=refinement.strip("\n"), feedback=feedback,
        feedback_given=record.get("feedback_given") or feedback,
        strategy=record.get("strategy"), guide=record.get("guide"),
        guide_source=record.get("guide_source"), similarity=record.get("similarity"),
        guide_similarity=record.get("guide_similarity"), copied=record.get("copied"),
        personalised=record.get("personalised"))


def figures(example: Example) -> dict[str, str]:
    """The numbers and flags of an example, as shown (unknown: "-")."""
    return {"task": example.task_id, "refinement": example.key, "round": str(example.round),
            "verified": _yes_no(example.passed), "teacher": example.teacher,
            "strategy": example.strategy or "-",
            "similarity to the attempt": _number(example.similarity),
            "correct solution's similarity (the guide, or the reference when none was shown)":
                _number(example.guide_similarity),
            "guide": example.guide_source or ("-" if example.guide is None else "shown"),
            "copy of the guide": _yes_no(example.copied),
            "personalised (closer than the guide)": _yes_no(example.personalised)}


def renderables(examples: Sequence[Example]) -> list:
    """Rich renderables: for each example its figures, attempt and refinement side by side,
    the feedback, the guide and the diff."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    out = []
    for example in examples:
        numbers = Table.grid(padding=(0, 2))
        numbers.add_column(style="bold")
        numbers.add_column()
        for name, value in figures(example).items():
            numbers.add_row(name, value)
        code = Table(expand=True, show_lines=False)
        code.add_column("student's attempt", ratio=1)
        code.add_column("teacher's refinement", ratio=1)
        code.add_row(_python(example.attempt), _python(example.refinement))
        parts = [numbers, code, Panel(Text(example.feedback or "(none)"),
                                      title="execution feedback of the attempt",
                                      title_align="left")]
        if example.round > 1:
            parts.append(Panel(Text(example.feedback_given), title="feedback the teacher was "
                               "given (of the previous round's refinement)", title_align="left"))
        if example.guide:
            parts.append(Panel(_python(example.guide), title=f"guide shown to the "
                               f"teacher ({example.guide_source or 'source unknown'})",
                               title_align="left"))
        parts.append(Panel(Syntax(example.diff or "(no change)\n", "diff", word_wrap=True),
                           title="diff: attempt -> refinement", title_align="left"))
        state = "verified" if example.passed else "failed"
        out.append(Panel(Group(*parts), title=f"{example.task_id} · round {example.round} · "
                         f"{state}", title_align="left"))
    return out


def markdown(examples: Sequence[Example], run_dir: Path | str) -> str:
    """The same as a Markdown document: one section per example."""
    lines = [f"# Personalised examples of {run_dir}", ""]
    if not examples:
        lines += ["No refinements matched.", ""]
    for example in examples:
        state = "verified" if example.passed else "failed"
        lines += [f"## {example.task_id}, round {example.round} ({state})", "",
                  "| figure | value |", "|---|---|"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in figures(example).items()]
        lines += ["", "### Student's attempt", "", *_block(example.attempt, "python"),
                  "### Teacher's refinement", "", *_block(example.refinement, "python"),
                  "### Execution feedback of the attempt", "",
                  *_block(example.feedback or "(none)", "text")]
        if example.round > 1:
            lines += ["### Feedback the teacher was given (of the previous round's refinement)",
                      "", *_block(example.feedback_given, "text")]
        if example.guide:
            lines += [f"### Guide shown to the teacher ({example.guide_source or 'unknown'})",
                      "", *_block(example.guide, "python")]
        lines += ["### Diff: attempt -> refinement", "",
                  *_block(example.diff or "(no change)", "diff")]
    return "\n".join(lines)


def write_markdown(examples: Sequence[Example], run_dir: Path | str, out: Path | str) -> Path:
    """`markdown` written to `out` (replaced whole); returns its path."""
    out = Path(out)
    write_atomic(out, markdown(examples, run_dir).encode())
    return out


def _block(text: str, language: str) -> list[str]:
    # A fence longer than any run of backticks in the text, so code holding ``` cannot end it.
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text.rstrip("\n"), fence, ""]


def _python(code: str):
    from rich.syntax import Syntax

    return Syntax(code or "(empty)", "python", word_wrap=True, theme="ansi_dark")


def _lines(code: str) -> list[str]:
    return [line + "\n" for line in code.split("\n")]


def _cell(value: str) -> str:
    return value.replace("|", "\\|")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
