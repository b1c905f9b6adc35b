SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

-- Running downgrade 0001 -> 

DROP TABLE public.bookings;

DROP TABLE public.flight_search_cache;

DROP TABLE public.flight_offers;

DROP TABLE public.trip_requests;

DROP TABLE public.travelers;

DELETE FROM alembic_version WHERE alembic_version.version_num = '0001';

COMMIT;

