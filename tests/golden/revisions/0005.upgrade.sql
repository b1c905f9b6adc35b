SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0004 -> 0005

ALTER TABLE perf_monitoring.snapshots
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
    ALTER COLUMN label DROP NOT NULL;

UPDATE perf_monitoring.snapshots s SET
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
                            WHERE d.snapshot_id = s.id);

ALTER TABLE perf_monitoring.snapshots ALTER COLUMN target SET NOT NULL;

COMMENT ON COLUMN perf_monitoring.snapshots.target IS 'the monitored database the sample was read from (dbtools collect --target NAME)';

COMMENT ON COLUMN perf_monitoring.snapshots.label IS 'NULL: a sample dbtools collect took';

COMMENT ON COLUMN perf_monitoring.snapshots.interval_seconds IS 'the collection interval; NULL: a labelled snapshot';

COMMENT ON COLUMN perf_monitoring.snapshots.rollup_seconds IS 'a rolled-up sample: the period it stands for (the samples between were folded)';

COMMENT ON COLUMN perf_monitoring.snapshots.xid_now IS 'the transaction ID table ages are counted from (table_stats.frozen_xid)';

COMMENT ON COLUMN perf_monitoring.snapshots.queries IS 'sum of calls of the top-level statements, transaction control left out';

COMMENT ON COLUMN perf_monitoring.snapshots.idx_blks_hit IS 'sum over the application''s indexes (the monitoring schema left out)';

ALTER TABLE perf_monitoring.statement_stats
    DROP CONSTRAINT fk_statement_stats_snapshot_id,
    DROP CONSTRAINT pk_statement_stats,
    ADD COLUMN target TEXT,
    ADD COLUMN vanished BOOLEAN DEFAULT false NOT NULL;

UPDATE perf_monitoring.statement_stats r SET target = s.target
FROM perf_monitoring.snapshots s WHERE s.id = r.snapshot_id;

ALTER TABLE perf_monitoring.statement_stats ALTER COLUMN target SET NOT NULL;

INSERT INTO perf_monitoring.statement_stats (snapshot_id, target, dbid, queryid, userid, toplevel, rolname, query, calls, rows, plans, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, temp_blks_read, temp_blks_written, shared_blk_read_time, shared_blk_write_time, wal_records, wal_bytes, stats_since, min_exec_time, max_exec_time, vanished)
SELECT s.id, s.target, p.dbid, p.queryid, p.userid, p.toplevel, p.rolname, p.query, p.calls, p.rows, p.plans, p.total_exec_time, p.total_plan_time, p.shared_blks_hit, p.shared_blks_read, p.shared_blks_dirtied, p.shared_blks_written, p.local_blks_hit, p.local_blks_read, p.temp_blks_read, p.temp_blks_written, p.shared_blk_read_time, p.shared_blk_write_time, p.wal_records, p.wal_bytes, p.stats_since, p.min_exec_time, p.max_exec_time, true
FROM (SELECT id, target, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
      FROM perf_monitoring.snapshots) s
JOIN perf_monitoring.statement_stats p ON p.snapshot_id = s.previous
WHERE NOT EXISTS (SELECT FROM perf_monitoring.statement_stats c
                  WHERE c.snapshot_id = s.id AND c.target = p.target AND c.dbid = p.dbid AND c.queryid = p.queryid AND c.userid = p.userid AND c.toplevel = p.toplevel);

DELETE FROM perf_monitoring.statement_stats c
USING (SELECT id, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
       FROM perf_monitoring.snapshots) s,
      perf_monitoring.statement_stats p
WHERE c.snapshot_id = s.id AND p.snapshot_id = s.previous AND p.target = c.target AND p.dbid = c.dbid AND p.queryid = c.queryid AND p.userid = c.userid AND p.toplevel = c.toplevel
  AND NOT c.vanished AND NOT p.vanished
  AND ROW(c.rolname, c.query, c.calls, c.rows, c.plans, c.total_exec_time, c.total_plan_time, c.shared_blks_hit, c.shared_blks_read, c.shared_blks_dirtied, c.shared_blks_written, c.local_blks_hit, c.local_blks_read, c.temp_blks_read, c.temp_blks_written, c.shared_blk_read_time, c.shared_blk_write_time, c.wal_records, c.wal_bytes, c.stats_since, c.min_exec_time, c.max_exec_time) IS NOT DISTINCT FROM ROW(p.rolname, p.query, p.calls, p.rows, p.plans, p.total_exec_time, p.total_plan_time, p.shared_blks_hit, p.shared_blks_read, p.shared_blks_dirtied, p.shared_blks_written, p.local_blks_hit, p.local_blks_read, p.temp_blks_read, p.temp_blks_written, p.shared_blk_read_time, p.shared_blk_write_time, p.wal_records, p.wal_bytes, p.stats_since, p.min_exec_time, p.max_exec_time);

