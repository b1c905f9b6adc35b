SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0005 -> 0006

ALTER TABLE perf_monitoring.request_metrics
    ADD COLUMN variant TEXT,
    ADD COLUMN queries BIGINT;

COMMENT ON COLUMN perf_monitoring.request_metrics.variant IS 'the code path that served the requests (per-request, batched, ...); NULL: not told';

COMMENT ON COLUMN perf_monitoring.request_metrics.queries IS 'statements the application sent for these requests; NULL: not counted';

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0005';

COMMIT;

