"""Compact samples, keyed by target: what ``dbtools collect`` and ``snapshot``/``capture`` store.

* Every sample table is keyed by ``target`` first (the name of the monitored database, the
  distribution column a repository spread over several servers would shard on):
  ``snapshots`` (one row per sample: ``(target, id)``, labels unique per target, a collected
  sample has none), ``statement_stats``, ``table_stats``, ``index_stats``, ``database_stats``
  and ``statement_texts`` (one scrubbed text per ``(target, dbid, queryid)``).
* **A row per change, not per sample.** A sample stores the rows of the entries whose values
  changed since the previous sample of its target; a row holds its entry's values from its
  sample on, until the entry's next row (``vanished``: the entry is gone from that sample on).
  The state of a target at sample S is, per entry, its latest row at or before S: any window
  between two samples gives the deltas two full copies would. For example, every statement's
  calls at sample 42 of target 'app' (a dashboard's point: ``snapshots.queries`` holds the sum)::

      SELECT DISTINCT ON (dbid, queryid, userid, toplevel) dbid, queryid, calls, vanished
      FROM perf_monitoring.statement_stats
      WHERE target = 'app' AND snapshot_id <= 42
      ORDER BY dbid, queryid, userid, toplevel, snapshot_id DESC   -- then drop the vanished

  (``dbtools.stats.samples.load_states`` does the same with one index probe per entry.)
* Rows do not refer to their sample's header (no foreign key): when samples are removed
  (retention, roll-ups, an interrupted capture) the rows a later sample still reads stay.
  ``perf_monitoring.fold_samples(target, ids)`` removes samples that way: their headers, and
  every row no remaining sample reads (and texts no row refers to). ``purge_older_than(days)``
  folds every sample older than that.
* ``snapshots`` also records per sample the collection interval (``interval_seconds``; NULL for
  a labelled snapshot), the period a rolled-up sample stands for (``rollup_seconds``), the
  transaction ID its table ages are counted from (``xid_now``; ``table_stats.frozen_xid`` is
  each table's ``relfrozenxid``, so a table whose counters did not move needs no new row), and
  the sums a dashboard draws a point per sample from (``queries``, ``shared_blks_hit``,
  ``shared_blks_read``, ``idx_blks_hit``, ``idx_blks_read``, ``database_stats_reset``).
* ``request_metrics`` and ``app_metrics`` gain ``target`` (NULL: the database's own), so an
  application may write them to a central repository.

What is stored converts: each snapshot's target is its database; the totals are summed from its
rows; a row equal to the same entry's row in the target's previous snapshot goes, and an entry
missing from a snapshot gets a ``vanished`` row there. The downgrade converts back: every
snapshot gets a full copy of its state again (a collected sample becomes a snapshot labelled
``<target>/sample-<id>``, and a label two targets share is prefixed with its target), rows of
removed samples and ``vanished`` rows go, one text per statement stays.

Frozen: the DDL below is literal SQL (the column lists are literals of this file); a change is a
new revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import IndexDefinition, Manifest

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, its entries' key, the columns a row holds for them) as revision 0004 left them.
ROW_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "statement_stats",
        ("dbid", "queryid", "userid", "toplevel"),
        (
            "rolname", "query", "calls", "rows", "plans", "total_exec_time", "total_plan_time",
            "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied", "shared_blks_written",
            "local_blks_hit", "local_blks_read", "temp_blks_read", "temp_blks_written",
            "shared_blk_read_time", "shared_blk_write_time", "wal_records", "wal_bytes",
            "stats_since", "min_exec_time", "max_exec_time",
        ),
    ),
    (
        "table_stats",
        ("relid",),
        (
            "schemaname", "relname", "seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch",
            "n_tup_ins", "n_tup_upd", "n_tup_del", "n_tup_hot_upd", "n_live_tup", "n_dead_tup",
            "n_mod_since_analyze", "last_vacuum", "last_autovacuum", "last_analyze",
            "last_autoanalyze", "vacuum_count", "autovacuum_count", "analyze_count",
            "autoanalyze_count", "heap_blks_read", "heap_blks_hit", "idx_blks_read",
            "idx_blks_hit", "reloptions", "xid_age", "total_bytes",
        ),
    ),
    (
        "index_stats",
        ("indexrelid",),
        (
            "relid", "schemaname", "relname", "indexrelname", "idx_scan", "idx_tup_read",
            "idx_tup_fetch", "idx_blks_read", "idx_blks_hit", "is_valid", "is_ready",
            "is_unique", "is_primary", "backs_constraint", "key_columns", "include_columns",
            "predicate", "access_method", "definition", "index_bytes",
        ),
    ),
    (
        "database_stats",
        ("datid",),
        (
            "datname", "numbackends", "xact_commit", "xact_rollback", "blks_read", "blks_hit",
            "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted",
            "conflicts", "temp_files", "temp_bytes", "deadlocks", "blk_read_time",
            "blk_write_time", "stats_reset", "xid_age", "database_bytes", "sessions",
        ),
    ),
)  # fmt: skip
# Their primary keys as revision 0002 made them (the downgrade puts them back).
OLD_KEYS = {
    "statement_stats": "snapshot_id, dbid, userid, queryid, toplevel",
    "table_stats": "snapshot_id, relid",
    "index_stats": "snapshot_id, indexrelid",
    "database_stats": "snapshot_id",
}


def _same_entry(key: Sequence[str], a: str, b: str) -> str:
    return " AND ".join(f"{b}.{column} = {a}.{column}" for column in ("target", *key))


def _listed(columns: Sequence[str], prefix: str) -> str:
    return ", ".join(f"{prefix}.{column}" for column in columns)


# -- upgrade ---------------------------------------------------------------------------------------

SNAPSHOTS_UP: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.snapshots
    ADD COLUMN target TEXT,
    ADD COLUMN interval_seconds FLOAT,
    ADD COLUMN rollup_seconds FLOAT,
    ADD COLUMN xid_now BIGINT,
    ADD COLUMN queries BIGINT,
    ADD COLUMN shared_blks_hit BIGINT,
    ADD COLUMN shared_blks_read BIGINT,
    ADD COLUMN idx_blks_hit BIGINT,
    ADD COLUMN idx_blks_read BIGINT,
    ADD COLUMN database_stats_reset TIMESTAMP WITH TIME ZONE,
    ALTER COLUMN label DROP NOT NULL""",
    # Each snapshot's target is its database; its sums, from its full rows (as dbtools'
    # dashboard summed them: top-level statements, transaction control left out of the
    # queries; the application's indexes).
    r"""UPDATE perf_monitoring.snapshots s SET
    target = s.database_name,
    queries = (SELECT coalesce(sum(r.calls), 0) FROM perf_monitoring.statement_stats r
               WHERE r.snapshot_id = s.id AND r.toplevel AND NOT EXISTS (
                   SELECT FROM perf_monitoring.statement_texts x
                   WHERE x.dbid = r.dbid AND x.queryid = r.queryid
                     AND x.query ~* '^\s*(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release|prepare\s+transaction)\y')),
    shared_blks_hit = (SELECT coalesce(sum(r.shared_blks_hit), 0)
                       FROM perf_monitoring.statement_stats r
                       WHERE r.snapshot_id = s.id AND r.toplevel),
    shared_blks_read = (SELECT coalesce(sum(r.shared_blks_read), 0)
                        FROM perf_monitoring.statement_stats r
                        WHERE r.snapshot_id = s.id AND r.toplevel),
    idx_blks_hit = (SELECT coalesce(sum(i.idx_blks_hit), 0) FROM perf_monitoring.index_stats i
                    WHERE i.snapshot_id = s.id AND i.schemaname <> 'perf_monitoring'),
    idx_blks_read = (SELECT coalesce(sum(i.idx_blks_read), 0) FROM perf_monitoring.index_stats i
                     WHERE i.snapshot_id = s.id AND i.schemaname <> 'perf_monitoring'),
    database_stats_reset = (SELECT d.stats_reset FROM perf_monitoring.database_stats d
                            WHERE d.snapshot_id = s.id)""",
    "ALTER TABLE perf_monitoring.snapshots ALTER COLUMN target SET NOT NULL",
    "COMMENT ON COLUMN perf_monitoring.snapshots.target IS 'the monitored database the sample was read from (dbtools collect --target NAME)'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.label IS 'NULL: a sample dbtools collect took'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.interval_seconds IS 'the collection interval; NULL: a labelled snapshot'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.rollup_seconds IS 'a rolled-up sample: the period it stands for (the samples between were folded)'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.xid_now IS 'the transaction ID table ages are counted from (table_stats.frozen_xid)'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.queries IS 'sum of calls of the top-level statements, transaction control left out'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.idx_blks_hit IS 'sum over the application''s indexes (the monitoring schema left out)'",
)


