"""Collection and snapshots against real servers: exact counts, every extension version,
dbtools' own statements left out, labels, capture and its Ctrl-C clean-up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from dbtools.db.connection import SQL_MARKER, connect
from dbtools.errors import UsageError
from dbtools.figures import windows
from dbtools.reading import live
from dbtools.reading.columns import parse_version
from dbtools.reading.rows import (
    DatabaseRow,
    IndexRow,
    Snapshot,
    SnapshotHeader,
    StatementRow,
    TableRow,
    column_names,
    stored_columns,
)
from dbtools.schema import monitoring
from dbtools.schema.manifest import head_revision, manifest_at
from dbtools.store import Store, snapshots
from tests.conftest import Database, PgServer
from tests.helpers import REPO, assert_usage_error, interruptible_child, run_cli
from tests.snapshot_helpers import REQUEST_STATEMENTS, run_requests, snapshot_count, take

PROBE = "SELECT %s::int + 1 AS collection_probe"


def test_row_dataclasses_are_the_monitoring_tables_columns(migrated_database: Database) -> None:
    def columns(table: str) -> tuple[str, ...]:
        rows = migrated_database.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (monitoring.MONITORING_SCHEMA, table),
        )
        return tuple(name for (name,) in rows)

    for row_type, table in (
        (StatementRow, monitoring.STATEMENT_STATS),
        (TableRow, monitoring.TABLE_STATS),
        (IndexRow, monitoring.INDEX_STATS),
        (DatabaseRow, monitoring.DATABASE_STATS),
    ):
        # Each row is its sample's and its target's, may say its entry vanished there, and
        # carries its sample's UTC day (the partition it is stored in: revision 0008).
        stored = columns(table)
        assert {"target", "vanished", "sample_day"} <= set(stored), table
        plain = tuple(c for c in stored if c not in ("target", "vanished", "sample_day"))
        assert ("snapshot_id", *column_names(row_type)) == plain, table
    assert column_names(SnapshotHeader) == columns(monitoring.SNAPSHOTS)
    # statement_stats.query stays NULL: a statement's text is stored once, in statement_texts.
    assert "query" not in stored_columns(StatementRow)
    assert columns(monitoring.STATEMENT_TEXTS) == ("dbid", "queryid", "query", "target")


def _probe_calls(snapshot: Snapshot) -> int:
    return sum(row.calls for row in snapshot.statements if "collection_probe" in row.query)


@pytest.mark.parametrize("version", ["1.8", "1.9", "1.10", "1.11", "1.12"])
def test_collection_reads_every_extension_version(
    database: Database, pg_server: PgServer, version: str
) -> None:
    available = {row[0] for row in database.execute(
        "SELECT version FROM pg_available_extension_versions WHERE name = 'pg_stat_statements'"
    )}  # fmt: skip
    # PostgreSQL 15 ships 1.4-1.10, 17 ships 1.4-1.11, 18 ships 1.4-1.12: an older server is
    # tested on the newest version it has, so the test runs (never skips) on every major.
    if version not in available:
        newest = max(available, key=parse_version)
        assert pg_server.major < 18 and parse_version(version) > parse_version(newest)
        version = newest
    database.execute("DROP EXTENSION pg_stat_statements")
    database.execute(f"CREATE EXTENSION pg_stat_statements VERSION '{version}'")
    with database.connect() as conn:
        for i in range(7):
            conn.execute(PROBE, (i,))
    with connect(database.dsn, autocommit=True) as conn:
        first = live.read_live(conn)
        with database.connect() as app:
            for i in range(5):
                app.execute(PROBE, (i,))
        second = live.read_live(conn)
    assert first.header.pgss_version == version
    assert _probe_calls(first) == 7 and _probe_calls(second) == 12
    probe = next(r for r in second.statements if "collection_probe" in r.query)
    assert probe.toplevel is True and probe.rolname == "postgres"
    assert (probe.stats_since is not None) == (version >= "1.11" and len(version) == 4)
    assert (second.header.pgss_stats_reset is not None) == (version != "1.8")
    assert second.header.database_name == database.name
    assert second.database is not None and second.database.datname == database.name
    assert not any(SQL_MARKER in row.query for row in second.statements)


def test_collection_of_tables_indexes_and_validity(migrated_database: Database) -> None:
    with connect(migrated_database.dsn, autocommit=True) as conn:
        snap = live.read_live(conn)
    tables = {f"{t.schemaname}.{t.relname}": t for t in snap.tables}
    indexes = {f"{i.schemaname}.{i.indexrelname}": i for i in snap.indexes}
    head = manifest_at("head")
    for spec in head.table_settings:
        assert tables[spec.qualified_table].options == dict(spec.settings)
    for index in head.batch_indexes:
        row = indexes[index.qualified_name]
        assert row.is_valid and row.is_ready and not row.backs_constraint
        assert row.definition == index.definition
    active = indexes["public.ix_trip_requests_active_batch"]
    assert active.key_columns == ["id"]
    assert active.include_columns == ["search_key", "traveler_id", "max_price"]
    pkey = indexes["public.trip_requests_pkey"]
    assert pkey.is_primary and pkey.backs_constraint
    assert snap.header.alembic_revision == head_revision()


def test_snapshot_stores_exactly_what_reading_gives(migrated_database: Database) -> None:
    db = migrated_database
    run_requests(db, 4)
    summary = take(db, "s1", requests=4)
    with connect(db.dsn, autocommit=True) as conn:
        now = live.read_live(conn)
        store = Store.of(conn)
        header = store.headers(["s1"], target=db.name)["s1"]
        stored = store.states([header])[summary.id]
    assert header.requests == 4 and header.hidden_statements == 0
    assert header.alembic_revision == head_revision()
    assert summary.statements == len(stored.statements)
    assert summary.tables == len(stored.tables) == len(now.tables)
    assert summary.indexes == len(stored.indexes) == len(now.indexes)
    calls = {row.query: row.calls for row in stored.statements}
    for statement in REQUEST_STATEMENTS:
        text = next(q for q in calls if q.startswith(statement.split(" WHERE")[0]))
        assert calls[text] == 4
    assert not any(SQL_MARKER in q or live.RI_MARKER in q for q in calls)
    assert {t.relid for t in now.tables} == {t.relid for t in stored.tables}
    assert {i.indexrelid for i in now.indexes} == {i.indexrelid for i in stored.indexes}


def test_dbtools_sends_only_marked_statements_and_a_fixed_number(
    migrated_database: Database,
) -> None:
    """Every statement dbtools sends carries the marker, and their number does not grow with
    the number of tables and indexes."""
    db = migrated_database
    reader = "SELECT /* test reader */ queryid, query, calls FROM pg_stat_statements"

    def entries() -> dict[int, tuple[str, int]]:
        return {row[0]: (row[1], row[2]) for row in db.execute(reader + " WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())")}  # fmt: skip

    def sent_by(action: object) -> dict[str, int]:
        before = entries()
        action()  # type: ignore[operator]
        after = entries()
        return {
            text: calls - before.get(qid, ("", 0))[1]
            for qid, (text, calls) in after.items()
            if calls != before.get(qid, ("", 0))[1] and "test reader" not in text
        }

    take(db, "a")
    db.execute("SELECT 1 AS small_probe")  # a statement whose text is new, as below
    small = sent_by(lambda: take(db, "b"))
    with db.connect() as conn:
        for i in range(40):
            conn.execute(f"CREATE TABLE wide_{i} (id int PRIMARY KEY, v int)")
            conn.execute(f"CREATE INDEX ON wide_{i} (v)")
            for op in ("<", "<=", "=", ">=", ">"):  # 200 statements whose texts are new
                conn.execute(f"SELECT count(*) FROM wide_{i} WHERE v {op} 0")
    large = sent_by(lambda: take(db, "c"))
    take(db, "d")
    verified = sent_by(lambda: run_cli("verify", "--dsn", db.dsn, "--baseline", "b..c",
                                       "--candidate", "c..d"))  # fmt: skip
    for sent in (small, large, verified):
        toplevel = {text: calls for text, calls in sent.items() if live.RI_MARKER not in text}
        assert all(SQL_MARKER in text for text in toplevel), toplevel
    # A snapshot, whatever the number of statements, tables and indexes: the server facts; the
    # repository's revision (whether its table exists, and its row); the target's write lock,
    # its latest sample and the state there (one query per row kind, and dbtools' own
    # statements the store knows: a new process); the read (the header, the revision, the
    # counters, the new texts, the database, tables and indexes); the write (one statement);
    # the lock's release; and, nested in the write, the entries tables' triggers (one statement
    # a row kind, revision 0008).
    assert sum(small.values()) == sum(large.values()) == 1 + 2 + 1 + 1 + 4 + 1 + 7 + 1 + 1 + 4
    # verify: the revision (whether its table exists, and its row), the objects its manifest
    # names, the monitoring tables' columns (samples are read at any revision), the targets,
    # the labels, the samples inside each window (their settings are judged) and its request
    # metrics, how many rows the windows hold, the windows' sums (one query per kind of row:
    # statements, tables, indexes; both windows at once) and the database's row at the three
    # samples.
    assert sum(verified.values()) == 2 + 1 + 1 + 1 + 1 + 2 + 2 + 1 + 3 + 1


def test_reused_label_is_refused_and_nothing_written(migrated_database: Database) -> None:
    db = migrated_database
    take(db, "once")
    with pytest.raises(
        UsageError, match=f"target '{db.name}' already has a snapshot labelled 'once'"
    ):
        take(db, "once")
    assert snapshot_count(db) == 1
    assert db.execute("SELECT count(DISTINCT snapshot_id) FROM perf_monitoring.table_stats") == [
        (1,)
    ]


@pytest.mark.parametrize("label", ["", " x", "a..b", "x" * 201, "tab\there"])
def test_invalid_labels(label: str) -> None:
    with pytest.raises(UsageError, match="invalid label"):
        windows.validate_label(label)


def test_window_references() -> None:
    assert windows.parse_window("w") == windows.WindowRef("w", "w:start", "w:end")
    assert windows.parse_window("a..b") == windows.WindowRef("a..b", "a", "b")
    for bad in ("..b", "a..", "a..b..c"):
        with pytest.raises(UsageError):
            windows.parse_window(bad)


def test_capture_stores_a_window(migrated_database: Database) -> None:
    result = run_cli("capture", "--dsn", migrated_database.dsn, "--label", "w",
                     "--duration", "1s", "--requests-served", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    name = migrated_database.name
    assert f"snapshot w:start of {name} stored" in result.stdout
    assert f"snapshot w:end of {name} stored" in result.stdout
    rows = migrated_database.execute(
        "SELECT label, requests FROM perf_monitoring.snapshots ORDER BY taken_at"
    )
    assert rows == [("w:start", None), ("w:end", 7)]
    again = run_cli("capture", "--dsn", migrated_database.dsn, "--label", "w", "--duration", "1s")
    assert_usage_error(again, f"target '{name}' already has a snapshot labelled 'w:end'")


def test_snapshot_and_capture_as_json(migrated_database: Database) -> None:
    dsn = migrated_database.dsn
    result = run_cli("snapshot", "--dsn", dsn, "--label", "one", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    ((stored_id, taken_at, statements, tables, indexes),) = migrated_database.execute(
        "SELECT s.id, s.taken_at,"
        " (SELECT count(*) FROM perf_monitoring.statement_stats WHERE snapshot_id = s.id),"
        " (SELECT count(*) FROM perf_monitoring.table_stats WHERE snapshot_id = s.id),"
        " (SELECT count(*) FROM perf_monitoring.index_stats WHERE snapshot_id = s.id)"
        " FROM perf_monitoring.snapshots s WHERE label = 'one'"
    )
    # The target's first sample: every entry is a row of it (and the database's one row).
    assert document == {
        "schema_version": 1, "kind": "snapshot", "id": stored_id, "label": "one",
        "target": migrated_database.name, "taken_at": taken_at.isoformat(),
        "statements": statements, "tables": tables, "indexes": indexes, "hidden_statements": 0,
        "rows_stored": statements + tables + indexes + 1,
    }  # fmt: skip
    assert tables > 0 and indexes > 0
    captured = run_cli("capture", "--dsn", dsn, "--label", "w", "--duration", "1s",
                       "--format", "json")  # fmt: skip
    assert captured.exit_code == 0, captured.output
    window = json.loads(captured.stdout)
    assert (window["schema_version"], window["kind"]) == (1, "capture")
    assert (window["start"]["label"], window["end"]["label"]) == ("w:start", "w:end")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_capture_leaves_nothing(migrated_database: Database, sig: int) -> None:
    db = migrated_database
    process = subprocess.Popen(
        [sys.executable, "-m", "dbtools", "capture", "--dsn", db.dsn, "--label", "cut",
         "--duration", "5m"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible_child,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while snapshot_count(db) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert snapshot_count(db) == 1
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "capture 'cut' interrupted: cut:start was removed" in stderr
    assert "Traceback" not in stderr
    assert snapshot_count(db) == 0
    assert db.execute("SELECT count(*) FROM perf_monitoring.statement_stats") == [(0,)]


@pytest.mark.parametrize("text", ["10m", "90s", "1h30m", "45", "2m5s"])
def test_duration_forms(text: str) -> None:
    from dbtools.cli.options import Duration

    expected = {"10m": 600, "90s": 90, "1h30m": 5400, "45": 45, "2m5s": 125}[text]
    assert Duration().convert(text, None, None) == expected


def test_bad_duration_is_a_usage_error(migrated_database: Database) -> None:
    result = run_cli("capture", "--dsn", migrated_database.dsn, "--label", "x",
                     "--duration", "ten minutes")  # fmt: skip
    assert result.exit_code == 2 and "not a duration" in result.stderr
    assert snapshot_count(migrated_database) == 0


def test_hidden_rows_are_counted_not_zero(migrated_database: Database) -> None:
    """A role without pg_read_all_stats sees other roles' rows as <insufficient privilege>."""
    db = migrated_database
    role = f"{db.name}_blind"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute(f"GRANT USAGE ON SCHEMA perf_monitoring TO {role}")
        db.execute(
            f"GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA perf_monitoring TO {role}"
        )
        db.execute(f"GRANT SELECT ON public.alembic_version TO {role}")
        with db.connect() as conn:
            for i in range(9):
                conn.execute(PROBE, (i,))
        dsn = psycopg.conninfo.make_conninfo(db.dsn, user=role)
        summary = snapshots.snapshot(dsn, "blind")
        hidden_statements, hidden_calls = db.execute(
            "SELECT hidden_statements, hidden_calls FROM perf_monitoring.snapshots"
        )[0]
        stored = db.execute("SELECT DISTINCT rolname FROM perf_monitoring.statement_stats")
        assert summary.hidden_statements == hidden_statements > 0
        assert hidden_calls >= 9  # at least the probe's calls, never zero
        assert stored == []  # the only rows it may see are dbtools' own: left out
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_read_only_sessions_send_no_transaction_control(migrated_database: Database) -> None:
    """Autocommit read-only sessions refuse writes without any BEGIN READ ONLY being sent."""
    with connect(migrated_database.dsn, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        assert conn.execute("SHOW application_name").fetchone() == ("dbtools",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE not_allowed (id int)")
