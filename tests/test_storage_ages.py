"""Storage that ages (revision 0008): samples live in one partition per UTC day; retention drops
whole days once the state later samples read is carried forward, roll-ups fold samples and
rewrite each day they finish; every window over the samples that remain sums exactly as
before."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from dbtools.db.connection import SQL_MARKER, connect
from dbtools.figures.sums import Scope, WindowSums
from dbtools.figures.windows import Window, parse_window
from dbtools.reading import live
from dbtools.reading.rows import Snapshot, SnapshotHeader
from dbtools.store import Store, compact
from dbtools.store.window_sums import sum_windows
from tests.conftest import Database

TARGETS = 20
DAYS = 14
EVERY = timedelta(hours=3)  # 8 samples a day, 112 a target
STATEMENTS = 4  # statement i moves every i + 1 samples
RETENTION = timedelta(days=7)
ROLLUP_AGE = timedelta(days=3)
ROLLUP_PERIOD = timedelta(hours=6)  # a roll-up keeps one sample in two
EVER = (datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))
TABLES = ("statement_stats", "table_stats", "index_stats", "database_stats")


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def _synthetic_reads(template: live.SampleRead, start: datetime) -> list[live.SampleRead]:
    """A target's reads every ``EVERY`` from *start* until now: the template's first
    statements and database row, their counters rising (statement i every i + 1 samples)."""
    calls, hit = compact._CALLS, compact._HIT
    texts = {key: text for key, text in template.texts.items() if "age_probe" in text}
    statements = [
        values
        for values in template.statements
        if live.text_key(*compact.STATEMENT_KEY_OF(values)[:2]) in texts
    ]
    assert template.database is not None and len(texts) == len(statements) == STATEMENTS
    reads = []
    for k in range(DAYS * timedelta(days=1) // EVERY):
        moved = []
        for i, values in enumerate(statements):
            steps = k // (i + 1)
            row = list(values)
            row[calls] += steps * (i + 1)
            row[hit] += steps * 10
            moved.append(tuple(row))
        reads.append(
            dataclasses.replace(
                template,
                header=dataclasses.replace(template.header, taken_at=start + k * EVERY),
                statements=tuple(moved),
                database=dataclasses.replace(template.database, xact_commit=1000 + 7 * k),
                texts=texts,
                own=frozenset(),
                summary=None,
            )
        )
    return reads


def compact_headers(conn: psycopg.Connection[Any], target: str) -> list[SnapshotHeader]:
    """The target's samples, in order."""
    return Store.of(conn).headers_between(EVER[0], EVER[1], target)


def _windows(headers: Sequence[SnapshotHeader]) -> list[Window]:
    """Every window between consecutive samples, and from each sample to the last."""
    pairs = [*itertools.pairwise(headers), *((h, headers[-1]) for h in headers[:-1])]
    return [
        Window(parse_window(f"{a.taken_at.isoformat()}..{b.taken_at.isoformat()}"), a, b)
        for a, b in pairs
    ]