def _entries_up(table: str, key: Sequence[str], values: Sequence[str]) -> tuple[str, ...]:
    """Target first; a row per change: tombstones where an entry went missing, then every row
    equal to the same entry's row in the target's previous snapshot goes."""
    columns = (*key, *values)
    extra = ",\n    ADD COLUMN frozen_xid BIGINT" if table == "table_stats" else ""
    return (
        f"""ALTER TABLE perf_monitoring.{table}
    DROP CONSTRAINT fk_{table}_snapshot_id,
    DROP CONSTRAINT pk_{table},
    ADD COLUMN target TEXT,
    ADD COLUMN vanished BOOLEAN DEFAULT false NOT NULL{extra}""",
        f"""UPDATE perf_monitoring.{table} r SET target = s.target
FROM perf_monitoring.snapshots s WHERE s.id = r.snapshot_id""",
        f"ALTER TABLE perf_monitoring.{table} ALTER COLUMN target SET NOT NULL",
        f"""INSERT INTO perf_monitoring.{table} (snapshot_id, target, {", ".join(columns)}, vanished)
SELECT s.id, s.target, {_listed(columns, "p")}, true
FROM (SELECT id, target, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
      FROM perf_monitoring.snapshots) s
JOIN perf_monitoring.{table} p ON p.snapshot_id = s.previous
WHERE NOT EXISTS (SELECT FROM perf_monitoring.{table} c
                  WHERE c.snapshot_id = s.id AND {_same_entry(key, "p", "c")})""",
        f"""DELETE FROM perf_monitoring.{table} c
USING (SELECT id, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
       FROM perf_monitoring.snapshots) s,
      perf_monitoring.{table} p
WHERE c.snapshot_id = s.id AND p.snapshot_id = s.previous AND {_same_entry(key, "c", "p")}
  AND NOT c.vanished AND NOT p.vanished
  AND ROW({_listed(values, "c")}) IS NOT DISTINCT FROM ROW({_listed(values, "p")})""",
        f"""ALTER TABLE perf_monitoring.{table}
    ADD CONSTRAINT pk_{table}_target PRIMARY KEY (target, {", ".join(key)}, snapshot_id)""",
        f"CREATE INDEX ix_{table}_sample ON perf_monitoring.{table} (target, snapshot_id)",
        f"COMMENT ON COLUMN perf_monitoring.{table}.vanished IS 'the entry is gone from this sample on'",
    )


