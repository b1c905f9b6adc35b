SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0007 -> 0008

ALTER TABLE perf_monitoring.statement_stats RENAME TO statement_stats_0007;

CREATE TABLE perf_monitoring.statement_stats (
    LIKE perf_monitoring.statement_stats_0007 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    sample_day DATE NOT NULL
) PARTITION BY RANGE (sample_day);

ALTER TABLE perf_monitoring.statement_stats
    ADD CONSTRAINT pk_statement_stats_day PRIMARY KEY (target, dbid, queryid, userid, toplevel, snapshot_id, sample_day);

CREATE INDEX ix_statement_stats_day_sample ON perf_monitoring.statement_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements entries visible to the sampling role: a row per change, valid until the entry''s next row.';

COMMENT ON COLUMN perf_monitoring.statement_stats.sample_day IS 'the UTC day of the sample (the partition)';

ALTER TABLE perf_monitoring.table_stats RENAME TO table_stats_0007;

CREATE TABLE perf_monitoring.table_stats (
    LIKE perf_monitoring.table_stats_0007 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    sample_day DATE NOT NULL
) PARTITION BY RANGE (sample_day);

ALTER TABLE perf_monitoring.table_stats
    ADD CONSTRAINT pk_table_stats_day PRIMARY KEY (target, relid, snapshot_id, sample_day);

CREATE INDEX ix_table_stats_day_sample ON perf_monitoring.table_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions: a row per change.';

COMMENT ON COLUMN perf_monitoring.table_stats.sample_day IS 'the UTC day of the sample (the partition)';

ALTER TABLE perf_monitoring.index_stats RENAME TO index_stats_0007;

CREATE TABLE perf_monitoring.index_stats (
    LIKE perf_monitoring.index_stats_0007 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    sample_day DATE NOT NULL
) PARTITION BY RANGE (sample_day);

ALTER TABLE perf_monitoring.index_stats
    ADD CONSTRAINT pk_index_stats_day PRIMARY KEY (target, indexrelid, snapshot_id, sample_day);

CREATE INDEX ix_index_stats_day_sample ON perf_monitoring.index_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index: a row per change.';

COMMENT ON COLUMN perf_monitoring.index_stats.sample_day IS 'the UTC day of the sample (the partition)';

ALTER TABLE perf_monitoring.database_stats RENAME TO database_stats_0007;

CREATE TABLE perf_monitoring.database_stats (
    LIKE perf_monitoring.database_stats_0007 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS,
    sample_day DATE NOT NULL
) PARTITION BY RANGE (sample_day);

ALTER TABLE perf_monitoring.database_stats
    ADD CONSTRAINT pk_database_stats_day PRIMARY KEY (target, datid, snapshot_id, sample_day);

CREATE INDEX ix_database_stats_day_sample ON perf_monitoring.database_stats (target, snapshot_id);

COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the sampled database: a row per change.';

COMMENT ON COLUMN perf_monitoring.database_stats.sample_day IS 'the UTC day of the sample (the partition)';

CREATE FUNCTION perf_monitoring.add_sample_days(first_day date, last_day date)
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
$$;

REVOKE ALL ON FUNCTION perf_monitoring.add_sample_days(date, date) FROM PUBLIC;

