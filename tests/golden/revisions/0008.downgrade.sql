SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0008 -> 0007

DROP TRIGGER database_stats_entries_removed ON perf_monitoring.database_stats;

DROP TRIGGER database_stats_entries_added ON perf_monitoring.database_stats;

DROP FUNCTION perf_monitoring.database_stats_entries_removed();

DROP FUNCTION perf_monitoring.database_stats_entries_added();

DROP TABLE perf_monitoring.database_stats_entries;

DROP TRIGGER index_stats_entries_removed ON perf_monitoring.index_stats;

DROP TRIGGER index_stats_entries_added ON perf_monitoring.index_stats;

DROP FUNCTION perf_monitoring.index_stats_entries_removed();

DROP FUNCTION perf_monitoring.index_stats_entries_added();

DROP TABLE perf_monitoring.index_stats_entries;

DROP TRIGGER table_stats_entries_removed ON perf_monitoring.table_stats;

DROP TRIGGER table_stats_entries_added ON perf_monitoring.table_stats;

DROP FUNCTION perf_monitoring.table_stats_entries_removed();

DROP FUNCTION perf_monitoring.table_stats_entries_added();

DROP TABLE perf_monitoring.table_stats_entries;

DROP TRIGGER statement_stats_entries_removed ON perf_monitoring.statement_stats;

DROP TRIGGER statement_stats_entries_added ON perf_monitoring.statement_stats;

DROP FUNCTION perf_monitoring.statement_stats_entries_removed();

DROP FUNCTION perf_monitoring.statement_stats_entries_added();

DROP TABLE perf_monitoring.statement_stats_entries;

DROP FUNCTION perf_monitoring.rewrite_sample_day(date);

DROP FUNCTION perf_monitoring.drop_sample_days(date);

DROP FUNCTION perf_monitoring.add_sample_days(date, date);

CREATE TABLE perf_monitoring.database_stats_0007 (
    snapshot_id bigint CONSTRAINT database_stats_snapshot_id_not_null NOT NULL,
    datid oid CONSTRAINT database_stats_datid_not_null NOT NULL,
    datname text CONSTRAINT database_stats_datname_not_null NOT NULL,
    numbackends bigint DEFAULT 0 CONSTRAINT database_stats_numbackends_not_null NOT NULL,
    xact_commit bigint DEFAULT 0 CONSTRAINT database_stats_xact_commit_not_null NOT NULL,
    xact_rollback bigint DEFAULT 0 CONSTRAINT database_stats_xact_rollback_not_null NOT NULL,
    blks_read bigint DEFAULT 0 CONSTRAINT database_stats_blks_read_not_null NOT NULL,
    blks_hit bigint DEFAULT 0 CONSTRAINT database_stats_blks_hit_not_null NOT NULL,
    tup_returned bigint DEFAULT 0 CONSTRAINT database_stats_tup_returned_not_null NOT NULL,
    tup_fetched bigint DEFAULT 0 CONSTRAINT database_stats_tup_fetched_not_null NOT NULL,
    tup_inserted bigint DEFAULT 0 CONSTRAINT database_stats_tup_inserted_not_null NOT NULL,
    tup_updated bigint DEFAULT 0 CONSTRAINT database_stats_tup_updated_not_null NOT NULL,
    tup_deleted bigint DEFAULT 0 CONSTRAINT database_stats_tup_deleted_not_null NOT NULL,
    conflicts bigint DEFAULT 0 CONSTRAINT database_stats_conflicts_not_null NOT NULL,
    temp_files bigint DEFAULT 0 CONSTRAINT database_stats_temp_files_not_null NOT NULL,
    temp_bytes bigint DEFAULT 0 CONSTRAINT database_stats_temp_bytes_not_null NOT NULL,
    deadlocks bigint DEFAULT 0 CONSTRAINT database_stats_deadlocks_not_null NOT NULL,
    blk_read_time double precision DEFAULT 0 CONSTRAINT database_stats_blk_read_time_not_null NOT NULL,
    blk_write_time double precision DEFAULT 0 CONSTRAINT database_stats_blk_write_time_not_null NOT NULL,
    stats_reset timestamp with time zone,
    xid_age bigint,
    database_bytes bigint,
    sessions bigint,
    target text CONSTRAINT database_stats_target_not_null NOT NULL,
    vanished boolean DEFAULT false CONSTRAINT database_stats_vanished_not_null NOT NULL
);

