"""Whose fault an error is.

`BadInput` is the user's: a file, a flag, a name, a setting or a run directory that cannot be
used. Its message is one line saying what, where and how to fix it; the CLI shows that line and
exits 2. The input errors of each module (TaskFileError, ModelsFileError, ConfigError, ...)
subclass it. Anything else that escapes a command is an internal error (a bug in localdistill:
exit 1, and `--debug` shows the traceback), unless it is a failure of the work itself (a model
that crashed, a sandbox that cannot start: cli/base.py lists those).

BadInput is a ValueError, so code that caught ValueError from the library still catches it.
"""

from __future__ import annotations


class BadInput(ValueError):
    """The user's input cannot be used; the message (one line) says what, where and the fix."""