CREATE FUNCTION perf_monitoring.drop_sample_days(before date)
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
    FOR f IN SELECT /* dbtools */ DISTINCT ON (s.target) s.target, s.id, (s.taken_at AT TIME ZONE 'UTC')::date AS day
             FROM perf_monitoring.snapshots s ORDER BY s.target, s.id LOOP
        CONTINUE WHEN /* dbtools */ NOT (EXISTS (SELECT FROM perf_monitoring.statement_stats o WHERE o.target = f.target AND o.snapshot_id < f.id AND o.sample_day < before)
                           OR EXISTS (SELECT FROM perf_monitoring.table_stats o WHERE o.target = f.target AND o.snapshot_id < f.id AND o.sample_day < before)
                           OR EXISTS (SELECT FROM perf_monitoring.index_stats o WHERE o.target = f.target AND o.snapshot_id < f.id AND o.sample_day < before)
                           OR EXISTS (SELECT FROM perf_monitoring.database_stats o WHERE o.target = f.target AND o.snapshot_id < f.id AND o.sample_day < before));
        INSERT /* dbtools */ INTO perf_monitoring.statement_stats (snapshot_id, sample_day, target, vanished, dbid, queryid, userid, toplevel, rolname, calls, rows, plans, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, temp_blks_read, temp_blks_written, shared_blk_read_time, shared_blk_write_time, wal_records, wal_bytes, stats_since, min_exec_time, max_exec_time)
        SELECT f.id, f.day, r.target, false, r.dbid, r.queryid, r.userid, r.toplevel, r.rolname, r.calls, r.rows, r.plans, r.total_exec_time, r.total_plan_time, r.shared_blks_hit, r.shared_blks_read, r.shared_blks_dirtied, r.shared_blks_written, r.local_blks_hit, r.local_blks_read, r.temp_blks_read, r.temp_blks_written, r.shared_blk_read_time, r.shared_blk_write_time, r.wal_records, r.wal_bytes, r.stats_since, r.min_exec_time, r.max_exec_time
        FROM (SELECT DISTINCT ON (o.dbid, o.queryid, o.userid, o.toplevel) o.* FROM perf_monitoring.statement_stats o
              WHERE o.target = f.target AND o.snapshot_id < f.id
              ORDER BY o.dbid, o.queryid, o.userid, o.toplevel, o.snapshot_id DESC) r
        WHERE NOT r.vanished
          AND NOT EXISTS (SELECT FROM perf_monitoring.statement_stats n
                          WHERE n.target = r.target AND n.dbid = r.dbid AND n.queryid = r.queryid AND n.userid = r.userid AND n.toplevel = r.toplevel AND n.snapshot_id = f.id);
        INSERT /* dbtools */ INTO perf_monitoring.table_stats (snapshot_id, sample_day, target, vanished, relid, schemaname, relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count, heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit, reloptions, xid_age, total_bytes, frozen_xid)
        SELECT f.id, f.day, r.target, false, r.relid, r.schemaname, r.relname, r.seq_scan, r.seq_tup_read, r.idx_scan, r.idx_tup_fetch, r.n_tup_ins, r.n_tup_upd, r.n_tup_del, r.n_tup_hot_upd, r.n_live_tup, r.n_dead_tup, r.n_mod_since_analyze, r.last_vacuum, r.last_autovacuum, r.last_analyze, r.last_autoanalyze, r.vacuum_count, r.autovacuum_count, r.analyze_count, r.autoanalyze_count, r.heap_blks_read, r.heap_blks_hit, r.idx_blks_read, r.idx_blks_hit, r.reloptions, r.xid_age, r.total_bytes, r.frozen_xid
        FROM (SELECT DISTINCT ON (o.relid) o.* FROM perf_monitoring.table_stats o
              WHERE o.target = f.target AND o.snapshot_id < f.id
              ORDER BY o.relid, o.snapshot_id DESC) r
        WHERE NOT r.vanished
          AND NOT EXISTS (SELECT FROM perf_monitoring.table_stats n
                          WHERE n.target = r.target AND n.relid = r.relid AND n.snapshot_id = f.id);
        INSERT /* dbtools */ INTO perf_monitoring.index_stats (snapshot_id, sample_day, target, vanished, indexrelid, relid, schemaname, relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit, is_valid, is_ready, is_unique, is_primary, backs_constraint, key_columns, include_columns, predicate, access_method, definition, index_bytes)
        SELECT f.id, f.day, r.target, false, r.indexrelid, r.relid, r.schemaname, r.relname, r.indexrelname, r.idx_scan, r.idx_tup_read, r.idx_tup_fetch, r.idx_blks_read, r.idx_blks_hit, r.is_valid, r.is_ready, r.is_unique, r.is_primary, r.backs_constraint, r.key_columns, r.include_columns, r.predicate, r.access_method, r.definition, r.index_bytes
        FROM (SELECT DISTINCT ON (o.indexrelid) o.* FROM perf_monitoring.index_stats o
              WHERE o.target = f.target AND o.snapshot_id < f.id
              ORDER BY o.indexrelid, o.snapshot_id DESC) r
        WHERE NOT r.vanished
          AND NOT EXISTS (SELECT FROM perf_monitoring.index_stats n
                          WHERE n.target = r.target AND n.indexrelid = r.indexrelid AND n.snapshot_id = f.id);
        INSERT /* dbtools */ INTO perf_monitoring.database_stats (snapshot_id, sample_day, target, vanished, datid, datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset, xid_age, database_bytes, sessions)
        SELECT f.id, f.day, r.target, false, r.datid, r.datname, r.numbackends, r.xact_commit, r.xact_rollback, r.blks_read, r.blks_hit, r.tup_returned, r.tup_fetched, r.tup_inserted, r.tup_updated, r.tup_deleted, r.conflicts, r.temp_files, r.temp_bytes, r.deadlocks, r.blk_read_time, r.blk_write_time, r.stats_reset, r.xid_age, r.database_bytes, r.sessions
        FROM (SELECT DISTINCT ON (o.datid) o.* FROM perf_monitoring.database_stats o
              WHERE o.target = f.target AND o.snapshot_id < f.id
              ORDER BY o.datid, o.snapshot_id DESC) r
        WHERE NOT r.vanished
          AND NOT EXISTS (SELECT FROM perf_monitoring.database_stats n
                          WHERE n.target = r.target AND n.datid = r.datid AND n.snapshot_id = f.id);
    END LOOP;
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
        CONTINUE WHEN /* dbtools */ EXISTS (SELECT FROM perf_monitoring.snapshots s WHERE (s.taken_at AT TIME ZONE 'UTC')::date <= part.day);
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
$$;

