"""The `localdistill` command group, its error handling and `doctor`.

Exit codes: 0 success, 1 the work failed (e.g. reference solutions fail their tests, a model or
the sandbox failed, a full disk) or an internal error (a bug in localdistill), 2 bad usage or bad
input (`localdistill.errors.BadInput`, a file of the user's that is missing or unreadable), 130
interrupted (Ctrl-C or SIGTERM: rerun the command to resume). Errors are one line (what, where,
how to fix) unless --debug, which shows the traceback.
"""

from __future__ import annotations

import errno
import os

import click

from localdistill import __version__
from localdistill.errors import BadInput


class WorkFailed(click.ClickException):
    """The command ran but the work it checked failed (exit 1)."""

    exit_code = 1


class BadUsage(click.ClickException):
    """Bad usage or bad input (exit 2): a usage error of click's, or a BadInput."""

    exit_code = 2


class InternalError(click.ClickException):
    """An error no one meant to raise: a bug in localdistill (exit 1), one line unless --debug."""

    exit_code = 1

    def __init__(self, exc: BaseException) -> None:
        text = str(exc).splitlines()[0] if str(exc).strip() else ""
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        super().__init__(f"internal error: {what} (a bug in localdistill: run with --debug for "
                         "the traceback, and please report it)")

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


class Interrupted(click.ClickException):
    """Ctrl-C (SIGINT), or SIGTERM (see cli.main): one line, and the shell's exit code for
    Ctrl-C (128 + 2)."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted: run the same command again to resume (nothing that "
                         "finished is lost)")

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


class _Group(click.Group):
    """Turns known errors into one line and an exit code; --debug shows the traceback."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise Interrupted() from None
        except Exception as exc:  # noqa: BLE001 - the CLI's one place for this
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _as_click_error(exc) from exc


def _one_line(error: click.UsageError) -> click.ClickException:
    """A usage error in one line (click's own spreads the usage, a hint and the error over four)."""
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        return error  # the help a bare group shows, not an error
    command = error.ctx.command_path if error.ctx else "localdistill"
    return BadUsage(f"{error.format_message()} (see `{command} --help`)")


def _as_click_error(exc: Exception) -> click.ClickException:
    """Whose fault `exc` is, as one line and an exit code: bad input (2), a failure of the work
    (1), or an internal error (1, a bug: what --debug is for)."""
    from localdistill.backends.base import BackendError
    from localdistill.models.demo import ModelNotInstalled
    from localdistill.sandbox.limits import SandboxError
    from localdistill.stages.train.launch import TrainingFailed

    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, BadInput):
        return BadUsage(message)
    if isinstance(exc, SandboxError | ModelNotInstalled | BackendError | TrainingFailed):
        return WorkFailed(message)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return WorkFailed(f"cannot write {exc.filename or 'a file'}: {exc.strerror} (a full disk "
                          "or a file-size limit); free space and run the same command again: "
                          "what finished is kept")
    if isinstance(exc, OSError):  # a file of the user's: missing, a directory, unreadable, ...
        return BadUsage(message)
    if isinstance(exc, ImportError):  # an optional package missing: the message says which
        return WorkFailed(f"{type(exc).__name__}: {message} (run with --debug for the traceback)")
    return InternalError(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localdistill")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--models", "models_file", type=click.Path(dir_okay=False), default=None,
              help="The models file (default: $LOCALDISTILL_MODELS, ./models.toml, the repo's).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, models_file: str | None) -> None:
    """Personalised distillation of small code models, entirely on this machine."""
    ctx.obj = {"debug": debug}
    if models_file:
        os.environ["LOCALDISTILL_MODELS"] = models_file


@cli.command()
def doctor() -> None:
    """Report what is installed and usable here: backends, accelerators, sandbox, models."""
    from rich.console import Console
    from rich.markup import escape

    from localdistill.doctor import checks

    console = Console(highlight=False)
    marks = {True: "[green]ok[/]  ", False: "[red]no[/]  ", None: "[yellow]--[/]  "}
    for check in checks():
        console.print(
            f"{marks[check.ok]}{escape(check.name)}: {escape(check.detail)}", soft_wrap=True
        )
