"""Query texts at rest: scrubbed before they are stored, stored once per statement, read only
when new; revision 0004 scrubs what earlier snapshots stored (online with the lexer, offline as
a length), out of the table's files, and its downgrade puts the column back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbtools.db.connection import SQL_MARKER
from dbtools.schema.revisions import downgrade, offline_sql, upgrade
from tests.conftest import Database
from tests.snapshot_helpers import take

SECRET = "Hunter2Secret"


def _monitoring_rows(db: Database) -> str:
    """Every row of every monitoring table, as text."""
    tables = db.execute(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables "
        "WHERE table_schema = 'perf_monitoring'"
    )
    return "\n".join(
        text for (table,) in tables for (text,) in db.execute(f"SELECT t::text FROM {table} t")
    )


def _relation_bytes(db: Database, relation: str) -> bytes:
    """The files of *relation* and of its TOAST table, after a checkpoint."""
    db.execute("CHECKPOINT")
    (data_directory,) = db.execute("SHOW data_directory")[0]
    paths = db.execute(
        "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = %s::regclass "
        "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %s::regclass)",
        (relation, relation),
    )
    return b"".join(
        file.read_bytes()
        for (path,) in paths
        for file in Path(data_directory).glob(f"{path}*")
        if file.is_file()
    )


def _leak(db: Database, role: str) -> None:
    """The statements that put a secret into pg_stat_statements on every major: a password (kept
    as written) and a comment (kept in every text)."""
    with db.connect() as conn:
        conn.execute(f"ALTER ROLE {role} PASSWORD '{SECRET}'")
        conn.execute(f"SELECT 1 AS probe /* api_key={SECRET} */")


def test_snapshots_store_every_text_scrubbed_and_once(migrated_database: Database) -> None:
    db = migrated_database
    role = f"{db.name}_victim"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        _leak(db, role)
        first = take(db, "first")
    finally:
        db.execute(f"DROP ROLE {role}")
    assert SECRET not in _monitoring_rows(db)
    texts = dict(db.execute("SELECT queryid, query FROM perf_monitoring.statement_texts"))
    assert f"ALTER ROLE {role} PASSWORD $1" in texts.values()
    assert "SELECT $1 AS probe" in texts.values()
    # One text per (dbid, queryid), whatever the number of rows (users, top-level or nested).
    assert (
        len(texts)
        == db.execute(
            "SELECT count(DISTINCT (dbid, queryid)) FROM perf_monitoring.statement_stats"
        )[0][0]
    )
    assert first.statements == len(db.execute(
        "SELECT 1 FROM perf_monitoring.statement_stats s JOIN perf_monitoring.snapshots h "
        "ON h.id = s.snapshot_id WHERE h.label = 'first'"))  # fmt: skip

    # A second snapshot reads only the texts not stored yet, and stores nothing twice.
    texts_before = len(texts)
    take(db, "second")
    texts_after = db.execute("SELECT count(*) FROM perf_monitoring.statement_texts")[0][0]
    reads = db.execute(
        "SELECT calls, rows FROM pg_stat_statements WHERE strpos(query, %s) > 0 "
        "AND query LIKE '%%DISTINCT ON%%statement_texts%%' AND dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        (SQL_MARKER,),
    )
    assert reads and sum(calls for calls, _ in reads) == 2
    # Both reads together returned exactly the texts stored: the second read only the texts
    # of the statements the test ran in between, none of those the first snapshot stored.
    assert sum(rows for _, rows in reads) == texts_after > texts_before


PASSWORD_TEXT = f"ALTER ROLE app PASSWORD '{SECRET}'"
LONG_TEXT = f"SELECT 1 /* {SECRET} */ " + "x" * 3000  # long enough to be kept in TOAST
UNCLOSED_TEXT = f"ALTER ROLE app PASSWORD 'never closed {SECRET}"


def _stored_at_0003(db: Database) -> None:
    """Two snapshots as dbtools stored them before revision 0004: texts in statement_stats (the
    second with another text for queryid 11, as a comment would make it)."""
    db.execute(
        "INSERT INTO perf_monitoring.snapshots (label, database_name, database_oid, "
        "server_version_num, server_started_at, role_name) "
        "SELECT label, current_database(), 1, 150000, now(), 'monitor' "
        "FROM (VALUES ('old1'), ('old2')) v(label)"
    )
    db.execute(
        "INSERT INTO perf_monitoring.statement_stats (snapshot_id, userid, dbid, queryid, "
        "toplevel, query, calls) SELECT s.id, 10, 1, q, true, t, 3 "
        "FROM perf_monitoring.snapshots s JOIN (VALUES ('old1', 11, %s), ('old1', 12, %s), "
        "('old1', 13, %s), ('old2', 11, 'SELECT 1')) v(label, q, t) USING (label)",
        (PASSWORD_TEXT, LONG_TEXT, UNCLOSED_TEXT),
    )


def _unreadable(text: str) -> str:
    return f"<unreadable statement, {len(text)} characters>"


def test_revision_0004_scrubs_what_was_stored(database: Database) -> None:
    db = database
    upgrade(db.dsn, "0003")
    _stored_at_0003(db)
    assert SECRET.encode() in _relation_bytes(db, "perf_monitoring.statement_stats")
    upgrade(db.dsn, "0004")
    assert sorted(db.execute("SELECT queryid, query FROM perf_monitoring.statement_texts")) == [
        (11, "ALTER ROLE app PASSWORD $1"),  # the first snapshot's text of the statement
        (12, "SELECT $1 " + "x" * 3000),
        (13, _unreadable(UNCLOSED_TEXT)),
    ]
    assert SECRET not in _monitoring_rows(db)
    # Rewritten out of the table's files, not only hidden behind a dropped column.
    assert SECRET.encode() not in _relation_bytes(db, "perf_monitoring.statement_stats")
    assert db.execute("SELECT count(*), sum(calls) FROM perf_monitoring.statement_stats") == [
        (4, 12)
    ]

    downgrade(db.dsn, "0003")
    assert sorted(db.execute("SELECT queryid, query FROM perf_monitoring.statement_stats")) == [
        (11, "ALTER ROLE app PASSWORD $1"),
        (11, "ALTER ROLE app PASSWORD $1"),
        (12, "SELECT $1 " + "x" * 3000),
        (13, _unreadable(UNCLOSED_TEXT)),
    ]


def test_revision_0004_offline_keeps_only_lengths(database: Database) -> None:
    """Offline SQL cannot run the lexer: each stored text becomes its length."""
    db = database
    upgrade(db.dsn, "0003")
    _stored_at_0003(db)
    result = db.psql(input=offline_sql("0003:0004"))
    assert result.returncode == 0, result.stderr
    assert sorted(db.execute("SELECT queryid, query FROM perf_monitoring.statement_texts")) == [
        (11, _unreadable(PASSWORD_TEXT)),
        (12, _unreadable(LONG_TEXT)),
        (13, _unreadable(UNCLOSED_TEXT)),
    ]
    assert SECRET not in _monitoring_rows(db)
    assert SECRET.encode() not in _relation_bytes(db, "perf_monitoring.statement_stats")


def test_texts_of_statements_that_appear_during_a_snapshot_are_stored(
    migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that appears between reading the new texts and storing the counters (another
    session's first statement) gets its text from a second, rare round."""
    from dbtools.stats import snapshots

    db = migrated_database
    db.execute("SELECT 7 AS appeared_meanwhile")
    read = snapshots._new_texts
    calls: list[int] = []

    def nothing_new_the_first_time(*args: Any) -> dict[str, list[Any]]:
        found = read(*args)
        calls.append(len(found["texts"]))
        return found if len(calls) > 1 else {key: [] for key in found}

    monkeypatch.setattr(snapshots, "_new_texts", nothing_new_the_first_time)
    take(db, "s")
    assert len(calls) == 2 and calls[0] == calls[1] > 0  # the second round read them again
    assert db.execute(
        "SELECT count(*) FROM perf_monitoring.statement_stats s WHERE NOT EXISTS (SELECT FROM "
        "perf_monitoring.statement_texts t WHERE t.dbid = s.dbid AND t.queryid = s.queryid)"
    ) == [(0,)]
    assert db.execute(
        "SELECT count(*) FROM perf_monitoring.statement_texts "
        "WHERE query = 'SELECT $1 AS appeared_meanwhile'"
    ) == [(1,)]