REVOKE ALL ON FUNCTION perf_monitoring.drop_sample_days(date) FROM PUBLIC;

CREATE FUNCTION perf_monitoring.rewrite_sample_day(day date)
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
$$;

REVOKE ALL ON FUNCTION perf_monitoring.rewrite_sample_day(date) FROM PUBLIC;

SELECT perf_monitoring.add_sample_days((now() AT TIME ZONE 'UTC')::date,
                                       (now() AT TIME ZONE 'UTC')::date + 1);

SELECT perf_monitoring.add_sample_days(day, day)
FROM (SELECT DISTINCT coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) AS day FROM perf_monitoring.statement_stats_0007 o) d ORDER BY day;

INSERT INTO perf_monitoring.statement_stats
SELECT o.*, coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) FROM perf_monitoring.statement_stats_0007 o;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.statement_stats_0007'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.statement_stats TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.statement_stats_0007;

SELECT perf_monitoring.add_sample_days(day, day)
FROM (SELECT DISTINCT coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) AS day FROM perf_monitoring.table_stats_0007 o) d ORDER BY day;

INSERT INTO perf_monitoring.table_stats
SELECT o.*, coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) FROM perf_monitoring.table_stats_0007 o;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.table_stats_0007'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.table_stats TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.table_stats_0007;

SELECT perf_monitoring.add_sample_days(day, day)
FROM (SELECT DISTINCT coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) AS day FROM perf_monitoring.index_stats_0007 o) d ORDER BY day;

INSERT INTO perf_monitoring.index_stats
SELECT o.*, coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) FROM perf_monitoring.index_stats_0007 o;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.index_stats_0007'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.index_stats TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.index_stats_0007;

