"""Baseline flight-search schema: travelers, trip requests, offers, the search cache, bookings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import IndexDefinition, Manifest

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables in creation order; the downgrade drops them in reverse.
TABLES: dict[str, tuple[str, str]] = {
    "travelers": (
        """
        CREATE TABLE public.travelers (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            email text NOT NULL,
            display_name text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_travelers_email UNIQUE (email)
        )""",
        "People who search for and book flights.",
    ),
    "trip_requests": (
        """
        CREATE TABLE public.trip_requests (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            traveler_id bigint NOT NULL REFERENCES public.travelers (id),
            origin_code text NOT NULL CHECK (origin_code ~ '^[A-Z]{3}$'),
            destination_code text NOT NULL CHECK (destination_code ~ '^[A-Z]{3}$'),
            departure_date date NOT NULL,
            return_date date CHECK (return_date >= departure_date),
            adults bigint NOT NULL DEFAULT 1 CHECK (adults BETWEEN 1 AND 9),
            cabin_class text NOT NULL DEFAULT 'economy'
                CHECK (cabin_class IN ('economy', 'premium_economy', 'business', 'first')),
            max_price numeric(12, 2) CHECK (max_price > 0),
            currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
            auto_book boolean NOT NULL DEFAULT false,
            status text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'booked', 'expired', 'cancelled')),
            search_key text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        "What a traveler wants to fly; search_key is its normalised search parameters.",
    ),
    "flight_offers": (
        """
        CREATE TABLE public.flight_offers (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            trip_request_id bigint NOT NULL REFERENCES public.trip_requests (id) ON DELETE CASCADE,
            offer_key text NOT NULL,
            carrier_code text NOT NULL,
            flight_number text NOT NULL,
            departure_at timestamptz NOT NULL,
            arrival_at timestamptz NOT NULL,
            stops bigint NOT NULL DEFAULT 0 CHECK (stops >= 0),
            price_total numeric(12, 2) NOT NULL CHECK (price_total >= 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            seats_available bigint,
            expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_flight_offers_trip_offer UNIQUE (trip_request_id, offer_key)
        )""",
        "Offers found for a trip request; upserted on every search (trip_request_id, offer_key).",
    ),
    "flight_search_cache": (
        """
        CREATE TABLE public.flight_search_cache (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            search_key text NOT NULL,
            search_params jsonb NOT NULL,
            offers jsonb NOT NULL,
            offer_count bigint NOT NULL CHECK (offer_count >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )""",
        "Provider search results keyed by normalised search parameters, until expires_at.",
    ),
    "bookings": (
        """
        CREATE TABLE public.bookings (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            trip_request_id bigint NOT NULL REFERENCES public.trip_requests (id),
            flight_offer_id bigint REFERENCES public.flight_offers (id) ON DELETE SET NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'confirmed', 'failed', 'cancelled')),
            price_total numeric(12, 2) NOT NULL CHECK (price_total >= 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            booked_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        "Bookings made automatically (auto_book) or by the traveler.",
    ),
}

# Foreign-key indexes; the tables are new, so a plain (non-concurrent) build blocks nobody.
INDEXES = (
    "CREATE INDEX ix_trip_requests_traveler_id ON public.trip_requests (traveler_id)",
    "CREATE INDEX ix_bookings_trip_request_id ON public.bookings (trip_request_id)",
    "CREATE INDEX ix_bookings_flight_offer_id ON public.bookings (flight_offer_id)",
)

# What this revision creates (tests/test_manifests.py compares it with the catalog).
MANIFEST = Manifest(
    tables=tuple(f"public.{table}" for table in TABLES),
    indexes=tuple(
        IndexDefinition(definition)
        for definition in (
            "CREATE UNIQUE INDEX travelers_pkey ON public.travelers USING btree (id)",
            "CREATE UNIQUE INDEX uq_travelers_email ON public.travelers USING btree (email)",
            "CREATE UNIQUE INDEX trip_requests_pkey ON public.trip_requests USING btree (id)",
            "CREATE UNIQUE INDEX flight_offers_pkey ON public.flight_offers USING btree (id)",
            "CREATE UNIQUE INDEX uq_flight_offers_trip_offer ON public.flight_offers "
            "USING btree (trip_request_id, offer_key)",
            "CREATE UNIQUE INDEX flight_search_cache_pkey ON public.flight_search_cache "
            "USING btree (id)",
            "CREATE UNIQUE INDEX bookings_pkey ON public.bookings USING btree (id)",
            "CREATE INDEX ix_trip_requests_traveler_id ON public.trip_requests "
            "USING btree (traveler_id)",
            "CREATE INDEX ix_bookings_trip_request_id ON public.bookings "
            "USING btree (trip_request_id)",
            "CREATE INDEX ix_bookings_flight_offer_id ON public.bookings "
            "USING btree (flight_offer_id)",
        )
    ),
)


def upgrade() -> None:
    for table, (ddl, comment) in TABLES.items():
        op.execute(ddl)
        quoted = comment.replace("'", "''")
        op.execute(f"COMMENT ON TABLE public.{table} IS '{quoted}'")
    for ddl in INDEXES:
        op.execute(ddl)


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-table in downgrade because undoing the baseline drops exactly the tables its upgrade created; `dbtools downgrade-plan` exports their rows first
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE public.{table}")
