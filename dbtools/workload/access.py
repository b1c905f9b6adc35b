"""The flight search's data access: the same three statements for one request or for a batch.

Results come back in binary (``binary=True``): parsing a batch's offers (timestamps, numerics)
from text costs the client more than the server spends on the statements.

``search(requests)`` answers a list of requests with exactly three statements whatever the list
holds: on the per-request path the list is always one request; on the batched path it is a
coalesced batch and the statements take arrays. Both paths share everything else (the provider,
how offers are merged), so they give identical answers for identical requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from dbtools.errors import UsageError
from dbtools.workload import queries
from dbtools.workload.catalog import Offer, SearchParams, provider_offers

ApplicationPool = AsyncConnectionPool[AsyncConnection[Any]]


@dataclass(frozen=True)
class SearchRequest:
    """One flight search: a traveler's trip request and its search parameters."""

    trip_request_id: int
    search: SearchParams

    @property
    def cache_key(self) -> str:
        """The normalised request, the application cache's key."""
        return f"{self.trip_request_id}|{self.search.search_key}"


@dataclass(frozen=True)
class SearchResult:
    """What a search answers: the trip's offers within its budget, cheapest first.

    ``status`` is ``ok``, ``inactive`` (the trip request is no longer active) or ``error``.
    """

    trip_request_id: int
    search_key: str
    status: str
    offers: tuple[Offer, ...] = ()
    error: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class _Trip:
    id: int
    traveler_id: int
    search_key: str
    max_price: Decimal | None


@dataclass
class _Found:
    cached: dict[str, tuple[Offer, ...]] = field(default_factory=dict)
    existing: dict[int, dict[str, Offer]] = field(default_factory=dict)


class Provider:
    """The simulated flight provider: deterministic answers, an optional fixed latency."""

    def __init__(self, seed: int, latency_s: float = 0.0) -> None:
        self.seed = seed
        self.latency_s = latency_s
        self.calls = 0

    async def search(self, search: SearchParams) -> tuple[Offer, ...]:
        self.calls += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return provider_offers(search, self.seed)


@dataclass(frozen=True)
class Freshness:
    """How long what a search writes stays valid."""

    search_cache_ttl: timedelta = timedelta(minutes=15)
    offer_ttl: timedelta = timedelta(minutes=30)


class Dialect(Protocol):
    """How the three statements are sent: per request (scalars) or per batch (arrays)."""

    statements: tuple[queries.Statement, ...]

    async def load_trips(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest]
    ) -> list[tuple[Any, ...]]: ...

    async def lookup_offers(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest], trips: list[_Trip]
    ) -> list[tuple[Any, ...]]: ...


class PerRequest:
    """Each request sends its own three statements (``id = $1``)."""

    statements: tuple[queries.Statement, ...] = queries.PER_REQUEST_STATEMENTS

    async def load_trips(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest]
    ) -> list[tuple[Any, ...]]:
        (request,) = requests
        cur = await conn.execute(
            queries.LOAD_TRIP.sql, {"trip_request_id": request.trip_request_id}, binary=True
        )
        return await cur.fetchall()

    async def lookup_offers(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest], trips: list[_Trip]
    ) -> list[tuple[Any, ...]]:
        (request,) = requests
        search_key = trips[0].search_key if trips else request.search.search_key
        cur = await conn.execute(
            queries.LOOKUP_OFFERS.sql,
            {"trip_request_id": request.trip_request_id, "search_key": search_key},
            binary=True,
        )
        return await cur.fetchall()


class Batched:
    """A batch of requests shares three statements (``id = ANY($1)``)."""

    statements: tuple[queries.Statement, ...] = queries.BATCHED_STATEMENTS

    async def load_trips(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest]
    ) -> list[tuple[Any, ...]]:
        ids = sorted({request.trip_request_id for request in requests})
        cur = await conn.execute(
            queries.LOAD_TRIPS_BATCH.sql, {"trip_request_ids": ids}, binary=True
        )
        return await cur.fetchall()

    async def lookup_offers(
        self, conn: AsyncConnection[Any], requests: Sequence[SearchRequest], trips: list[_Trip]
    ) -> list[tuple[Any, ...]]:
        cur = await conn.execute(
            queries.LOOKUP_OFFERS_BATCH.sql,
            {
                "trip_request_ids": [trip.id for trip in trips],
                "search_keys": sorted({trip.search_key for trip in trips}),
            },
            binary=True,
        )
        return await cur.fetchall()


