"""The command line's grammar, declared once: the options several commands share, what they
mean, and how a command emits the document it writes (docs/cli.md has the table).

* ``-v``/``-q`` on every command, before or after it (``add_verbosity``, ``verbosity``);
* the connection: ``--dsn`` and pg_dump's ``--host --port --username --dbname`` beside it
  (``dsn_option``);
* a document: ``--format`` and ``-o/--output PATH|-`` (``format_option``,
  ``output_options``, ``printed_output_option``), its location checked before any work
  (``Destination.check``);
* an option renamed keeps its old spelling for one release, hidden, with a warning
  (``renamed_option``, ``RENAMED``).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import click

from dbtools.config import parse_duration
from dbtools.errors import UsageError
from dbtools.output import DEFAULT_DIRECTORY, STDOUT, Destination, write_output
from dbtools.redaction import RedactingFilter

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=click.Command)

log = logging.getLogger("dbtools.cli")


# -- -v / -q, on every command ---------------------------------------------------------------------

_VERBOSITY = "dbtools.verbosity"


def _count_verbosity(step: int) -> Callable[[click.Context, click.Parameter, int], None]:
    def count(ctx: click.Context, param: click.Parameter, value: int) -> None:
        root = ctx.find_root()
        root.meta[_VERBOSITY] = root.meta.get(_VERBOSITY, 0) + step * (value or 0)
        configure_logging(root.meta[_VERBOSITY])

    return count


VERBOSITY_OPTIONS = ("--verbose", "--quiet")


def add_verbosity(command: C) -> C:
    """Give *command* (and each command of a group) ``-v/--verbose`` and ``-q/--quiet``: they
    count wherever they are given, before or after the command's name."""
    if not any(set(VERBOSITY_OPTIONS) & set(p.opts) for p in command.params):
        command.params += [
            click.Option(
                ["-v", "--verbose"], count=True, expose_value=False, is_eager=True,
                callback=_count_verbosity(1),
                help="Log progress on stderr (-v), or debug detail (-vv).",
            ),
            click.Option(
                ["-q", "--quiet"], count=True, expose_value=False, is_eager=True,
                callback=_count_verbosity(-1),
                help="Only errors on stderr: no progress, no warnings.",
            ),
        ]  # fmt: skip
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity(sub)
    return command


def verbosity() -> int:
    """The ``-v`` given anywhere on the command line minus the ``-q``: 0 by default, 1 for
    ``-v`` (progress), 2 for ``-vv`` (debug), below 0 for ``-q`` (errors only)."""
    ctx = click.get_current_context(silent=True)
    return int(ctx.find_root().meta.get(_VERBOSITY, 0)) if ctx is not None else 0