ALTER TABLE perf_monitoring.statement_stats
    ADD CONSTRAINT pk_statement_stats_target PRIMARY KEY (target, dbid, queryid, userid, toplevel, snapshot_id);

CREATE INDEX ix_statement_stats_sample ON perf_monitoring.statement_stats (target, snapshot_id);

COMMENT ON COLUMN perf_monitoring.statement_stats.vanished IS 'the entry is gone from this sample on';

ALTER TABLE perf_monitoring.table_stats
    DROP CONSTRAINT fk_table_stats_snapshot_id,
    DROP CONSTRAINT pk_table_stats,
    ADD COLUMN target TEXT,
    ADD COLUMN vanished BOOLEAN DEFAULT false NOT NULL,
    ADD COLUMN frozen_xid BIGINT;

UPDATE perf_monitoring.table_stats r SET target = s.target
FROM perf_monitoring.snapshots s WHERE s.id = r.snapshot_id;

ALTER TABLE perf_monitoring.table_stats ALTER COLUMN target SET NOT NULL;

INSERT INTO perf_monitoring.table_stats (snapshot_id, target, relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit, reloptions, xid_age, total_bytes, vanished)
SELECT s.id, s.target, p.relid, p.schemaname, p.relname, p.seq_scan, p.seq_tup_read, p.idx_scan, p.idx_tup_fetch, p.n_tup_ins, p.n_tup_upd, p.n_tup_del, p.n_tup_hot_upd, p.n_live_tup, p.n_dead_tup, p.n_mod_since_analyze, p.last_vacuum, p.last_autovacuum, p.last_analyze, p.last_autoanalyze, p.vacuum_count, p.autovacuum_count, p.analyze_count, p.autoanalyze_count, p.heap_blks_read, p.heap_blks_hit, p.idx_blks_read, p.idx_blks_hit, p.reloptions, p.xid_age, p.total_bytes, true
FROM (SELECT id, target, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
      FROM perf_monitoring.snapshots) s
JOIN perf_monitoring.table_stats p ON p.snapshot_id = s.previous
WHERE NOT EXISTS (SELECT FROM perf_monitoring.table_stats c
                  WHERE c.snapshot_id = s.id AND c.target = p.target AND c.relid = p.relid);

DELETE FROM perf_monitoring.table_stats c
USING (SELECT id, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
       FROM perf_monitoring.snapshots) s,
      perf_monitoring.table_stats p
WHERE c.snapshot_id = s.id AND p.snapshot_id = s.previous AND p.target = c.target AND p.relid = c.relid
  AND NOT c.vanished AND NOT p.vanished
  AND ROW(c.schemaname, c.relname, c.seq_scan, c.seq_tup_read, c.idx_scan, c.idx_tup_fetch, c.n_tup_ins, c.n_tup_upd, c.n_tup_del, c.n_tup_hot_upd, c.n_live_tup, c.n_dead_tup, c.n_mod_since_analyze, c.last_vacuum, c.last_autovacuum, c.last_analyze, c.last_autoanalyze, c.vacuum_count, c.autovacuum_count, c.analyze_count, c.autoanalyze_count, c.heap_blks_read, c.heap_blks_hit, c.idx_blks_read, c.idx_blks_hit, c.reloptions, c.xid_age, c.total_bytes) IS NOT DISTINCT FROM ROW(p.schemaname, p.relname, p.seq_scan, p.seq_tup_read, p.idx_scan, p.idx_tup_fetch, p.n_tup_ins, p.n_tup_upd, p.n_tup_del, p.n_tup_hot_upd, p.n_live_tup, p.n_dead_tup, p.n_mod_since_analyze, p.last_vacuum, p.last_autovacuum, p.last_analyze, p.last_autoanalyze, p.vacuum_count, p.autovacuum_count, p.analyze_count, p.autoanalyze_count, p.heap_blks_read, p.heap_blks_hit, p.idx_blks_read, p.idx_blks_hit, p.reloptions, p.xid_age, p.total_bytes);

ALTER TABLE perf_monitoring.table_stats
    ADD CONSTRAINT pk_table_stats_target PRIMARY KEY (target, relid, snapshot_id);

CREATE INDEX ix_table_stats_sample ON perf_monitoring.table_stats (target, snapshot_id);

COMMENT ON COLUMN perf_monitoring.table_stats.vanished IS 'the entry is gone from this sample on';

