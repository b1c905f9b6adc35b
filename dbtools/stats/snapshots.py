"""Snapshots: labelled samples, taken one at a time or as the two ends of a window.

A snapshot is a sample (``stats.samples``: the storage ``dbtools collect`` writes too) with a
label unique to its target: read from the target in one transaction, stored in the repository
(the target's own ``perf_monitoring`` by default, or a central one with ``store``) in one
transaction, as the rows that changed since the target's previous sample. ``capture`` stores
``W:start``, waits, and stores ``W:end``: the window ``W`` (``stats.windows``). Nothing here
resets statistics.

A database rolled back below revision 0005 (a rollback's ``alembic downgrade``) has the older
storage of 0002–0004: there a snapshot is a full copy written by ``stats.legacy``, in the
tables its revision has. ``storage`` decides which, once per session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from dbtools.config import MAX_DURATION_VARIABLE, max_duration
from dbtools.db.catalog import read_alembic_revision
from dbtools.db.connection import connect
from dbtools.db.errors import translated_errors
from dbtools.errors import DbtoolsError, PrerequisiteMissing, UsageError
from dbtools.schema import monitoring
from dbtools.schema.manifest import head_revision, manifest_at
from dbtools.stats import collect as stats
from dbtools.stats import legacy, samples
from dbtools.stats.legacy import HEAD_LAYOUT, SNAPSHOT_TABLES, Layout, read_layout
from dbtools.stats.samples import SampleSummary
from dbtools.stats.windows import find_headers, validate_label, window_labels

log = logging.getLogger(__name__)

# A sample session never waits long for a lock: behind DDL it gives up, and is retried.
SAMPLE_LOCK_TIMEOUT = "5s"


def require_monitoring_tables(revision: str | None) -> None:
    """Raise ``PrerequisiteMissing`` unless the database's revision has the tables a snapshot
    writes (its manifest's; revision 0002 on), ``ConfigError`` for a revision these migrations
    do not know. Any such revision will do: a snapshot stores what its tables hold."""
    have = set(manifest_at(revision).monitoring_tables)
    missing = [table for table in SNAPSHOT_TABLES if table not in have]
    if missing:
        state = "was never migrated" if revision is None else f"is at revision {revision}"
        raise PrerequisiteMissing(
            f"the database {state}, which has no {monitoring.monitoring_table(missing[0])} to "
            "store snapshots in: run alembic upgrade head first"
        )


def storage(conn: psycopg.Connection[Any]) -> tuple[str | None, Layout]:
    """The repository's revision and the layout of its monitoring tables: ``layout.samples``
    says whether snapshots are compact samples (0005 on) or ``stats.legacy``'s full copies.

    Raises ``PrerequisiteMissing`` without the monitoring tables (before revision 0002).
    """
    revision = read_alembic_revision(conn)
    require_monitoring_tables(revision)
    # At head the tables are this dbtools' own; below it, read what they are (one query).
    return revision, HEAD_LAYOUT if revision == head_revision() else read_layout(conn)


def require_samples(conn: psycopg.Connection[Any], purpose: str) -> None:
    """Raise ``PrerequisiteMissing`` unless the repository stores compact samples (revision
    0005 on), which *purpose* needs (a collector, a central repository, a named target)."""
    revision, layout = storage(conn)
    if not layout.samples:
        raise PrerequisiteMissing(
            f"{purpose} needs revision 0005 (samples keyed by target); the database is at "
            f"revision {revision}: run alembic upgrade head first"
        )


def take_snapshot(
    conn: psycopg.Connection[Any],
    label: str,
    *,
    requests: int | None = None,
    target: str | None = None,
    source: psycopg.Connection[Any] | None = None,
) -> SampleSummary:
    """Store one labelled sample of *source*'s statistics (default: *conn*'s own database) in
    the repository *conn* (an autocommit, read-write session), under *target* (default: the
    source's database name). Below revision 0005 (a rolled-back database) a full copy of its
    own statistics is stored instead, under no target (``stats.legacy``).

    Raises ``UsageError`` for a bad or reused label, ``PrerequisiteMissing`` when
    pg_stat_statements or the monitoring tables are missing (or, below 0005, for a *source* or
    *target*), ``TargetBusy`` when another writer holds the target longer than
    ``samples.WRITE_WAIT_SECONDS`` (nothing is written).
    """
    validate_label(label)
    if requests is not None and requests < 0:
        raise UsageError(f"--requests-served must not be negative, not {requests}")
    reader = source if source is not None else conn
    with translated_errors(f"snapshot {label!r}"):
        info, columns = stats.prepare(reader)
        revision, layout = storage(conn)  # the repository's (local: the target's)
        if not layout.samples:
            if source is not None or target is not None:
                require_samples(conn, "a snapshot with --store or --target")
            summary = legacy.take_snapshot(
                conn, label, info=info, columns=columns, revision=revision, layout=layout,
                requests=requests,
            )  # fmt: skip
        else:
            name = target or info.database
            with samples.write_lock(conn, name):
                state = samples.current_state(conn, name)
                read = stats.read_sample(reader, info, columns, state.texts, state.own)
                summary, _ = samples.write_sample(
                    conn, name, read, state, label=label, requests=requests
                )
    log.info(
        "snapshot %r of %s stored: %d statements, %d tables, %d indexes (%d rows)",
        label, summary.target, summary.statements, summary.tables, summary.indexes,
        summary.rows_stored,
    )  # fmt: skip
    return summary


@contextmanager
def writer(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit, read-write session for storing samples (its transactions' BEGIN and
    COMMIT marked as dbtools'), with a short lock timeout."""
    conn = connect(dsn, read_only=False, autocommit=True, lock_timeout=SAMPLE_LOCK_TIMEOUT)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def reader(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A read-only autocommit session on a target whose samples go elsewhere (a replica)."""
    conn = connect(dsn, read_only=True, autocommit=True, lock_timeout=SAMPLE_LOCK_TIMEOUT)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _sessions(
    dsn: str, store: str | None
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any] | None]]:
    """The repository's session and, with a central *store*, the target's (else None)."""
    if store is None:
        with writer(dsn) as conn:
            yield conn, None
        return
    with reader(dsn) as source, writer(store) as conn:
        yield conn, source


def snapshot(
    dsn: str,
    label: str,
    *,
    requests: int | None = None,
    target: str | None = None,
    store: str | None = None,
) -> SampleSummary:
    """Connect to *dsn* and store one snapshot labelled *label* (see ``take_snapshot``) in its
    own repository, or in the central repository *store*."""
    validate_label(label)
    with _sessions(dsn, store) as (conn, source):
        return take_snapshot(conn, label, requests=requests, target=target, source=source)


def capture(
    dsn: str,
    label: str,
    seconds: float,
    *,
    requests: int | None = None,
    wait: Callable[[float], None] = time.sleep,
    target: str | None = None,
    store: str | None = None,
) -> tuple[SampleSummary, SampleSummary]:
    """Store ``LABEL:start``, ``wait(seconds)``, store ``LABEL:end`` (with *requests*).

    ``DBTOOLS_MAX_DURATION`` (``config.max_duration``) shortens the wait, with a warning. If
    anything interrupts it (Ctrl-C during the wait, a failed end snapshot), ``LABEL:start`` is
    removed again before the exception goes on: a window is stored whole or not at all.
    Raises ``UsageError`` before waiting when either label is taken, ``ConfigError`` when
    ``DBTOOLS_MAX_DURATION`` is not a duration.
    """
    if seconds <= 0:
        raise UsageError("the capture duration must be positive")
    start_label, end_label = window_labels(validate_label(label))
    limit = max_duration()
    if limit is not None and seconds > limit:
        log.warning("%s shortens the window %r from %g s to %d s", MAX_DURATION_VARIABLE, label,
                    seconds, limit)  # fmt: skip
        seconds = limit
    with _sessions(dsn, store) as (conn, source):
        with translated_errors("capture"):
            _, layout = storage(conn)  # no monitoring tables: refused before any wait
            if not layout.samples and (target is not None or store is not None):
                require_samples(conn, "capture with --store or --target")
            name = (target or stats.prepare(source or conn)[0].database) if layout.samples else None
            taken = find_headers(conn, (start_label, end_label), layout, target=name)
        if taken:
            first = sorted(taken)[0]
            raise UsageError(
                f"target {name!r} already has a snapshot labelled {first!r}"
                if name
                else f"a snapshot labelled {first!r} already exists"
            )
    try:
        with _sessions(dsn, store) as (conn, source):
            start = take_snapshot(conn, start_label, target=name, source=source)
        log.info("waiting %g s before %r", seconds, end_label)
        wait(seconds)
        with _sessions(dsn, store) as (conn, source):
            end = take_snapshot(conn, end_label, requests=requests, target=name, source=source)
    except BaseException:
        delete_quietly(store or dsn, start_label, name)
        raise
    return start, end


def delete_snapshot(conn: psycopg.Connection[Any], label: str, target: str | None) -> bool:
    """Remove the target's snapshot *label* (``samples.fold``: rows later samples read stay;
    below revision 0005 there are no targets and its rows go with it); True if there was one."""
    with translated_errors(f"deleting snapshot {label!r}"):
        _, layout = storage(conn)
        if not layout.samples:
            return legacy.delete_snapshot(conn, label)
        assert target is not None
        with samples.write_lock(conn, target):
            found = find_headers(conn, [label], layout, target=target)
            if label not in found or found[label].id is None:
                return False
            samples.fold(conn, target, [found[label].id])  # type: ignore[list-item]
            return True


def remove(dsn: str, label: str, *, target: str | None = None, store: str | None = None) -> str:
    """Connect and remove the snapshot *label* of *target* (default: the database's name) from
    its repository (``delete_snapshot``); returns the target's name. Raises ``UsageError`` when
    there is no such snapshot."""
    validate_label(label)
    with _sessions(dsn, store) as (conn, source):
        with translated_errors(f"snapshot {label!r}"):
            _, layout = storage(conn)
            name = (target or stats.prepare(source or conn)[0].database) if layout.samples else None
        if not delete_snapshot(conn, label, name):
            where = f" of target {name!r}" if name else ""
            raise UsageError(f"no snapshot labelled {label!r}{where}")
    log.info("snapshot %r of %s removed", label, name)
    return name or ""


def delete_quietly(store: str, label: str, target: str | None) -> None:
    """Best-effort ``delete_snapshot`` on a fresh session (used while unwinding)."""
    with suppress(DbtoolsError), writer(store) as conn:
        delete_snapshot(conn, label, target)
