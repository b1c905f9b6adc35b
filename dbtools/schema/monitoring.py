"""The names dbtools reads and writes in its monitoring schema.

Revision 0002 creates the schema (its DDL is written in the revision), 0004 the texts table;
which of these tables a database has is its revision's manifest (``dbtools.schema.manifest``).
"""

from __future__ import annotations

from typing import Protocol

from dbtools.db.catalog import qualified

MONITORING_SCHEMA = "perf_monitoring"

SNAPSHOTS = "snapshots"
STATEMENT_STATS = "statement_stats"
STATEMENT_TEXTS = "statement_texts"  # one scrubbed text per (dbid, queryid)
TABLE_STATS = "table_stats"
INDEX_STATS = "index_stats"
DATABASE_STATS = "database_stats"
REQUEST_METRICS = "request_metrics"
APP_METRICS = "app_metrics"
SETTING_CHANGES = "setting_changes"

# The monitoring tables others write and dbtools only reads, and who writes them. Every other
# table a revision adds to the schema is one a snapshot writes: ``doctor`` checks that the
# monitoring role may insert into it (tests/test_doctor_roles.py: the runbook's role passes
# doctor, and the grants doctor asks for are enough to store a snapshot).
WRITTEN_BY_OTHERS: dict[str, str] = {
    REQUEST_METRICS: "the application",
    APP_METRICS: "the application",
    SETTING_CHANGES: "the migrations",
    # revision 0008: each entry's latest row, kept by the row tables' triggers as their owner
    **{
        f"{table}_entries": "the sample tables' triggers"
        for table in (STATEMENT_STATS, TABLE_STATS, INDEX_STATS, DATABASE_STATS)
    },
}

# From revision 0005 samples are removed (retention, roll-ups, an interrupted capture) by this
# function, as the calling role: it deletes the rows no remaining sample reads, and texts.
FOLD_SAMPLES_FUNCTION = f"{MONITORING_SCHEMA}.fold_samples(text, bigint[])"


def monitoring_table(name: str) -> str:
    """*name* qualified with the monitoring schema, as SQL text needs it."""
    return qualified(MONITORING_SCHEMA, name)


# Schemas whose tables and indexes are not the application's: dbtools' own (snapshots write to
# it, so its counters move with every measurement).
LEFT_OUT_SCHEMAS: tuple[str, ...] = (MONITORING_SCHEMA,)


class InSchema(Protocol):
    @property
    def schemaname(self) -> str: ...


def is_application(row: InSchema) -> bool:
    """Whether *row* (a table, an index, a foreign key) is the application's."""
    return row.schemaname not in LEFT_OUT_SCHEMAS
