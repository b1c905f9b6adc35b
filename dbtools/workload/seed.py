"""Fill the flight-search tables with the reference data set, fast (COPY), and analyse them.

The rows are those of ``dbtools.workload.catalog`` (travelers, trip requests with explicit ids
1..N), plus existing offers per trip (some already expired) and search-cache rows for a share of
the searches, whose contents are exactly what the provider answers, so a search gives the same
result whether the cache or the provider serves it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from dbtools.db.connection import session
from dbtools.db.errors import translated_errors
from dbtools.errors import PrerequisiteMissing, UsageError
from dbtools.workload.catalog import (
    CURRENCY,
    Dataset,
    Offer,
    TripRequest,
    provider_offers,
    searches,
    trip_requests,
)

log = logging.getLogger(__name__)

SEED_STATEMENT_TIMEOUT = "10min"

SCHEMA_EXISTS_SQL = """
SELECT to_regclass('public.trip_requests') IS NOT NULL
   AND to_regclass('public.flight_search_cache') IS NOT NULL
"""
HAS_ROWS_SQL = """
SELECT EXISTS (SELECT 1 FROM public.travelers)
    OR EXISTS (SELECT 1 FROM public.trip_requests)
    OR EXISTS (SELECT 1 FROM public.flight_offers)
    OR EXISTS (SELECT 1 FROM public.flight_search_cache)
    OR EXISTS (SELECT 1 FROM public.bookings)
"""
TRUNCATE_SQL = (
    "TRUNCATE public.bookings, public.flight_offers, public.flight_search_cache, "
    "public.trip_requests, public.travelers RESTART IDENTITY"
)

SERVER_NOW_SQL = "SELECT now()"
COPY_TRAVELERS_SQL = "COPY public.travelers (id, email, display_name) FROM STDIN"
COPY_TRIP_REQUESTS_SQL = """
COPY public.trip_requests (id, traveler_id, origin_code, destination_code, departure_date,
    return_date, adults, cabin_class, max_price, currency, status, search_key) FROM STDIN
"""
COPY_OFFERS_SQL = """
COPY public.flight_offers (trip_request_id, offer_key, carrier_code, flight_number, departure_at,
    arrival_at, stops, price_total, currency, seats_available, expires_at) FROM STDIN
"""
COPY_CACHE_SQL = """
COPY public.flight_search_cache (search_key, search_params, offers, offer_count, created_at,
    expires_at) FROM STDIN
"""
# Identity columns were written explicitly: move their sequences past the seeded ids.
RESYNC_IDENTITY_SQL = """
SELECT setval(pg_get_serial_sequence('public.travelers', 'id'), %(travelers)s),
       setval(pg_get_serial_sequence('public.trip_requests', 'id'), %(trip_requests)s)