class FlightSearch:
    """Answer searches through a pool with one dialect; three statements per ``search`` call."""

    def __init__(
        self,
        pool: ApplicationPool,
        dialect: Dialect,
        provider: Provider,
        freshness: Freshness = Freshness(),
    ) -> None:
        self.pool = pool
        self.dialect = dialect
        self.provider = provider
        self.freshness = freshness
        self.round_trips = 0  # calls of search() that reached the database

    async def search(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        """Answer *requests* (one, or a batch) with exactly three statements."""
        self.round_trips += 1
        async with self.pool.connection() as conn:
            trips = [_Trip(*row) for row in await self.dialect.load_trips(conn, requests)]
            rows = await self.dialect.lookup_offers(conn, requests, trips)
        _check_same_dataset(requests, trips)
        found = _parse_lookup(rows, {trip.id for trip in trips})
        searches = {request.search.search_key: request.search for request in requests}
        missing = sorted({trip.search_key for trip in trips} - found.cached.keys())
        answers = await asyncio.gather(*(self.provider.search(searches[k]) for k in missing))
        fresh = dict(zip(missing, answers, strict=True))
        offers_by_key = {**found.cached, **fresh}
        async with self.pool.connection() as conn:
            await conn.execute(
                queries.UPSERT_OFFERS.sql,
                self._upsert_params(trips, offers_by_key, fresh, found, searches),
                binary=True,
            )
        by_id = {trip.id: trip for trip in trips}
        return [
            _answer(request, by_id.get(request.trip_request_id), offers_by_key, found)
            for request in requests
        ]

    def _upsert_params(
        self,
        trips: list[_Trip],
        offers_by_key: Mapping[str, tuple[Offer, ...]],
        fresh: Mapping[str, tuple[Offer, ...]],
        found: _Found,
        searches: Mapping[str, SearchParams],
    ) -> dict[str, Any]:
        changed = [
            (trip.id, offer)
            for trip in trips
            for offer in offers_by_key[trip.search_key]
            if found.existing.get(trip.id, {}).get(offer.offer_key) != offer
        ]
        return {
            "cache_ttl": self.freshness.search_cache_ttl,
            "cache_keys": list(fresh),
            "cache_params": [Jsonb(searches[key].as_json()) for key in fresh],
            "cache_offers": [Jsonb([o.as_json() for o in offers]) for offers in fresh.values()],
            "offer_ttl": self.freshness.offer_ttl,
            **_columns(changed),
        }


def _check_same_dataset(requests: Sequence[SearchRequest], trips: Iterable[_Trip]) -> None:
    """The requests come from the dataset the run was told about; the rows from the one that was
    seeded. A trip whose stored search differs means they are not the same dataset."""
    asked = {request.trip_request_id: request.search.search_key for request in requests}
    for trip in trips:
        if asked[trip.id] != trip.search_key:
            raise UsageError(
                f"trip request {trip.id} is stored with search {trip.search_key!r}, not "
                f"{asked[trip.id]!r}: the database was seeded with another dataset (give the run "
                "the seed and sizes the seed was given)"
            )


def _columns(changed: Iterable[tuple[int, Offer]]) -> dict[str, list[Any]]:
    """The upsert's unnest arrays, one per column."""
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "trip_request_ids", "offer_keys", "carrier_codes", "flight_numbers", "departures",
            "arrivals", "stops", "prices", "currencies", "seats",
        )
    }  # fmt: skip
    for trip_id, offer in changed:
        values = (
            trip_id, offer.offer_key, offer.carrier_code, offer.flight_number,
            offer.departure_at, offer.arrival_at, offer.stops, offer.price_total,
            offer.currency, offer.seats_available,
        )  # fmt: skip
        for column, value in zip(columns.values(), values, strict=True):
            column.append(value)
    return columns


def _parse_lookup(rows: Iterable[tuple[Any, ...]], active: set[int]) -> _Found:
    found = _Found()
    cached: dict[str, list[Offer]] = {}
    for source, search_key, trip_id, *offer_fields in rows:
        offer = Offer(*offer_fields)
        if source == "cache":
            cached.setdefault(search_key, []).append(offer)
        elif trip_id in active:
            found.existing.setdefault(trip_id, {})[offer.offer_key] = offer
    found.cached = {key: tuple(offers) for key, offers in cached.items()}
    return found


def _answer(
    request: SearchRequest,
    trip: _Trip | None,
    offers_by_key: Mapping[str, tuple[Offer, ...]],
    found: _Found,
) -> SearchResult:
    if trip is None:
        return SearchResult(request.trip_request_id, request.search.search_key, "inactive")
    merged = dict(found.existing.get(trip.id, {}))
    merged.update((offer.offer_key, offer) for offer in offers_by_key[trip.search_key])
    within_budget = [
        offer
        for offer in merged.values()
        if trip.max_price is None or offer.price_total <= trip.max_price
    ]
    within_budget.sort(key=lambda offer: (offer.price_total, offer.offer_key))
    return SearchResult(trip.id, trip.search_key, "ok", tuple(within_budget))
