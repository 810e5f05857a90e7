"""The `localdistill` command: thin Click wrappers over library functions.

Exit codes: 0 success, 1 the work failed (e.g. reference solutions fail their tests), 2 bad usage or
bad input, 130 interrupted (Ctrl-C: rerun the command to resume). Errors are one line (what, where,
how to fix) unless --debug. One module per group of commands; each only parses arguments and calls
the library.
"""

from __future__ import annotations

from localdistill.cli import evaluate, experiment, mine, models, pipeline, tasks, train  # noqa: F401 - they register commands
from localdistill.cli.base import BadInput, WorkFailed, cli


def main() -> None:
    cli(prog_name="localdistill")


__all__ = ["BadInput", "WorkFailed", "cli", "main"]