SELECT perf_monitoring.add_sample_days(day, day)
FROM (SELECT DISTINCT coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) AS day FROM perf_monitoring.database_stats_0007 o) d ORDER BY day;

INSERT INTO perf_monitoring.database_stats
SELECT o.*, coalesce((SELECT (s.taken_at AT TIME ZONE 'UTC')::date FROM perf_monitoring.snapshots s
                  WHERE s.target = o.target AND s.id >= o.snapshot_id ORDER BY s.id LIMIT 1),
                 (now() AT TIME ZONE 'UTC')::date) FROM perf_monitoring.database_stats_0007 o;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT /* dbtools */ a.privilege_type AS privilege, r.rolname AS grantee
             FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles r
             WHERE c.oid = 'perf_monitoring.database_stats_0007'::regclass AND r.oid = a.grantee
               AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON perf_monitoring.database_stats TO %I', g.privilege, g.grantee);
    END LOOP;
END
$$;

DROP TABLE perf_monitoring.database_stats_0007;

CREATE TABLE perf_monitoring.statement_stats_entries (
    LIKE perf_monitoring.statement_stats INCLUDING DEFAULTS INCLUDING CONSTRAINTS
);

ALTER TABLE perf_monitoring.statement_stats_entries ADD CONSTRAINT pk_statement_stats_entries PRIMARY KEY (target, dbid, queryid, userid, toplevel);

COMMENT ON TABLE perf_monitoring.statement_stats_entries IS 'each entry''s latest row of statement_stats (kept by its triggers): a target''s state at its latest sample';

INSERT INTO perf_monitoring.statement_stats_entries
SELECT DISTINCT ON (target, dbid, queryid, userid, toplevel) * FROM perf_monitoring.statement_stats
ORDER BY target, dbid, queryid, userid, toplevel, snapshot_id DESC;

CREATE FUNCTION perf_monitoring.statement_stats_entries_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT /* dbtools */ INTO perf_monitoring.statement_stats_entries AS e
    SELECT DISTINCT ON (target, dbid, queryid, userid, toplevel) * FROM added
    ORDER BY target, dbid, queryid, userid, toplevel, snapshot_id DESC
    ON CONFLICT (target, dbid, queryid, userid, toplevel) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, rolname = EXCLUDED.rolname, query = EXCLUDED.query, calls = EXCLUDED.calls, rows = EXCLUDED.rows, plans = EXCLUDED.plans, total_exec_time = EXCLUDED.total_exec_time, total_plan_time = EXCLUDED.total_plan_time, shared_blks_hit = EXCLUDED.shared_blks_hit, shared_blks_read = EXCLUDED.shared_blks_read, shared_blks_dirtied = EXCLUDED.shared_blks_dirtied, shared_blks_written = EXCLUDED.shared_blks_written, local_blks_hit = EXCLUDED.local_blks_hit, local_blks_read = EXCLUDED.local_blks_read, temp_blks_read = EXCLUDED.temp_blks_read, temp_blks_written = EXCLUDED.temp_blks_written, shared_blk_read_time = EXCLUDED.shared_blk_read_time, shared_blk_write_time = EXCLUDED.shared_blk_write_time, wal_records = EXCLUDED.wal_records, wal_bytes = EXCLUDED.wal_bytes, stats_since = EXCLUDED.stats_since, min_exec_time = EXCLUDED.min_exec_time, max_exec_time = EXCLUDED.max_exec_time, vanished = EXCLUDED.vanished, sample_day = EXCLUDED.sample_day
    WHERE e.snapshot_id <= EXCLUDED.snapshot_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION perf_monitoring.statement_stats_entries_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- an entry whose latest row went: its latest remaining row, if any
    WITH gone AS (
        DELETE /* dbtools */ FROM perf_monitoring.statement_stats_entries e USING removed o
        WHERE e.target = o.target AND e.dbid = o.dbid AND e.queryid = o.queryid AND e.userid = o.userid AND e.toplevel = o.toplevel AND e.snapshot_id = o.snapshot_id
        RETURNING e.target, e.dbid, e.queryid, e.userid, e.toplevel
    )
    INSERT /* dbtools */ INTO perf_monitoring.statement_stats_entries
    SELECT r.* FROM gone g CROSS JOIN LATERAL (
        SELECT * FROM perf_monitoring.statement_stats r WHERE r.target = g.target AND r.dbid = g.dbid AND r.queryid = g.queryid AND r.userid = g.userid AND r.toplevel = g.toplevel
        ORDER BY r.snapshot_id DESC LIMIT 1) r;
    RETURN NULL;
