"""The `localdistill` command: thin Click wrappers over library functions.

Exit codes: 0 success, 1 the work failed (e.g. reference solutions fail their tests) or an
internal error (a bug), 2 bad usage or bad input (`localdistill.errors.BadInput`), 130 interrupted
(Ctrl-C or SIGTERM: rerun the command to resume); cli/base.py decides which. Errors are one line
(what, where, how to fix) unless --debug. One module per group of commands; each only parses
arguments and calls the library.
"""

from __future__ import annotations

import signal

from localdistill.cli import evaluate, examples, experiment, mine, models, pipeline, tasks, train  # noqa: F401 - they register commands
from localdistill.cli.base import BadUsage, WorkFailed, cli


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    cli(prog_name="localdistill")


def _terminated(signum, frame) -> None:
    """SIGTERM (`kill`, a service manager, a batch system) stops a command as Ctrl-C does: what
    finished is kept, the time each stage ran is recorded, and the exit code is 130. A second
    SIGTERM ends the process at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


__all__ = ["BadUsage", "WorkFailed", "cli", "main"]