INSERT INTO perf_monitoring.database_stats_0007 (snapshot_id, datid, datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset, xid_age, database_bytes, sessions, target, vanished)
SELECT snapshot_id, datid, datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset, xid_age, database_bytes, sessions, target, vanished FROM perf_monitoring.database_stats;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.database_stats'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.database_stats_0007 TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.database_stats;

ALTER TABLE perf_monitoring.database_stats_0007 RENAME TO database_stats;

ALTER TABLE perf_monitoring.database_stats
    ADD CONSTRAINT pk_database_stats_target PRIMARY KEY (target, datid, snapshot_id);

CREATE INDEX ix_database_stats_sample ON perf_monitoring.database_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the sampled database: a row per change.';

COMMENT ON COLUMN perf_monitoring.database_stats.sessions IS 'pg_stat_database.sessions (PostgreSQL 14+)';

COMMENT ON COLUMN perf_monitoring.database_stats.vanished IS 'the entry is gone from this sample on';

CREATE TABLE perf_monitoring.index_stats_0007 (
    snapshot_id bigint CONSTRAINT index_stats_snapshot_id_not_null NOT NULL,
    indexrelid oid CONSTRAINT index_stats_indexrelid_not_null NOT NULL,
    relid oid CONSTRAINT index_stats_relid_not_null NOT NULL,
    schemaname text CONSTRAINT index_stats_schemaname_not_null NOT NULL,
    relname text CONSTRAINT index_stats_relname_not_null NOT NULL,
    indexrelname text CONSTRAINT index_stats_indexrelname_not_null NOT NULL,
    idx_scan bigint DEFAULT 0 CONSTRAINT index_stats_idx_scan_not_null NOT NULL,
    idx_tup_read bigint DEFAULT 0 CONSTRAINT index_stats_idx_tup_read_not_null NOT NULL,
    idx_tup_fetch bigint DEFAULT 0 CONSTRAINT index_stats_idx_tup_fetch_not_null NOT NULL,
    idx_blks_read bigint DEFAULT 0 CONSTRAINT index_stats_idx_blks_read_not_null NOT NULL,
    idx_blks_hit bigint DEFAULT 0 CONSTRAINT index_stats_idx_blks_hit_not_null NOT NULL,
    is_valid boolean CONSTRAINT index_stats_is_valid_not_null NOT NULL,
    is_ready boolean CONSTRAINT index_stats_is_ready_not_null NOT NULL,
    is_unique boolean CONSTRAINT index_stats_is_unique_not_null NOT NULL,
    is_primary boolean CONSTRAINT index_stats_is_primary_not_null NOT NULL,
    backs_constraint boolean CONSTRAINT index_stats_backs_constraint_not_null NOT NULL,
    key_columns text[] CONSTRAINT index_stats_key_columns_not_null NOT NULL,
    include_columns text[] CONSTRAINT index_stats_include_columns_not_null NOT NULL,
    predicate text,
    access_method text CONSTRAINT index_stats_access_method_not_null NOT NULL,
    definition text CONSTRAINT index_stats_definition_not_null NOT NULL,
    index_bytes bigint,
    target text CONSTRAINT index_stats_target_not_null NOT NULL,
    vanished boolean DEFAULT false CONSTRAINT index_stats_vanished_not_null NOT NULL
);

INSERT INTO perf_monitoring.index_stats_0007 (snapshot_id, indexrelid, relid, schemaname, relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit, is_valid, is_ready, is_unique, is_primary, backs_constraint, key_columns, include_columns, predicate, access_method, definition, index_bytes, target, vanished)
SELECT snapshot_id, indexrelid, relid, schemaname, relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit, is_valid, is_ready, is_unique, is_primary, backs_constraint, key_columns, include_columns, predicate, access_method, definition, index_bytes, target, vanished FROM perf_monitoring.index_stats;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.index_stats'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.index_stats_0007 TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.index_stats;

ALTER TABLE perf_monitoring.index_stats_0007 RENAME TO index_stats;

ALTER TABLE perf_monitoring.index_stats
    ADD CONSTRAINT pk_index_stats_target PRIMARY KEY (target, indexrelid, snapshot_id);

CREATE INDEX ix_index_stats_sample ON perf_monitoring.index_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index: a row per change.';

COMMENT ON COLUMN perf_monitoring.index_stats.vanished IS 'the entry is gone from this sample on';

