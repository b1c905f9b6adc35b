SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0003 -> 0002

DO $$
DECLARE r record;
BEGIN
    -- Restore public.trip_requests as it was before revision 0003.
    FOR r IN SELECT option_name, old_value FROM perf_monitoring.setting_changes
             WHERE revision = '0003' AND relation = 'public.trip_requests' ORDER BY id
    LOOP
        IF r.old_value IS NULL THEN
            EXECUTE 'ALTER TABLE public.trip_requests RESET (' || quote_ident(r.option_name) || ')';
        ELSE
            EXECUTE 'ALTER TABLE public.trip_requests SET (' || quote_ident(r.option_name) || ' = '
                || quote_literal(r.old_value) || ')';
        END IF;
    END LOOP;
END $$;

DO $$
DECLARE r record;
BEGIN
    -- Restore public.flight_search_cache as it was before revision 0003.
    FOR r IN SELECT option_name, old_value FROM perf_monitoring.setting_changes
             WHERE revision = '0003' AND relation = 'public.flight_search_cache' ORDER BY id
    LOOP
        IF r.old_value IS NULL THEN
            EXECUTE 'ALTER TABLE public.flight_search_cache RESET (' || quote_ident(r.option_name) || ')';
        ELSE
            EXECUTE 'ALTER TABLE public.flight_search_cache SET (' || quote_ident(r.option_name) || ' = '
                || quote_literal(r.old_value) || ')';
        END IF;
    END LOOP;
END $$;

DO $$
DECLARE r record;
BEGIN
    -- Restore public.flight_offers as it was before revision 0003.
    FOR r IN SELECT option_name, old_value FROM perf_monitoring.setting_changes
             WHERE revision = '0003' AND relation = 'public.flight_offers' ORDER BY id
    LOOP
        IF r.old_value IS NULL THEN
            EXECUTE 'ALTER TABLE public.flight_offers RESET (' || quote_ident(r.option_name) || ')';
        ELSE
            EXECUTE 'ALTER TABLE public.flight_offers SET (' || quote_ident(r.option_name) || ' = '
                || quote_literal(r.old_value) || ')';
        END IF;
    END LOOP;
END $$;

DELETE FROM perf_monitoring.setting_changes WHERE revision = '0003';

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS public.ix_flight_search_cache_key_expiry;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS public.ix_flight_offers_trip_expiry;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS public.ix_trip_requests_active_batch;

BEGIN;

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0003';

COMMIT;

