SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0002 -> 0001

DROP FUNCTION perf_monitoring.purge_older_than(integer);

DROP TABLE perf_monitoring.table_stats;

DROP TABLE perf_monitoring.statement_stats;

DROP TABLE perf_monitoring.index_stats;

DROP TABLE perf_monitoring.database_stats;

DROP TABLE perf_monitoring.snapshots;

DROP TABLE perf_monitoring.setting_changes;

DROP TABLE perf_monitoring.request_metrics;

DROP TABLE perf_monitoring.app_metrics;

DROP SCHEMA perf_monitoring;

UPDATE alembic_version SET version_num='0001' WHERE alembic_version.version_num = '0002';

COMMIT;

