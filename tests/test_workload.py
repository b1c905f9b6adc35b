"""The reference workload: identical answers on both paths, exact statement counts in
pg_stat_statements, exact request metrics and cache hit ratios, and plans on the batch indexes."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import socket
from collections.abc import Sequence
from datetime import datetime

import psycopg
import pytest

from dbtools.errors import ConnectionFailed, PrerequisiteMissing, UsageError
from dbtools.metrics import percentile
from dbtools.workload import (
    DataPath,
    Dataset,
    Duplication,
    SearchRequest,
    WorkloadConfig,
    WorkloadResult,
    application_pool,
    distinct_requests,
    generate_requests,
    run_workload,
    run_workload_async,
    seed_database,
)
from dbtools.workload.catalog import active_trip_requests, provider_offers, trip_requests
from dbtools.workload.coalescer import Coalescer
from dbtools.workload.observe import batched_plans, calls_between, statement_calls
from dbtools.workload.queries import BATCHED_STATEMENTS, PER_REQUEST_STATEMENTS
from dbtools.workload.runner import split_traffic
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, run_cli
from tests.workload_helpers import expected_paths

DATASET = Dataset()


# -- the request stream -------------------------------------------------------------------------


@pytest.mark.parametrize("level", list(Duplication))
def test_the_stream_repeats_exactly_the_levels_share(level: Duplication) -> None:
    stream = generate_requests(DATASET, 1000, level, seed=7)
    assert len(stream) == 1000
    assert len({request.cache_key for request in stream}) == distinct_requests(1000, level)
    assert distinct_requests(1000, level) == 1000 - round(1000 * level.hit_ratio)
    assert all(DATASET.trip_requests >= request.trip_request_id >= 1 for request in stream)
    assert stream == generate_requests(DATASET, 1000, level, seed=7)
    assert stream != generate_requests(DATASET, 1000, level, seed=8)


def test_the_stream_refuses_more_distinct_requests_than_active_trips() -> None:
    active = len(active_trip_requests(DATASET))
    with pytest.raises(UsageError, match=f"the dataset has {active} active ones"):
        generate_requests(DATASET, active + 1, Duplication.NONE, seed=1)


def test_the_catalog_is_a_pure_function_of_the_dataset() -> None:
    small = Dataset(seed=3, travelers=10, trip_requests=50, searches=20)
    trips = trip_requests(small)
    assert [trip.id for trip in trips] == list(range(1, 51))
    assert len({trip.search.search_key for trip in trips}) <= 20
    assert trips == trip_requests(Dataset(seed=3, travelers=10, trip_requests=50, searches=20))
    search = trips[0].search
    assert provider_offers(search, 3) == provider_offers(search, 3)
    assert provider_offers(search, 3) != provider_offers(search, 4)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10], 0.95) == 10
    assert percentile(list(range(1, 101)), 0.95) == pytest.approx(95.05)


# -- the coalescer --------------------------------------------------------------------------------


def test_the_coalescer_batches_a_burst_and_splits_at_the_maximum() -> None:
    batches: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [2 * item for item in items]

    async def burst() -> list[int]:
        coalescer: Coalescer[int, int] = Coalescer(double, window_s=0.002, max_size=4)
        answers = await asyncio.gather(*(coalescer.submit(i) for i in range(10)))
        await coalescer.drain()
        return answers

    assert asyncio.run(burst()) == [2 * i for i in range(10)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_the_coalescer_gives_every_caller_the_batch_error() -> None:
    async def fail(items: Sequence[int]) -> list[int]:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    async def burst() -> list[BaseException | int]:
        coalescer: Coalescer[int, int] = Coalescer(fail, window_s=0, max_size=10)
        return await asyncio.gather(
            *(coalescer.submit(i) for i in range(3)), return_exceptions=True
        )

    answers = asyncio.run(burst())
    assert [type(answer) for answer in answers] == [psycopg.errors.QueryCanceled] * 3


# -- against PostgreSQL ------------------------------------------------------------------------------


def _ok(result: WorkloadResult) -> None:
    assert result.errors == 0, [r.error for r in result.results if r.error][:1]


def test_both_paths_give_identical_answers(seeded_database: Database, pg_server: PgServer) -> None:
    config = WorkloadConfig(requests=240, concurrency=12, duplication=Duplication.MEDIUM, seed=5)
    per_request = run_workload(
        seeded_database.dsn, dataclasses.replace(config, path=DataPath.PER_REQUEST)
    )
    # The batched path on a second, untouched copy: it calls the provider and fills the caches
    # itself, and must still answer exactly as the per-request path did.
    other = Database(pg_server, pg_server.create_database("dbtools_test_workload"))
    try:
        batched = run_workload(other.dsn, config)
    finally:
        pg_server.drop_database(other.name)
    # And again on the first copy, after the per-request run changed its offers and caches.
    batched_again = run_workload(seeded_database.dsn, config)
    for run in (per_request, batched, batched_again):
        _ok(run)
    assert per_request.results == batched.results == batched_again.results
    assert [r.trip_request_id for r in per_request.results] == [
        request.trip_request_id
        for request in generate_requests(DATASET, 240, Duplication.MEDIUM, 5)
    ]
    answered = [result for result in batched.results if result.offers]
    assert len(answered) > 100
    trips = {trip.id: trip for trip in trip_requests(DATASET)}
    for result in answered:
        trip = trips[result.trip_request_id]
        prices = [offer.price_total for offer in result.offers]
        assert prices == sorted(prices)
        assert trip.max_price is None or max(prices) <= trip.max_price
        fresh = {o for o in provider_offers(trip.search, DATASET.seed)
                 if trip.max_price is None or o.price_total <= trip.max_price}  # fmt: skip
        assert fresh <= set(result.offers)


@pytest.mark.parametrize("path", list(DataPath))
def test_pg_stat_statements_sees_exactly_three_statements_per_round_trip(
    seeded_database: Database, path: DataPath
) -> None:
    config = WorkloadConfig(
        path=path, requests=200, concurrency=10, duplication=Duplication.LOW, seed=3
    )
    expected = expected_paths(config)[path]
    misses, batches = expected.misses, expected.round_trips
    before = statement_calls(seeded_database.dsn)
    result = run_workload(seeded_database.dsn, config)
    seen = calls_between(before, statement_calls(seeded_database.dsn))
    _ok(result)
    assert (result.cache_misses, result.cache_hits) == (misses, 200 - misses) == (160, 40)
    if path is DataPath.PER_REQUEST:
        assert result.round_trips == misses and result.batches == 0
        statements = PER_REQUEST_STATEMENTS
    else:
        assert result.round_trips == result.batches == batches == 20
        statements = BATCHED_STATEMENTS
    assert seen == {statement.name: result.round_trips for statement in statements}
    assert sum(seen.values()) == result.statements_sent == 3 * result.round_trips
    # What the pool's counting cursors saw, and what the request metrics say it sent.
    assert result.path(path).statements_counted == result.statements_sent
    assert seeded_database.execute(
        "SELECT variant, sum(queries)::int, sum(requests)::int"
        " FROM perf_monitoring.request_metrics GROUP BY 1"
    ) == [(path.value, result.statements_sent, 200)]
    # The same requests again: every offer now exists, the upserts send empty arrays, and
    # still each statement keeps its one pg_stat_statements entry.
    again = run_workload(seeded_database.dsn, dataclasses.replace(config, record_metrics=False))
    assert (again.round_trips, again.provider_calls) == (result.round_trips, 0)
    entries = seeded_database.execute(
        r"SELECT substring(query from 'flight_search:([a-z_]+)'), count(*)::int"
        r" FROM pg_stat_statements WHERE query ~ '^\w+ /\* flight_search:'"
        " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " GROUP BY 1"
    )
    assert dict(entries) == dict.fromkeys(seen, 1)


def test_runs_sharing_a_warm_pool_stay_exact(seeded_database: Database) -> None:
    dsn = seeded_database.dsn

    async def two_runs() -> list[WorkloadResult]:
        base = WorkloadConfig(
            requests=50, concurrency=5, duplication=Duplication.NONE, record_metrics=False
        )
        async with application_pool(dsn, base) as pool:
            return [
                await run_workload_async(dsn, dataclasses.replace(base, path=path), pool=pool)
                for path in DataPath
            ]

    before = statement_calls(dsn)
    per_request, batched = asyncio.run(two_runs())
    seen = calls_between(before, statement_calls(dsn))
    assert (per_request.round_trips, batched.round_trips) == (50, 10)
    assert seen == {
        "load_trip": 50, "lookup_offers": 50, "load_trips_batch": 10, "lookup_offers_batch": 10,
        "upsert_offers": 60,
    }  # fmt: skip
    assert per_request.results == batched.results


def test_an_unreachable_server_is_one_clear_error(pg_server: PgServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionFailed, match=f"port {port}") as raised:
        run_workload(f"postgresql://nobody:secret@127.0.0.1:{port}/x", WorkloadConfig(requests=1))
    assert "secret" not in str(raised.value)


def test_ten_concurrent_requests_send_thirty_statements_or_three(
    seeded_database: Database,
) -> None:
    sent = {}
    for path in DataPath:
        config = WorkloadConfig(
            path=path, requests=10, concurrency=10, duplication=Duplication.NONE, seed=9
        )
        before = statement_calls(seeded_database.dsn)
        run_workload(seeded_database.dsn, config)
        seen = calls_between(before, statement_calls(seeded_database.dsn))
        sent[path] = sum(seen.values())
    assert sent == {DataPath.PER_REQUEST: 30, DataPath.BATCHED: 3}


def test_traffic_goes_down_the_path_in_exactly_its_share() -> None:
    for traffic, batched in ((10, 100), (50, 500), (90, 900), (33.3, 333), (0, 0), (100, 1000)):
        paths = split_traffic(1000, DataPath.BATCHED, traffic, seed=4)
        assert (len(paths), paths.count(DataPath.BATCHED)) == (1000, batched)
    assert split_traffic(500, DataPath.PER_REQUEST, 20, seed=4).count(DataPath.PER_REQUEST) == 100
    assert split_traffic(50, DataPath.BATCHED, 50, 4) == split_traffic(50, DataPath.BATCHED, 50, 4)
    assert split_traffic(50, DataPath.BATCHED, 50, 4) != split_traffic(50, DataPath.BATCHED, 50, 5)


def test_a_canary_run_sends_each_paths_statements_and_metrics_exactly(
    seeded_database: Database,
) -> None:
    """``workload run --path batched --traffic 30``: 30% of the requests down the batched path,
    the rest down the per-request path, at once; each path's statements in pg_stat_statements,
    in the application's count and in the request metrics of its variant are exactly its own."""
    config = WorkloadConfig(path=DataPath.BATCHED, traffic=30, requests=300, concurrency=20,
                            duplication=Duplication.MEDIUM, seed=6)  # fmt: skip
    expected = expected_paths(config)
    per_request, batched = expected[DataPath.PER_REQUEST], expected[DataPath.BATCHED]
    assert (per_request.requests, batched.requests) == (210, 90)
    before = statement_calls(seeded_database.dsn)
    result = run_cli(
        "workload", "run", "--dsn", seeded_database.dsn, "--path", "batched", "--traffic", "30",
        "--requests", "300", "--concurrency", "20", "--duplication", "medium", "--seed", "6",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    seen = calls_between(before, statement_calls(seeded_database.dsn))
    assert seen == {
        "load_trip": per_request.round_trips, "lookup_offers": per_request.round_trips,
        "load_trips_batch": batched.round_trips, "lookup_offers_batch": batched.round_trips,
        "upsert_offers": per_request.round_trips + batched.round_trips,
    }  # fmt: skip
    figures = json.loads(result.stdout)
    assert figures["traffic"] == 30
    assert {path: (f["requests"], f["cache_misses"], f["round_trips"], f["statements_counted"])
            for path, f in figures["paths"].items()} == {
        "per-request": (210, per_request.misses, per_request.round_trips, per_request.statements),
        "batched": (90, batched.misses, batched.round_trips, batched.statements),
    }  # fmt: skip
    assert seeded_database.execute(
        "SELECT variant, sum(requests)::int, sum(queries)::int, sum(batches)::int"
        " FROM perf_monitoring.request_metrics GROUP BY 1 ORDER BY 1"
    ) == [
        ("batched", 90, batched.statements, batched.round_trips),
        ("per-request", 210, per_request.statements, 0),
    ]


def test_request_metrics_rows_hold_exactly_the_runs_requests(seeded_database: Database) -> None:
    config = WorkloadConfig(
        requests=60, concurrency=5, duplication=Duplication.HIGH, seed=2, bucket_seconds=1,
        wave_interval_ms=200,
    )  # fmt: skip
    (started,) = seeded_database.execute("SELECT clock_timestamp()")[0]
    progress: list[tuple[int, int]] = []
    result = run_workload(seeded_database.dsn, config, progress=lambda *p: progress.append(p))
    (finished,) = seeded_database.execute("SELECT clock_timestamp()")[0]
    _ok(result)
    assert progress == [(5 * wave, 60) for wave in range(1, 13)]
    rows = seeded_database.execute(
        "SELECT bucket_start, bucket_seconds, operation, requests, errors, cache_hits,"
        " cache_misses, batches, batch_size_max, latency_p50_ms, latency_p95_ms"
        " FROM perf_monitoring.request_metrics ORDER BY bucket_start"
    )
    assert len(rows) == result.metrics_rows >= 2  # 12 waves, 200 ms apart
    starts: list[datetime] = [row[0] for row in rows]
    assert started <= starts[0] and starts[-1] <= finished
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(abs(step - round(step)) < 0.05 and round(step) >= 1 for step in steps)
    assert {(row[1], row[2]) for row in rows} == {(1, "flight_search")}
    totals = [sum(row[i] for row in rows) for i in range(3, 8)]
    assert totals == [60, 0, 42, 18, result.batches]
    assert max(row[8] or 0 for row in rows) == result.batch_size_max <= 5
    assert all(row[9] <= row[10] for row in rows)


@pytest.mark.parametrize("level", [Duplication.HIGH, Duplication.MEDIUM, Duplication.LOW])
def test_the_cache_hit_ratio_is_the_duplication_levels(
    seeded_database: Database, level: Duplication
) -> None:
    config = WorkloadConfig(requests=100, concurrency=10, duplication=level, seed=11)
    result = run_workload(seeded_database.dsn, config)
    _ok(result)
    assert result.cache_hit_ratio == level.hit_ratio
    (hits, misses) = seeded_database.execute(
        "SELECT sum(cache_hits)::int, sum(cache_misses)::int FROM perf_monitoring.request_metrics"
    )[0]
    assert (hits, misses) == (result.cache_hits, result.cache_misses)
    assert hits / (hits + misses) == level.hit_ratio


@pytest.mark.parametrize("size", [1, 10, 50])
def test_batched_statements_are_planned_on_the_batch_indexes(
    seeded_database: Database, size: int
) -> None:
    requests: list[SearchRequest] = generate_requests(DATASET, size, Duplication.NONE, seed=size)
    plans = batched_plans(seeded_database.dsn, requests)
    assert [(plan.statement, plan.generic) for plan in plans] == [
        ("load_trips_batch", False), ("load_trips_batch", True),
        ("lookup_offers_batch", False), ("lookup_offers_batch", True),
    ]  # fmt: skip
    assert {plan.expected for plan in plans} == {
        ("ix_trip_requests_active_batch",),
        ("ix_flight_search_cache_key_expiry", "ix_flight_offers_trip_expiry"),
    }
    assert [plan.missing for plan in plans] == [()] * 4, plans


def test_failed_statements_are_counted_as_errors_not_raised(seeded_database: Database) -> None:
    seeded_database.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'offers are read-only today'; END $$;"
        " CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON flight_offers"
        " FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    config = WorkloadConfig(requests=30, concurrency=10, duplication=Duplication.NONE, seed=4)
    result = run_workload(seeded_database.dsn, config)
    assert result.errors == 30 and result.error_rate == 1.0
    assert {r.status for r in result.results} == {"error"}
    assert "offers are read-only today" in (result.results[0].error or "")
    (errors, requests) = seeded_database.execute(
        "SELECT sum(errors), sum(requests) FROM perf_monitoring.request_metrics"
    )[0]
    assert (errors, requests) == (30, 30)


# A known fraction of requests fails for real: every Nth upsert statement (one per request on
# the per-request path, every request a miss without duplication) raises in a trigger.
EVERY_NTH_UPSERT_FAILS = """
CREATE SEQUENCE upserts;
CREATE FUNCTION fail_every_nth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('upserts') % {every} = 0 THEN
        RAISE EXCEPTION 'injected failure of upsert %', currval('upserts');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER fail_every_nth AFTER INSERT ON flight_offers
    FOR EACH STATEMENT EXECUTE FUNCTION fail_every_nth();
"""


@pytest.mark.parametrize(
    ("every", "errors", "exit_code"), [(10, 10, 1), (50, 2, 1), (100, 1, 0), (1000, 0, 0)]
)
def test_failed_requests_are_printed_and_more_than_one_percent_fails_the_run(
    seeded_database: Database, every: int, errors: int, exit_code: int
) -> None:
    seeded_database.execute(EVERY_NTH_UPSERT_FAILS.format(every=every))
    result = run_cli(
        "workload", "run", "--dsn", seeded_database.dsn, "--path", "per-request",
        "--requests", "100", "--concurrency", "10", "--duplication", "none", "--seed", "4",
    )  # fmt: skip
    assert result.exit_code == exit_code, result.output
    lines = result.stdout.splitlines()
    assert f"errors: {errors} of 100 requests ({errors}.0%)" in lines
    if errors:
        assert any("injected failure of upsert" in line for line in lines)
    assert (" failed, more than 1%: exit code 1" in result.stdout) is (exit_code == 1)
    (stored,) = seeded_database.execute(
        "SELECT sum(errors), sum(requests) FROM perf_monitoring.request_metrics"
    )
    assert stored == (errors, 100)


# What the flight search needs of the application's role, as the error message prints it.
APPLICATION_GRANTS = (
    "GRANT SELECT ON public.trip_requests, public.flight_search_cache, public.flight_offers TO {r}",
    "GRANT INSERT ON public.flight_search_cache TO {r}",
    "GRANT INSERT, UPDATE ON public.flight_offers TO {r}",
    "GRANT USAGE ON SCHEMA perf_monitoring TO {r}",
    "GRANT INSERT ON perf_monitoring.request_metrics TO {r}",
)


def test_a_role_without_grants_gets_one_error_naming_the_table_and_the_role(
    seeded_database: Database,
) -> None:
    db = seeded_database
    role = f"{db.name}_app"
    db.execute(f"CREATE ROLE {role} LOGIN")
    dsn = psycopg.conninfo.make_conninfo(db.dsn, user=role)
    run = ("workload", "run", "--dsn", dsn, "--path", "per-request", "--requests", "20",
           "--concurrency", "5", "--duplication", "none")  # fmt: skip
    try:
        line = assert_usage_error(run_cli(*run), f"role {role} may not run the flight search")
        assert "permission denied for table trip_requests" in line
        assert "; ".join(g.format(r=role) for g in APPLICATION_GRANTS) in line
        # The requests ran, the metrics could not be written: the same clear error.
        db.execute("; ".join(g.format(r=role) for g in APPLICATION_GRANTS[:3]))
        line = assert_usage_error(run_cli(*run), f"role {role} may not run the flight search")
        assert "permission denied for schema perf_monitoring" in line
        db.execute(APPLICATION_GRANTS[3].format(r=role))
        line = assert_usage_error(run_cli(*run), f"role {role} may not run the flight search")
        assert "permission denied for table request_metrics" in line
        assert db.execute("SELECT count(*) FROM perf_monitoring.request_metrics") == [(0,)]
        db.execute(APPLICATION_GRANTS[4].format(r=role))
        result = run_cli(*run)
        assert result.exit_code == 0, result.output
        assert "errors: 0 of 20 requests (0.0%)" in result.stdout.splitlines()
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_an_unmigrated_database_is_refused(database: Database) -> None:
    with pytest.raises(PrerequisiteMissing, match="alembic upgrade head"):
        seed_database(database.dsn, Dataset(trip_requests=10, travelers=2, searches=5))
    with pytest.raises(PrerequisiteMissing, match="schema is missing"):
        run_workload(database.dsn, WorkloadConfig(requests=5))


def test_a_run_for_another_dataset_is_refused(seeded_database: Database) -> None:
    other = Dataset(seed=DATASET.seed + 1)
    with pytest.raises(UsageError, match="seeded with another dataset"):
        run_workload(seeded_database.dsn, WorkloadConfig(dataset=other, requests=20))


def test_seeding_refuses_tables_that_hold_rows(seeded_database: Database) -> None:
    with pytest.raises(UsageError, match="already hold rows"):
        seed_database(seeded_database.dsn, DATASET)
    small = Dataset(seed=9, travelers=20, trip_requests=100, searches=30, active_ratio=0.5)
    summary = seed_database(seeded_database.dsn, small, replace=True)
    assert (summary.travelers, summary.trip_requests) == (20, 100)
    assert seeded_database.execute("SELECT count(*), max(id) FROM trip_requests")[0] == (100, 100)
    (active,) = seeded_database.execute(
        "SELECT count(*) FROM trip_requests WHERE status = 'active'"
    )[0]
    assert active == summary.active_trip_requests == len(active_trip_requests(small))
    # New rows after a seed get ids past the seeded ones.
    assert seeded_database.execute(
        "INSERT INTO travelers (email) VALUES ('new@example.test') RETURNING id"
    ) == [(21,)]


# -- the command line -------------------------------------------------------------------------------


def test_workload_run_prints_json_with_a_schema_version(seeded_database: Database) -> None:
    result = run_cli(
        "workload", "run", "--dsn", seeded_database.dsn, "--path", "per-request",
        "--requests", "20", "--concurrency", "5", "--duplication", "high", "--format", "json",
        "--wave-interval-ms", "25", "--plan-cache-mode", "auto",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["schema_version"] == 1 and figures["kind"] == "workload-run"
    assert (figures["requests"], figures["cache_hits"], figures["errors"]) == (20, 14, 0)
    assert figures["statements_sent"] == 3 * 6
    assert figures["elapsed_s"] >= 3 * 0.025  # four waves, 25 ms apart


def test_workload_commands_report_bad_input_in_one_line(database: Database) -> None:
    result = run_cli("workload", "run", "--dsn", database.dsn, "--requests", "5")
    assert assert_usage_error(result, "").startswith("Error: the flight-search schema is missing")
    result = run_cli("workload", "run", "--duplication", "extreme")
    assert result.exit_code == 2 and "extreme" in result.stderr