END
$$;

CREATE TRIGGER statement_stats_entries_added AFTER INSERT ON perf_monitoring.statement_stats
REFERENCING NEW TABLE AS added FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.statement_stats_entries_added();

CREATE TRIGGER statement_stats_entries_removed AFTER DELETE ON perf_monitoring.statement_stats
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.statement_stats_entries_removed();

CREATE TABLE perf_monitoring.table_stats_entries (
    LIKE perf_monitoring.table_stats INCLUDING DEFAULTS INCLUDING CONSTRAINTS
);

ALTER TABLE perf_monitoring.table_stats_entries ADD CONSTRAINT pk_table_stats_entries PRIMARY KEY (target, relid);

COMMENT ON TABLE perf_monitoring.table_stats_entries IS 'each entry''s latest row of table_stats (kept by its triggers): a target''s state at its latest sample';

INSERT INTO perf_monitoring.table_stats_entries
SELECT DISTINCT ON (target, relid) * FROM perf_monitoring.table_stats
ORDER BY target, relid, snapshot_id DESC;

CREATE FUNCTION perf_monitoring.table_stats_entries_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT /* dbtools */ INTO perf_monitoring.table_stats_entries AS e
    SELECT DISTINCT ON (target, relid) * FROM added
    ORDER BY target, relid, snapshot_id DESC
    ON CONFLICT (target, relid) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, schemaname = EXCLUDED.schemaname, relname = EXCLUDED.relname, seq_scan = EXCLUDED.seq_scan, seq_tup_read = EXCLUDED.seq_tup_read, idx_scan = EXCLUDED.idx_scan, idx_tup_fetch = EXCLUDED.idx_tup_fetch, n_tup_ins = EXCLUDED.n_tup_ins, n_tup_upd = EXCLUDED.n_tup_upd, n_tup_del = EXCLUDED.n_tup_del, n_tup_hot_upd = EXCLUDED.n_tup_hot_upd, n_live_tup = EXCLUDED.n_live_tup, n_dead_tup = EXCLUDED.n_dead_tup, n_mod_since_analyze = EXCLUDED.n_mod_since_analyze, last_vacuum = EXCLUDED.last_vacuum, last_autovacuum = EXCLUDED.last_autovacuum, last_analyze = EXCLUDED.last_analyze, last_autoanalyze = EXCLUDED.last_autoanalyze, vacuum_count = EXCLUDED.vacuum_count, autovacuum_count = EXCLUDED.autovacuum_count, analyze_count = EXCLUDED.analyze_count, autoanalyze_count = EXCLUDED.autoanalyze_count, heap_blks_read = EXCLUDED.heap_blks_read, heap_blks_hit = EXCLUDED.heap_blks_hit, idx_blks_read = EXCLUDED.idx_blks_read, idx_blks_hit = EXCLUDED.idx_blks_hit, reloptions = EXCLUDED.reloptions, xid_age = EXCLUDED.xid_age, total_bytes = EXCLUDED.total_bytes, vanished = EXCLUDED.vanished, frozen_xid = EXCLUDED.frozen_xid, sample_day = EXCLUDED.sample_day
    WHERE e.snapshot_id <= EXCLUDED.snapshot_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION perf_monitoring.table_stats_entries_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- an entry whose latest row went: its latest remaining row, if any
    WITH gone AS (
        DELETE /* dbtools */ FROM perf_monitoring.table_stats_entries e USING removed o
        WHERE e.target = o.target AND e.relid = o.relid AND e.snapshot_id = o.snapshot_id
        RETURNING e.target, e.relid
    )
    INSERT /* dbtools */ INTO perf_monitoring.table_stats_entries
    SELECT r.* FROM gone g CROSS JOIN LATERAL (
        SELECT * FROM perf_monitoring.table_stats r WHERE r.target = g.target AND r.relid = g.relid
        ORDER BY r.snapshot_id DESC LIMIT 1) r;
    RETURN NULL;