SNAPSHOT_KEYS_UP: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.snapshots
    DROP CONSTRAINT pk_snapshots,
    DROP CONSTRAINT uq_snapshots_label,
    ADD CONSTRAINT pk_snapshots_target PRIMARY KEY (target, id),
    ADD CONSTRAINT uq_snapshots_target_label UNIQUE (target, label)""",
    "DROP INDEX perf_monitoring.ix_snapshots_taken_at",
    "CREATE INDEX ix_snapshots_target_taken_at ON perf_monitoring.snapshots (target, taken_at)",
    "COMMENT ON TABLE perf_monitoring.snapshots IS 'One row per sample of a target''s statistics (labelled: a snapshot); never a reset.'",
    "COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements entries visible to the sampling role: a row per change, valid until the entry''s next row.'",
    "COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions: a row per change.'",
    "COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index: a row per change.'",
    "COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the sampled database: a row per change.'",
    "COMMENT ON COLUMN perf_monitoring.table_stats.frozen_xid IS 'pg_class.relfrozenxid; xid_age is counted from snapshots.xid_now'",
)

TEXTS_UP: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.statement_texts
    DROP CONSTRAINT pk_statement_texts,
    ADD COLUMN target TEXT""",
    """INSERT INTO perf_monitoring.statement_texts (target, dbid, queryid, query)
SELECT DISTINCT r.target, t.dbid, t.queryid, t.query
FROM perf_monitoring.statement_texts t
JOIN perf_monitoring.statement_stats r ON r.dbid = t.dbid AND r.queryid = t.queryid
WHERE t.target IS NULL""",
    "DELETE FROM perf_monitoring.statement_texts WHERE target IS NULL",
    """ALTER TABLE perf_monitoring.statement_texts
    ALTER COLUMN target SET NOT NULL,
    ADD CONSTRAINT pk_statement_texts_target PRIMARY KEY (target, dbid, queryid)""",
    "COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement of a target; statement_stats rows refer to it by (target, dbid, queryid).'",
)

