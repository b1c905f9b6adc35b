SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0003 -> 0004

CREATE TABLE perf_monitoring.statement_texts (
    dbid OID NOT NULL,
    queryid BIGINT NOT NULL,
    query TEXT NOT NULL,
    CONSTRAINT pk_statement_texts PRIMARY KEY (dbid, queryid)
);

COMMENT ON TABLE perf_monitoring.statement_texts IS 'One scrubbed query text per statement; statement_stats rows refer to it by (dbid, queryid).';

-- Offline SQL cannot run the scanner that scrubs texts: each text is kept as its length.
INSERT INTO perf_monitoring.statement_texts (dbid, queryid, query)
SELECT DISTINCT ON (dbid, queryid) dbid, queryid,
       format('<unreadable statement, %s characters>', length(query))
FROM perf_monitoring.statement_stats
ORDER BY dbid, queryid, snapshot_id, userid, toplevel DESC;

ALTER TABLE perf_monitoring.statement_stats
    ALTER COLUMN query DROP NOT NULL,
    ALTER COLUMN query TYPE TEXT USING NULL,
    ADD COLUMN min_exec_time FLOAT,
    ADD COLUMN max_exec_time FLOAT;

COMMENT ON COLUMN perf_monitoring.statement_stats.query IS 'NULL since revision 0004: the text is in statement_texts, once per statement';

COMMENT ON COLUMN perf_monitoring.statement_stats.min_exec_time IS 'only shrinks while the entry lives: a rise means it was reset';

COMMENT ON COLUMN perf_monitoring.statement_stats.max_exec_time IS 'only grows while the entry lives: a fall means it was reset';

ALTER TABLE perf_monitoring.snapshots
    ADD COLUMN counting_settings JSONB,
    ADD COLUMN counting_overrides JSONB,
    ADD COLUMN toplevel_calls BIGINT;

COMMENT ON COLUMN perf_monitoring.snapshots.counting_settings IS 'pg_stat_statements.track, track_utility, autovacuum_naptime: value and source';

COMMENT ON COLUMN perf_monitoring.snapshots.counting_overrides IS 'per-role and per-database pg_stat_statements settings; NULL: pg_db_role_setting not readable';

COMMENT ON COLUMN perf_monitoring.snapshots.toplevel_calls IS 'every top-level call pg_stat_statements counted in the database';

ALTER TABLE perf_monitoring.database_stats ADD COLUMN sessions BIGINT;

COMMENT ON COLUMN perf_monitoring.database_stats.sessions IS 'pg_stat_database.sessions (PostgreSQL 14+)';

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0003';

COMMIT;

