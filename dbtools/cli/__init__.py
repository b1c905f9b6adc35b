"""The ``dbtools`` command: a thin layer that parses options, calls the library and renders.

Every subcommand maps ``DbtoolsError`` to one ``Error: …`` line on stderr and its exit code
(see ``dbtools.errors``); ``--traceback`` shows the stack instead.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import click

from dbtools import __version__
from dbtools.errors import EXIT_USAGE, DbtoolsError
from dbtools.redaction import RedactingFilter, redact

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DbtoolsGroup(click.Group):
    """A group whose commands report errors as one redacted line and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except DbtoolsError as err:
            self._report(ctx, err, err.exit_code)
        except Exception as err:  # a bug: still one line, but say how to get the stack
            self._report(ctx, err, EXIT_USAGE, prefix="internal error: ")

    @staticmethod
    def _report(ctx: click.Context, err: Exception, code: int, prefix: str = "") -> None:
        if ctx.find_root().params.get("show_traceback"):
            click.echo(redact("".join(traceback.format_exception(err))), err=True, nl=False)
        message = redact(str(err)) or type(err).__name__
        hint = "" if not prefix else f" ({type(err).__name__}; rerun with --traceback)"
        click.echo(f"Error: {prefix}{message}{hint}", err=True)
        ctx.exit(code)


@click.group(cls=DbtoolsGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dbtools")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the stack on errors.")
@click.option(
    "-v", "--verbose", count=True, help="Log progress on stderr (-v), or debug detail (-vv)."
)
def cli(show_traceback: bool, verbose: int) -> None:
    """Take a PostgreSQL-backed service safely through a performance rollout.

    Connection: --dsn, else DATABASE_URL, else libpq's PG* variables and service files.

    \b
    Exit codes:
      0    success (verify: pass)
      1    checks found problems (verify: fail)
      2    usage, configuration or connection error; nothing was written
      3    verify: a rollback threshold was crossed
      130  interrupted (Ctrl-C, SIGTERM) after cleaning up
    """
    _configure_logging(verbose)


def _configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dbtools")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))


def _register() -> None:
    from dbtools.cli import (
        collect,
        demo,
        doctor,
        report,
        safety,
        sandbox,
        snapshot,
        verify,
        workload,
    )

    for module in (demo, sandbox, doctor, workload, snapshot, collect, verify, report, safety):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="dbtools")