ALTER TABLE perf_monitoring.index_stats
    DROP CONSTRAINT fk_index_stats_snapshot_id,
    DROP CONSTRAINT pk_index_stats,
    ADD COLUMN target TEXT,
    ADD COLUMN vanished BOOLEAN DEFAULT false NOT NULL;

UPDATE perf_monitoring.index_stats r SET target = s.target
FROM perf_monitoring.snapshots s WHERE s.id = r.snapshot_id;

ALTER TABLE perf_monitoring.index_stats ALTER COLUMN target SET NOT NULL;

INSERT INTO perf_monitoring.index_stats (snapshot_id, target, indexrelid, relid, schemaname, relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit, is_valid, is_ready, is_unique, is_primary, backs_constraint, key_columns, include_columns, predicate, access_method, definition, index_bytes, vanished)
SELECT s.id, s.target, p.indexrelid, p.relid, p.schemaname, p.relname, p.indexrelname, p.idx_scan, p.idx_tup_read, p.idx_tup_fetch, p.idx_blks_read, p.idx_blks_hit, p.is_valid, p.is_ready, p.is_unique, p.is_primary, p.backs_constraint, p.key_columns, p.include_columns, p.predicate, p.access_method, p.definition, p.index_bytes, true
FROM (SELECT id, target, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
      FROM perf_monitoring.snapshots) s
JOIN perf_monitoring.index_stats p ON p.snapshot_id = s.previous
WHERE NOT EXISTS (SELECT FROM perf_monitoring.index_stats c
                  WHERE c.snapshot_id = s.id AND c.target = p.target AND c.indexrelid = p.indexrelid);

DELETE FROM perf_monitoring.index_stats c
USING (SELECT id, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
       FROM perf_monitoring.snapshots) s,
      perf_monitoring.index_stats p
WHERE c.snapshot_id = s.id AND p.snapshot_id = s.previous AND p.target = c.target AND p.indexrelid = c.indexrelid
  AND NOT c.vanished AND NOT p.vanished
  AND ROW(c.relid, c.schemaname, c.relname, c.indexrelname, c.idx_scan, c.idx_tup_read, c.idx_tup_fetch, c.idx_blks_read, c.idx_blks_hit, c.is_valid, c.is_ready, c.is_unique, c.is_primary, c.backs_constraint, c.key_columns, c.include_columns, c.predicate, c.access_method, c.definition, c.index_bytes) IS NOT DISTINCT FROM ROW(p.relid, p.schemaname, p.relname, p.indexrelname, p.idx_scan, p.idx_tup_read, p.idx_tup_fetch, p.idx_blks_read, p.idx_blks_hit, p.is_valid, p.is_ready, p.is_unique, p.is_primary, p.backs_constraint, p.key_columns, p.include_columns, p.predicate, p.access_method, p.definition, p.index_bytes);

ALTER TABLE perf_monitoring.index_stats
    ADD CONSTRAINT pk_index_stats_target PRIMARY KEY (target, indexrelid, snapshot_id);

CREATE INDEX ix_index_stats_sample ON perf_monitoring.index_stats (target, snapshot_id);

COMMENT ON COLUMN perf_monitoring.index_stats.vanished IS 'the entry is gone from this sample on';

ALTER TABLE perf_monitoring.database_stats
    DROP CONSTRAINT fk_database_stats_snapshot_id,
    DROP CONSTRAINT pk_database_stats,
    ADD COLUMN target TEXT,
    ADD COLUMN vanished BOOLEAN DEFAULT false NOT NULL;

UPDATE perf_monitoring.database_stats r SET target = s.target
FROM perf_monitoring.snapshots s WHERE s.id = r.snapshot_id;

ALTER TABLE perf_monitoring.database_stats ALTER COLUMN target SET NOT NULL;

INSERT INTO perf_monitoring.database_stats (snapshot_id, target, datid, datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset, xid_age, database_bytes, sessions, vanished)
SELECT s.id, s.target, p.datid, p.datname, p.numbackends, p.xact_commit, p.xact_rollback, p.blks_read, p.blks_hit, p.tup_returned, p.tup_fetched, p.tup_inserted, p.tup_updated, p.tup_deleted, p.conflicts, p.temp_files, p.temp_bytes, p.deadlocks, p.blk_read_time, p.blk_write_time, p.stats_reset, p.xid_age, p.database_bytes, p.sessions, true
FROM (SELECT id, target, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
      FROM perf_monitoring.snapshots) s