"""
VACUUM_ANALYZE_SQL = (
    "VACUUM (ANALYZE) public.travelers, public.trip_requests, public.flight_offers, "
    "public.flight_search_cache"
)


@dataclass(frozen=True)
class SeedSummary:
    """What ``seed_database`` wrote."""

    dataset: Dataset
    travelers: int
    trip_requests: int
    active_trip_requests: int
    offers: int
    cache_rows: int
    elapsed_s: float


def seed_database(
    dsn: str, dataset: Dataset | None = None, *, replace: bool = False
) -> SeedSummary:
    """Write the reference data set (*dataset*, default ``Dataset()``) into a migrated database,
    then VACUUM ANALYZE it.

    Raises ``PrerequisiteMissing`` when the flight-search tables do not exist (run the
    migrations first) and ``UsageError`` when they already hold rows, unless *replace* (which
    truncates them first). All rows go in one transaction: a failure leaves nothing behind.
    """
    dataset = dataset or Dataset()
    log.info("seeding %d trip requests, %d travelers", dataset.trip_requests, dataset.travelers)
    started = time.perf_counter()
    trips = trip_requests(dataset)
    refused = translated_errors("seeding the flight-search tables")
    with refused, session(dsn, read_only=False, statement_timeout=SEED_STATEMENT_TIMEOUT) as conn:
        _check_target(conn, replace=replace)
        with conn.transaction():
            if replace:
                conn.execute(TRUNCATE_SQL)
            now = _server_now(conn)
            _copy(conn, COPY_TRAVELERS_SQL, _traveler_rows(dataset))
            _copy(conn, COPY_TRIP_REQUESTS_SQL, (_trip_row(trip) for trip in trips))
            offers = _copy(conn, COPY_OFFERS_SQL, _offer_rows(dataset, trips, now))
            cache_rows = _copy(conn, COPY_CACHE_SQL, _cache_rows(dataset, now))
            conn.execute(
                RESYNC_IDENTITY_SQL,
                {"travelers": dataset.travelers, "trip_requests": dataset.trip_requests},
            )
        conn.autocommit = True  # VACUUM cannot run inside a transaction block
        conn.execute(VACUUM_ANALYZE_SQL)
    return SeedSummary(
        dataset=dataset,
        travelers=dataset.travelers,
        trip_requests=len(trips),
        active_trip_requests=sum(trip.active for trip in trips),
        offers=offers,
        cache_rows=cache_rows,
        elapsed_s=time.perf_counter() - started,
    )


def _check_target(conn: psycopg.Connection[Any], *, replace: bool) -> None:
    exists = conn.execute(SCHEMA_EXISTS_SQL).fetchone()
    if not exists or not exists[0]:
        conn.rollback()
        raise PrerequisiteMissing(
            "the flight-search tables do not exist here; run the migrations first "
            "(alembic upgrade head)"
        )
    has_rows = conn.execute(HAS_ROWS_SQL).fetchone()
    conn.rollback()
    if has_rows and has_rows[0] and not replace:
        raise UsageError(
            "the flight-search tables already hold rows; seeding needs empty tables "
            "(pass replace=True / --replace to truncate them first)"
        )


def _server_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(SERVER_NOW_SQL).fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def _copy(conn: psycopg.Connection[Any], statement: str, rows: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _traveler_rows(dataset: Dataset) -> Iterator[tuple[Any, ...]]:
    for traveler_id in range(1, dataset.travelers + 1):
        yield traveler_id, f"traveler{traveler_id}@example.test", f"Traveler {traveler_id}"


def _trip_row(trip: TripRequest) -> tuple[Any, ...]:
    search = trip.search
    return (
        trip.id, trip.traveler_id, search.origin_code, search.destination_code,
        search.departure_date, search.return_date, search.adults, search.cabin_class,
        trip.max_price, CURRENCY, trip.status, search.search_key,
    )  # fmt: skip


def _offer_rows(
    dataset: Dataset, trips: tuple[TripRequest, ...], now: datetime
) -> Iterator[tuple[Any, ...]]:
    """Offers found by earlier searches: the provider's offers at older prices, some expired,
    and one offer the provider no longer returns (still shown until it expires)."""
    rng = random.Random(f"dbtools-seed-offers:{dataset.seed}")
    for trip in trips:
        offers = list(provider_offers(trip.search, dataset.seed))
        withdrawn = _withdrawn_offer(offers[0], trip.id)
        for offer in [withdrawn, *offers][: dataset.offers_per_trip]:
            if rng.random() < dataset.expired_offer_ratio:
                expires = now - timedelta(minutes=rng.randint(1, 24 * 60))
            else:
                expires = now + timedelta(minutes=rng.randint(60, 7 * 24 * 60))
            older_price = (offer.price_total * Decimal("1.07")).quantize(Decimal("0.01"))
            yield (
                trip.id, offer.offer_key, offer.carrier_code, offer.flight_number,
                offer.departure_at, offer.arrival_at, offer.stops, older_price, offer.currency,
                offer.seats_available, expires,
            )  # fmt: skip


def _withdrawn_offer(offer: Offer, trip_id: int) -> Offer:
    return Offer(
        offer_key=f"XX{trip_id}-{offer.departure_at:%Y%m%dT%H%M}",
        carrier_code="XX",
        flight_number=str(trip_id % 10_000),
        departure_at=offer.departure_at,
        arrival_at=offer.arrival_at,
        stops=offer.stops,
        price_total=offer.price_total,
        currency=offer.currency,
        seats_available=None,
    )


def _cache_rows(dataset: Dataset, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Search-cache rows for a share of the searches: a fresh one, and an expired one before it."""
    rng = random.Random(f"dbtools-seed-cache:{dataset.seed}")
    for search in searches(dataset):
        if rng.random() >= dataset.cached_search_ratio:
            continue
        offers = provider_offers(search, dataset.seed)
        params = json.dumps(search.as_json())
        payload = json.dumps([offer.as_json() for offer in offers])
        created = now - timedelta(minutes=rng.randint(5, 90))
        yield search.search_key, params, payload, len(offers), created - timedelta(hours=2), created
        yield (
            search.search_key, params, payload, len(offers), created,
            now + timedelta(minutes=rng.randint(30, 240)),
        )  # fmt: skip
