"""Query texts stored once per statement and scrubbed; what a snapshot needs to tell whether
pg_stat_statements counted everything.

* ``perf_monitoring.statement_texts``: one scrubbed text per statement (dbid, queryid), stored
  by the snapshot that first meets it; ``statement_stats`` rows refer to it and hold no text.
* The texts earlier snapshots stored in ``statement_stats.query`` move there, one per statement
  (the first snapshot's), scrubbed:

  - online (``alembic upgrade``), with PostgreSQL's own scanner (``dbtools.sqltext.scrub``):
    literals become ``$n``, comments go, a text it cannot read becomes its length;
  - offline (``alembic upgrade --sql``), SQL cannot run the scanner: every text becomes
    ``<unreadable statement, N characters>``, its length and nothing else.

  ``statement_stats.query`` is then emptied (NULL) in a rewrite of the table, so the texts
  leave its files (a dropped column's values would stay on disk until each row is written
  again); the column stays, so that the downgrade fills it in place. Copies outside the table
  (WAL not yet recycled, backups, the column's statistics in ``pg_statistic`` until the next
  ANALYZE) are beyond a migration: change any password a query text ever held.
* ``statement_stats.min_exec_time``/``max_exec_time``: an entry's max can only grow and its min
  only shrink while it lives, so a single-entry reset shows on servers without ``stats_since``.
* ``snapshots.counting_settings`` (``pg_stat_statements.track``, ``track_utility`` and
  ``autovacuum_naptime`` with their sources), ``counting_overrides`` (the per-role and
  per-database ``pg_stat_statements.*`` settings of ``pg_db_role_setting``; NULL when the role
  cannot read it), ``toplevel_calls`` (every top-level call pg_stat_statements counted in the
  database) and ``database_stats.sessions``: whether the window's statements were counted.

Downgrade: ``statement_stats.query`` is filled again with each statement's stored (scrubbed)
text, and NOT NULL again; the new columns and the texts table go.

Frozen: the DDL below is literal SQL; a change is a new revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from dbtools.schema.manifest import IndexDefinition, Manifest
from dbtools.sqltext.scrub import scrub_query

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREATE_TEXTS: tuple[str, ...] = (
    """CREATE TABLE perf_monitoring.statement_texts (
    dbid OID NOT NULL,
    queryid BIGINT NOT NULL,
    query TEXT NOT NULL,
    CONSTRAINT pk_statement_texts PRIMARY KEY (dbid, queryid)
)""",
    "COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement; statement_stats rows refer to it by (dbid, queryid).'",
)

# Each statement's first stored text (its earliest snapshot's), to scrub in Python.
FIRST_TEXTS = """SELECT DISTINCT ON (dbid, queryid) dbid, queryid, query
FROM perf_monitoring.statement_stats
ORDER BY dbid, queryid, snapshot_id, userid, toplevel DESC"""
INSERT_TEXT = (
    "INSERT INTO perf_monitoring.statement_texts (dbid, queryid, query) "
    "VALUES (:dbid, :queryid, :query)"
)
FIRST_TEXTS_AS_LENGTHS = """-- Offline SQL cannot run the scanner that scrubs texts: each text is kept as its length.
INSERT INTO perf_monitoring.statement_texts (dbid, queryid, query)
SELECT DISTINCT ON (dbid, queryid) dbid, queryid,
       format('<unreadable statement, %s characters>', length(query))
FROM perf_monitoring.statement_stats
ORDER BY dbid, queryid, snapshot_id, userid, toplevel DESC"""

# Every text leaves statement_stats: ALTER … TYPE … USING rewrites the table into new files (the
# old ones, texts and all, go at commit), where a dropped column's values would stay on disk
# until each row is written again. The column stays, empty, so that the downgrade fills it in
# place and the table keeps its columns' order.
EMPTY_TEXT_COLUMN: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.statement_stats
    ALTER COLUMN query DROP NOT NULL,
    ALTER COLUMN query TYPE TEXT USING NULL,
    ADD COLUMN min_exec_time FLOAT,
    ADD COLUMN max_exec_time FLOAT""",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.query IS 'NULL since revision 0004: the text is in statement_texts, once per statement'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.min_exec_time IS 'only shrinks while the entry lives: a rise means it was reset'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.max_exec_time IS 'only grows while the entry lives: a fall means it was reset'",
)

