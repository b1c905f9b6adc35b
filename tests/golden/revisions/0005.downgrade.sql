SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0005 -> 0004

CREATE OR REPLACE FUNCTION perf_monitoring.purge_older_than(days integer) RETURNS bigint
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
$$;

DROP FUNCTION perf_monitoring.fold_samples(text, bigint[]);

ALTER TABLE perf_monitoring.app_metrics DROP COLUMN target;

ALTER TABLE perf_monitoring.request_metrics DROP COLUMN target;

DELETE FROM perf_monitoring.statement_texts t
USING perf_monitoring.statement_texts u
WHERE u.dbid = t.dbid AND u.queryid = t.queryid AND u.target < t.target;

ALTER TABLE perf_monitoring.statement_texts
    DROP CONSTRAINT pk_statement_texts_target,
    DROP COLUMN target,
    ADD CONSTRAINT pk_statement_texts PRIMARY KEY (dbid, queryid);

COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement; statement_stats rows refer to it by (dbid, queryid).';

DROP INDEX perf_monitoring.ix_snapshots_target_taken_at;

CREATE INDEX ix_snapshots_taken_at ON perf_monitoring.snapshots (taken_at);

INSERT INTO perf_monitoring.database_stats (snapshot_id, target, datid, datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset, xid_age, database_bytes, sessions)
SELECT s.id, r.target, r.datid, r.datname, r.numbackends, r.xact_commit, r.xact_rollback, r.blks_read, r.blks_hit, r.tup_returned, r.tup_fetched, r.tup_inserted, r.tup_updated, r.tup_deleted, r.conflicts, r.temp_files, r.temp_bytes, r.deadlocks, r.blk_read_time, r.blk_write_time, r.stats_reset, r.xid_age, r.database_bytes, r.sessions
FROM (SELECT c.*, lead(c.snapshot_id) OVER (PARTITION BY c.target, c.datid
                                            ORDER BY c.snapshot_id) AS next_id
      FROM perf_monitoring.database_stats c) r
JOIN perf_monitoring.snapshots s
  ON s.target = r.target AND s.id > r.snapshot_id AND (r.next_id IS NULL OR s.id < r.next_id)
WHERE NOT r.vanished;

DELETE FROM perf_monitoring.database_stats r
WHERE r.vanished OR NOT EXISTS (SELECT FROM perf_monitoring.snapshots s
                                WHERE s.target = r.target AND s.id = r.snapshot_id);

DROP INDEX perf_monitoring.ix_database_stats_sample;

INSERT INTO perf_monitoring.index_stats (snapshot_id, target, indexrelid, relid, schemaname, relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit, is_valid, is_ready, is_unique, is_primary, backs_constraint, key_columns, include_columns, predicate, access_method, definition, index_bytes)
SELECT s.id, r.target, r.indexrelid, r.relid, r.schemaname, r.relname, r.indexrelname, r.idx_scan, r.idx_tup_read, r.idx_tup_fetch, r.idx_blks_read, r.idx_blks_hit, r.is_valid, r.is_ready, r.is_unique, r.is_primary, r.backs_constraint, r.key_columns, r.include_columns, r.predicate, r.access_method, r.definition, r.index_bytes
FROM (SELECT c.*, lead(c.snapshot_id) OVER (PARTITION BY c.target, c.indexrelid
                                            ORDER BY c.snapshot_id) AS next_id
      FROM perf_monitoring.index_stats c) r
JOIN perf_monitoring.snapshots s
  ON s.target = r.target AND s.id > r.snapshot_id AND (r.next_id IS NULL OR s.id < r.next_id)
WHERE NOT r.vanished;

DELETE FROM perf_monitoring.index_stats r
WHERE r.vanished OR NOT EXISTS (SELECT FROM perf_monitoring.snapshots s
                                WHERE s.target = r.target AND s.id = r.snapshot_id);

DROP INDEX perf_monitoring.ix_index_stats_sample;

INSERT INTO perf_monitoring.table_stats (snapshot_id, target, relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit, reloptions, xid_age, total_bytes, frozen_xid)
SELECT s.id, r.target, r.relid, r.schemaname, r.relname, r.seq_scan, r.seq_tup_read, r.idx_scan, r.idx_tup_fetch, r.n_tup_ins, r.n_tup_upd, r.n_tup_del, r.n_tup_hot_upd, r.n_live_tup, r.n_dead_tup, r.n_mod_since_analyze, r.last_vacuum, r.last_autovacuum, r.last_analyze, r.last_autoanalyze, r.vacuum_count, r.autovacuum_count, r.analyze_count, r.autoanalyze_count, r.heap_blks_read, r.heap_blks_hit, r.idx_blks_read, r.idx_blks_hit, r.reloptions, r.xid_age, r.total_bytes, r.frozen_xid
FROM (SELECT c.*, lead(c.snapshot_id) OVER (PARTITION BY c.target, c.relid
                                            ORDER BY c.snapshot_id) AS next_id
      FROM perf_monitoring.table_stats c) r
JOIN perf_monitoring.snapshots s
  ON s.target = r.target AND s.id > r.snapshot_id AND (r.next_id IS NULL OR s.id < r.next_id)
WHERE NOT r.vanished;

