"""``dbtools snapshot`` and ``dbtools capture``: store statistics snapshots, or a window of two."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dbtools.cli.options import (
    Duration,
    dsn_option,
    emit,
    format_option,
    printed_output_option,
    renamed_option,
    show_progress,
    store_option,
    target_option,
)
from dbtools.cli.signals import interruptible
from dbtools.db.connection import normalise_dsn, resolve_dsn
from dbtools.output import Destination, dump_json

if TYPE_CHECKING:
    from dbtools.store import SampleSummary

# The library (SQLAlchemy, Alembic) is imported when a command runs: `dbtools --help` and the
# other commands start faster.

F = TypeVar("F", bound=Callable[..., Any])


def _requests_served_option(func: F) -> F:
    """``--requests-served N`` (was ``--requests``, which elsewhere means requests to send)."""
    func = renamed_option("--requests", "--requests-served", "requests_served",
                          type=click.IntRange(min=0), metavar="N")(func)  # fmt: skip
    return click.option(
        "--requests-served",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Requests served in the window ending at this snapshot, as a load tool reported "
        "them. Default: verify sums the application's perf_monitoring.request_metrics.",
    )(func)


def _summary(summary: SampleSummary) -> str:
    hidden = (
        f", {summary.hidden_statements} not visible to this role"
        if summary.hidden_statements
        else ""
    )
    return (
        f"snapshot {summary.label} of {summary.target} stored at "
        f"{summary.taken_at:%Y-%m-%d %H:%M:%S%z}: {summary.statements} statements{hidden}, "
        f"{summary.tables} tables, {summary.indexes} indexes ({summary.rows_stored} rows moved)"
    )


@click.command("snapshot")
@dsn_option
@click.option("--label", metavar="LABEL", required=True,
              help="A name for this snapshot, unique to its target.")  # fmt: skip
@_requests_served_option
@target_option
@store_option
@format_option("table", "json")
@printed_output_option
@click.option("--delete", is_flag=True,
              help="Remove the snapshot LABEL instead (a stray LABEL:start that an interrupted "
              "rollout names); what later samples need of it stays.")  # fmt: skip
def snapshot(
    dsn: str | None,
    label: str,
    requests_served: int | None,
    target: str | None,
    store: str | None,
    output_format: str,
    destination: Destination,
    delete: bool,
) -> None:
    """Store one consistent snapshot of the database's statistics, labelled LABEL.

    Reads pg_stat_statements (this database's entries, dbtools' own left out),
    pg_stat_statements_info, pg_stat_database, table and index statistics, reloptions and index
    validity in one transaction, and stores in the perf_monitoring tables, in one transaction,
    the entries that changed since the target's previous sample (`dbtools collect` stores the
    same way; a database rolled back below revision 0005: a full copy, as those revisions
    stored it): stored whole or not at all. Never resets statistics. Two snapshots make a window
    for `dbtools verify` (`A..B`).

    \b
    dbtools snapshot --label before-deploy
    dbtools snapshot --label after-load --requests-served 12000 --format json
    dbtools snapshot --dsn "$REPLICA_URL" --store "$REPOSITORY_URL" --label replica-baseline
    dbtools snapshot --delete --label canary:start

    --format json prints one document (schema_version, kind "snapshot", and what was stored:
    id, target, label, taken_at, statements, tables, indexes, hidden_statements, rows_stored).

    Exit code 2 (nothing written) for a reused label, a database without the monitoring tables
    (never migrated, or below revision 0002), or pg_stat_statements missing. Any revision with
    them will do: a database rolled back below revision 0005 stores a full copy in the tables
    its revision has (one target, its own; --target and --store need revision 0005).
    """
    from dbtools.store import snapshots

    if delete:
        name = snapshots.remove(resolve_dsn(dsn), label, target=target, store=_store(store))
        click.echo(f"snapshot {label} of {name} removed")
        return
    summary = snapshots.snapshot(
        resolve_dsn(dsn), label, requests=requests_served, target=target, store=_store(store)
    )
    if output_format == "json":
        text = dump_json("snapshot", summary.as_dict())
    else:
        text = _summary(summary)
    emit(text, destination, f"snapshot-{label}", output_format)


def _store(store: str | None) -> str | None:
    return normalise_dsn(store) if store is not None else None


# A countdown line this often on a stderr that is not a terminal (a CI log, a deploy script's).
COUNTDOWN_EVERY_S = 5


def _wait_with_progress(seconds: float) -> None:
    """Wait *seconds*, showing it: a bar on a terminal, else a countdown line every
    ``COUNTDOWN_EVERY_S``; nothing with -q."""
    deadline = time.monotonic() + seconds
    if not show_progress():
        time.sleep(seconds)
    elif sys.stderr.isatty():
        _bar_until(deadline, seconds)
    else:
        while (left := deadline - time.monotonic()) > 0:
            click.echo(f"capturing: {left:.0f} s of {seconds:.0f} s left", err=True)
            time.sleep(min(COUNTDOWN_EVERY_S, left))
        click.echo("capturing: done", err=True)


def _bar_until(deadline: float, seconds: float) -> None:
    bar: Any
    with click.progressbar(
        length=int(seconds), label="capturing", show_eta=True, file=sys.stderr
    ) as bar:
        done = 0
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            elapsed = int(seconds - max(deadline - time.monotonic(), 0))
            bar.update(elapsed - done)
            done = elapsed


@click.command("capture")
@dsn_option
@click.option("--label", metavar="LABEL", required=True,
              help="The window's name: stores LABEL:start and LABEL:end.")  # fmt: skip
@click.option(
    "--duration",
    type=Duration(),
    default="10m",
    show_default=True,
    help="How long the window lasts: 10m, 90s, 1h30m or seconds (at most $DBTOOLS_MAX_DURATION "
    "when set: a rehearsal).",
)
@_requests_served_option
@target_option
@store_option
@format_option("table", "json")
@printed_output_option
def capture(
    dsn: str | None,
    label: str,
    duration: int,
    requests_served: int | None,
    target: str | None,
    store: str | None,
    output_format: str,
    destination: Destination,
) -> None:
    """Take the two snapshots that bracket a window: LABEL:start, wait, LABEL:end.

    The guide's monitoring phase: run it while the traffic you want to measure flows, then give
    LABEL to `dbtools verify --baseline/--candidate`. A progress bar shows on stderr (where
    that is not a terminal: a countdown line every few seconds; -q: neither).

    \b
    dbtools capture --label baseline --duration 10m
    dbtools capture --label candidate --duration 10m --requests-served 6000

    Ctrl-C (or SIGTERM) during the wait deletes LABEL:start again, so no half window is left,
    and exits with code 130. A label already used is an error (exit code 2) before any wait.
    DBTOOLS_MAX_DURATION=15s shortens every window to at most 15 s (with a warning): a rehearsal
    of a runbook that says --duration 10m. Works at any revision with the monitoring tables
    (after a rollback's alembic downgrade too).
    --format json prints one document (schema_version, kind "capture", start, end).
    """
    from dbtools.figures.windows import START_SUFFIX
    from dbtools.store import snapshots

    dsn = resolve_dsn(dsn)
    removed = f"{label}{START_SUFFIX} was removed, nothing is stored"
    with interruptible(f"capture {label!r} interrupted: {removed}"):
        start, end = snapshots.capture(
            dsn, label, duration, requests=requests_served, wait=_wait_with_progress,
            target=target, store=_store(store),
        )  # fmt: skip
    if output_format == "json":
        text = dump_json("capture", {"start": start.as_dict(), "end": end.as_dict()})
    else:
        text = f"{_summary(start)}\n{_summary(end)}\n"
    emit(text, destination, f"capture-{label}", output_format)


COMMANDS = [snapshot, capture]