COUNTING_COLUMNS: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.snapshots
    ADD COLUMN counting_settings JSONB,
    ADD COLUMN counting_overrides JSONB,
    ADD COLUMN toplevel_calls BIGINT""",
    "COMMENT ON COLUMN perf_monitoring.snapshots.counting_settings IS 'pg_stat_statements.track, track_utility, autovacuum_naptime: value and source'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.counting_overrides IS 'per-role and per-database pg_stat_statements settings; NULL: pg_db_role_setting not readable'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.toplevel_calls IS 'every top-level call pg_stat_statements counted in the database'",
    "ALTER TABLE perf_monitoring.database_stats ADD COLUMN sessions BIGINT",
    "COMMENT ON COLUMN perf_monitoring.database_stats.sessions IS 'pg_stat_database.sessions (PostgreSQL 14+)'",
)

DOWNGRADE: tuple[str, ...] = (
    """UPDATE perf_monitoring.statement_stats s
SET query = coalesce((SELECT t.query FROM perf_monitoring.statement_texts t
                      WHERE t.dbid = s.dbid AND t.queryid = s.queryid), '<text not stored>')""",
    """ALTER TABLE perf_monitoring.statement_stats
    ALTER COLUMN query SET NOT NULL,
    DROP COLUMN min_exec_time,
    DROP COLUMN max_exec_time""",
    # An empty comment removes it (sqlglot, which classifies the statement, cannot read IS NULL).
    "COMMENT ON COLUMN perf_monitoring.statement_stats.query IS ''",
    "ALTER TABLE perf_monitoring.database_stats DROP COLUMN sessions",
    """ALTER TABLE perf_monitoring.snapshots
    DROP COLUMN toplevel_calls,
    DROP COLUMN counting_overrides,
    DROP COLUMN counting_settings""",
    "DROP TABLE perf_monitoring.statement_texts",
)

# What this revision creates (tests/test_manifests.py compares it with the catalog).
MANIFEST = Manifest(
    tables=("perf_monitoring.statement_texts",),
    indexes=(
        IndexDefinition(
            "CREATE UNIQUE INDEX pk_statement_texts ON perf_monitoring.statement_texts "
            "USING btree (dbid, queryid)"
        ),
    ),
)


def upgrade() -> None:
    # dbtools-lint: ignore changing-column-type,ban-drop-not-null in upgrade because rewriting statement_stats with its query column emptied is the point: the texts must leave the table's files, and only dbtools reads and writes this monitoring table
    for statement in CREATE_TEXTS:
        op.execute(statement)
    if context.is_offline_mode():
        op.execute(FIRST_TEXTS_AS_LENGTHS)
    else:
        bind = op.get_bind()
        texts = [
            {"dbid": dbid, "queryid": queryid, "query": scrub_query(query)}
            for dbid, queryid, query in bind.execute(sa.text(FIRST_TEXTS))
        ]
        if texts:
            bind.execute(sa.text(INSERT_TEXT), texts)
    for statement in (*EMPTY_TEXT_COLUMN, *COUNTING_COLUMNS):
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-column,ban-drop-table in downgrade because the downgrade drops exactly the texts table and the counting columns this revision added, which only dbtools reads; `dbtools downgrade-plan` exports their rows first
    # dbtools-lint: ignore adding-not-nullable-field in downgrade because statement_stats.query was NOT NULL before this revision and is filled for every row first; only dbtools reads this monitoring table while it is scanned
    for statement in DOWNGRADE:
        op.execute(statement)