CREATE TABLE perf_monitoring.table_stats_0007 (
    snapshot_id bigint CONSTRAINT table_stats_snapshot_id_not_null NOT NULL,
    relid oid CONSTRAINT table_stats_relid_not_null NOT NULL,
    schemaname text CONSTRAINT table_stats_schemaname_not_null NOT NULL,
    relname text CONSTRAINT table_stats_relname_not_null NOT NULL,
    seq_scan bigint DEFAULT 0 CONSTRAINT table_stats_seq_scan_not_null NOT NULL,
    seq_tup_read bigint DEFAULT 0 CONSTRAINT table_stats_seq_tup_read_not_null NOT NULL,
    idx_scan bigint DEFAULT 0 CONSTRAINT table_stats_idx_scan_not_null NOT NULL,
    idx_tup_fetch bigint DEFAULT 0 CONSTRAINT table_stats_idx_tup_fetch_not_null NOT NULL,
    n_tup_ins bigint DEFAULT 0 CONSTRAINT table_stats_n_tup_ins_not_null NOT NULL,
    n_tup_upd bigint DEFAULT 0 CONSTRAINT table_stats_n_tup_upd_not_null NOT NULL,
    n_tup_del bigint DEFAULT 0 CONSTRAINT table_stats_n_tup_del_not_null NOT NULL,
    n_tup_hot_upd bigint DEFAULT 0 CONSTRAINT table_stats_n_tup_hot_upd_not_null NOT NULL,
    n_live_tup bigint DEFAULT 0 CONSTRAINT table_stats_n_live_tup_not_null NOT NULL,
    n_dead_tup bigint DEFAULT 0 CONSTRAINT table_stats_n_dead_tup_not_null NOT NULL,
    n_mod_since_analyze bigint DEFAULT 0 CONSTRAINT table_stats_n_mod_since_analyze_not_null NOT NULL,
    last_vacuum timestamp with time zone,
    last_autovacuum timestamp with time zone,
    last_analyze timestamp with time zone,
    last_autoanalyze timestamp with time zone,
    vacuum_count bigint DEFAULT 0 CONSTRAINT table_stats_vacuum_count_not_null NOT NULL,
    autovacuum_count bigint DEFAULT 0 CONSTRAINT table_stats_autovacuum_count_not_null NOT NULL,
    analyze_count bigint DEFAULT 0 CONSTRAINT table_stats_analyze_count_not_null NOT NULL,
    autoanalyze_count bigint DEFAULT 0 CONSTRAINT table_stats_autoanalyze_count_not_null NOT NULL,
    heap_blks_read bigint DEFAULT 0 CONSTRAINT table_stats_heap_blks_read_not_null NOT NULL,
    heap_blks_hit bigint DEFAULT 0 CONSTRAINT table_stats_heap_blks_hit_not_null NOT NULL,
    idx_blks_read bigint DEFAULT 0 CONSTRAINT table_stats_idx_blks_read_not_null NOT NULL,
    idx_blks_hit bigint DEFAULT 0 CONSTRAINT table_stats_idx_blks_hit_not_null NOT NULL,
    reloptions text[],
    xid_age bigint,
    total_bytes bigint,
    target text CONSTRAINT table_stats_target_not_null NOT NULL,
    vanished boolean DEFAULT false CONSTRAINT table_stats_vanished_not_null NOT NULL,
    frozen_xid bigint
);

INSERT INTO perf_monitoring.table_stats_0007 (snapshot_id, relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit, reloptions, xid_age, total_bytes, target, vanished, frozen_xid)
SELECT snapshot_id, relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit, reloptions, xid_age, total_bytes, target, vanished, frozen_xid FROM perf_monitoring.table_stats;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.table_stats'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.table_stats_0007 TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.table_stats;

ALTER TABLE perf_monitoring.table_stats_0007 RENAME TO table_stats;

ALTER TABLE perf_monitoring.table_stats
    ADD CONSTRAINT pk_table_stats_target PRIMARY KEY (target, relid, snapshot_id);

CREATE INDEX ix_table_stats_sample ON perf_monitoring.table_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions: a row per change.';

COMMENT ON COLUMN perf_monitoring.table_stats.vanished IS 'the entry is gone from this sample on';

COMMENT ON COLUMN perf_monitoring.table_stats.frozen_xid IS 'pg_class.relfrozenxid; xid_age is counted from snapshots.xid_now';

