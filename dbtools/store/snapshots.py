"""Snapshots: labelled samples, taken one at a time or as the two ends of a window.

A snapshot is a sample (the storage ``dbtools collect`` writes too) with a label unique to its
target: read from the target in one transaction, stored in the repository (the target's own
``perf_monitoring`` by default, or a central one with ``store``) in one transaction, as the rows
that changed since the target's previous sample. ``capture`` stores ``W:start``, waits, and
stores ``W:end``: the window ``W`` (``figures.windows``). Nothing here resets statistics.

A database rolled back below revision 0005 (a rollback's ``alembic downgrade``) keeps a full
copy per snapshot instead, with no target; the store (``Store.write_snapshot``) decides which,
once per session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from dbtools.config import MAX_DURATION_VARIABLE, max_duration
from dbtools.db.connection import connect
from dbtools.db.errors import translated_errors
from dbtools.errors import DbtoolsError, UsageError
from dbtools.figures.windows import validate_label, window_labels
from dbtools.reading import live
from dbtools.store.compact import SampleSummary
from dbtools.store.store import Store, place

log = logging.getLogger(__name__)

# A sample session never waits long for a lock: behind DDL it gives up, and is retried.
SAMPLE_LOCK_TIMEOUT = "5s"


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
    own statistics is stored instead, under no target (``Store.write_snapshot``).

    Raises ``UsageError`` for a bad or reused label, ``PrerequisiteMissing`` when
    pg_stat_statements or the monitoring tables are missing (or, below 0005, for a *source* or
    *target*), ``TargetBusy`` when another writer holds the target longer than
    ``compact.WRITE_WAIT_SECONDS`` (nothing is written).
    """
    validate_label(label)
    if requests is not None and requests < 0:
        raise UsageError(f"--requests-served must not be negative, not {requests}")
    reader = source if source is not None else conn
    with translated_errors(f"snapshot {label!r}"):
        info, columns = live.prepare(reader)
        # the repository's (local: the target's; with a source: a central store)
        store = Store.checked(conn, "the database" if source is None else "the store")
        summary = store.write_snapshot(label, reader, info, columns, target=target,
                                       requests=requests)  # fmt: skip
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
            # no monitoring tables: refused before any wait
            repository = Store.checked(conn, "the database" if store is None else place(store))
            if target is not None or store is not None:
                repository.require_samples("capture with --store or --target")
            name = repository.target_of(target, source or conn)
            taken = repository.headers((start_label, end_label), target=name)
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
    """Remove the target's snapshot *label* from the repository on *conn*
    (``Store.delete_snapshot``); True if there was one."""
    with translated_errors(f"deleting snapshot {label!r}"):
        store = Store.checked(conn)
    return store.delete_snapshot(label, target)


def remove(dsn: str, label: str, *, target: str | None = None, store: str | None = None) -> str:
    """Connect and remove the snapshot *label* of *target* (default: the database's name) from
    its repository (``delete_snapshot``); returns the target's name. Raises ``UsageError`` when
    there is no such snapshot."""
    validate_label(label)
    with _sessions(dsn, store) as (conn, source):
        with translated_errors(f"snapshot {label!r}"):
            where = "the database" if store is None else place(store)
            name = Store.checked(conn, where).target_of(target, source or conn)
        if not delete_snapshot(conn, label, name):
            where = f" of target {name!r}" if name else ""
            raise UsageError(f"no snapshot labelled {label!r}{where}")
    log.info("snapshot %r of %s removed", label, name)
    return name or ""


def delete_quietly(store: str, label: str, target: str | None) -> None:
    """Best-effort ``delete_snapshot`` on a fresh session (used while unwinding)."""
    with suppress(DbtoolsError), writer(store) as conn:
        delete_snapshot(conn, label, target)