METRICS_UP: tuple[str, ...] = (
    "ALTER TABLE perf_monitoring.request_metrics ADD COLUMN target TEXT",
    "COMMENT ON COLUMN perf_monitoring.request_metrics.target IS 'the target whose requests these are; NULL: this database''s own'",
    "ALTER TABLE perf_monitoring.app_metrics ADD COLUMN target TEXT",
    "COMMENT ON COLUMN perf_monitoring.app_metrics.target IS 'the target the figure belongs to; NULL: this database''s own'",
)


def _fold_rows(table: str, key: Sequence[str]) -> str:
    """The rows of *table* in (lo, hi] that no remaining sample reads: none of the target's
    samples lies between a row and the entry's next row."""
    return f"""    DELETE /* dbtools */ FROM perf_monitoring.{table} o
    WHERE o.target = target_name AND o.snapshot_id > lo AND o.snapshot_id <= hi
      AND NOT EXISTS (
          SELECT FROM perf_monitoring.snapshots k
          WHERE k.target = target_name AND k.id >= o.snapshot_id
            AND k.id < coalesce((SELECT min(n.snapshot_id) FROM perf_monitoring.{table} n
                                 WHERE {_same_entry(key, "o", "n")}
                                   AND n.snapshot_id > o.snapshot_id), 9223372036854775807));
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    -- a vanished row with nothing before it says nothing
    DELETE /* dbtools */ FROM perf_monitoring.{table} o
    WHERE o.target = target_name AND o.vanished AND o.snapshot_id <= hi
      AND NOT EXISTS (SELECT FROM perf_monitoring.{table} p
                      WHERE {_same_entry(key, "o", "p")} AND p.snapshot_id < o.snapshot_id);
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
"""


FOLD_SAMPLES = (
    """CREATE FUNCTION perf_monitoring.fold_samples(target_name text, sample_ids bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
    found bigint;
    removed bigint := 0;
BEGIN
    -- Rows of a removed sample that a later sample reads stay: only the rows between the
    -- sample kept before the first removed one and the last removed one can fall out of use.
    DELETE /* dbtools */ FROM perf_monitoring.snapshots
    WHERE target = target_name AND id = ANY (sample_ids);
    SELECT max(i), min(i) INTO hi, lo FROM unnest(sample_ids) i;
    SELECT coalesce(max(id), 0) INTO lo FROM perf_monitoring.snapshots
    WHERE target = target_name AND id < lo;
"""
    + "".join(_fold_rows(table, key) for table, key, _ in ROW_TABLES)
    + """    DELETE /* dbtools */ FROM perf_monitoring.statement_texts t
    WHERE t.target = target_name
      AND NOT EXISTS (SELECT FROM perf_monitoring.statement_stats r
                      WHERE r.target = t.target AND r.dbid = t.dbid AND r.queryid = t.queryid);
    GET DIAGNOSTICS found = ROW_COUNT;
    RETURN removed + found;
END
$$"""
)

