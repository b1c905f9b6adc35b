SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0006 -> 0005

ALTER TABLE perf_monitoring.request_metrics
    DROP COLUMN queries,
    DROP COLUMN variant;

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0006';

COMMIT;

