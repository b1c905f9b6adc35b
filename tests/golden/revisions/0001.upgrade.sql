SET lock_timeout = '5s';

SET statement_timeout = '2h';

BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

CREATE TABLE public.travelers (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            email text NOT NULL,
            display_name text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_travelers_email UNIQUE (email)
        );

COMMENT ON TABLE public.travelers IS 'People who search for and book flights.';

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
        );

COMMENT ON TABLE public.trip_requests IS 'What a traveler wants to fly; search_key is its normalised search parameters.';

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
        );

COMMENT ON TABLE public.flight_offers IS 'Offers found for a trip request; upserted on every search (trip_request_id, offer_key).';

CREATE TABLE public.flight_search_cache (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            search_key text NOT NULL,
            search_params jsonb NOT NULL,
            offers jsonb NOT NULL,
            offer_count bigint NOT NULL CHECK (offer_count >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        );

COMMENT ON TABLE public.flight_search_cache IS 'Provider search results keyed by normalised search parameters, until expires_at.';

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
        );

COMMENT ON TABLE public.bookings IS 'Bookings made automatically (auto_book) or by the traveler.';

CREATE INDEX ix_trip_requests_traveler_id ON public.trip_requests (traveler_id);

CREATE INDEX ix_bookings_trip_request_id ON public.bookings (trip_request_id);

CREATE INDEX ix_bookings_flight_offer_id ON public.bookings (flight_offer_id);

INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num;

COMMIT;

