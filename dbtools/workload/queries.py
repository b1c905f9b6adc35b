"""The flight search's SQL: three statements per request, or the same three per batch.

Each statement carries a tag comment after its first keyword (``/* flight_search:NAME */``;
PostgreSQL 18's pg_stat_statements drops *leading* comments from the text it keeps), so the
application's statements can be found in pg_stat_statements by name. The tags are the
application's own, not dbtools' marker: these statements are what dbtools measures.

Parameters go in binary (``%(name)b``: no text escaping of long arrays) and every array is cast
to the type psycopg sends for it (``bigint[]`` for integers, as the pool's connections dump every
``int`` as bigint; ``float8[]``, ``text[]``, ``numeric[]``…); narrower columns are reached by
assignment casts. A parameter's type is part of pg_stat_statements' query id, and an empty array
must not become another entry (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_PREFIX = "flight_search:"


@dataclass(frozen=True)
class Statement:
    """One application statement: its tag, its SQL and the tables whose index should serve it."""

    name: str
    sql: str
    reads: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return f"/* {TAG_PREFIX}{self.name} */"


# The cache stores offers as JSON (prices as strings); both branches return the same columns.
_CACHED_OFFERS = """x.offer_key, x.carrier_code, x.flight_number, x.departure_at, x.arrival_at,
       x.stops, x.price_total, x.currency, x.seats_available"""
_STORED_OFFERS = """o.offer_key, o.carrier_code, o.flight_number, o.departure_at, o.arrival_at,
       o.stops, o.price_total, o.currency, o.seats_available"""
_OFFER_RECORD = """x(offer_key text, carrier_code text, flight_number text,
    departure_at timestamptz, arrival_at timestamptz, stops smallint, price_total numeric,
    currency text, seats_available smallint)"""

# -- 1. load the trip request(s) ------------------------------------------------------------

LOAD_TRIP = Statement(
    "load_trip",
    """SELECT /* flight_search:load_trip */ id, traveler_id, search_key, max_price
FROM public.trip_requests
WHERE id = %(trip_request_id)b AND status = 'active'""",
    reads=("trip_requests",),
)
LOAD_TRIPS_BATCH = Statement(
    "load_trips_batch",
    """SELECT /* flight_search:load_trips_batch */ id, traveler_id, search_key, max_price
FROM public.trip_requests
WHERE id = ANY(%(trip_request_ids)b::bigint[]) AND status = 'active'""",
    reads=("trip_requests",),
)

# -- 2. cached provider results and existing, unexpired offers (one statement) --------------

LOOKUP_OFFERS = Statement(
    "lookup_offers",
    f"""SELECT /* flight_search:lookup_offers */ 'cache' AS source, c.search_key,
       NULL::bigint AS trip_request_id,
       {_CACHED_OFFERS}
FROM (SELECT search_key, offers FROM public.flight_search_cache
      WHERE search_key = %(search_key)b AND expires_at > now()
      ORDER BY expires_at DESC LIMIT 1) AS c
CROSS JOIN LATERAL jsonb_to_recordset(c.offers) AS {_OFFER_RECORD}
UNION ALL
SELECT 'offer', NULL, o.trip_request_id, {_STORED_OFFERS}
FROM public.flight_offers AS o
WHERE o.trip_request_id = %(trip_request_id)b AND o.expires_at > now()""",
    reads=("flight_search_cache", "flight_offers"),
)
LOOKUP_OFFERS_BATCH = Statement(
    "lookup_offers_batch",
    f"""SELECT /* flight_search:lookup_offers_batch */ 'cache' AS source, k.search_key,
       NULL::bigint AS trip_request_id,
       {_CACHED_OFFERS}
FROM unnest(%(search_keys)b::text[]) AS k(search_key)
CROSS JOIN LATERAL (SELECT c.offers FROM public.flight_search_cache AS c
                    WHERE c.search_key = k.search_key AND c.expires_at > now()
                    ORDER BY c.expires_at DESC LIMIT 1) AS c
CROSS JOIN LATERAL jsonb_to_recordset(c.offers) AS {_OFFER_RECORD}
UNION ALL
SELECT 'offer', NULL, o.trip_request_id, {_STORED_OFFERS}
FROM public.flight_offers AS o
WHERE o.trip_request_id = ANY(%(trip_request_ids)b::bigint[]) AND o.expires_at > now()""",
    reads=("flight_search_cache", "flight_offers"),
)

# -- 3. cache fresh provider results and upsert the new offers (one statement, both paths) ---

UPSERT_OFFERS = Statement(
    "upsert_offers",
    """WITH /* flight_search:upsert_offers */ cached AS (
    INSERT INTO public.flight_search_cache
        (search_key, search_params, offers, offer_count, expires_at)
    SELECT s.search_key, s.search_params, s.offers, jsonb_array_length(s.offers),
           now() + %(cache_ttl)b::interval
    FROM unnest(%(cache_keys)b::text[], %(cache_params)b::jsonb[], %(cache_offers)b::jsonb[])
        AS s(search_key, search_params, offers)
    RETURNING 1
)
INSERT INTO public.flight_offers AS o
    (trip_request_id, offer_key, carrier_code, flight_number, departure_at, arrival_at, stops,
     price_total, currency, seats_available, expires_at)
SELECT u.trip_request_id, u.offer_key, u.carrier_code, u.flight_number, u.departure_at,
       u.arrival_at, u.stops, u.price_total, u.currency, u.seats_available,
       now() + %(offer_ttl)b::interval
FROM unnest(%(trip_request_ids)b::bigint[], %(offer_keys)b::text[], %(carrier_codes)b::text[],
            %(flight_numbers)b::text[], %(departures)b::timestamptz[],
            %(arrivals)b::timestamptz[], %(stops)b::bigint[], %(prices)b::numeric[],
            %(currencies)b::text[], %(seats)b::bigint[])
    AS u(trip_request_id, offer_key, carrier_code, flight_number, departure_at, arrival_at,
         stops, price_total, currency, seats_available)
ON CONFLICT (trip_request_id, offer_key) DO UPDATE
SET carrier_code = EXCLUDED.carrier_code, flight_number = EXCLUDED.flight_number,
    departure_at = EXCLUDED.departure_at, arrival_at = EXCLUDED.arrival_at,
    stops = EXCLUDED.stops, price_total = EXCLUDED.price_total,
    seats_available = EXCLUDED.seats_available, expires_at = EXCLUDED.expires_at,
    updated_at = now()""",
)

PER_REQUEST_STATEMENTS = (LOAD_TRIP, LOOKUP_OFFERS, UPSERT_OFFERS)
BATCHED_STATEMENTS = (LOAD_TRIPS_BATCH, LOOKUP_OFFERS_BATCH, UPSERT_OFFERS)
STATEMENTS_PER_ROUND_TRIP = 3

# -- what the application's role needs -------------------------------------------------------

# The privileges the statements above need (the upsert's ON CONFLICT also reads flight_offers;
# identity columns need no grant on their sequences); ``{role}`` is the quoted role name.
APPLICATION_GRANTS = (
    "GRANT SELECT ON public.trip_requests, public.flight_search_cache, public.flight_offers "
    "TO {role}",
    "GRANT INSERT ON public.flight_search_cache TO {role}",
    "GRANT INSERT, UPDATE ON public.flight_offers TO {role}",
    "GRANT USAGE ON SCHEMA perf_monitoring TO {role}",
    "GRANT INSERT ON perf_monitoring.request_metrics TO {role}",
)