def _survivors(headers: Sequence[SnapshotHeader], now: datetime) -> list[SnapshotHeader]:
    """The samples retention and the roll-up keep: those newer than the retention; of those
    older than the roll-up age in a whole period behind it, the latest of each period."""
    period = ROLLUP_PERIOD.total_seconds()
    horizon = (now - ROLLUP_AGE).timestamp()
    buckets: dict[int, SnapshotHeader] = {}
    kept = []
    for header in headers:
        if header.taken_at < now - RETENTION:
            continue
        bucket = int(header.taken_at.timestamp() // period)
        if (bucket + 1) * period <= horizon:
            buckets[bucket] = header  # the latest of its period
        else:
            kept.append(header)
    return sorted([*buckets.values(), *kept], key=lambda h: h.id or 0)


def _partitions(db: Database) -> dict[str, set[date]]:
    rows = db.execute(
        "SELECT p.relname, to_date(right(c.relname, 8), 'YYYYMMDD') FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relnamespace = 'perf_monitoring'::regnamespace AND c.relkind = 'r'"
    )
    found: dict[str, set[date]] = {table: set() for table in TABLES}
    for table, day in rows:
        found[table].add(day)
    return found


def test_fourteen_days_of_twenty_targets_age_and_every_window_sums_as_before(
    migrated_database: Database,
) -> None:
    db = migrated_database
    with connect(db.dsn, autocommit=True, read_only=False) as conn:
        info, columns = live.prepare(conn)
        for n in range(1, STATEMENTS + 1):  # four entries: the number of columns differs
            conn.execute(f"SELECT {', '.join(map(str, range(n)))} AS age_probe")
        template = live.read_sample(conn, info, columns)
        now = datetime.now(timezone.utc)
        start = now - timedelta(days=DAYS)
        targets = [f"t{n:02}" for n in range(TARGETS)]
        for n, target in enumerate(targets):
            state = compact.TargetState()
            for read in _synthetic_reads(template, start + timedelta(minutes=n)):
                _, state = compact.write_sample(conn, target, read, state, interval_seconds=10800)
        # Every day of the fortnight got its partitions when its first sample came.
        days = {_utc_day(start + timedelta(days=d)) for d in range(DAYS + 1)}
        assert all(days <= found for found in _partitions(db).values())

        before_headers = {t: compact_headers(conn, t) for t in targets}
        assert {len(h) for h in before_headers.values()} == {DAYS * 8}
        expected = {t: _survivors(h, datetime.now(timezone.utc)) for t, h in before_headers.items()}
        windows = {t: _windows(expected[t]) for t in targets}
        sums_before: dict[str, list[WindowSums]] = {
            t: sum_windows(conn, t, windows[t], Scope()) for t in targets
        }
        states_before: dict[str, dict[int, Snapshot]] = {
            t: compact.load_states(conn, t, expected[t]) for t in targets
        }

        purged = compact.Purged()
        for target in targets:
            purged += compact.purge(conn, target, RETENTION.total_seconds())
            purged += compact.roll_up(
                conn, target, ROLLUP_AGE.total_seconds(), ROLLUP_PERIOD.total_seconds(),
                buckets=100,
            )  # fmt: skip
        assert compact.add_days_ahead(conn) == 0  # the migration made today's and tomorrow's

        for target in targets:
            kept = compact_headers(conn, target)
            assert [h.id for h in kept] == [h.id for h in expected[target]]
            assert sum_windows(conn, target, windows[target], Scope()) == sums_before[target]
            after = compact.load_states(conn, target, kept)
            assert {i: _header_free(s) for i, s in after.items()} == {
                i: _header_free(s) for i, s in states_before[target].items()
            }
            # The entries tables the triggers keep give the latest state, after carry-forward,
            # folds and dropped days (what collect --once and snapshot load).
            latest = kept[-1]
            assert latest.id is not None
            assert _ordered(compact.load_latest(conn, target, latest)) == _ordered(after[latest.id])

    # Retention dropped whole days: the days before the cutoff's are gone, for every table.
    cutoff = _utc_day(now - RETENTION)
    first_day = _utc_day(start)
    dropped = {first_day + timedelta(days=d) for d in range((cutoff - first_day).days)}
    assert purged.days == 4 * len(dropped) and len(dropped) in (6, 7)
    # The roll-up rewrote each day it finished (every 6 hours of it behind the roll-up age): the
    # cutoff's day to the last whole day before the roll-up horizon.
    finished = (_utc_day(now - ROLLUP_AGE) - cutoff).days
    assert purged.rewritten == 4 * finished and finished in (3, 4)
    today = _utc_day(datetime.now(timezone.utc))
    for found in _partitions(db).values():
        assert not found & dropped
        assert min(found) == cutoff and {today, today + timedelta(days=1)} <= found
    (oldest,) = db.execute(
        f"SELECT {SQL_MARKER} min(sample_day) FROM perf_monitoring.statement_stats"
    )[0]
    assert oldest == cutoff
    # The texts stay: every statement is still read by the remaining samples.
    assert db.execute(f"SELECT {SQL_MARKER} count(*) FROM perf_monitoring.statement_texts") == [
        (TARGETS * STATEMENTS,)
    ]


def _ordered(snapshot: Snapshot) -> Snapshot:
    """*snapshot*'s entries in key order (the entries tables are read in no order)."""
    return dataclasses.replace(
        snapshot,
        statements=tuple(sorted(snapshot.statements, key=compact.STATEMENTS.key_of)),
        tables=tuple(sorted(snapshot.tables, key=compact.TABLES.key_of)),
        indexes=tuple(sorted(snapshot.indexes, key=compact.INDEXES.key_of)),
    )


def _header_free(snapshot: Snapshot) -> Snapshot:
    """A state without its header (a roll-up marks the samples it keeps)."""
    return dataclasses.replace(snapshot, header=None)  # type: ignore[arg-type]