DELETE FROM perf_monitoring.table_stats r
WHERE r.vanished OR NOT EXISTS (SELECT FROM perf_monitoring.snapshots s
                                WHERE s.target = r.target AND s.id = r.snapshot_id);

DROP INDEX perf_monitoring.ix_table_stats_sample;

UPDATE perf_monitoring.table_stats t SET xid_age = CASE
    WHEN t.frozen_xid < 3 THEN 2147483647
    WHEN (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 >= 2147483648
        THEN (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 - 4294967296
    ELSE (s.xid_now - t.frozen_xid + 4294967296) % 4294967296 END
FROM perf_monitoring.snapshots s
WHERE s.id = t.snapshot_id AND t.frozen_xid IS NOT NULL AND s.xid_now IS NOT NULL;

INSERT INTO perf_monitoring.statement_stats (snapshot_id, target, dbid, queryid, userid, toplevel, rolname, query, calls, rows, plans, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, temp_blks_read, temp_blks_written, shared_blk_read_time, shared_blk_write_time, wal_records, wal_bytes, stats_since, min_exec_time, max_exec_time)
SELECT s.id, r.target, r.dbid, r.queryid, r.userid, r.toplevel, r.rolname, r.query, r.calls, r.rows, r.plans, r.total_exec_time, r.total_plan_time, r.shared_blks_hit, r.shared_blks_read, r.shared_blks_dirtied, r.shared_blks_written, r.local_blks_hit, r.local_blks_read, r.temp_blks_read, r.temp_blks_written, r.shared_blk_read_time, r.shared_blk_write_time, r.wal_records, r.wal_bytes, r.stats_since, r.min_exec_time, r.max_exec_time
FROM (SELECT c.*, lead(c.snapshot_id) OVER (PARTITION BY c.target, c.dbid, c.queryid, c.userid, c.toplevel
                                            ORDER BY c.snapshot_id) AS next_id
      FROM perf_monitoring.statement_stats c) r
JOIN perf_monitoring.snapshots s
  ON s.target = r.target AND s.id > r.snapshot_id AND (r.next_id IS NULL OR s.id < r.next_id)
WHERE NOT r.vanished;

DELETE FROM perf_monitoring.statement_stats r
WHERE r.vanished OR NOT EXISTS (SELECT FROM perf_monitoring.snapshots s
                                WHERE s.target = r.target AND s.id = r.snapshot_id);

DROP INDEX perf_monitoring.ix_statement_stats_sample;

UPDATE perf_monitoring.snapshots s SET label = CASE
    WHEN s.label IS NULL THEN format('%s/sample-%s', s.target, s.id)
    WHEN (SELECT count(*) FROM perf_monitoring.snapshots x WHERE x.label = s.label) > 1
        THEN format('%s/%s', s.target, s.label)
    ELSE s.label END;

ALTER TABLE perf_monitoring.snapshots
    DROP CONSTRAINT uq_snapshots_target_label,
    DROP CONSTRAINT pk_snapshots_target,
    ADD CONSTRAINT pk_snapshots PRIMARY KEY (id),
    ADD CONSTRAINT uq_snapshots_label UNIQUE (label);

COMMENT ON COLUMN perf_monitoring.snapshots.label IS '';

COMMENT ON TABLE perf_monitoring.snapshots IS 'One consistent copy of PostgreSQL''s statistics, labelled; never a reset.';

COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements rows visible to the snapshotting role, per snapshot.';

COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions, per snapshot.';

COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index, per snapshot.';

COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the snapshotted database, per snapshot.';

ALTER TABLE perf_monitoring.database_stats
    DROP CONSTRAINT pk_database_stats_target,
    DROP COLUMN vanished,
    DROP COLUMN target,
    ADD CONSTRAINT pk_database_stats PRIMARY KEY (snapshot_id),
    ADD CONSTRAINT fk_database_stats_snapshot_id FOREIGN KEY (snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE;

ALTER TABLE perf_monitoring.index_stats
    DROP CONSTRAINT pk_index_stats_target,
    DROP COLUMN vanished,
    DROP COLUMN target,
    ADD CONSTRAINT pk_index_stats PRIMARY KEY (snapshot_id, indexrelid),
    ADD CONSTRAINT fk_index_stats_snapshot_id FOREIGN KEY (snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE;

ALTER TABLE perf_monitoring.table_stats
    DROP CONSTRAINT pk_table_stats_target,
    DROP COLUMN vanished,
    DROP COLUMN target,
    DROP COLUMN frozen_xid,
    ADD CONSTRAINT pk_table_stats PRIMARY KEY (snapshot_id, relid),
    ADD CONSTRAINT fk_table_stats_snapshot_id FOREIGN KEY (snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE;

ALTER TABLE perf_monitoring.statement_stats
    DROP CONSTRAINT pk_statement_stats_target,
    DROP COLUMN vanished,
    DROP COLUMN target,
    ADD CONSTRAINT pk_statement_stats PRIMARY KEY (snapshot_id, dbid, userid, queryid, toplevel),
    ADD CONSTRAINT fk_statement_stats_snapshot_id FOREIGN KEY (snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE;

ALTER TABLE perf_monitoring.snapshots
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
    DROP COLUMN target;

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0005';

COMMIT;