FUNCTIONS_UP: tuple[str, ...] = (
    FOLD_SAMPLES,
    """CREATE OR REPLACE FUNCTION perf_monitoring.purge_older_than(days integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH s AS (
        SELECT perf_monitoring.fold_samples(target, array_agg(id)) AS removed
        FROM perf_monitoring.snapshots
        WHERE taken_at < now() - make_interval(days => days) GROUP BY target
    ), r AS (
        DELETE FROM perf_monitoring.request_metrics
        WHERE bucket_start < now() - make_interval(days => days) RETURNING 1
    ), a AS (
        DELETE FROM perf_monitoring.app_metrics
        WHERE recorded_at < now() - make_interval(days => days) RETURNING 1
    )
    SELECT coalesce((SELECT sum(removed) FROM s), 0)::bigint
           + (SELECT count(*) FROM r) + (SELECT count(*) FROM a)
$$""",
)

UPGRADE: tuple[str, ...] = (
    *SNAPSHOTS_UP,
    *(statement for table, key, values in ROW_TABLES for statement in _entries_up(table, key, values)),
    *SNAPSHOT_KEYS_UP,
    *TEXTS_UP,
    *METRICS_UP,
    *FUNCTIONS_UP,
)  # fmt: skip

# -- downgrade -------------------------------------------------------------------------------------

FUNCTIONS_DOWN: tuple[str, ...] = (
    # 0002's retention, as it was
    """CREATE OR REPLACE FUNCTION perf_monitoring.purge_older_than(days integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH s AS (
        DELETE FROM perf_monitoring.snapshots
        WHERE taken_at < now() - make_interval(days => days) RETURNING 1
    ), r AS (
        DELETE FROM perf_monitoring.request_metrics
        WHERE bucket_start < now() - make_interval(days => days) RETURNING 1
    ), a AS (
        DELETE FROM perf_monitoring.app_metrics
        WHERE recorded_at < now() - make_interval(days => days) RETURNING 1
    )
    SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM r) + (SELECT count(*) FROM a)
$$""",
    "DROP FUNCTION perf_monitoring.fold_samples(text, bigint[])",
    "ALTER TABLE perf_monitoring.app_metrics DROP COLUMN target",
    "ALTER TABLE perf_monitoring.request_metrics DROP COLUMN target",
)

TEXTS_DOWN: tuple[str, ...] = (
    # one text per statement again: the first target's
    """DELETE FROM perf_monitoring.statement_texts t
USING perf_monitoring.statement_texts u
WHERE u.dbid = t.dbid AND u.queryid = t.queryid AND u.target < t.target""",
    """ALTER TABLE perf_monitoring.statement_texts
    DROP CONSTRAINT pk_statement_texts_target,
    DROP COLUMN target,
    ADD CONSTRAINT pk_statement_texts PRIMARY KEY (dbid, queryid)""",
    "COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement; statement_stats rows refer to it by (dbid, queryid).'",
)

SNAPSHOT_LABELS_DOWN = """UPDATE perf_monitoring.snapshots s SET label = CASE
    WHEN s.label IS NULL THEN format('%s/sample-%s', s.target, s.id)
    WHEN (SELECT count(*) FROM perf_monitoring.snapshots x WHERE x.label = s.label) > 1
        THEN format('%s/%s', s.target, s.label)
    ELSE s.label END"""