END
$$;

CREATE TRIGGER table_stats_entries_added AFTER INSERT ON perf_monitoring.table_stats
REFERENCING NEW TABLE AS added FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.table_stats_entries_added();

CREATE TRIGGER table_stats_entries_removed AFTER DELETE ON perf_monitoring.table_stats
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.table_stats_entries_removed();

CREATE TABLE perf_monitoring.index_stats_entries (
    LIKE perf_monitoring.index_stats INCLUDING DEFAULTS INCLUDING CONSTRAINTS
);

ALTER TABLE perf_monitoring.index_stats_entries ADD CONSTRAINT pk_index_stats_entries PRIMARY KEY (target, indexrelid);

COMMENT ON TABLE perf_monitoring.index_stats_entries IS 'each entry''s latest row of index_stats (kept by its triggers): a target''s state at its latest sample';

INSERT INTO perf_monitoring.index_stats_entries
SELECT DISTINCT ON (target, indexrelid) * FROM perf_monitoring.index_stats
ORDER BY target, indexrelid, snapshot_id DESC;

CREATE FUNCTION perf_monitoring.index_stats_entries_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT /* dbtools */ INTO perf_monitoring.index_stats_entries AS e
    SELECT DISTINCT ON (target, indexrelid) * FROM added
    ORDER BY target, indexrelid, snapshot_id DESC
    ON CONFLICT (target, indexrelid) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, relid = EXCLUDED.relid, schemaname = EXCLUDED.schemaname, relname = EXCLUDED.relname, indexrelname = EXCLUDED.indexrelname, idx_scan = EXCLUDED.idx_scan, idx_tup_read = EXCLUDED.idx_tup_read, idx_tup_fetch = EXCLUDED.idx_tup_fetch, idx_blks_read = EXCLUDED.idx_blks_read, idx_blks_hit = EXCLUDED.idx_blks_hit, is_valid = EXCLUDED.is_valid, is_ready = EXCLUDED.is_ready, is_unique = EXCLUDED.is_unique, is_primary = EXCLUDED.is_primary, backs_constraint = EXCLUDED.backs_constraint, key_columns = EXCLUDED.key_columns, include_columns = EXCLUDED.include_columns, predicate = EXCLUDED.predicate, access_method = EXCLUDED.access_method, definition = EXCLUDED.definition, index_bytes = EXCLUDED.index_bytes, vanished = EXCLUDED.vanished, sample_day = EXCLUDED.sample_day
    WHERE e.snapshot_id <= EXCLUDED.snapshot_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION perf_monitoring.index_stats_entries_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- an entry whose latest row went: its latest remaining row, if any
    WITH gone AS (
        DELETE /* dbtools */ FROM perf_monitoring.index_stats_entries e USING removed o
        WHERE e.target = o.target AND e.indexrelid = o.indexrelid AND e.snapshot_id = o.snapshot_id
        RETURNING e.target, e.indexrelid
    )
    INSERT /* dbtools */ INTO perf_monitoring.index_stats_entries
    SELECT r.* FROM gone g CROSS JOIN LATERAL (
        SELECT * FROM perf_monitoring.index_stats r WHERE r.target = g.target AND r.indexrelid = g.indexrelid
        ORDER BY r.snapshot_id DESC LIMIT 1) r;
    RETURN NULL;
