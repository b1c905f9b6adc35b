SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0004 -> 0003

UPDATE perf_monitoring.statement_stats s
SET query = coalesce((SELECT t.query FROM perf_monitoring.statement_texts t
                      WHERE t.dbid = s.dbid AND t.queryid = s.queryid), '<text not stored>');

ALTER TABLE perf_monitoring.statement_stats
    ALTER COLUMN query SET NOT NULL,
    DROP COLUMN min_exec_time,
    DROP COLUMN max_exec_time;

COMMENT ON COLUMN perf_monitoring.statement_stats.query IS '';

ALTER TABLE perf_monitoring.database_stats DROP COLUMN sessions;

ALTER TABLE perf_monitoring.snapshots
    DROP COLUMN toplevel_calls,
    DROP COLUMN counting_overrides,
    DROP COLUMN counting_settings;

DROP TABLE perf_monitoring.statement_texts;

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0004';

COMMIT;