SNAPSHOT_KEYS_DOWN: tuple[str, ...] = (
    SNAPSHOT_LABELS_DOWN,
    """ALTER TABLE perf_monitoring.snapshots
    DROP CONSTRAINT uq_snapshots_target_label,
    DROP CONSTRAINT pk_snapshots_target,
    ADD CONSTRAINT pk_snapshots PRIMARY KEY (id),
    ADD CONSTRAINT uq_snapshots_label UNIQUE (label)""",
    # an empty comment removes it (sqlglot, which classifies the statement, cannot read IS NULL)
    "COMMENT ON COLUMN perf_monitoring.snapshots.label IS ''",
    "COMMENT ON TABLE perf_monitoring.snapshots IS 'One consistent copy of PostgreSQL''s statistics, labelled; never a reset.'",
    "COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements rows visible to the snapshotting role, per snapshot.'",
    "COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions, per snapshot.'",
    "COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index, per snapshot.'",
    "COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the snapshotted database, per snapshot.'",
)


def _entries_down(table: str, key: Sequence[str], values: Sequence[str]) -> tuple[str, ...]:
    """A full copy of each snapshot's state again: each row repeated at every later sample of
    its target before the entry's next row; vanished rows and rows of removed samples go."""
    columns = (*key, *values)
    statements = [
        f"""INSERT INTO perf_monitoring.{table} (snapshot_id, target, {", ".join(columns)}{", frozen_xid" if table == "table_stats" else ""})
SELECT s.id, r.target, {_listed(columns, "r")}{", r.frozen_xid" if table == "table_stats" else ""}
FROM (SELECT c.*, lead(c.snapshot_id) OVER (PARTITION BY {_listed(("target", *key), "c")}
                                            ORDER BY c.snapshot_id) AS next_id
      FROM perf_monitoring.{table} c) r
JOIN perf_monitoring.snapshots s
  ON s.target = r.target AND s.id > r.snapshot_id AND (r.next_id IS NULL OR s.id < r.next_id)
WHERE NOT r.vanished""",
        f"""DELETE FROM perf_monitoring.{table} r
WHERE r.vanished OR NOT EXISTS (SELECT FROM perf_monitoring.snapshots s
                                WHERE s.target = r.target AND s.id = r.snapshot_id)""",
        # by name, not as a side effect of dropping its column (a downgrade plan lists it)
        f"DROP INDEX perf_monitoring.ix_{table}_sample",
    ]
    if table == "table_stats":
        # age(relfrozenxid) as PostgreSQL counts it, from the sample's transaction ID
        statements.append(
            """UPDATE perf_monitoring.table_stats t SET xid_age = CASE
    WHEN t.frozen_xid < 3 THEN 2147483647
    WHEN (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 >= 2147483648
        THEN (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 - 4294967296
    ELSE (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 END
FROM perf_monitoring.snapshots s
WHERE s.id = t.snapshot_id AND t.frozen_xid IS NOT NULL AND s.xid_now IS NOT NULL"""
        )
    drop_frozen = ",\n    DROP COLUMN frozen_xid" if table == "table_stats" else ""
    statements += [
        f"""ALTER TABLE perf_monitoring.{table}
    DROP CONSTRAINT pk_{table}_target,
    DROP COLUMN vanished,
    DROP COLUMN target{drop_frozen},
    ADD CONSTRAINT pk_{table} PRIMARY KEY ({OLD_KEYS[table]}),
    ADD CONSTRAINT fk_{table}_snapshot_id FOREIGN KEY (snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE""",
    ]
    return tuple(statements)


SNAPSHOTS_DOWN = """ALTER TABLE perf_monitoring.snapshots
    ALTER COLUMN label SET NOT NULL,
    DROP COLUMN database_stats_reset,
    DROP COLUMN idx_blks_read,
    DROP COLUMN idx_blks_hit,
    DROP COLUMN shared_blks_read,
    DROP COLUMN shared_blks_hit,
    DROP COLUMN queries,
    DROP COLUMN xid_now,
    DROP COLUMN rollup_seconds,
    DROP COLUMN interval_seconds,
    DROP COLUMN target"""


SNAPSHOT_INDEX_DOWN: tuple[str, ...] = (
    "DROP INDEX perf_monitoring.ix_snapshots_target_taken_at",
    "CREATE INDEX ix_snapshots_taken_at ON perf_monitoring.snapshots (taken_at)",
)

