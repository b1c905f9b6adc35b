"""``dbtools snapshot`` and ``dbtools capture``: store statistics snapshots, or a window of two."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from dbtools.cli.options import dsn_option, format_option
from dbtools.cli.signals import interruptible
from dbtools.config import parse_duration
from dbtools.db.connection import resolve_dsn
from dbtools.output import dump_json

if TYPE_CHECKING:
    from dbtools.stats.snapshots import SnapshotSummary

# The library (SQLAlchemy, Alembic) is imported when a command runs: `dbtools --help` and the
# other commands start faster.

_requests_option = click.option(
    "--requests",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Requests served in the window ending at this snapshot, as a load tool reported them. "
    "Default: verify sums the application's perf_monitoring.request_metrics.",
)


def _summary(summary: SnapshotSummary) -> str:
    hidden = (
        f", {summary.hidden_statements} not visible to this role"
        if summary.hidden_statements
        else ""
    )
    return (
        f"snapshot {summary.label} stored at {summary.taken_at:%Y-%m-%d %H:%M:%S%z}: "
        f"{summary.statements} statements{hidden}, {summary.tables} tables, "
        f"{summary.indexes} indexes"
    )


@click.command("snapshot")
@dsn_option
@click.option("--label", required=True, help="A unique name for this snapshot (no '..').")
@_requests_option
@format_option("table", "json")
def snapshot(dsn: str | None, label: str, requests: int | None, output_format: str) -> None:
    """Store one consistent snapshot of the database's statistics, labelled LABEL.

    Copies pg_stat_statements (this database's entries, dbtools' own left out),
    pg_stat_statements_info, pg_stat_database, table and index statistics, reloptions and index
    validity into the perf_monitoring tables, all in one statement: stored whole or not at all.
    Never resets statistics. Two snapshots make a window for `dbtools verify` (`A..B`).

    \b
    dbtools snapshot --label before-deploy
    dbtools snapshot --label after-load --requests 12000 --format json

    --format json prints one document (schema_version, kind "snapshot", and what was stored:
    id, label, taken_at, statements, tables, indexes, hidden_statements).

    Exit code 2 (nothing written) for a reused label, a database without the monitoring tables
    (never migrated, or below revision 0002), or pg_stat_statements missing. Any revision with
    them will do: a database downgraded below head stores what its tables hold.
    """
    from dbtools.stats import snapshots

    summary = snapshots.snapshot(resolve_dsn(dsn), label, requests=requests)
    if output_format == "json":
        click.echo(dump_json("snapshot", summary.as_dict()), nl=False)
    else:
        click.echo(_summary(summary))


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``10m``, ``90s``, ``1h30m`` or plain seconds (``600``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _wait_with_progress(seconds: float) -> None:
    bar: Any
    with click.progressbar(
        length=int(seconds), label="capturing", show_eta=True, file=sys.stderr
    ) as bar:
        deadline = time.monotonic() + seconds
        done = 0
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            elapsed = int(seconds - max(deadline - time.monotonic(), 0))
            bar.update(elapsed - done)
            done = elapsed


@click.command("capture")
@dsn_option
@click.option("--label", required=True, help="The window's name: stores LABEL:start and LABEL:end.")
@click.option(
    "--duration",
    type=Duration(),
    default="10m",
    show_default=True,
    help="How long the window lasts: 10m, 90s, 1h30m or seconds (at most $DBTOOLS_MAX_DURATION "
    "when set: a rehearsal).",
)
@_requests_option
@format_option("table", "json")
def capture(
    dsn: str | None, label: str, duration: int, requests: int | None, output_format: str
) -> None:
    """Take the two snapshots that bracket a window: LABEL:start, wait, LABEL:end.

    The guide's monitoring phase: run it while the traffic you want to measure flows, then give
    LABEL to `dbtools verify --baseline/--candidate`. A progress bar shows on stderr.

    \b
    dbtools capture --label baseline --duration 10m
    dbtools capture --label candidate --duration 10m --requests 6000

    Ctrl-C (or SIGTERM) during the wait deletes LABEL:start again, so no half window is left,
    and exits with code 130. A label already used is an error (exit code 2) before any wait.
    DBTOOLS_MAX_DURATION=15s shortens every window to at most 15 s (with a warning): a rehearsal
    of a runbook that says --duration 10m. Works at any revision with the monitoring tables
    (after a rollback's alembic downgrade too).
    --format json prints one document (schema_version, kind "capture", start, end).
    """
    from dbtools.stats import snapshots

    dsn = resolve_dsn(dsn)
    removed = f"{label}{snapshots.START_SUFFIX} was removed, nothing is stored"
    with interruptible(f"capture {label!r} interrupted: {removed}"):
        start, end = snapshots.capture(
            dsn, label, duration, requests=requests, wait=_wait_with_progress
        )
    if output_format == "json":
        payload = {"start": start.as_dict(), "end": end.as_dict()}
        click.echo(dump_json("capture", payload), nl=False)
    else:
        click.echo(_summary(start))
        click.echo(_summary(end))


COMMANDS = [snapshot, capture]