JOIN perf_monitoring.database_stats p ON p.snapshot_id = s.previous
WHERE NOT EXISTS (SELECT FROM perf_monitoring.database_stats c
                  WHERE c.snapshot_id = s.id AND c.target = p.target AND c.datid = p.datid);

DELETE FROM perf_monitoring.database_stats c
USING (SELECT id, lag(id) OVER (PARTITION BY target ORDER BY id) AS previous
       FROM perf_monitoring.snapshots) s,
      perf_monitoring.database_stats p
WHERE c.snapshot_id = s.id AND p.snapshot_id = s.previous AND p.target = c.target AND p.datid = c.datid
  AND NOT c.vanished AND NOT p.vanished
  AND ROW(c.datname, c.numbackends, c.xact_commit, c.xact_rollback, c.blks_read, c.blks_hit, c.tup_returned, c.tup_fetched, c.tup_inserted, c.tup_updated, c.tup_deleted, c.conflicts, c.temp_files, c.temp_bytes, c.deadlocks, c.blk_read_time, c.blk_write_time, c.stats_reset, c.xid_age, c.database_bytes, c.sessions) IS NOT DISTINCT FROM ROW(p.datname, p.numbackends, p.xact_commit, p.xact_rollback, p.blks_read, p.blks_hit, p.tup_returned, p.tup_fetched, p.tup_inserted, p.tup_updated, p.tup_deleted, p.conflicts, p.temp_files, p.temp_bytes, p.deadlocks, p.blk_read_time, p.blk_write_time, p.stats_reset, p.xid_age, p.database_bytes, p.sessions);

ALTER TABLE perf_monitoring.database_stats
    ADD CONSTRAINT pk_database_stats_target PRIMARY KEY (target, datid, snapshot_id);

CREATE INDEX ix_database_stats_sample ON perf_monitoring.database_stats (target, snapshot_id);

COMMENT ON COLUMN perf_monitoring.database_stats.vanished IS 'the entry is gone from this sample on';

ALTER TABLE perf_monitoring.snapshots
    DROP CONSTRAINT pk_snapshots,
    DROP CONSTRAINT uq_snapshots_label,
    ADD CONSTRAINT pk_snapshots_target PRIMARY KEY (target, id),
    ADD CONSTRAINT uq_snapshots_target_label UNIQUE (target, label);

DROP INDEX perf_monitoring.ix_snapshots_taken_at;

CREATE INDEX ix_snapshots_target_taken_at ON perf_monitoring.snapshots (target, taken_at);

COMMENT ON TABLE perf_monitoring.snapshots IS 'One row per sample of a target''s statistics (labelled: a snapshot); never a reset.';

COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements entries visible to the sampling role: a row per change, valid until the entry''s next row.';

COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions: a row per change.';

COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index: a row per change.';

COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the sampled database: a row per change.';

COMMENT ON COLUMN perf_monitoring.table_stats.frozen_xid IS 'pg_class.relfrozenxid; xid_age is counted from snapshots.xid_now';

ALTER TABLE perf_monitoring.statement_texts
    DROP CONSTRAINT pk_statement_texts,
    ADD COLUMN target TEXT;

INSERT INTO perf_monitoring.statement_texts (target, dbid, queryid, query)
SELECT DISTINCT r.target, t.dbid, t.queryid, t.query
FROM perf_monitoring.statement_texts t
JOIN perf_monitoring.statement_stats r ON r.dbid = t.dbid AND r.queryid = t.queryid
WHERE t.target IS NULL;

DELETE FROM perf_monitoring.statement_texts WHERE target IS NULL;

ALTER TABLE perf_monitoring.statement_texts
    ALTER COLUMN target SET NOT NULL,
    ADD CONSTRAINT pk_statement_texts_target PRIMARY KEY (target, dbid, queryid);

COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement of a target; statement_stats rows refer to it by (target, dbid, queryid).';

ALTER TABLE perf_monitoring.request_metrics ADD COLUMN target TEXT;

COMMENT ON COLUMN perf_monitoring.request_metrics.target IS 'the target whose requests these are; NULL: this database''s own';

ALTER TABLE perf_monitoring.app_metrics ADD COLUMN target TEXT;

COMMENT ON COLUMN perf_monitoring.app_metrics.target IS 'the target the figure belongs to; NULL: this database''s own';

