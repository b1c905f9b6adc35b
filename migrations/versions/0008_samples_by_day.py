"""Samples partitioned by day: retention drops a day's rows whole instead of deleting them.

* ``statement_stats``, ``table_stats``, ``index_stats`` and ``database_stats`` are partitioned
  by ``sample_day``, the UTC day of their sample's ``taken_at`` (a row of a sample that was
  folded away takes the day of its target's next sample): one partition a day,
  ``<table>_pYYYYMMDD``, from that day to the next. Their keys stay target first, with the day
  last (``pk_<table>_day``, ``ix_<table>_day_sample``); there is no default partition, so a row
  of a day with no partition is refused (``no partition of relation … found for row``).
* ``perf_monitoring.add_sample_days(first, last)`` creates the missing partitions of those days
  (at most 32): the migration creates today's and tomorrow's, ``dbtools collect`` a day ahead.
* ``perf_monitoring.drop_sample_days(before)`` drops the partitions of the days before
  *before* once no sample of any target is left on or before them: first each target's state
  that its first remaining sample reads from older rows is carried forward into that sample
  (a row per entry at its id and day), so every window over the remaining samples sums exactly
  as before; then the texts no row refers to go. Both run as the tables' owner (SECURITY
  DEFINER, with ``lock_timeout`` 2s: dbtools retries); neither is executable by PUBLIC (the
  monitoring role is granted EXECUTE, docs/rollout.md).
* ``perf_monitoring.rewrite_sample_day(day)``: once every collected sample of *day* is rolled
  up, its partitions are rewritten (``CLUSTER`` on their keys), so that the space the folded
  rows left is returned (as the tables' owner too; not executable by PUBLIC).
* ``<table>_entries`` (one a row table, keyed ``(target, <entry key>)``): each entry's latest
  row, kept by two statement triggers on the row table (after INSERT and after DELETE, with
  transition tables; SECURITY DEFINER, so the monitoring role needs only SELECT on them). A
  target's state at its latest sample is read from them, not from every day's index; a day
  dropped takes its entries rows (vanished ones, or a gone target's) with it.

The rows convert in one transaction: each table is renamed ``<table>_0007``, the partitioned
table is created like it (columns, defaults, comments), the rows are copied with their day, the
old table goes. The downgrade converts back the same way: an unpartitioned table with the same
columns, rows, keys (``pk_<table>_target``, ``ix_<table>_sample``) and comments as revision
0007 left them. The tables are new either way: the grants roles hold on them are copied (a
DO block each).

Frozen: the DDL below is literal SQL (the column lists are literals of this file); a change is a
new revision.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import IndexDefinition, Manifest

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, its entries' key, the columns a row holds for them besides snapshot_id, target and
# vanished) as revision 0007 left them.
ROW_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "statement_stats",
        ("dbid", "queryid", "userid", "toplevel"),
        (
            "rolname", "calls", "rows", "plans", "total_exec_time", "total_plan_time",
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
            "idx_blks_hit", "reloptions", "xid_age", "total_bytes", "frozen_xid",
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
TABLE_COMMENTS = {
    "statement_stats": "pg_stat_statements entries visible to the sampling role: a row per change, valid until the entry''s next row.",
    "table_stats": "pg_stat_user_tables + pg_statio_user_tables + reloptions: a row per change.",
    "index_stats": "pg_stat_user_indexes + pg_statio_user_indexes + pg_index: a row per change.",
    "database_stats": "pg_stat_database for the sampled database: a row per change.",
}  # fmt: skip

# The four tables as revision 0007 left them (the downgrade builds them again), column by column.
TABLES_0007 = {
    "statement_stats": """    snapshot_id bigint NOT NULL,
    userid oid NOT NULL,
    rolname text,
    dbid oid NOT NULL,
    queryid bigint NOT NULL,
    toplevel boolean NOT NULL,
    query text,
    calls bigint DEFAULT 0 NOT NULL,
    rows bigint DEFAULT 0 NOT NULL,
    plans bigint DEFAULT 0 NOT NULL,
    total_exec_time double precision DEFAULT 0 NOT NULL,
    total_plan_time double precision DEFAULT 0 NOT NULL,
    shared_blks_hit bigint DEFAULT 0 NOT NULL,
    shared_blks_read bigint DEFAULT 0 NOT NULL,
    shared_blks_dirtied bigint DEFAULT 0 NOT NULL,
    shared_blks_written bigint DEFAULT 0 NOT NULL,
    local_blks_hit bigint DEFAULT 0 NOT NULL,
    local_blks_read bigint DEFAULT 0 NOT NULL,
    temp_blks_read bigint DEFAULT 0 NOT NULL,
    temp_blks_written bigint DEFAULT 0 NOT NULL,
    shared_blk_read_time double precision DEFAULT 0 NOT NULL,
    shared_blk_write_time double precision DEFAULT 0 NOT NULL,
    wal_records bigint DEFAULT 0 NOT NULL,
    wal_bytes bigint DEFAULT 0 NOT NULL,
    stats_since timestamp with time zone,
    min_exec_time double precision,
    max_exec_time double precision,
    target text NOT NULL,
    vanished boolean DEFAULT false NOT NULL""",
    "table_stats": """    snapshot_id bigint NOT NULL,
    relid oid NOT NULL,
    schemaname text NOT NULL,
    relname text NOT NULL,
    seq_scan bigint DEFAULT 0 NOT NULL,
    seq_tup_read bigint DEFAULT 0 NOT NULL,
    idx_scan bigint DEFAULT 0 NOT NULL,
    idx_tup_fetch bigint DEFAULT 0 NOT NULL,
    n_tup_ins bigint DEFAULT 0 NOT NULL,
    n_tup_upd bigint DEFAULT 0 NOT NULL,
    n_tup_del bigint DEFAULT 0 NOT NULL,
    n_tup_hot_upd bigint DEFAULT 0 NOT NULL,
    n_live_tup bigint DEFAULT 0 NOT NULL,
    n_dead_tup bigint DEFAULT 0 NOT NULL,
    n_mod_since_analyze bigint DEFAULT 0 NOT NULL,
    last_vacuum timestamp with time zone,
    last_autovacuum timestamp with time zone,
    last_analyze timestamp with time zone,
    last_autoanalyze timestamp with time zone,
    vacuum_count bigint DEFAULT 0 NOT NULL,
    autovacuum_count bigint DEFAULT 0 NOT NULL,
    analyze_count bigint DEFAULT 0 NOT NULL,
    autoanalyze_count bigint DEFAULT 0 NOT NULL,
    heap_blks_read bigint DEFAULT 0 NOT NULL,
    heap_blks_hit bigint DEFAULT 0 NOT NULL,
    idx_blks_read bigint DEFAULT 0 NOT NULL,
    idx_blks_hit bigint DEFAULT 0 NOT NULL,
    reloptions text[],
    xid_age bigint,
    total_bytes bigint,
    target text NOT NULL,
    vanished boolean DEFAULT false NOT NULL,
    frozen_xid bigint""",
    "index_stats": """    snapshot_id bigint NOT NULL,
    indexrelid oid NOT NULL,
    relid oid NOT NULL,
    schemaname text NOT NULL,
    relname text NOT NULL,
    indexrelname text NOT NULL,
    idx_scan bigint DEFAULT 0 NOT NULL,
    idx_tup_read bigint DEFAULT 0 NOT NULL,
    idx_tup_fetch bigint DEFAULT 0 NOT NULL,
    idx_blks_read bigint DEFAULT 0 NOT NULL,
    idx_blks_hit bigint DEFAULT 0 NOT NULL,
    is_valid boolean NOT NULL,
    is_ready boolean NOT NULL,
    is_unique boolean NOT NULL,
    is_primary boolean NOT NULL,
    backs_constraint boolean NOT NULL,
    key_columns text[] NOT NULL,
    include_columns text[] NOT NULL,
    predicate text,
    access_method text NOT NULL,
    definition text NOT NULL,
    index_bytes bigint,
    target text NOT NULL,
    vanished boolean DEFAULT false NOT NULL""",
    "database_stats": """    snapshot_id bigint NOT NULL,
    datid oid NOT NULL,
    datname text NOT NULL,
    numbackends bigint DEFAULT 0 NOT NULL,
    xact_commit bigint DEFAULT 0 NOT NULL,
    xact_rollback bigint DEFAULT 0 NOT NULL,
    blks_read bigint DEFAULT 0 NOT NULL,
    blks_hit bigint DEFAULT 0 NOT NULL,
    tup_returned bigint DEFAULT 0 NOT NULL,
    tup_fetched bigint DEFAULT 0 NOT NULL,
    tup_inserted bigint DEFAULT 0 NOT NULL,
    tup_updated bigint DEFAULT 0 NOT NULL,
    tup_deleted bigint DEFAULT 0 NOT NULL,
    conflicts bigint DEFAULT 0 NOT NULL,
    temp_files bigint DEFAULT 0 NOT NULL,
    temp_bytes bigint DEFAULT 0 NOT NULL,
    deadlocks bigint DEFAULT 0 NOT NULL,
    blk_read_time double precision DEFAULT 0 NOT NULL,
    blk_write_time double precision DEFAULT 0 NOT NULL,
    stats_reset timestamp with time zone,
    xid_age bigint,
    database_bytes bigint,
    sessions bigint,
    target text NOT NULL,
    vanished boolean DEFAULT false NOT NULL""",
}  # fmt: skip
COLUMN_COMMENTS_0007 = (
    "COMMENT ON COLUMN perf_monitoring.database_stats.sessions IS 'pg_stat_database.sessions (PostgreSQL 14+)'",
    "COMMENT ON COLUMN perf_monitoring.database_stats.vanished IS 'the entry is gone from this sample on'",
    "COMMENT ON COLUMN perf_monitoring.index_stats.vanished IS 'the entry is gone from this sample on'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.query IS 'NULL since revision 0004: the text is in statement_texts, once per statement'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.stats_since IS 'when this entry started counting (extension 1.11+)'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.min_exec_time IS 'only shrinks while the entry lives: a rise means it was reset'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.max_exec_time IS 'only grows while the entry lives: a fall means it was reset'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.vanished IS 'the entry is gone from this sample on'",
    "COMMENT ON COLUMN perf_monitoring.table_stats.vanished IS 'the entry is gone from this sample on'",
    "COMMENT ON COLUMN perf_monitoring.table_stats.frozen_xid IS 'pg_class.relfrozenxid; xid_age is counted from snapshots.xid_now'",
)  # fmt: skip


def _columns_0007(table: str) -> str:
    return ", ".join(line.split()[0] for line in TABLES_0007[table].splitlines())


# A sample's UTC day.
_DAY = "(s.taken_at AT TIME ZONE 'UTC')::date"
# The day of a row: its sample's, else (a folded sample) its target's next sample's, else today.
_ROW_DAY = f"""coalesce((SELECT {_DAY} FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date)"""


def _grants_copied(source: str, table: str) -> str:
    """The grants roles hold on *source* (but its owner's), given on *table* too: the tables
    are rebuilt, and the monitoring role's grants must survive an upgrade and a downgrade."""
    return f"""DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.{source}'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.{table} TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$"""


def _same_entry(key: Sequence[str], a: str, b: str) -> str:
    return " AND ".join(f"{b}.{column} = {a}.{column}" for column in ("target", *key))


# -- upgrade ---------------------------------------------------------------------------------------

ADD_SAMPLE_DAYS = """CREATE FUNCTION perf_monitoring.add_sample_days(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
    day date;
    parent text;
    name text;
    created integer := 0;
BEGIN
    IF last_day - first_day > 31 THEN
        RAISE EXCEPTION 'at most 32 days of sample partitions at a time, not % to %',
            first_day, last_day;
    END IF;
    FOR day IN SELECT /* dbtools */ generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH parent IN ARRAY ARRAY['statement_stats', 'table_stats', 'index_stats',
                                      'database_stats'] LOOP
            name := parent || '_p' || to_char(day, 'YYYYMMDD');
            CONTINUE WHEN /* dbtools */ to_regclass(format('perf_monitoring.%I', name)) IS NOT NULL;
            BEGIN
                EXECUTE format('CREATE /* dbtools */ TABLE perf_monitoring.%I PARTITION OF perf_monitoring.%I '
                               'FOR VALUES FROM (%L) TO (%L)', name, parent, day, day + 1);
                created := created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- another session created it meanwhile
            END;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$"""


def _carry_forward(table: str, key: Sequence[str], values: Sequence[str]) -> str:
    """Each entry's state at target f's first sample, read from an older row: a row at it."""
    columns = ", ".join((*key, *values))
    keyed = ", ".join(f"o.{column}" for column in key)
    return f"""        INSERT /* dbtools */ INTO perf_monitoring.{table} (snapshot_id, sample_day, target, vanished, {columns})
        SELECT f.id, f.day, r.target, false, {", ".join(f"r.{c}" for c in (*key, *values))}
        FROM (SELECT DISTINCT ON ({keyed}) o.* FROM perf_monitoring.{table} o
              WHERE o.target = f.target AND o.snapshot_id < f.id
              ORDER BY {keyed}, o.snapshot_id DESC) r
        WHERE NOT r.vanished
          AND NOT EXISTS (SELECT FROM perf_monitoring.{table} n
                          WHERE {_same_entry(key, "r", "n")} AND n.snapshot_id = f.id);
"""


DROP_SAMPLE_DAYS = (
    """CREATE FUNCTION perf_monitoring.drop_sample_days(before date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
    f record;
    part record;
    busy boolean;
    dropped integer := 0;
BEGIN
    IF /* dbtools */ before > (now() AT TIME ZONE 'UTC')::date THEN
        RAISE EXCEPTION 'sample days from % on are not over', before;
    END IF;
    IF /* dbtools */ NOT EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE c.relnamespace = 'perf_monitoring'::regnamespace AND c.relkind = 'r'
                     AND CASE WHEN c.relname ~ '_p[0-9]{8}$'
                              THEN to_date(right(c.relname, 8), 'YYYYMMDD') < before END) THEN
        RETURN 0;
    END IF;
    -- the state each target's first sample reads from rows of those days, carried forward
    -- into it
    FOR f IN SELECT /* dbtools */ DISTINCT ON (s.target) s.target, s.id, """
    + _DAY
    + """ AS day
             FROM perf_monitoring.snapshots s ORDER BY s.target, s.id LOOP
        CONTINUE WHEN /* dbtools */ NOT ("""
    + "\n                           OR ".join(
        f"EXISTS (SELECT FROM perf_monitoring.{table} o WHERE o.target = f.target "
        "AND o.snapshot_id < f.id AND o.sample_day < before)"
        for table, _, _ in ROW_TABLES
    )
    + """);
"""
    + "".join(_carry_forward(table, key, values) for table, key, values in ROW_TABLES)
    + """    END LOOP;
    FOR part IN SELECT /* dbtools */ c.relname, p.relname AS parent,
                       to_date(right(c.relname, 8), 'YYYYMMDD') AS day
                FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                JOIN pg_class p ON p.oid = i.inhparent
                JOIN pg_namespace n ON n.oid = p.relnamespace
                WHERE n.nspname = 'perf_monitoring'
                  AND p.relname IN ('statement_stats', 'table_stats', 'index_stats',
                                    'database_stats')
                  AND c.relkind = 'r'
                  AND CASE WHEN c.relname ~ '_p[0-9]{8}$'
                           THEN to_date(right(c.relname, 8), 'YYYYMMDD') < before END
                ORDER BY 3, 1 LOOP
        -- a day some sample is still on, or whose rows a remaining sample reads, stays
        CONTINUE WHEN /* dbtools */ EXISTS (SELECT FROM perf_monitoring.snapshots s WHERE """
    + _DAY
    + """ <= part.day);
        EXECUTE format('SELECT /* dbtools */ EXISTS (SELECT FROM perf_monitoring.%I r
                        JOIN perf_monitoring.snapshots s ON s.target = r.target
                        WHERE s.id <= r.snapshot_id)', part.relname) INTO busy;
        CONTINUE WHEN busy;
        EXECUTE format('DROP /* dbtools */ TABLE perf_monitoring.%I', part.relname);
        -- what the day held last of an entry is gone (vanished, or of a target gone)
        EXECUTE format('DELETE /* dbtools */ FROM perf_monitoring.%I WHERE sample_day = %L',
                       part.parent || '_entries', part.day);
        dropped := dropped + 1;
    END LOOP;
    IF dropped > 0 THEN
        DELETE /* dbtools */ FROM perf_monitoring.statement_texts t
        WHERE NOT EXISTS (SELECT FROM perf_monitoring.statement_stats r
                          WHERE r.target = t.target AND r.dbid = t.dbid
                            AND r.queryid = t.queryid);
    END IF;
    RETURN dropped;
END
$$"""
)

REWRITE_SAMPLE_DAY = """CREATE FUNCTION perf_monitoring.rewrite_sample_day(day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
    part record;
    rewritten integer := 0;
BEGIN
    -- only once every collected sample of the day is rolled up (or gone)
    IF /* dbtools */ EXISTS (SELECT FROM perf_monitoring.snapshots s
                             WHERE s.label IS NULL AND s.rollup_seconds IS NULL
                               AND s.taken_at >= day::timestamp AT TIME ZONE 'UTC'
                               AND s.taken_at < (day + 1)::timestamp AT TIME ZONE 'UTC') THEN
        RETURN 0;
    END IF;
    FOR part IN SELECT /* dbtools */ c.relname, x.relname AS key
                FROM pg_class c
                JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
                JOIN pg_class x ON x.oid = i.indexrelid
                WHERE c.relnamespace = 'perf_monitoring'::regnamespace AND c.relispartition
                  AND c.relname IN (SELECT t || '_p' || to_char(day, 'YYYYMMDD')
                                    FROM unnest(ARRAY['statement_stats', 'table_stats',
                                                      'index_stats', 'database_stats']) t)
                ORDER BY 1 LOOP
        -- the rows in key order, without the space the folded ones left
        EXECUTE format('CLUSTER /* dbtools */ perf_monitoring.%I USING %I', part.relname, part.key);
        rewritten := rewritten + 1;
    END LOOP;
    RETURN rewritten;
END
$$"""

FUNCTIONS_UP: tuple[str, ...] = (
    ADD_SAMPLE_DAYS,
    "REVOKE ALL ON FUNCTION perf_monitoring.add_sample_days(date, date) FROM PUBLIC",
    DROP_SAMPLE_DAYS,
    "REVOKE ALL ON FUNCTION perf_monitoring.drop_sample_days(date) FROM PUBLIC",
    REWRITE_SAMPLE_DAY,
    "REVOKE ALL ON FUNCTION perf_monitoring.rewrite_sample_day(date) FROM PUBLIC",
)


def _by_day(table: str, key: Sequence[str]) -> tuple[str, ...]:
    """*table* partitioned by its sample's day, with the same rows."""
    return (
        f"ALTER TABLE perf_monitoring.{table} RENAME TO {table}_0007",
        f"""CREATE TABLE perf_monitoring.{table} (
    LIKE perf_monitoring.{table}_0007 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    sample_day DATE NOT NULL
) PARTITION BY RANGE (sample_day)""",
        f"""ALTER TABLE perf_monitoring.{table}
    ADD CONSTRAINT pk_{table}_day PRIMARY KEY (target, {", ".join(key)}, snapshot_id, sample_day)""",
        f"CREATE INDEX ix_{table}_day_sample ON perf_monitoring.{table} (target, snapshot_id)",
        f"COMMENT ON TABLE perf_monitoring.{table} IS '{TABLE_COMMENTS[table]}'",
        f"COMMENT ON COLUMN perf_monitoring.{table}.sample_day IS 'the UTC day of the sample (the partition)'",
    )


def _rows_by_day(table: str) -> tuple[str, ...]:
    return (
        f"""SELECT perf_monitoring.add_sample_days(day, day)
FROM (SELECT DISTINCT {_ROW_DAY} AS day FROM perf_monitoring.{table}_0007 o) d ORDER BY day""",
        f"""INSERT INTO perf_monitoring.{table}
SELECT o.*, {_ROW_DAY} FROM perf_monitoring.{table}_0007 o""",
        _grants_copied(f"{table}_0007", table),
        f"DROP TABLE perf_monitoring.{table}_0007",
    )


def _entries(table: str, key: Sequence[str]) -> tuple[str, ...]:
    """``<table>_entries``: each entry's latest row of *table*, kept by two statement triggers
    (as the tables' owner), so that a target's state at its latest sample is read from one
    small table instead of every day's index."""
    keyed = ", ".join(key)
    columns = [*_columns_0007(table).split(", "), "sample_day"]
    assigned = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("target", *key))
    same = _same_entry(key, "g", "r")
    return (
        f"""CREATE TABLE perf_monitoring.{table}_entries (
    LIKE perf_monitoring.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
)""",
        f"ALTER TABLE perf_monitoring.{table}_entries ADD CONSTRAINT pk_{table}_entries PRIMARY KEY (target, {keyed})",
        f"COMMENT ON TABLE perf_monitoring.{table}_entries IS 'each entry''s latest row of {table} (kept by its triggers): a target''s state at its latest sample'",
        f"""INSERT INTO perf_monitoring.{table}_entries
SELECT DISTINCT ON (target, {keyed}) * FROM perf_monitoring.{table}
ORDER BY target, {keyed}, snapshot_id DESC""",
        f"""CREATE FUNCTION perf_monitoring.{table}_entries_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT /* dbtools */ INTO perf_monitoring.{table}_entries AS e
    SELECT DISTINCT ON (target, {keyed}) * FROM added
    ORDER BY target, {keyed}, snapshot_id DESC
    ON CONFLICT (target, {keyed}) DO UPDATE SET {assigned}
    WHERE e.snapshot_id <= EXCLUDED.snapshot_id;
    RETURN NULL;
END
$$""",
        f"""CREATE FUNCTION perf_monitoring.{table}_entries_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- an entry whose latest row went: its latest remaining row, if any
    WITH gone AS (
        DELETE /* dbtools */ FROM perf_monitoring.{table}_entries e USING removed o
        WHERE {_same_entry(key, "o", "e")} AND e.snapshot_id = o.snapshot_id
        RETURNING e.target, {", ".join(f"e.{k}" for k in key)}
    )
    INSERT /* dbtools */ INTO perf_monitoring.{table}_entries
    SELECT r.* FROM gone g CROSS JOIN LATERAL (
        SELECT * FROM perf_monitoring.{table} r WHERE {same}
        ORDER BY r.snapshot_id DESC LIMIT 1) r;
    RETURN NULL;
END
$$""",
        f"""CREATE TRIGGER {table}_entries_added AFTER INSERT ON perf_monitoring.{table}
REFERENCING NEW TABLE AS added FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.{table}_entries_added()""",
        f"""CREATE TRIGGER {table}_entries_removed AFTER DELETE ON perf_monitoring.{table}
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.{table}_entries_removed()""",
    )


UPGRADE: tuple[str, ...] = (
    *(statement for table, key, _ in ROW_TABLES for statement in _by_day(table, key)),
    *FUNCTIONS_UP,
    """SELECT perf_monitoring.add_sample_days((now() AT TIME ZONE 'UTC')::date,
                                       (now() AT TIME ZONE 'UTC')::date + 1)""",
    *(statement for table, _, _ in ROW_TABLES for statement in _rows_by_day(table)),
    *(statement for table, key, _ in ROW_TABLES for statement in _entries(table, key)),
)  # fmt: skip

# -- downgrade -------------------------------------------------------------------------------------


def _not_null_named(table: str) -> str:
    """*table*'s columns, their NOT NULL constraints named as PostgreSQL 18 names those of
    *table* (built as ``<table>_0007``, then renamed; PostgreSQL 15 ignores the names)."""
    return "\n".join(
        line.replace(" NOT NULL", f" CONSTRAINT {table}_{line.split()[0]}_not_null NOT NULL")
        for line in TABLES_0007[table].splitlines()
    )


def _unpartitioned(table: str, key: Sequence[str]) -> tuple[str, ...]:
    """*table* as revision 0007 left it, with the same rows (the day column goes)."""
    columns = _columns_0007(table)
    return (
        f"CREATE TABLE perf_monitoring.{table}_0007 (\n{_not_null_named(table)}\n)",
        f"""INSERT INTO perf_monitoring.{table}_0007 ({columns})
SELECT {columns} FROM perf_monitoring.{table}""",
        _grants_copied(table, f"{table}_0007"),
        f"DROP TABLE perf_monitoring.{table}",
        f"ALTER TABLE perf_monitoring.{table}_0007 RENAME TO {table}",
        f"""ALTER TABLE perf_monitoring.{table}
    ADD CONSTRAINT pk_{table}_target PRIMARY KEY (target, {", ".join(key)}, snapshot_id)""",
        f"CREATE INDEX ix_{table}_sample ON perf_monitoring.{table} (target, snapshot_id)",
        f"COMMENT ON TABLE perf_monitoring.{table} IS '{TABLE_COMMENTS[table]}'",
        *(
            c
            for c in COLUMN_COMMENTS_0007
            if c.startswith(f"COMMENT ON COLUMN perf_monitoring.{table}.")
        ),
    )


DOWNGRADE: tuple[str, ...] = (
    *(
        statement
        for table, _, _ in reversed(ROW_TABLES)
        for statement in (
            f"DROP TRIGGER {table}_entries_removed ON perf_monitoring.{table}",
            f"DROP TRIGGER {table}_entries_added ON perf_monitoring.{table}",
            f"DROP FUNCTION perf_monitoring.{table}_entries_removed()",
            f"DROP FUNCTION perf_monitoring.{table}_entries_added()",
            f"DROP TABLE perf_monitoring.{table}_entries",
        )
    ),
    "DROP FUNCTION perf_monitoring.rewrite_sample_day(date)",
    "DROP FUNCTION perf_monitoring.drop_sample_days(date)",
    "DROP FUNCTION perf_monitoring.add_sample_days(date, date)",
    *(statement for table, key, _ in reversed(ROW_TABLES) for statement in _unpartitioned(table, key)),
)  # fmt: skip

# What this revision creates (tests/test_manifests.py compares it with the catalog; the day
# partitions, data, are not listed).
MANIFEST = Manifest(
    tables=tuple(f"perf_monitoring.{table}_entries" for table, _, _ in ROW_TABLES),
    indexes=tuple(
        IndexDefinition(
            f"CREATE UNIQUE INDEX pk_{table}_day ON ONLY perf_monitoring.{table} "
            f"USING btree (target, {', '.join(key)}, snapshot_id, sample_day)"
        )
        for table, key, _ in ROW_TABLES
    )
    + tuple(
        IndexDefinition(
            f"CREATE INDEX ix_{table}_day_sample ON ONLY perf_monitoring.{table} "
            "USING btree (target, snapshot_id)"
        )
        for table, _, _ in ROW_TABLES
    )
    + tuple(
        IndexDefinition(
            f"CREATE UNIQUE INDEX pk_{table}_entries ON perf_monitoring.{table}_entries "
            f"USING btree (target, {', '.join(key)})"
        )
        for table, key, _ in ROW_TABLES
    ),
    functions=(
        "perf_monitoring.add_sample_days(date, date)",
        "perf_monitoring.drop_sample_days(date)",
        "perf_monitoring.rewrite_sample_day(date)",
        *(
            f"perf_monitoring.{table}_entries_{event}()"
            for table, _, _ in ROW_TABLES
            for event in ("added", "removed")
        ),
    ),
    dropped=tuple(
        f"perf_monitoring.{name}"
        for table, _, _ in ROW_TABLES
        for name in (f"pk_{table}_target", f"ix_{table}_sample")
    ),
)


def upgrade() -> None:
    # dbtools-lint: ignore ban-drop-table,renaming-table in upgrade because the four monitoring tables only dbtools reads and writes are converted in one transaction: each is renamed, rebuilt partitioned with the same rows and grants (a DO block copies them), and dropped
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore adding-serial-primary-key-field,ban-drop-function,ban-drop-table,renaming-table,require-concurrent-index-creation in downgrade because it converts the four monitoring tables back to revision 0007 in one transaction: each is built unpartitioned, filled, given the same grants (a DO block), its keys built, and the partitioned one (with the day column) dropped, with the functions this revision added; `dbtools downgrade-plan` exports their rows first
    for statement in DOWNGRADE:
        op.execute(statement)
