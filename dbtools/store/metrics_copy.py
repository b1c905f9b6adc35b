"""The application's metrics copied into a central repository (``dbtools collect --store``).

An application writes ``request_metrics`` and ``app_metrics`` into its own database (rows that
name no target: its own). With a central store, each of a target's samples also copies those
rows into the store under the target's name, so that windows, the canary, reports, the dashboard
and the alert rules read the store alone.

Exactly once, without a bookkeeping table: each copy reads the target's rows from the store's
latest copied time minus the *grace period* on (``bucket_start``; ``recorded_at`` for
``app_metrics``; the newer ones ``ROWS_PER_COPY`` at most, oldest first), and inserts the
multiset difference between them and the rows the store already holds of that target from the
same time (``EXCEPT ALL``, every column compared): a row copied before is not copied again, two
equal rows stay two. A row the application commits late
is taken if its time is no older than the grace period before the latest copied one; an older
one is not (the documented bound: ``DEFAULT_GRACE_S``, ``collect --metrics-grace``). This
rests on the application inserting rows and never updating them (``dbtools.metrics`` does
so). The first copy of a target starts at the oldest row its database holds; a backlog is
caught up ``ROWS_PER_COPY`` rows a sample.

The rows travel as one JSON array (``to_jsonb``: timestamps and floats exact) and are written
by one statement, under the target's write lock (a sample's), so a copy is whole or nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from dbtools.db.connection import SQL_MARKER
from dbtools.schema import monitoring
from dbtools.store.layout import Layout

log = logging.getLogger(__name__)

# How late a row may arrive for its bucket and still be copied, behind the latest copied bucket:
# an application flushes every few seconds; two minutes also covers a 60 s bucket written at its
# end by an instance a bucket behind another. Each copy re-reads the rows of this period (at 20
# rows a second: 80 ms at 60 s, 141 ms at 120 s, 448 ms at 300 s; benchmarks/metrics_copy.py).
DEFAULT_GRACE_S = 120.0
# The new rows one copy takes per table at most: one statement's JSON stays small, a backlog
# (a target's history at its first copy, a collector that was down) is caught up over samples.
ROWS_PER_COPY = 10_000

# The tables copied, and the time each row is kept by.
COPIED: dict[str, str] = {
    monitoring.REQUEST_METRICS: "bucket_start",
    monitoring.APP_METRICS: "recorded_at",
}
# Not copied: the store numbers its own rows; the target is the copy's.
_NOT_COPIED = ("id", "target")


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


_LATEST_SQL = "SELECT {marker} max({time}) FROM {table} WHERE target = %(target)s"

# On the target: its own rows (naming no target, or this one) of the grace period before the
# latest copied time, and at most %(batch)s rows after it, oldest first (a backlog is caught up a
# batch a sample; a row the batch cuts at its last time is read again with the grace period).
_READ_SQL = """SELECT {marker} coalesce(jsonb_agg(to_jsonb(m)), '[]'::jsonb)
FROM ((SELECT * FROM {table}
       WHERE %(latest)s::timestamptz IS NOT NULL
         AND {time} >= %(since)s::timestamptz AND {time} <= %(latest)s::timestamptz{own})
      UNION ALL
      (SELECT * FROM {table}
       WHERE (%(latest)s::timestamptz IS NULL OR {time} > %(latest)s::timestamptz){own}
       ORDER BY {time} LIMIT %(batch)s)) m"""
_OWN = " AND (target IS NULL OR target = %(target)s)"

# In the store: the rows read that it does not hold yet, as many times as they are missing.
_WRITE_SQL = """INSERT {marker} INTO {table} (target, {columns})
SELECT %(target)s, {columns} FROM (
    SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %(rows)s)
    EXCEPT ALL
    SELECT {columns} FROM {table}
    WHERE target = %(target)s
      AND (%(since)s::timestamptz IS NULL OR {time} >= %(since)s::timestamptz)
) missing"""


@dataclass(frozen=True)
class CopiedMetrics:
    """What one copy took from a target: rows read (from the bound on) and rows inserted."""

    read: int = 0
    inserted: int = 0


def copy_metrics(
    source: psycopg.Connection[Any],
    source_layout: Layout,
    store: psycopg.Connection[Any],
    store_layout: Layout,
    target: str,
    grace_s: float = DEFAULT_GRACE_S,
) -> dict[str, CopiedMetrics]:
    """Copy the target's ``request_metrics`` and ``app_metrics`` rows from *source* (its
    database, read-only) into *store* under *target*, those not copied yet (see the module);
    per table. A table the target lacks is skipped. The caller holds the target's write
    lock."""
    done: dict[str, CopiedMetrics] = {}
    for table, time in COPIED.items():
        if not source_layout.has(table):
            continue
        columns = [c for c in store_layout.columns_of(table) if c not in _NOT_COPIED]
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        latest = _latest(store, table, time, target)
        since = None if latest is None else latest - timedelta(seconds=grace_s)
        params = {"target": target, "latest": latest, "since": since, "batch": ROWS_PER_COPY}
        read = sql.SQL(_READ_SQL).format(
            marker=sql.SQL(SQL_MARKER), table=_table(table), time=sql.Identifier(time),
            own=sql.SQL(_OWN if source_layout.has(table, "target") else ""),
        )  # fmt: skip
        row = source.execute(read, params).fetchone()
        rows = row[0] if row else []
        write = sql.SQL(_WRITE_SQL).format(
            marker=sql.SQL(SQL_MARKER), table=_table(table), time=sql.Identifier(time),
            columns=names,
        )  # fmt: skip
        inserted = store.execute(write, {**params, "rows": Jsonb(rows)}).rowcount if rows else 0
        done[table] = CopiedMetrics(len(rows), inserted)
        log.debug("target %s: %d of %d %s rows copied", target, inserted, len(rows), table)
    return done


def _latest(store: psycopg.Connection[Any], table: str, time: str, target: str) -> datetime | None:
    """The latest time the store holds of *target* in *table* (None: nothing yet)."""
    query = sql.SQL(_LATEST_SQL).format(
        marker=sql.SQL(SQL_MARKER), time=sql.Identifier(time), table=_table(table)
    )
    row = store.execute(query, {"target": target}).fetchone()
    return row[0] if row else None