CREATE FUNCTION perf_monitoring.fold_samples(target_name text, sample_ids bigint[])
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
    DELETE /* dbtools */ FROM perf_monitoring.statement_stats o
    WHERE o.target = target_name AND o.snapshot_id > lo AND o.snapshot_id <= hi
      AND NOT EXISTS (
          SELECT FROM perf_monitoring.snapshots k
          WHERE k.target = target_name AND k.id >= o.snapshot_id
            AND k.id < coalesce((SELECT min(n.snapshot_id) FROM perf_monitoring.statement_stats n
                                 WHERE n.target = o.target AND n.dbid = o.dbid AND n.queryid = o.queryid AND n.userid = o.userid AND n.toplevel = o.toplevel
                                   AND n.snapshot_id > o.snapshot_id), 9223372036854775807));
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    -- a vanished row with nothing before it says nothing
    DELETE /* dbtools */ FROM perf_monitoring.statement_stats o
    WHERE o.target = target_name AND o.vanished AND o.snapshot_id <= hi
      AND NOT EXISTS (SELECT FROM perf_monitoring.statement_stats p
                      WHERE p.target = o.target AND p.dbid = o.dbid AND p.queryid = o.queryid AND p.userid = o.userid AND p.toplevel = o.toplevel AND p.snapshot_id < o.snapshot_id);
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    DELETE /* dbtools */ FROM perf_monitoring.table_stats o
    WHERE o.target = target_name AND o.snapshot_id > lo AND o.snapshot_id <= hi
      AND NOT EXISTS (
          SELECT FROM perf_monitoring.snapshots k
          WHERE k.target = target_name AND k.id >= o.snapshot_id
            AND k.id < coalesce((SELECT min(n.snapshot_id) FROM perf_monitoring.table_stats n
                                 WHERE n.target = o.target AND n.relid = o.relid
                                   AND n.snapshot_id > o.snapshot_id), 9223372036854775807));
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    -- a vanished row with nothing before it says nothing
    DELETE /* dbtools */ FROM perf_monitoring.table_stats o
    WHERE o.target = target_name AND o.vanished AND o.snapshot_id <= hi
      AND NOT EXISTS (SELECT FROM perf_monitoring.table_stats p
                      WHERE p.target = o.target AND p.relid = o.relid AND p.snapshot_id < o.snapshot_id);
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    DELETE /* dbtools */ FROM perf_monitoring.index_stats o
    WHERE o.target = target_name AND o.snapshot_id > lo AND o.snapshot_id <= hi
      AND NOT EXISTS (
          SELECT FROM perf_monitoring.snapshots k
          WHERE k.target = target_name AND k.id >= o.snapshot_id
            AND k.id < coalesce((SELECT min(n.snapshot_id) FROM perf_monitoring.index_stats n
                                 WHERE n.target = o.target AND n.indexrelid = o.indexrelid
                                   AND n.snapshot_id > o.snapshot_id), 9223372036854775807));
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    -- a vanished row with nothing before it says nothing
    DELETE /* dbtools */ FROM perf_monitoring.index_stats o
    WHERE o.target = target_name AND o.vanished AND o.snapshot_id <= hi
      AND NOT EXISTS (SELECT FROM perf_monitoring.index_stats p
                      WHERE p.target = o.target AND p.indexrelid = o.indexrelid AND p.snapshot_id < o.snapshot_id);
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    DELETE /* dbtools */ FROM perf_monitoring.database_stats o
    WHERE o.target = target_name AND o.snapshot_id > lo AND o.snapshot_id <= hi
      AND NOT EXISTS (
          SELECT FROM perf_monitoring.snapshots k
          WHERE k.target = target_name AND k.id >= o.snapshot_id
            AND k.id < coalesce((SELECT min(n.snapshot_id) FROM perf_monitoring.database_stats n
                                 WHERE n.target = o.target AND n.datid = o.datid
                                   AND n.snapshot_id > o.snapshot_id), 9223372036854775807));
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    -- a vanished row with nothing before it says nothing
    DELETE /* dbtools */ FROM perf_monitoring.database_stats o
    WHERE o.target = target_name AND o.vanished AND o.snapshot_id <= hi
      AND NOT EXISTS (SELECT FROM perf_monitoring.database_stats p
                      WHERE p.target = o.target AND p.datid = o.datid AND p.snapshot_id < o.snapshot_id);
    GET DIAGNOSTICS found = ROW_COUNT;
    removed := removed + found;
    DELETE /* dbtools */ FROM perf_monitoring.statement_texts t
    WHERE t.target = target_name
      AND NOT EXISTS (SELECT FROM perf_monitoring.statement_stats r
                      WHERE r.target = t.target AND r.dbid = t.dbid AND r.queryid = t.queryid);
    GET DIAGNOSTICS found = ROW_COUNT;
    RETURN removed + found;
END
$$;

CREATE OR REPLACE FUNCTION perf_monitoring.purge_older_than(days integer) RETURNS bigint
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
$$;

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0004';

COMMIT;

