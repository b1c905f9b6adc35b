"""The reference data set: searches, trip requests and what the flight provider answers.

Everything here is a pure function of a ``Dataset`` (sizes and a seed), so the seeding code, the
request generator and the simulated provider agree without asking the database: trip request
``i`` always has the same search, status and id (ids are written explicitly, 1..N).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

# A fixed calendar, so that a seed means the same data whatever day it runs.
FIRST_DEPARTURE = date(2027, 1, 4)
DEPARTURE_DAYS = 90
AIRPORTS = (
    "ATL", "BOS", "CDG", "DEN", "DFW", "DXB", "FRA", "HND", "IAH", "JFK", "LAS", "LAX",
    "LHR", "MAD", "MIA", "MUC", "ORD", "SEA", "SFO", "SIN", "SYD", "YYZ", "AMS", "FCO",
)  # fmt: skip
CABINS = ("economy", "economy", "economy", "premium_economy", "business", "first")
CARRIERS = ("AA", "AF", "BA", "DL", "EK", "LH", "NH", "QF", "SQ", "UA")
INACTIVE_STATUSES = ("booked", "expired", "cancelled")
CURRENCY = "USD"


@dataclass(frozen=True)
class Dataset:
    """Sizes and seed of the reference data; the same values always give the same rows.

    ``searches`` distinct search-parameter sets are shared by ``trip_requests`` trips (travelers
    who want the same flights), so the database search cache serves several trips per search.
    Most trip requests are history (booked, expired, cancelled), as in a service that has run
    for a while: ``active_ratio`` of them are active, which is what the partial index
    ``ix_trip_requests_active_batch`` is for (with most rows active it would be no smaller than
    the primary key, and the planner rightly prefers the primary key for ``id = ANY($1)``).
    """

    seed: int = 42
    travelers: int = 2_000
    trip_requests: int = 20_000
    searches: int = 6_000
    active_ratio: float = 0.2
    offers_per_trip: int = 3
    expired_offer_ratio: float = 0.5
    cached_search_ratio: float = 0.3

    def __post_init__(self) -> None:
        for name in ("travelers", "trip_requests", "searches"):
            if getattr(self, name) < 1:
                raise ValueError(f"Dataset.{name} must be at least 1")
        for name in ("active_ratio", "expired_offer_ratio", "cached_search_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Dataset.{name} must be between 0 and 1")
        if self.offers_per_trip < 0:
            raise ValueError("Dataset.offers_per_trip must not be negative")


@dataclass(frozen=True)
class SearchParams:
    """What a traveler searches for; ``search_key`` is its normalised form."""

    origin_code: str
    destination_code: str
    departure_date: date
    return_date: date | None
    adults: int
    cabin_class: str

    @property
    def search_key(self) -> str:
        back = self.return_date.isoformat() if self.return_date else "oneway"
        return (
            f"{self.origin_code}-{self.destination_code}:{self.departure_date.isoformat()}:"
            f"{back}:{self.adults}:{self.cabin_class}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin_code,
            "destination": self.destination_code,
            "departure_date": self.departure_date.isoformat(),
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "adults": self.adults,
            "cabin_class": self.cabin_class,
        }


@dataclass(frozen=True)
class TripRequest:
    """One row of ``trip_requests`` as the seed writes it."""

    id: int
    traveler_id: int
    search: SearchParams
    status: str
    max_price: Decimal | None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Offer:
    """A flight offer: what the provider returns, the cache stores and a search answers."""

    offer_key: str
    carrier_code: str
    flight_number: str
    departure_at: datetime
    arrival_at: datetime
    stops: int
    price_total: Decimal
    currency: str
    seats_available: int | None

    def as_json(self) -> dict[str, Any]:
        # Prices as strings: JSON numbers would pass through float and lose cents.
        return {
            "offer_key": self.offer_key,
            "carrier_code": self.carrier_code,
            "flight_number": self.flight_number,
            "departure_at": self.departure_at.isoformat(),
            "arrival_at": self.arrival_at.isoformat(),
            "stops": self.stops,
            "price_total": str(self.price_total),
            "currency": self.currency,
            "seats_available": self.seats_available,
        }


def searches(dataset: Dataset) -> tuple[SearchParams, ...]:
    """The dataset's distinct searches, in a fixed order."""
    return _catalog(dataset)[0]