CREATE TABLE perf_monitoring.statement_stats_0007 (
    snapshot_id bigint CONSTRAINT statement_stats_snapshot_id_not_null NOT NULL,
    userid oid CONSTRAINT statement_stats_userid_not_null NOT NULL,
    rolname text,
    dbid oid CONSTRAINT statement_stats_dbid_not_null NOT NULL,
    queryid bigint CONSTRAINT statement_stats_queryid_not_null NOT NULL,
    toplevel boolean CONSTRAINT statement_stats_toplevel_not_null NOT NULL,
    query text,
    calls bigint DEFAULT 0 CONSTRAINT statement_stats_calls_not_null NOT NULL,
    rows bigint DEFAULT 0 CONSTRAINT statement_stats_rows_not_null NOT NULL,
    plans bigint DEFAULT 0 CONSTRAINT statement_stats_plans_not_null NOT NULL,
    total_exec_time double precision DEFAULT 0 CONSTRAINT statement_stats_total_exec_time_not_null NOT NULL,
    total_plan_time double precision DEFAULT 0 CONSTRAINT statement_stats_total_plan_time_not_null NOT NULL,
    shared_blks_hit bigint DEFAULT 0 CONSTRAINT statement_stats_shared_blks_hit_not_null NOT NULL,
    shared_blks_read bigint DEFAULT 0 CONSTRAINT statement_stats_shared_blks_read_not_null NOT NULL,
    shared_blks_dirtied bigint DEFAULT 0 CONSTRAINT statement_stats_shared_blks_dirtied_not_null NOT NULL,
    shared_blks_written bigint DEFAULT 0 CONSTRAINT statement_stats_shared_blks_written_not_null NOT NULL,
    local_blks_hit bigint DEFAULT 0 CONSTRAINT statement_stats_local_blks_hit_not_null NOT NULL,
    local_blks_read bigint DEFAULT 0 CONSTRAINT statement_stats_local_blks_read_not_null NOT NULL,
    temp_blks_read bigint DEFAULT 0 CONSTRAINT statement_stats_temp_blks_read_not_null NOT NULL,
    temp_blks_written bigint DEFAULT 0 CONSTRAINT statement_stats_temp_blks_written_not_null NOT NULL,
    shared_blk_read_time double precision DEFAULT 0 CONSTRAINT statement_stats_shared_blk_read_time_not_null NOT NULL,
    shared_blk_write_time double precision DEFAULT 0 CONSTRAINT statement_stats_shared_blk_write_time_not_null NOT NULL,
    wal_records bigint DEFAULT 0 CONSTRAINT statement_stats_wal_records_not_null NOT NULL,
    wal_bytes bigint DEFAULT 0 CONSTRAINT statement_stats_wal_bytes_not_null NOT NULL,
    stats_since timestamp with time zone,
    min_exec_time double precision,
    max_exec_time double precision,
    target text CONSTRAINT statement_stats_target_not_null NOT NULL,
    vanished boolean DEFAULT false CONSTRAINT statement_stats_vanished_not_null NOT NULL
);

INSERT INTO perf_monitoring.statement_stats_0007 (snapshot_id, userid, rolname, dbid, queryid, toplevel, query, calls, rows, plans, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, temp_blks_read, temp_blks_written, shared_blk_read_time, shared_blk_write_time, wal_records, wal_bytes, stats_since, min_exec_time, max_exec_time, target, vanished)
SELECT snapshot_id, userid, rolname, dbid, queryid, toplevel, query, calls, rows, plans, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, temp_blks_read, temp_blks_written, shared_blk_read_time, shared_blk_write_time, wal_records, wal_bytes, stats_since, min_exec_time, max_exec_time, target, vanished FROM perf_monitoring.statement_stats;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.statement_stats'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.statement_stats_0007 TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.statement_stats;

ALTER TABLE perf_monitoring.statement_stats_0007 RENAME TO statement_stats;

ALTER TABLE perf_monitoring.statement_stats
    ADD CONSTRAINT pk_statement_stats_target PRIMARY KEY (target, dbid, queryid, userid, toplevel, snapshot_id);

CREATE INDEX ix_statement_stats_sample ON perf_monitoring.statement_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements entries visible to the sampling role: a row per change, valid until the entry''s next row.';

COMMENT ON COLUMN perf_monitoring.statement_stats.query IS 'NULL since revision 0004: the text is in statement_texts, once per statement';

COMMENT ON COLUMN perf_monitoring.statement_stats.stats_since IS 'when this entry started counting (extension 1.11+)';

COMMENT ON COLUMN perf_monitoring.statement_stats.min_exec_time IS 'only shrinks while the entry lives: a rise means it was reset';

COMMENT ON COLUMN perf_monitoring.statement_stats.max_exec_time IS 'only grows while the entry lives: a fall means it was reset';

COMMENT ON COLUMN perf_monitoring.statement_stats.vanished IS 'the entry is gone from this sample on';

UPDATE alembic_version SET version_num='0007' WHERE alembic_version.version_num = '0008';

COMMIT;