# What the upgrade created is removed in the reverse order.
DOWNGRADE: tuple[str, ...] = (
    *FUNCTIONS_DOWN,
    *TEXTS_DOWN,
    *SNAPSHOT_INDEX_DOWN,
    # every row table's full copies first (they read the samples' target and ids) ...
    *(
        s
        for table, key, values in reversed(ROW_TABLES)
        for s in _entries_down(table, key, values)[:-1]
    ),
    # ... then the snapshots' old keys, which the row tables' foreign keys reference
    *SNAPSHOT_KEYS_DOWN,
    *(_entries_down(table, key, values)[-1] for table, key, values in reversed(ROW_TABLES)),
    SNAPSHOTS_DOWN,
)

# What this revision creates (tests/test_manifests.py compares it with the catalog).
MANIFEST = Manifest(
    indexes=tuple(
        IndexDefinition(definition)
        for definition in (
            "CREATE UNIQUE INDEX pk_snapshots_target ON perf_monitoring.snapshots "
            "USING btree (target, id)",
            "CREATE UNIQUE INDEX uq_snapshots_target_label ON perf_monitoring.snapshots "
            "USING btree (target, label)",
            "CREATE INDEX ix_snapshots_target_taken_at ON perf_monitoring.snapshots "
            "USING btree (target, taken_at)",
            "CREATE UNIQUE INDEX pk_statement_stats_target ON perf_monitoring.statement_stats "
            "USING btree (target, dbid, queryid, userid, toplevel, snapshot_id)",
            "CREATE INDEX ix_statement_stats_sample ON perf_monitoring.statement_stats "
            "USING btree (target, snapshot_id)",
            "CREATE UNIQUE INDEX pk_table_stats_target ON perf_monitoring.table_stats "
            "USING btree (target, relid, snapshot_id)",
            "CREATE INDEX ix_table_stats_sample ON perf_monitoring.table_stats "
            "USING btree (target, snapshot_id)",
            "CREATE UNIQUE INDEX pk_index_stats_target ON perf_monitoring.index_stats "
            "USING btree (target, indexrelid, snapshot_id)",
            "CREATE INDEX ix_index_stats_sample ON perf_monitoring.index_stats "
            "USING btree (target, snapshot_id)",
            "CREATE UNIQUE INDEX pk_database_stats_target ON perf_monitoring.database_stats "
            "USING btree (target, datid, snapshot_id)",
            "CREATE INDEX ix_database_stats_sample ON perf_monitoring.database_stats "
            "USING btree (target, snapshot_id)",
            "CREATE UNIQUE INDEX pk_statement_texts_target ON perf_monitoring.statement_texts "
            "USING btree (target, dbid, queryid)",
        )
    ),
    functions=("perf_monitoring.fold_samples(text, bigint[])",),
    dropped=tuple(
        f"perf_monitoring.{name}"
        for name in (
            "pk_snapshots",
            "uq_snapshots_label",
            "ix_snapshots_taken_at",
            "pk_statement_stats",
            "pk_table_stats",
            "pk_index_stats",
            "pk_database_stats",
            "pk_statement_texts",
        )
    ),
)


def upgrade() -> None:
    # dbtools-lint: ignore adding-not-nullable-field,adding-serial-primary-key-field,ban-drop-constraint,ban-drop-not-null,disallowed-unique-constraint,require-concurrent-index-creation,require-concurrent-index-deletion in upgrade because the conversion is one transaction over monitoring tables only dbtools reads and writes: their keys and indexes are rebuilt inside it, and a sample waits for the revision's locks (its lock_timeout) or is retried next round
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore adding-foreign-key-constraint,adding-not-nullable-field,adding-serial-primary-key-field,ban-drop-column,ban-drop-constraint,ban-drop-function,disallowed-unique-constraint,require-concurrent-index-creation,require-concurrent-index-deletion in downgrade because it converts monitoring tables only dbtools reads and writes back to revision 0004 in one transaction, dropping exactly what this revision added; `dbtools downgrade-plan` exports their rows first
    for statement in DOWNGRADE:
        op.execute(statement)
