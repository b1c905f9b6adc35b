SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0006 -> 0007

ALTER TABLE perf_monitoring.request_metrics ADD COLUMN latency_histogram INTEGER[];

COMMENT ON COLUMN perf_monitoring.request_metrics.latency_histogram IS 'requests by latency: element k counts latencies in (2^((k-42)/8), 2^((k-41)/8)] ms (element 1: up to 2^-5 ms, element 202: above 2^20 ms); NULL: not recorded';

UPDATE alembic_version SET version_num='0007' WHERE alembic_version.version_num = '0006';

COMMIT;