END
$$;

CREATE TRIGGER index_stats_entries_added AFTER INSERT ON perf_monitoring.index_stats
REFERENCING NEW TABLE AS added FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.index_stats_entries_added();

CREATE TRIGGER index_stats_entries_removed AFTER DELETE ON perf_monitoring.index_stats
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.index_stats_entries_removed();

CREATE TABLE perf_monitoring.database_stats_entries (
    LIKE perf_monitoring.database_stats INCLUDING DEFAULTS INCLUDING CONSTRAINTS
);

ALTER TABLE perf_monitoring.database_stats_entries ADD CONSTRAINT pk_database_stats_entries PRIMARY KEY (target, datid);

COMMENT ON TABLE perf_monitoring.database_stats_entries IS 'each entry''s latest row of database_stats (kept by its triggers): a target''s state at its latest sample';

INSERT INTO perf_monitoring.database_stats_entries
SELECT DISTINCT ON (target, datid) * FROM perf_monitoring.database_stats
ORDER BY target, datid, snapshot_id DESC;

CREATE FUNCTION perf_monitoring.database_stats_entries_added() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT /* dbtools */ INTO perf_monitoring.database_stats_entries AS e
    SELECT DISTINCT ON (target, datid) * FROM added
    ORDER BY target, datid, snapshot_id DESC
    ON CONFLICT (target, datid) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, datname = EXCLUDED.datname, numbackends = EXCLUDED.numbackends, xact_commit = EXCLUDED.xact_commit, xact_rollback = EXCLUDED.xact_rollback, blks_read = EXCLUDED.blks_read, blks_hit = EXCLUDED.blks_hit, tup_returned = EXCLUDED.tup_returned, tup_fetched = EXCLUDED.tup_fetched, tup_inserted = EXCLUDED.tup_inserted, tup_updated = EXCLUDED.tup_updated, tup_deleted = EXCLUDED.tup_deleted, conflicts = EXCLUDED.conflicts, temp_files = EXCLUDED.temp_files, temp_bytes = EXCLUDED.temp_bytes, deadlocks = EXCLUDED.deadlocks, blk_read_time = EXCLUDED.blk_read_time, blk_write_time = EXCLUDED.blk_write_time, stats_reset = EXCLUDED.stats_reset, xid_age = EXCLUDED.xid_age, database_bytes = EXCLUDED.database_bytes, sessions = EXCLUDED.sessions, vanished = EXCLUDED.vanished, sample_day = EXCLUDED.sample_day
    WHERE e.snapshot_id <= EXCLUDED.snapshot_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION perf_monitoring.database_stats_entries_removed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- an entry whose latest row went: its latest remaining row, if any
    WITH gone AS (
        DELETE /* dbtools */ FROM perf_monitoring.database_stats_entries e USING removed o
        WHERE e.target = o.target AND e.datid = o.datid AND e.snapshot_id = o.snapshot_id
        RETURNING e.target, e.datid
    )
    INSERT /* dbtools */ INTO perf_monitoring.database_stats_entries
    SELECT r.* FROM gone g CROSS JOIN LATERAL (
        SELECT * FROM perf_monitoring.database_stats r WHERE r.target = g.target AND r.datid = g.datid
        ORDER BY r.snapshot_id DESC LIMIT 1) r;
    RETURN NULL;
END
$$;

CREATE TRIGGER database_stats_entries_added AFTER INSERT ON perf_monitoring.database_stats
REFERENCING NEW TABLE AS added FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.database_stats_entries_added();

CREATE TRIGGER database_stats_entries_removed AFTER DELETE ON perf_monitoring.database_stats
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
EXECUTE FUNCTION perf_monitoring.database_stats_entries_removed();

UPDATE alembic_version SET version_num='0008' WHERE alembic_version.version_num = '0007';

COMMIT;

