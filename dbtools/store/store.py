"""The store: the one object that knows how and where samples are kept.

Samples live in a *repository*: the target's own ``perf_monitoring`` schema, or a central one
(``--store``) holding many targets, keyed by target. How they are kept is its revision's
(``layout``): from revision 0005 every snapshot is a compact sample (``compact``: a row per entry
that moved), below it a full copy with no target (``full_copies``: what a database rolled back
below 0005 keeps). ``Store`` answers what every command asks of stored samples, whatever the
layout: the targets it holds, headers, windows resolved to their samples, request totals,
window sums and measures (the one way from a stored window to its figures), the states at
samples, and the replay of the changes stored between them; and it writes and removes
snapshots. Nothing outside this package reads the monitoring tables.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.db.catalog import read_alembic_revision
from dbtools.db.connection import SQL_MARKER, describe, session
from dbtools.db.errors import translated_errors
from dbtools.db.server import ServerInfo
from dbtools.errors import PrerequisiteMissing, UsageError
from dbtools.figures.measures import EDGE_TOLERANCE, WindowMeasures, measure
from dbtools.figures.requests import MetricsBucket, RequestTotals, VariantTotals
from dbtools.figures.sums import ALL_STATEMENTS, Scope, WindowSums, sum_deltas
from dbtools.figures.windows import (
    MIN_COVERAGE,
    RANGE_SEPARATOR,
    Window,
    WindowRef,
    clock_text,
    coverage,
)
from dbtools.reading import live
from dbtools.reading.columns import StatementColumns
from dbtools.reading.rows import Snapshot, SnapshotHeader, column_names
from dbtools.schema import monitoring
from dbtools.schema.manifest import head_revision
from dbtools.store import compact, full_copies, request_metrics, window_sums
from dbtools.store.compact import SampleSummary
from dbtools.store.layout import (
    HEAD_LAYOUT,
    Layout,
    or_null,
    read_layout,
    require_monitoring_tables,
)

log = logging.getLogger(__name__)


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


_OF_TARGET_SAMPLE = sql.SQL("target = %(target)s AND ")
_LABELS = sql.SQL("label = ANY(%(labels)s)")
_BETWEEN = sql.SQL("taken_at >= %(from)s AND taken_at <= %(to)s")
_NO_ORDER = sql.SQL("")
_FIRST = sql.SQL("ORDER BY taken_at, id LIMIT 1")
_LAST = sql.SQL("ORDER BY taken_at DESC, id DESC LIMIT 1")
_IN_ORDER = sql.SQL("ORDER BY taken_at, id")

_TARGETS_SQL = sql.SQL(
    """WITH RECURSIVE {marker} t AS (
    (SELECT target FROM {snapshots} ORDER BY target LIMIT 1)
    UNION ALL
    SELECT (SELECT s.target FROM {snapshots} s WHERE s.target > t.target ORDER BY s.target LIMIT 1)
    FROM t WHERE t.target IS NOT NULL
)
SELECT target FROM t WHERE target IS NOT NULL"""
).format(marker=sql.SQL(SQL_MARKER), snapshots=_table(monitoring.SNAPSHOTS))


@dataclass(frozen=True)
class Replay:
    """The steps between consecutive samples, each as the two states it runs between (partial
    states where only what moved was read: their deltas are the full states'), and the full
    states at the first and last sample (None: no sample)."""

    steps: list[tuple[Snapshot, Snapshot]]
    first: Snapshot | None
    last: Snapshot | None


class Store:
    """The samples in the repository on *conn*, kept as its revision keeps them (*layout*).

    ``Store.of`` reads the layout (one query); ``Store.checked`` first requires the tables a
    snapshot writes (for writers, who also need the *revision*).
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        layout: Layout,
        revision: str | None = None,
        where: str = "the database",
    ) -> None:
        self.conn = conn
        self._layout = layout
        self.revision = revision
        self.where = where  # what messages call the repository: the target's or a store
        self._states: dict[int, Snapshot] = {}

    @classmethod
    def of(cls, conn: psycopg.Connection[Any], where: str = "the database") -> Store:
        """The store on *conn*, whatever its revision (one query); *where*: what messages call
        it (``place``)."""
        return cls(conn, read_layout(conn), where=where)

    @classmethod
    def checked(cls, conn: psycopg.Connection[Any], where: str = "the database") -> Store:
        """The store on *conn* for writing snapshots: raises ``PrerequisiteMissing`` without the
        monitoring tables (before revision 0002), naming it *where* (``place``), ``ConfigError``
        for a revision these migrations do not know."""
        revision = read_alembic_revision(conn)
        require_monitoring_tables(revision, where)
        # At head the tables are this dbtools' own; below it, read what they are (one query).
        layout = HEAD_LAYOUT if revision == head_revision() else read_layout(conn)
        return cls(conn, layout, revision, where)

    @property
    def _compact(self) -> bool:
        return self._layout.samples

    @property
    def by_day(self) -> bool:
        """Whether samples are stored by day (revision 0008 on: ``Layout.by_day``)."""
        return self._layout.by_day

    def require_samples(self, purpose: str) -> None:
        """Raise ``PrerequisiteMissing`` unless the repository keeps compact samples keyed by
        target (revision 0005 on), which *purpose* needs (a collector, a central repository, a
        named target)."""
        if not self._compact:
            revision = self.revision or read_alembic_revision(self.conn)
            raise PrerequisiteMissing(
                f"{purpose} needs revision 0005 (samples keyed by target); {self.where} is at "
                f"revision {revision}: run alembic upgrade head first"
            )

    # -- targets and headers ----------------------------------------------------------------

    def targets(self) -> list[str]:
        """The targets the repository holds samples of, in order (a loose scan of its key)."""
        if not self._compact:
            return []
        return [target for (target,) in self.conn.execute(_TARGETS_SQL)]

    def resolve_target(self, target: str | None) -> str | None:
        """The target whose samples to read: *target*, which must have samples; else the only one
        the repository holds, or the connected database's name among several. None before
        revision 0005 (no targets; ``PrerequisiteMissing`` for a *target* there). Raises
        ``UsageError`` otherwise, naming the targets there are."""
        if not self._compact:
            if target is not None:
                raise PrerequisiteMissing(
                    f"--target {target}: this database's snapshots have no targets (it is below "
                    "revision 0005, which keys samples by target)"
                )
            return None
        known = self.targets()
        if target is not None:
            if target not in known:
                there = ", ".join(known) or "none"
                raise UsageError(f"no samples of target {target!r} here (targets: {there})")
            return target
        if len(known) == 1:
            return known[0]
        row = self.conn.execute(f"SELECT {SQL_MARKER} current_database()").fetchone()
        database = row[0] if row else ""
        if database in known:
            return str(database)
        if not known:
            return None
        raise UsageError(
            f"the repository holds samples of {len(known)} targets ({', '.join(known)}): "
            "choose one with --target"
        )

    def target_of(self, target: str | None, source: psycopg.Connection[Any]) -> str | None:
        """The target samples of the database on *source* are kept under: *target*, else that
        database's name; None below revision 0005 (no targets)."""
        if not self._compact:
            return None
        return target or live.prepare(source)[0].database

    def _headers_sql(
        self, where: sql.Composable, order: sql.Composable = _NO_ORDER
    ) -> sql.Composed:
        """Headers of the target's snapshots matching *where* (before 0005 there are no targets)."""
        return sql.SQL(
            "SELECT {marker} {columns} FROM {snapshots} WHERE {target}{where} {order}"
        ).format(
            marker=sql.SQL(SQL_MARKER),
            columns=or_null(self._layout, monitoring.SNAPSHOTS, column_names(SnapshotHeader)),
            snapshots=_table(monitoring.SNAPSHOTS),
            target=_OF_TARGET_SAMPLE if self._compact else sql.SQL(""),
            where=where,
            order=order,
        )

    def _fetch_headers(self, query: sql.Composed, params: dict[str, Any]) -> list[SnapshotHeader]:
        with self.conn.cursor(row_factory=class_row(SnapshotHeader)) as cur:
            return cur.execute(query, params).fetchall()

    def headers(
        self, labels: Iterable[str], target: str | None = None
    ) -> dict[str, SnapshotHeader]:
        """The headers of the target's snapshots among *labels* that exist, by label (one query;
        none without the monitoring tables, nor of a named *target* below revision 0005)."""
        if not self._layout.has(monitoring.SNAPSHOTS) or (target and not self._compact):
            return {}
        rows = self._fetch_headers(
            self._headers_sql(_LABELS), {"labels": list(labels), "target": target}
        )
        return {row.label: row for row in rows if row.label is not None}

    def headers_between(
        self, start: datetime, end: datetime, target: str | None = None
    ) -> list[SnapshotHeader]:
        """The headers of the target's samples taken from *start* to *end* (both included), in
        the order they were taken."""
        query = self._headers_sql(_BETWEEN, _IN_ORDER)
        return self._fetch_headers(query, {"target": target, "from": start, "to": end})

    def now(self) -> datetime:
        """The repository server's clock (samples are stamped with it, not the local one)."""
        row = self.conn.execute(f"SELECT {SQL_MARKER} now()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    # -- windows ------------------------------------------------------------------------------

    def windows(
        self,
        refs: Sequence[WindowRef],
        *,
        operation: str | None = None,
        target: str | None = None,
        min_coverage: float = MIN_COVERAGE,
    ) -> list[Window]:
        """The windows *refs* of *target* (``resolve_target``: by default the repository's only
        one), resolved to their samples' headers (the samples inside each too) and request
        totals, no statistics row loaded; a window by time whose samples span less than
        *min_coverage* of it is untrusted (``coverage``). Raises ``UsageError`` for unknown
        labels, an end before its start, or no two samples between two times;
        ``PrerequisiteMissing`` without the monitoring tables."""
        with translated_errors("loading snapshots"):
            if not self._layout.has(monitoring.SNAPSHOTS):
                raise PrerequisiteMissing(
                    f"{self.where} has no monitoring tables (perf_monitoring.snapshots): run "
                    "alembic upgrade head on it"
                )
            chosen = self.resolve_target(target)
            labels = [label for ref in refs for label in _labels(ref)]
            by_label = self.headers(labels, chosen) if labels else {}
            missing = [label for label in dict.fromkeys(labels) if label not in by_label]
            if missing:
                raise UsageError(self._unknown_labels_message(refs, missing, chosen))
            found = []
            for ref in refs:
                start, end, asked = self._resolved(ref, chosen, by_label)
                problems: list[str] = []
                notes: list[str] = []
                span = self.headers_between(start.taken_at, end.taken_at, chosen)
                inside = tuple(h for h in span if h.id not in (start.id, end.id))
                if ref.by_time:
                    problems, notes = coverage([start, *inside, end], asked, min_coverage)
                totals = self.request_totals(
                    start.taken_at, end.taken_at, operation=operation, target=chosen
                )
                found.append(
                    Window(ref, start, end, totals, tuple(problems), tuple(notes), asked, inside)
                )
                log.info(
                    "window %s: samples at %s and %s UTC, %d requests in the metrics",
                    ref, clock_text(start.taken_at), clock_text(end.taken_at), totals.requests,
                )  # fmt: skip
        return found

    def _resolved(
        self, ref: WindowRef, target: str | None, by_label: dict[str, SnapshotHeader]
    ) -> tuple[SnapshotHeader, SnapshotHeader, tuple[datetime | None, datetime | None]]:
        """The two samples *ref* stands for (its labels' headers in *by_label*), and the times
        it asked (None for a label)."""
        if ref.last_seconds is not None:
            now = self.now()
            asked: tuple[datetime | None, datetime | None] = (
                now - timedelta(seconds=ref.last_seconds),
                now,
            )
        else:
            asked = (ref.start_time, ref.end_time)
        low = by_label[ref.start].taken_at if asked[0] is None else asked[0]
        high = by_label[ref.end].taken_at if asked[1] is None else asked[1]
        assert low is not None and high is not None
        params = {"target": target, "from": low, "to": high}
        start = by_label.get(ref.start) if asked[0] is None else None
        end = by_label.get(ref.end) if asked[1] is None else None
        if start is None:
            found = self._fetch_headers(self._headers_sql(_BETWEEN, _FIRST), params)
            start = found[0] if found else None
        if end is None:
            found = self._fetch_headers(self._headers_sql(_BETWEEN, _LAST), params)
            end = found[0] if found else None
        if start is None or end is None or end.taken_at <= start.taken_at:
            where = f" of target {target}" if target else ""
            raise UsageError(
                f"window {ref}: no two samples{where} between {clock_text(low)} and {clock_text(high)} UTC"
                if ref.by_time
                else f"window {ref}: {ref.end!r} was not taken after {ref.start!r}"
            )
        return start, end, asked

    def _unknown_labels_message(
        self, refs: Sequence[WindowRef], missing: list[str], target: str | None
    ) -> str:
        message = f"unknown snapshot label(s): {', '.join(repr(m) for m in missing)}"
        if target is not None:
            message += f" (target {target})"
        plain = [ref.name for ref in refs if RANGE_SEPARATOR not in ref.name]
        if plain and self.headers(plain, target):
            message += " (a single snapshot is not a window: give START..END)"
        return message

    # -- request metrics ------------------------------------------------------------------------

    def request_totals(
        self,
        start: datetime,
        end: datetime,
        *,
        operation: str | None = None,
        target: str | None = None,
    ) -> RequestTotals:
        """The request metrics of [*start*, *end*] (the target's, and those that name none),
        prorated at its ends (``RequestTotals``)."""
        return request_metrics.load_request_totals(
            self.conn, start, end, operation, target=target, layout=self._layout
        )

    def variant_totals(
        self,
        start: datetime,
        end: datetime,
        *,
        operation: str | None = None,
        target: str | None = None,
    ) -> dict[str | None, VariantTotals]:
        """The request metrics of [*start*, *end*] per variant (None: rows that name none).
        Raises ``PrerequisiteMissing`` below the revision that records variants."""
        return request_metrics.load_variant_totals(
            self.conn, start, end, operation, target=target, layout=self._layout
        )

    def request_buckets(
        self, start: datetime, end: datetime, target: str | None = None
    ) -> tuple[MetricsBucket, ...]:
        """The request-metrics buckets inside [*start*, *end*], per bucket start."""
        return request_metrics.load_buckets(self.conn, start, end, target, layout=self._layout)

    # -- sums and measures ----------------------------------------------------------------------

    def sums(
        self,
        windows: Sequence[Window],
        scope: Scope = ALL_STATEMENTS,
        *,
        indexes: Sequence[str] = (),
    ) -> list[WindowSums]:
        """What each of *windows* (one target's) adds up to over *scope*: summed by the database
        over compact samples (a few rows come back; ``index_scans`` holds the *indexes* asked,
        "schema.index"), else from the two loaded states (``sum_deltas``)."""
        with translated_errors("summing the windows"):
            target = _target_of(windows)
            if self._compact and target is not None:
                return window_sums.sum_windows(self.conn, target, windows, scope, indexes=indexes)
            return [sum_deltas(w, scope) for w in self.load(windows)]

    def measures(
        self,
        windows: Sequence[Window],
        scope: Scope = ALL_STATEMENTS,
        *,
        indexes: Sequence[str] = (),
        edge_tolerance: float = EDGE_TOLERANCE,
        max_mismatch: float | None = None,
    ) -> list[WindowMeasures]:
        """The figures of each of *windows* over *scope* (``measures.measure`` of ``sums``): the
        one way from a stored window to its figures (verify, the canary, the report, the
        rollout). Requests prorated at a window's ends may move queries per request by
        *edge_tolerance* (relative); with *max_mismatch*, the application's count of its
        statements must match pg_stat_statements' within it."""
        sums = self.sums(windows, scope, indexes=indexes)
        return [
            measure(w, s, scope, edge_tolerance=edge_tolerance, max_mismatch=max_mismatch)
            for w, s in zip(windows, sums, strict=True)
        ]

    def roles_in(self, windows: Sequence[Window], roles: frozenset[str]) -> frozenset[str]:
        """The roles of *roles* with a statement entry at either end of one of *windows*."""
        if not roles:
            return frozenset()
        with translated_errors("reading the roles"):
            target = _target_of(windows)
            if self._compact and target is not None:
                return window_sums.roles_in_windows(self.conn, target, windows, roles)
            found = {
                row.rolname
                for w in self.load(windows)
                for state in w.states or ()
                for row in state.statements
            }
        return frozenset(roles & found)

    # -- states and replay --------------------------------------------------------------------

    def states(self, headers: Sequence[SnapshotHeader]) -> dict[int, Snapshot]:
        """The full state at each sample of *headers*, by id (one query per row kind): a
        compact sample's state, or below revision 0005 a full copy."""
        wanted = [h for h in headers if h.id is not None and h.id not in self._states]
        if wanted:
            with translated_errors("loading snapshots"):
                if self._compact:
                    by_target: dict[str, list[SnapshotHeader]] = {}
                    for header in wanted:
                        by_target.setdefault(header.target or "", []).append(header)
                    for target, chosen in by_target.items():
                        self._states.update(compact.load_states(self.conn, target, chosen))
                else:
                    self._states.update(full_copies.load_snapshots(self.conn, wanted, self._layout))
        return {h.id: self._states[h.id] for h in headers if h.id is not None}

    def load(self, windows: Sequence[Window]) -> list[Window]:
        """*windows* with their samples' states loaded (``Window.deltas``: every entry's)."""
        states = self.states([h for w in windows for h in (w.start, w.end)])
        return [w.loaded(states[w.start.id], states[w.end.id]) for w in windows]  # type: ignore[index]

    def replay(self, headers: Sequence[SnapshotHeader], target: str | None) -> Replay:
        """The steps between consecutive *headers* (*target*'s samples): replayed from what the
        samples stored (``compact.replay``: the first state and the rows after it), or, before
        revision 0005 or for samples whose ids do not rise with time, every state loaded."""
        ids = [header.id for header in headers if header.id is not None]
        with translated_errors("loading snapshots"):
            if len(ids) >= 2 and self._compact and target is not None and ids == sorted(ids):
                return Replay(*compact.replay(self.conn, target, headers))
            states = self.states(headers)
        ordered = [states[i] for i in ids]
        if not ordered:
            return Replay([], None, None)
        return Replay(list(itertools.pairwise(ordered)), ordered[0], ordered[-1])

    # -- writing ---------------------------------------------------------------------------------

    def write_snapshot(
        self,
        label: str,
        source: psycopg.Connection[Any],
        info: ServerInfo,
        columns: StatementColumns,
        *,
        target: str | None = None,
        requests: int | None = None,
    ) -> SampleSummary:
        """Store one labelled sample of the database on *source* (read with *info* and
        *columns*) under *target* (default: its database's name), under the target's write
        lock. Below revision 0005 a full copy of the repository's own database is stored
        instead, under no target (``PrerequisiteMissing`` for a *target* or another *source*).
        Raises ``UsageError`` for a label the target has, ``TargetBusy`` when another writer
        holds the target too long (nothing is written)."""
        if not self._compact:
            if source is not self.conn or target is not None:
                self.require_samples("a snapshot with --store or --target")
            return full_copies.take_snapshot(
                self.conn, label, info=info, columns=columns, revision=self.revision,
                layout=self._layout, requests=requests,
            )  # fmt: skip
        name = target or info.database
        with compact.write_lock(self.conn, name):
            state = compact.current_state(self.conn, name, by_day=self._layout.by_day)
            read = live.read_sample(source, info, columns, state.texts, state.own)
            summary, _ = compact.write_sample(
                self.conn, name, read, state, label=label, requests=requests,
                by_day=self._layout.by_day,
            )  # fmt: skip
        return summary

    def delete_snapshot(self, label: str, target: str | None) -> bool:
        """Remove the target's snapshot *label* (``compact.fold``: rows later samples read stay;
        below revision 0005 there are no targets and its rows go with it); True if there was
        one."""
        with translated_errors(f"deleting snapshot {label!r}"):
            if not self._compact:
                return full_copies.delete_snapshot(self.conn, label)
            assert target is not None
            with compact.write_lock(self.conn, target):
                found = self.headers([label], target)
                if label not in found or found[label].id is None:
                    return False
                compact.fold(self.conn, target, [found[label].id])  # type: ignore[list-item]
                return True


def _labels(ref: WindowRef) -> list[str]:
    """The ends of *ref* given as labels."""
    ends = ((ref.start, ref.start_time), (ref.end, ref.end_time))
    return [label for label, moment in ends if label and moment is None]


def _target_of(windows: Sequence[Window]) -> str | None:
    """The one target *windows* are of (None before revision 0005)."""
    targets = {w.target for w in windows}
    assert len(targets) <= 1, f"windows of several targets: {targets}"
    return next(iter(targets), None)


def place(store: str) -> str:
    """What messages call the central repository at the DSN *store* (no password)."""
    return f"the store ({describe(store)})"


@contextmanager
def open_store(conn: psycopg.Connection[Any] | None, store: str | None = None) -> Iterator[Store]:
    """The store samples are read from: the central repository *store* (a read-only session of
    its own; no target session needed), or the database on *conn* itself (its own
    ``perf_monitoring``)."""
    if store is None:
        assert conn is not None, "a target's own repository needs its session"
        with translated_errors("loading snapshots"):
            found = Store.of(conn)
        yield found
        return
    with session(store, autocommit=True) as central:
        with translated_errors("loading snapshots from the store"):
            found = Store.of(central, place(store))
        yield found
