"""Decontamination: mined tasks that nearly copy an evaluation task (the benchmark sets whose
declarations ask for it, such as HumanEval and MBPP's test split, and the user's own sets) are
dropped (see the package docstring)."""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from localdistill.tasks import TaskSpecError, decontamination_specs, load_tasks
from localdistill.tasks.record import Task

SIMILAR = 0.9
PREFILTER = 0.5
MIN_COMPARED_CHARS = 40  # shorter bodies and prompts match by chance (`return a + b`)




@dataclass(frozen=True)
class Contamination:
    """Why a mined task was dropped: the evaluation task it nearly copies, and on what."""

    part: str  # "prompt" or "body"
    ratio: float
    task_id: str  # of the evaluation task
    source: str  # its benchmark (humaneval, mbpp, user...)

    @property
    def reason(self) -> str:
        return f"{self.part} {self.ratio:.2f} similar to {self.task_id} ({self.source})"


@dataclass(frozen=True)
class _Fingerprint:
    text: str
    tokens: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Fingerprint:
        return cls(text, frozenset(re.findall(r"\w+|[^\w\s]", text)))

    def similarity(self, other: _Fingerprint) -> float:
        """difflib's ratio, or 0 when the texts are too short or a cheaper bound rules it out."""
        shorter, longer = sorted((len(self.text), len(other.text)))
        if shorter < MIN_COMPARED_CHARS or 2 * shorter / (shorter + longer) < SIMILAR:
            return 0.0
        union = len(self.tokens | other.tokens)
        if not union or len(self.tokens & other.tokens) / union < PREFILTER:
            return 0.0
        return difflib.SequenceMatcher(None, self.text, other.text, autojunk=False).ratio()


def _prompt_text(task: Task) -> str:
    return " ".join(task.prompt.split())


def _body_text(task: Task) -> str:
    """The entry point's body, unparsed without comments or docstring; the reference with its
    whitespace collapsed when the program does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(task.program(task.reference or ""))
        function = [n for n in ast.walk(tree)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    and n.name == task.entry_point][-1]
    except (SyntaxError, ValueError, RecursionError, IndexError):
        return " ".join((task.reference or "").split())
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return "\n".join(ast.unparse(statement) for statement in body)


def decontaminate(
    tasks: Sequence[Task], against: Sequence[Task]
) -> tuple[list[Task], dict[str, Contamination]]:
    """`tasks` less those whose prompt or body is near-identical to one of `against` (see the
    package docstring), and for each dropped task the closest match."""
    evaluation = [(t, _Fingerprint.of(_prompt_text(t)), _Fingerprint.of(_body_text(t)))
                  for t in against]
    kept, dropped = [], {}
    for task in tasks:
        prompt, body = _Fingerprint.of(_prompt_text(task)), _Fingerprint.of(_body_text(task))
        best = None
        for other, other_prompt, other_body in evaluation:
            for part, ratio in (("prompt", prompt.similarity(other_prompt)),
                                ("body", body.similarity(other_body))):
                if ratio >= SIMILAR and (best is None or ratio > best.ratio):
                    best = Contamination(part, round(ratio, 3), other.task_id, other.source)
        if best:
            dropped[task.task_id] = best
        else:
            kept.append(task)
    return kept, dropped


def evaluation_sets(specs: Sequence[str] = ()) -> tuple[list[Task], list[str]]:
    """The tasks mined ones must not copy: the benchmark sets their declarations name
    (`Benchmark.decontaminate`: HumanEval, MBPP's test split...) whose data is found, and the
    sets `specs` name (load_tasks specs; their errors are raised). Also a note for each
    benchmark set that could not be read."""
    tasks, notes = [], []
    for name in decontamination_specs():
        try:
            tasks += load_tasks(name)
        except (TaskSpecError, OSError, ValueError) as error:
            notes.append(f"{name} not checked: {str(error).splitlines()[0]}")
    for spec in specs:
        tasks += load_tasks(spec)
    return tasks, notes
