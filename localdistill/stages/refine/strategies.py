"""Refinement strategies: how the teacher is asked to correct a student's failed attempt.

A strategy is declared once, here (or by `register` in a user's own module), and chosen by name
from the run config (`[collect] strategy`), the `collect`/`refine` options and `probe`:

    template     its prompt, prompts/<template>.jinja (variables: prompt, description, attempt,
                 feedback, guide)
    guide        the correct solution shown to the teacher before it refines:
                   "none"       nothing (the teacher repairs blind)
                   "reference"  the task's reference solution (MBPP, Code-Alpaca, mined tasks and
                                most users' files have one); a task without one is an error
                   "teacher"    the teacher's own verified answer from scratch (the direct stage;
                                the official pipeline's gold mode); refined blind where it has none
                   "auto"       the reference, else the teacher's verified answer, else none
    candidates   k refinements per failed attempt, all verified; the verified one closest to the
                 student's attempt is kept (refine/similarity.py)
    temperature  their sampling temperature (None: the run's teacher temperature); k > 1 needs > 0
    stop         extra stop strings (the end of the first code block: no prose, no loops after it)
    max_tokens   a cap on each answer (None: the run's); a loop costs at most this

The guide never reaches the student: the data sets (build.py) train on the task or on the attempt
and its feedback only, and evaluation uses its own prompts.

Which strategy gives the most useful data depends on the teacher; `localdistill probe` measures
each on the same failed attempts (docs/results.md has the demo teacher's table).
"""

from __future__ import annotations

from dataclasses import dataclass

from localdistill.errors import BadInput

GUIDES = ("none", "reference", "teacher", "auto")
CODE_BLOCK_END = "\n```\n"  # closes the first code block: what follows is prose or a loop


class StrategyError(BadInput):
    """An unknown strategy, a bad declaration, or a guide the tasks cannot give: one line."""


@dataclass(frozen=True)
class Strategy:
    name: str
    template: str
    guide: str = "none"
    candidates: int = 1
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    help: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.guide not in GUIDES:
            raise StrategyError(f"strategy {self.name!r}: guide must be one of "
                                f"{', '.join(GUIDES)}, got {self.guide!r}")
        if self.candidates < 1:
            raise StrategyError(f"strategy {self.name!r}: candidates must be at least 1")
        if self.candidates > 1 and not self.temperature:
            raise StrategyError(f"strategy {self.name!r}: {self.candidates} candidates need a "
                                "sampling temperature above 0 (greedy gives k copies of one)")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise StrategyError(f"strategy {self.name!r}: max_tokens must be at least 1")


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Make `strategy` selectable by its name (a later declaration of a name replaces it)."""
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str | Strategy) -> Strategy:
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown refinement strategy {name!r} (known: "
                            f"{', '.join(STRATEGIES)})") from None


# The strategies measured on the demo teacher (docs/results.md, "Refinement strategies").
register(Strategy(
    "blind", "refine", help="the task, the attempt and its feedback; no correct solution shown "
    "(localdistill before 2026-12-03)"))
register(Strategy(
    "guide-turn", "refine_guide_turn", guide="auto", help="the official PersDistill shape: a "
    "correct solution as the teacher's own earlier answer, then 'rectify this incorrect code, "
    "closest to it'"))
register(Strategy(
    "guide-inline", "refine_guide_inline", guide="auto",
    help="a correct solution and the attempt in one message"))
register(Strategy(
    "guide-code-only", "refine_guide_code_only", guide="auto", stop=(CODE_BLOCK_END,),
    help="guide-inline, answering with the function only (no explanation)"))
register(Strategy(
    "guide-minimal", "refine_guide_minimal", guide="auto", stop=(CODE_BLOCK_END,),
    help="a correct solution for reference; the smallest change to the student's code"))
register(Strategy(
    "guide-minimal-k4", "refine_guide_minimal", guide="auto", candidates=4, temperature=0.8,
    stop=(CODE_BLOCK_END,), help="guide-minimal, 4 samples at 0.8, the closest verified kept"))
register(Strategy(
    "edit-k4", "refine_edit", guide="auto", candidates=4, temperature=0.7,
    stop=(CODE_BLOCK_END,), help="the student's code first, to be edited line by line; the "
    "correct solution only as a hint not to copy; 4 samples at 0.7, the closest verified kept"))
register(Strategy(
    "restyle", "refine_restyle", guide="auto", stop=(CODE_BLOCK_END,), help="ours, the other "
    "way round: the correct solution rewritten in the student's names, structure and style"))
register(Strategy(
    "restyle-k4", "refine_restyle", guide="auto", candidates=4, temperature=0.7,
    stop=(CODE_BLOCK_END,), help="restyle, 4 samples at 0.7, the closest verified kept (more "
    "chances for an answer that keeps the student's code)"))

# The measured best: the most verified and the most personalised refinements of every strategy
# probed on the demo teacher, at 602 teacher tokens a verified example (docs/results.md,
# "Refinement strategies"). The quickstart pins "restyle" (one answer per failure) for its budget.
DEFAULT = "restyle-k4"
