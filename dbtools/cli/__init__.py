"""The ``dbtools`` command: a thin layer that parses options, calls the library and renders.

Every subcommand maps ``DbtoolsError`` to one ``Error: …`` line on stderr and its exit code
(see ``dbtools.errors``); ``--traceback`` shows the stack instead.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from dbtools import __version__, redaction
from dbtools.cli.options import add_verbosity
from dbtools.errors import EXIT_USAGE, DbtoolsError
from dbtools.redaction import redact

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Where each command lives. A command's module is imported when the command runs (or when
# `dbtools --help` lists them all), so each command loads only the libraries its own work needs
# (tests/test_imports.py).
COMMAND_MODULES: dict[str, str] = {
    "demo": "dbtools.cli.demo",
    "sandbox": "dbtools.cli.sandbox",
    "doctor": "dbtools.cli.doctor",
    "workload": "dbtools.cli.workload",
    "snapshot": "dbtools.cli.snapshot",
    "capture": "dbtools.cli.snapshot",
    "collect": "dbtools.cli.collect",
    "verify": "dbtools.cli.verify",
    "report": "dbtools.cli.report",
    "dashboard": "dbtools.cli.report",
    "downgrade-plan": "dbtools.cli.safety",
    "rehearse": "dbtools.cli.safety",
    "lint": "dbtools.cli.safety",
    "rollout": "dbtools.cli.rollout",
}


class OptionError(click.UsageError):
    """A usage error of the command line, shown as one ``Error:`` line and one hint (Click's
    own shows the usage, a hint, a blank line, then the error)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.ctx is not None:
            click.echo(f"Try '{self.ctx.command_path} --help'.", err=True)


def _one_line(err: click.UsageError) -> click.UsageError:
    if isinstance(err, (OptionError, click.exceptions.NoArgsIsHelpError)):
        return err
    return OptionError(err.format_message(), err.ctx)


class DbtoolsGroup(click.Group):
    """A group whose commands report errors as one redacted line and a documented exit code,
    and are loaded from ``COMMAND_MODULES`` when first asked for, each given ``-v``/``-q``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(COMMAND_MODULES[cmd_name])
            for command in module.COMMANDS:
                self.add_command(add_verbosity(command))
        return super().get_command(ctx, cmd_name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise _one_line(err) from err

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise _one_line(err) from err
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except DbtoolsError as err:
            self._report(ctx, err, err.exit_code)
        except Exception as err:
            translated = _driver_error(err, f"dbtools {ctx.invoked_subcommand}")
            if translated is not None:  # a server's refusal: what to grant, never a bug
                self._report(ctx, translated, translated.exit_code)
            # a bug: still one line, but say how to get the stack
            self._report(ctx, err, EXIT_USAGE, prefix="internal error: ")

    @staticmethod
    def _report(ctx: click.Context, err: Exception, code: int, prefix: str = "") -> None:
        if ctx.find_root().params.get("show_traceback"):
            click.echo(redact("".join(traceback.format_exception(err))), err=True, nl=False)
        message = redact(str(err)) or type(err).__name__
        hint = "" if not prefix else f" ({type(err).__name__}; rerun with --traceback)"
        click.echo(f"Error: {prefix}{message}{hint}", err=True)
        ctx.exit(code)


def _driver_error(err: Exception, what: str) -> DbtoolsError | None:
    """*err* as the one line a driver error (psycopg's) deserves, when it is one that escaped
    the library's own translation; None otherwise. psycopg is looked at only when loaded."""
    if "psycopg" not in sys.modules:
        return None
    from dbtools.db.errors import translate_driver_error

    return translate_driver_error(err, what)


@add_verbosity
@click.group("dbtools", cls=DbtoolsGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dbtools")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the stack on errors.")
def cli(show_traceback: bool) -> None:
    """Take a PostgreSQL-backed service safely through a performance rollout.

    Connection: --dsn (or --host, --port, --username, --dbname), else DATABASE_URL, else
    libpq's PG* variables and service files. -v and -q go before or after any command.

    \b
    Exit codes:
      0    success (verify: pass)
      1    checks found problems (verify: fail)
      2    usage, configuration or connection error; nothing was written
      3    verify: a rollback threshold was crossed
      130  interrupted (Ctrl-C, SIGTERM) after cleaning up
    """
    # Each command starts knowing the secrets of its environment (and none of an earlier
    # command's in this process); the DSNs it is given add theirs (``redaction``).
    redaction.forget_secrets()
    redaction.add_environment()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="dbtools")
