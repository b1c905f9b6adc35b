"""Query texts at rest: scrubbed before they are stored, stored once per statement, read only
when new; revision 0004 scrubs what earlier snapshots stored (online with the lexer, offline as
a length), out of the table's files, and its downgrade puts the column back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbtools.schema.revisions import downgrade, offline_sql, upgrade
from dbtools.store.compact import OWN_TEXT
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


# The texts of the statements sampled (dbtools' own are kept apart: ``OWN_TEXT``).
_TEXTS = "SELECT queryid, query FROM perf_monitoring.statement_texts WHERE query <> %s"


def test_snapshots_store_every_text_scrubbed_and_once(
    migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbtools.reading import live

    db = migrated_database
    read_sample = live.read_sample
    new_texts: list[set[live.StatementKey]] = []

    def recording(*args: Any, **kwargs: Any) -> live.SampleRead:
        read = read_sample(*args, **kwargs)
        new_texts.append(set(read.texts))
        return read

    monkeypatch.setattr(live, "read_sample", recording)
    role = f"{db.name}_victim"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        _leak(db, role)
        first = take(db, "first")
    finally:
        db.execute(f"DROP ROLE {role}")
    assert SECRET not in _monitoring_rows(db)
    texts = dict(db.execute(_TEXTS, (OWN_TEXT,)))
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
    texts_after = len(db.execute(_TEXTS, (OWN_TEXT,)))
    # The two reads found exactly the texts stored: the second only the texts of the
    # statements the test ran in between, none of those the first snapshot stored.
    first_read, second_read = new_texts
    assert len(first_read) == texts_before
    assert len(second_read) == texts_after - texts_before > 0
    assert not first_read & second_read


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


def test_a_statement_whose_text_cannot_be_read_waits_for_the_next_sample(
    migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry whose text is gone when the sample asks for it (evicted in between) is left
    out of that sample, and stored with its text by the next one."""
    from psycopg import sql

    from dbtools.reading import live

    db = migrated_database
    db.execute("SELECT 7 AS appeared_meanwhile")
    read = live.texts_sql
    calls: list[int] = []

    def no_text_the_first_time(columns: Any) -> sql.Composed:
        calls.append(1)
        query = read(columns)
        return (
            query if len(calls) > 1 else sql.SQL("SELECT * FROM ({}) q WHERE false").format(query)
        )

    monkeypatch.setattr(live, "texts_sql", no_text_the_first_time)
    count = (
        "SELECT count(*) FROM perf_monitoring.statement_stats s "
        "JOIN perf_monitoring.statement_texts t USING (target, dbid, queryid) "
        "WHERE t.query = 'SELECT $1 AS appeared_meanwhile'"
    )
    take(db, "first")
    assert db.execute(count) == [(0,)]
    take(db, "second")
    assert db.execute(count) == [(1,)]
    assert db.execute(
        "SELECT count(*) FROM perf_monitoring.statement_stats s WHERE NOT EXISTS (SELECT FROM "
        "perf_monitoring.statement_texts t WHERE t.target = s.target AND t.dbid = s.dbid "
        "AND t.queryid = s.queryid)"
    ) == [(0,)]