def configure_logging(level: int) -> None:
    """dbtools' log on stderr, redacted: warnings by default, info at 1, debug at 2, errors
    only below 0."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dbtools")
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if level < 0 else logging.WARNING - 10 * min(level, 2))


def show_progress() -> bool:
    """Whether progress (bars, countdowns) shows on stderr: not with ``-q``."""
    return verbosity() >= 0


# -- renamed options -------------------------------------------------------------------------------

# Old spelling -> new, kept (hidden, with a warning) for one release after the rename.
RENAMED: dict[str, str] = {}


def renamed_option(old: str, new: str, name: str, **attrs: Any) -> Callable[[F], F]:
    """*old*, the spelling of the option *new* (parameter *name*) before its rename, kept for one
    release: hidden from --help, it warns and stands for *new* (giving both is an error)."""
    RENAMED[old] = new
    hidden = f"renamed_{name}"

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden)
            if value not in (None, (), False):
                ctx = click.get_current_context()
                if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                    raise click.UsageError(f"{old} is the old name of {new}: give {new} only")
                log.warning("%s is deprecated: use %s (the old name goes in the next release)",
                            old, new)  # fmt: skip
                kwargs[name] = value
            return func(*args, **kwargs)

        return cast(F, click.option(old, hidden, hidden=True, **attrs)(wrapper))

    return decorate


# -- the connection ----------------------------------------------------------------------------

DSN_HELP = "PostgreSQL URL or keyword DSN. Default: $DATABASE_URL, then libpq's PG* variables."
CONNECTION_PARTS = ("host", "port", "username", "dbname")


@overload
def dsn_option(func: F) -> F: ...
@overload
def dsn_option(*, help: str, environment: bool = True) -> Callable[[F], F]: ...
def dsn_option(func: F | None = None, *, help: str = DSN_HELP, environment: bool = True) -> Any:
    """``--dsn``: where to connect (URL or keyword DSN), and beside it pg_dump's ``--host``,
    ``--port``, ``--username``, ``--dbname``, which override those parts of it. The command
    gets one ``dsn`` (None when none of them is given). *help* says what a command does without
    ``--dsn`` when that is not "$DATABASE_URL, then PG*"; *environment* False: the parts apply
    to libpq's PG* variables, never to $DATABASE_URL."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(
            *args: Any, dsn: str | None, host: str | None, port: int | None,
            username: str | None, dbname: str | None, **kwargs: Any,
        ) -> Any:  # fmt: skip
            if any(part is not None for part in (host, port, username, dbname)):
                from dbtools.db.connection import resolve_dsn, with_parts

                base = resolve_dsn(dsn) if environment or dsn is not None else ""
                dsn = with_parts(base, host=host, port=port, user=username, dbname=dbname)
            return command(*args, dsn=dsn, **kwargs)

        options = (
            click.option("--dsn", metavar="DSN", default=None, help=help),
            click.option("--host", metavar="HOST", default=None,
                         help="Server host or socket directory (overrides the DSN's)."),
            click.option("--port", type=click.IntRange(1, 65535), default=None,
                         help="Server port (overrides the DSN's)."),
            click.option("--username", metavar="NAME", default=None,
                         help="Role to connect as (overrides the DSN's)."),
            click.option("--dbname", metavar="NAME", default=None,
                         help="Database to connect to (overrides the DSN's)."),
        )  # fmt: skip
        decorated: Callable[..., Any] = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return cast(F, decorated)

    return decorate(func) if func is not None else decorate


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


# -- documents: --format, -o/--output, --output-dir ----------------------------------------------


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """``--format``: how to render the document (table for people, md/html for files, json for
    pipelines)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def _output_option(help: str) -> Callable[[F], F]:
    return click.option("--output", "-o", metavar="PATH|-", default=None, help=help)


def _output_dir(help: str) -> Callable[[F], F]:
    return click.option(
        "--output-dir",
        metavar="DIRECTORY",
        type=click.Path(path_type=Path),  # Destination.check says what is wrong with it
        default=None,
        help=f"{help} Created when missing, in a directory that exists. "
        f"Default: {DEFAULT_DIRECTORY}/.",
    )


def output_dir_option(func: F) -> F:
    """``--output-dir``: where a command that writes several files puts them; checked (it
    exists or can be made, and is writable) before the command does anything."""

    @functools.wraps(func)
    def wrapper(*args: Any, output_dir: Path | None, **kwargs: Any) -> Any:
        directory = output_dir if output_dir is not None else DEFAULT_DIRECTORY
        Destination(directory=directory).check()
        return func(*args, output_dir=directory, **kwargs)

    help = "Where the files are written, each with a UTC timestamp in its name."
    return cast(F, _output_dir(help)(wrapper))


def output_options(func: F) -> F:
    """``--output PATH|-`` and ``--output-dir DIR``, given to the command as ``destination``,
    checked before the command does anything.

    The one convention of every command that writes a file: by default a timestamped file in
    ``reports/``, written atomically, its path printed; ``--output -`` writes to standard output.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, output: str | None, output_dir: Path | None, **kwargs: Any) -> Any:
        destination = Destination.from_options(output, output_dir)
        destination.check()
        return func(*args, destination=destination, **kwargs)

    options = (
        _output_option(
            "Write to this file (atomically; its directory must exist); - for standard "
            "output. Default: a file in --output-dir named after the content and the UTC time."
        ),
        _output_dir("Where the file is written under its timestamped name."),
    )
    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return cast(F, decorated)


