SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running upgrade 0002 -> 0003

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_trip_requests_active_batch ON public.trip_requests USING btree (id) INCLUDE (search_key, traveler_id, max_price) WHERE (status = 'active'::text);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = 'public.ix_trip_requests_active_batch'::regclass
               AND NOT (indisvalid AND indisready)) THEN
        RAISE EXCEPTION 'index public.ix_trip_requests_active_batch is invalid: DROP INDEX CONCURRENTLY it and rerun';
    END IF;
END $$;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_flight_offers_trip_expiry ON public.flight_offers USING btree (trip_request_id, expires_at) INCLUDE (price_total);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = 'public.ix_flight_offers_trip_expiry'::regclass
               AND NOT (indisvalid AND indisready)) THEN
        RAISE EXCEPTION 'index public.ix_flight_offers_trip_expiry is invalid: DROP INDEX CONCURRENTLY it and rerun';
    END IF;
END $$;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_flight_search_cache_key_expiry ON public.flight_search_cache USING btree (search_key, expires_at DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = 'public.ix_flight_search_cache_key_expiry'::regclass
               AND NOT (indisvalid AND indisready)) THEN
        RAISE EXCEPTION 'index public.ix_flight_search_cache_key_expiry is invalid: DROP INDEX CONCURRENTLY it and rerun';
    END IF;
END $$;

BEGIN;

INSERT INTO perf_monitoring.setting_changes (revision, relation, option_name, old_value, new_value)
SELECT '0003', 'public.flight_offers', k.name, o.option_value, k.value
FROM (VALUES ('autovacuum_vacuum_scale_factor', '0.05'), ('autovacuum_analyze_scale_factor', '0.02'), ('autovacuum_vacuum_cost_limit', '1000')) AS k(name, value)
LEFT JOIN pg_options_to_table(
    (SELECT reloptions FROM pg_class WHERE oid = 'public.flight_offers'::regclass)
) AS o ON o.option_name = k.name;

ALTER TABLE public.flight_offers SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 1000);

INSERT INTO perf_monitoring.setting_changes (revision, relation, option_name, old_value, new_value)
SELECT '0003', 'public.flight_search_cache', k.name, o.option_value, k.value
FROM (VALUES ('autovacuum_vacuum_scale_factor', '0.02'), ('autovacuum_analyze_scale_factor', '0.01'), ('autovacuum_vacuum_insert_scale_factor', '0.05')) AS k(name, value)
LEFT JOIN pg_options_to_table(
    (SELECT reloptions FROM pg_class WHERE oid = 'public.flight_search_cache'::regclass)
) AS o ON o.option_name = k.name;

ALTER TABLE public.flight_search_cache SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05);

INSERT INTO perf_monitoring.setting_changes (revision, relation, option_name, old_value, new_value)
SELECT '0003', 'public.trip_requests', k.name, o.option_value, k.value
FROM (VALUES ('autovacuum_vacuum_scale_factor', '0.05'), ('autovacuum_analyze_scale_factor', '0.02')) AS k(name, value)
LEFT JOIN pg_options_to_table(
    (SELECT reloptions FROM pg_class WHERE oid = 'public.trip_requests'::regclass)
) AS o ON o.option_name = k.name;

ALTER TABLE public.trip_requests SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02);

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

COMMIT;

