SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0007 -> 0006

ALTER TABLE perf_monitoring.request_metrics DROP COLUMN latency_histogram;

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0007';

COMMIT;