def printed_output_option(func: F) -> F:
    """``-o/--output PATH|-`` of a command that prints its document: standard output by
    default; a file (checked before the command does anything) when given. The command gets it
    as ``destination``."""

    @functools.wraps(func)
    def wrapper(*args: Any, output: str | None, **kwargs: Any) -> Any:
        destination = Destination.from_options(output if output is not None else STDOUT, None)
        destination.check()
        return func(*args, destination=destination, **kwargs)

    help = "Write the document to this file (atomically; its directory must exist) and print "
    help += "its path. Default: - (standard output)."
    return cast(F, _output_option(help)(wrapper))


def emit(
    text: str, destination: Destination, stem: str, suffix: str, now: datetime | None = None
) -> None:
    """Print *text* (``--output -``), or write it where *destination* says and print its path."""
    if text and not text.endswith("\n"):
        text += "\n"
    if destination.is_stdout:
        click.echo(text, nl=False)
        return
    click.echo(str(write_output(text, destination, stem, suffix, now)))


# -- values ------------------------------------------------------------------------------------


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


class Percent(click.ParamType):  # type: ignore[type-arg]
    """A share of the traffic in percent: ``10``, ``12.5`` or ``10%``, from 0 to 100 (above 0
    when *above_zero*); a whole number comes back as an ``int``."""

    name = "percent"

    def __init__(self, *, above_zero: bool = False) -> None:
        self.above_zero = above_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(str(value).strip().removesuffix("%"))
        except ValueError:
            self.fail(f"{value!r} is not a percentage (10, 12.5 or 10%)", param, ctx)
        lowest = "above 0" if self.above_zero else "from 0"
        if not (0 < number <= 100 if self.above_zero else 0 <= number <= 100):
            self.fail(f"{value} is not a percentage {lowest} to 100", param, ctx)
        return int(number) if number.is_integer() else number


def traffic_option(
    *short: str, help: str, above_zero: bool = False, **attrs: Any
) -> Callable[[F], F]:
    """``--traffic PCT``: a share of the requests, in percent (every command the same type);
    *short*: a short spelling (rollout's ``-t``, as the guide's deploy script has it)."""
    return click.option(*short, "--traffic", type=Percent(above_zero=above_zero), metavar="PCT",
                        help=help, **attrs)  # fmt: skip


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


def targets_file_option(func: F) -> F:
    """``--targets FILE``: where a store reader finds the target's DSN (collect's file)."""
    return click.option(
        "--targets",
        "targets_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="With --store and no --dsn: a TOML file of [[target]] tables (collect's) giving "
        "the --target's DSN for the checks that read it live. Without either the store alone "
        "is read and those checks are skipped.",
    )(func)


def reading_dsn(
    dsn: str | None, store: str | None, target: str | None, targets_file: Path | None
) -> str | None:
    """The DSN of the target to read: ``--dsn`` (default: ``DATABASE_URL``, libpq's); with
    ``--store`` and no ``--dsn``: the ``--targets`` file's entry for ``--target``, else None
    (the store alone is read: no session to the target)."""
    from dbtools.db.connection import resolve_dsn
    from dbtools.store.collector import dsn_of_target

    if store is None:
        if targets_file is not None:
            raise click.UsageError("--targets gives targets' DSNs for reading a --store")
        return resolve_dsn(dsn)
    if dsn is not None:
        return resolve_dsn(dsn)
    if targets_file is not None and target is not None:
        return dsn_of_target(targets_file, target)
    return None


def store_option(func: F) -> F:
    """``--store DSN``: the central repository of samples, instead of the target's own."""
    return click.option(
        "--store",
        metavar="DSN",
        default=None,
        help="Where samples are stored: a central repository's DSN (required for a read "
        "replica). Default: the target's own perf_monitoring schema.",
    )(func)
