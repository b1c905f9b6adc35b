"""Benchmark: the batch indexes built by the migration (CREATE INDEX CONCURRENTLY) versus a plain
CREATE INDEX of the same definitions, on 2 million flight offers under a concurrent write load.

For each build it records the build time and the writers' latency (p50/p99/max) and error count
while the build runs. Rounds alternate (plain, migration, plain, …) so both see the same machine
state; medians are reported. Results go to benchmarks/RESULTS-index-build.md.

    .venv/bin/python -m benchmarks.index_build [--offers 2000000] [--rounds 3] [--writers 4]
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchmarks.machine import describe_machine, load_average
from dbtools.db.sandbox import temporary_sandbox
from dbtools.schema.manifest import manifest_at
from dbtools.schema.revisions import downgrade, upgrade

RESULTS = Path(__file__).with_name("RESULTS-index-build.md")
STALL_MS = 100
# The head manifest's batch indexes (revision 0003's), read once, outside the timed builds.
BATCH_INDEXES = manifest_at("head").batch_indexes

SEED_SQL = (
    "INSERT INTO travelers (email) "
    "SELECT 'traveler' || g || '@example.com' FROM generate_series(1, 20000) g",
    "INSERT INTO trip_requests (traveler_id, origin_code, destination_code, departure_date, "
    "search_key, status) "
    "SELECT 1 + g %% 20000, 'LHR', 'JFK', date '2027-01-01' + g %% 200, 'LHR-JFK-' || g %% 5000, "
    "CASE WHEN g %% 5 = 0 THEN 'expired' ELSE 'active' END FROM generate_series(1, %(trips)s) g",
    "INSERT INTO flight_offers (trip_request_id, offer_key, carrier_code, flight_number, "
    "departure_at, arrival_at, price_total, currency, expires_at) "
    "SELECT 1 + g %% %(trips)s, 'offer-' || g, 'BA', 'BA' || g %% 900, now(), "
    "now() + interval '7 hours', 100 + g %% 900, 'USD', now() + (g %% 48) * interval '1 hour' "
    "FROM generate_series(1, %(offers)s) g",
    "INSERT INTO flight_search_cache (search_key, search_params, offers, offer_count, expires_at) "
    "SELECT 'LHR-JFK-' || g %% 5000, '{}'::jsonb, '[]'::jsonb, 0, now() + (g %% 24) * interval '1 hour' "
    "FROM generate_series(1, %(cache)s) g",
)

WRITE_SQL = (
    "UPDATE flight_offers SET price_total = price_total + 1, updated_at = now() WHERE id = %s"
)
INSERT_SQL = (
    "INSERT INTO flight_offers (trip_request_id, offer_key, carrier_code, flight_number, "
    "departure_at, arrival_at, price_total, currency, expires_at) "
    "VALUES (%s, %s, 'BA', 'BA1', now(), now(), 199, 'USD', now() + interval '1 hour')"
)


@dataclass
class WriterLoad:
    """Writers that update and insert offers until stopped, timing every statement."""

    dsn: str
    writers: int
    offers: int
    trips: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> WriterLoad:
        for n in range(self.writers):
            thread = threading.Thread(target=self._write, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def take(self) -> tuple[list[float], int]:
        with self._lock:
            taken, errors = self.latencies, self.errors
            self.latencies, self.errors = [], 0
        return taken, errors

    def _write(self, n: int) -> None:
        rng = random.Random(n)
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench-writer") as conn:
            serial = 0
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    if rng.random() < 0.7:
                        conn.execute(WRITE_SQL, (rng.randint(1, self.offers),))
                    else:
                        serial += 1
                        conn.execute(
                            INSERT_SQL,
                            (rng.randint(1, self.trips), f"w{n}-{serial}-{time.time_ns()}"),
                        )
                    elapsed = time.perf_counter() - started
                    with self._lock:
                        self.latencies.append(elapsed)
                except psycopg.Error:
                    with self._lock:
                        self.errors += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Measurement:
    method: str
    build_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    writes: int
    stalled: int  # writes that waited longer than STALL_MS
    errors: int

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.build_s


def measure(load: WriterLoad, method: str, build: Callable[[], None]) -> Measurement:
    time.sleep(1.0)  # steady state before the build
    load.take()
    started = time.perf_counter()
    build()
    build_s = time.perf_counter() - started
    latencies, errors = load.take()
    return Measurement(
        method, build_s, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3,
        max(latencies, default=float("nan")) * 1e3, len(latencies),
        sum(1 for latency in latencies if latency * 1e3 > STALL_MS), errors,
    )  # fmt: skip


def plain_build(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for spec in BATCH_INDEXES:
            conn.execute(spec.create_sql(concurrently=False))


def plain_drop(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for spec in BATCH_INDEXES:
            conn.execute(spec.drop_sql(concurrently=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--pg-bin", default=None, help="PostgreSQL binaries (default: embedded 18)")
    args = parser.parse_args()
    trips = max(1000, args.offers // 10)
    load_before = load_average()

    with temporary_sandbox(pg_bin=args.pg_bin) as sandbox:
        dsn = sandbox.dsn()
        with psycopg.connect(dsn) as conn:
            major = conn.info.server_version // 10000
        upgrade(dsn, "0002")
        seed_started = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            sizes = {"trips": trips, "offers": args.offers, "cache": args.offers // 4}
            for statement in SEED_SQL:
                conn.execute(statement, sizes)
            conn.execute("VACUUM ANALYZE")
        print(f"seeded {args.offers:,} offers in {time.perf_counter() - seed_started:.1f}s")

        results: list[Measurement] = []
        with WriterLoad(dsn, args.writers, args.offers, trips) as load:
            for round_no in range(1, args.rounds + 1):
                plain = measure(load, "plain CREATE INDEX", lambda: plain_build(dsn))
                plain_drop(dsn)
                online = measure(load, "migration (CONCURRENTLY)", lambda: upgrade(dsn, "head"))
                downgrade(dsn, "0002")
                for m in (plain, online):
                    print(f"round {round_no}: {m.method:26} build {m.build_s:6.2f}s  writers p50 "
                          f"{m.p50_ms:6.2f} ms p99 {m.p99_ms:8.2f} ms max {m.max_ms:8.1f} ms "
                          f"{m.writes_per_s:7.0f} writes/s stalled {m.stalled} errors {m.errors}")  # fmt: skip
                results += [plain, online]
    write_results(results, args, major, (load_before, load_average()))


def write_results(
    results: list[Measurement], args: argparse.Namespace, major: int, load: tuple[str, str]
) -> None:
    def median(method: str, attr: str) -> float:
        return float(statistics.median(getattr(m, attr) for m in results if m.method == method))

    methods = ["plain CREATE INDEX", "migration (CONCURRENTLY)"]
    lines = [
        "# Batch index build: migration (CONCURRENTLY) vs plain CREATE INDEX",
        "",
        describe_machine(),
        f"Load average (1/5/15 min): {load[0]} at the start, {load[1]} at the end.",
        f"PostgreSQL {major} (sandbox), {args.offers:,} flight offers, {args.offers // 10:,} trip "
        f"requests, {args.offers // 4:,} cache rows; {args.writers} writers (70% single-row "
        f"UPDATE, 30% INSERT into flight_offers) running throughout; {args.rounds} alternating "
        "rounds, medians shown. Build = all three batch indexes (the head manifest's "
        "`batch_indexes`, from revision 0003); for the migration it is the whole "
        "`alembic upgrade 0002:head` (indexes, validity checks, autovacuum settings).",
        "",
        "Command: `.venv/bin/python -m benchmarks.index_build "
        f"--offers {args.offers} --rounds {args.rounds} --writers {args.writers}`",
        "",
        f"| build | build time (s) | writers p50 (ms) | writers p99 (ms) | writers max (ms) | writes/s during build | writes stalled > {STALL_MS} ms | writer errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in methods:
        lines.append(
            f"| {method} | {median(method, 'build_s'):.2f} | {median(method, 'p50_ms'):.2f} | "
            f"{median(method, 'p99_ms'):.2f} | {median(method, 'max_ms'):.1f} | "
            f"{median(method, 'writes_per_s'):.0f} | {median(method, 'stalled'):.0f} | "
            f"{median(method, 'errors'):.0f} |"
        )
    plain, online = methods
    lines += [
        "",
        f"The concurrent build takes {median(online, 'build_s') / median(plain, 'build_s'):.1f}x as "
        "long as the plain one, but writers never stop: during the plain build every writer to "
        f"`flight_offers` waits up to {median(plain, 'max_ms') / 1e3:.1f} s (the SHARE lock of "
        "`CREATE INDEX` blocks all writes to the table until its index is built) and write "
        f"throughput falls to {median(plain, 'writes_per_s'):.0f}/s; during the migration the "
        f"slowest write takes {median(online, 'max_ms'):.0f} ms and throughput stays at "
        f"{median(online, 'writes_per_s'):.0f}/s. p99 hides the stall because only one write per "
        "writer is caught in it; the maximum and the throughput show it.",
        "",
        "All rounds:",
        "",
        "| round | build | build (s) | p50 (ms) | p99 (ms) | max (ms) | writes/s | stalled | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in enumerate(results):
        lines.append(
            f"| {n // 2 + 1} | {m.method} | {m.build_s:.2f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
            f"{m.max_ms:.1f} | {m.writes_per_s:.0f} | {m.stalled} | {m.errors} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