def trip_requests(dataset: Dataset) -> tuple[TripRequest, ...]:
    """Every trip request of the dataset, ids 1..N, in id order."""
    return _catalog(dataset)[1]


def active_trip_requests(dataset: Dataset) -> tuple[TripRequest, ...]:
    """The trip requests a traveler can still search for (``status = 'active'``)."""
    return tuple(trip for trip in trip_requests(dataset) if trip.active)


@lru_cache(maxsize=4)
def _catalog(dataset: Dataset) -> tuple[tuple[SearchParams, ...], tuple[TripRequest, ...]]:
    rng = random.Random(f"dbtools-catalog:{dataset.seed}")
    found: dict[str, SearchParams] = {}
    while len(found) < dataset.searches:
        search = _random_search(rng)
        found.setdefault(search.search_key, search)
    distinct = tuple(found.values())
    trips = []
    for trip_id in range(1, dataset.trip_requests + 1):
        search = distinct[rng.randrange(len(distinct))]
        active = rng.random() < dataset.active_ratio
        status = "active" if active else rng.choice(INACTIVE_STATUSES)
        max_price = None if rng.random() < 0.25 else Decimal(rng.randrange(300, 3000))
        trips.append(
            TripRequest(trip_id, rng.randint(1, dataset.travelers), search, status, max_price)
        )
    return distinct, tuple(trips)


def _random_search(rng: random.Random) -> SearchParams:
    origin, destination = rng.sample(AIRPORTS, 2)
    departure = FIRST_DEPARTURE + timedelta(days=rng.randrange(DEPARTURE_DAYS))
    back = None if rng.random() < 0.3 else departure + timedelta(days=rng.randint(2, 21))
    return SearchParams(
        origin, destination, departure, back, rng.choice((1, 1, 1, 2, 2, 3, 4)), rng.choice(CABINS)
    )


@lru_cache(maxsize=65_536)
def provider_offers(search: SearchParams, seed: int) -> tuple[Offer, ...]:
    """What the (simulated) flight provider answers for *search*: a pure function of its key."""
    rng = random.Random(f"dbtools-provider:{seed}:{search.search_key}")
    cabin_factor = {"economy": 1, "premium_economy": 2, "business": 4, "first": 7}
    base = Decimal(rng.randrange(120, 900)) * cabin_factor[search.cabin_class] * search.adults
    offers = []
    for _ in range(rng.randint(3, 8)):
        carrier = rng.choice(CARRIERS)
        number = str(rng.randint(10, 9999))
        departs = datetime.combine(
            search.departure_date, time(rng.randrange(5, 23), rng.choice((0, 15, 30, 45)))
        ).replace(tzinfo=timezone.utc)
        stops = rng.choice((0, 0, 1, 1, 2))
        price = (base * Decimal(rng.randint(80, 160)) / 100).quantize(Decimal("0.01"))
        offers.append(
            Offer(
                offer_key=f"{carrier}{number}-{departs:%Y%m%dT%H%M}",
                carrier_code=carrier,
                flight_number=number,
                departure_at=departs,
                arrival_at=departs + timedelta(minutes=rng.randint(60, 900) + 90 * stops),
                stops=stops,
                price_total=price,
                currency=CURRENCY,
                seats_available=rng.randint(1, 9),
            )
        )
    # Two offers may collide on a key (same carrier, number and minute): keep the first.
    unique = {offer.offer_key: offer for offer in reversed(offers)}
    return tuple(sorted(unique.values(), key=lambda offer: offer.offer_key))
