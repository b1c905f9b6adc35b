"""Reproduce the rollout guide's tables with the reference workload, measured on this machine.

    .venv/bin/python -m benchmarks.workload_bench [--rounds 5] [--waves 30] [--pg-bin DIR]

One run, side by side: a throwaway PostgreSQL (``temporary_sandbox``) migrated to head and seeded
once, then copied into one database per data path, so that both paths do the same work on the
same data, each through its own long-lived pool (warmed by one unmeasured run, as a running
application's connections are). Each round runs the same request stream (a new seed per round)
on every variant, in rotating order.

* Concurrency table: waves of 1, 5, 10 and 50 simultaneous requests, no duplication; queries
  are the pg_stat_statements deltas of the application's statements (not the workload's own
  counters); response time is each request's latency, p50/p95 over the run, median over rounds.
* Cache table: high, medium and low duplication (and none, the reference) at 10 concurrent
  requests: application-cache hit ratio, queries sent, and the reduction against the same
  number of requests without repeats.

Writes ``benchmarks/RESULTS-workload.md`` (atomically) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.machine import machine_lines
from dbtools.db.sandbox import temporary_sandbox
from dbtools.schema.revisions import upgrade
from dbtools.workload import (
    ApplicationPool,
    DataPath,
    Dataset,
    Duplication,
    WorkloadConfig,
    WorkloadResult,
    application_pool,
    run_workload_async,
    seed_database,
)
from dbtools.workload.observe import calls_between, statement_calls

CONCURRENCY = (1, 5, 10, 50)
CACHE_LEVELS = (Duplication.HIGH, Duplication.MEDIUM, Duplication.LOW, Duplication.NONE)
CACHE_CONCURRENCY = 10
CACHE_REQUESTS = 1000
RESULTS = Path(__file__).resolve().parent / "RESULTS-workload.md"
SLOW_WINDOW_MS = 2.0
WARM_UP_PER_CONNECTION = 20


@dataclass(frozen=True)
class Variant:
    """A data path and its batch window, run on its own copy of the seeded database."""

    label: str
    path: DataPath
    window_ms: float


PER_REQUEST = Variant("per-request", DataPath.PER_REQUEST, 0.0)
BATCHED = Variant("batched", DataPath.BATCHED, 0.0)
BATCHED_SLOW = Variant(f"batched, {SLOW_WINDOW_MS:g} ms window", DataPath.BATCHED, SLOW_WINDOW_MS)
VARIANTS = (PER_REQUEST, BATCHED, BATCHED_SLOW)


@dataclass(frozen=True)
class Measured:
    """One run of one path: what pg_stat_statements saw and what the requests felt."""

    variant: Variant
    queries: int  # application statements, from pg_stat_statements (metrics write excluded)
    result: WorkloadResult

    @property
    def p50(self) -> float:
        return self.result.latency_ms(0.50) or 0.0

    @property
    def p95(self) -> float:
        return self.result.latency_ms(0.95) or 0.0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.result.latencies_ms)


async def measure(
    dsn: str, variant: Variant, config: WorkloadConfig, pool: ApplicationPool
) -> Measured:
    before = statement_calls(dsn)
    result = await run_workload_async(dsn, config, pool=pool)
    seen = calls_between(before, statement_calls(dsn))
    if result.errors:
        raise SystemExit(f"{config.path.value}: {result.errors} requests failed")
    queries = sum(calls for name, calls in seen.items() if name != "record_metrics")
    return Measured(variant, queries, result)


@dataclass(frozen=True)
class Application:
    """One variant's database and its long-lived, warm connection pool."""

    dsn: str
    pool: ApplicationPool


async def side_by_side(
    apps: dict[Variant, Application], base: WorkloadConfig, rounds: int
) -> dict[Variant, list[Measured]]:
    """*rounds* rounds of every variant on the same request stream, rotating which goes first,
    after one unmeasured warm-up run each (prepared statements, backend caches)."""
    runs: dict[Variant, list[Measured]] = {variant: [] for variant in VARIANTS}
    for number in range(-1, rounds):
        shift = number % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            config = dataclasses.replace(
                base, path=variant.path, batch_window_ms=variant.window_ms, seed=1000 + number
            )
            app = apps[variant]
            if number < 0:
                # The pool hands connections out in turn: warm every one of them past psycopg's
                # prepare threshold (5 executions) and the backend's first-use catalog lookups.
                warm_up = max(config.requests, WARM_UP_PER_CONNECTION * base.pool_size)
                warm = dataclasses.replace(config, requests=warm_up, record_metrics=False)
                await run_workload_async(app.dsn, warm, pool=app.pool)
            else:
                runs[variant].append(await measure(app.dsn, variant, config, app.pool))
    return runs


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.1f}–{max(values):.1f}"


async def concurrency_table(
    apps: dict[Variant, Application], base: WorkloadConfig, rounds: int, waves: int,
    log: Callable[[str], None],
) -> tuple[list[str], list[bool]]:  # fmt: skip
    lines = [
        "| concurrent requests | queries per wave: per request | batched | fewer queries "
        "| p50 ms: per request | batched | p95 ms: per request | batched | p95 change "
        f"| p50 / p95 ms, batched with a {SLOW_WINDOW_MS:g} ms window |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for concurrency in CONCURRENCY:
        config = dataclasses.replace(
            base, concurrency=concurrency, requests=concurrency * waves,
            duplication=Duplication.NONE,
        )  # fmt: skip
        runs = await side_by_side(apps, config, rounds)
        per, bat, slow = runs[PER_REQUEST], runs[BATCHED], runs[BATCHED_SLOW]
        q_per = median([m.queries / waves for m in per])
        q_bat = median([m.queries / waves for m in bat])
        p95_per, p95_bat = median([m.p95 for m in per]), median([m.p95 for m in bat])
        reduction = 1 - q_bat / q_per
        change = p95_bat / p95_per - 1
        lines.append(
            f"| {concurrency} | {q_per:g} | {q_bat:g} | {reduction:.0%} "
            f"| {median([m.p50 for m in per]):.2f} | {median([m.p50 for m in bat]):.2f} "
            f"| {p95_per:.2f} ({spread([m.p95 for m in per])}) "
            f"| {p95_bat:.2f} ({spread([m.p95 for m in bat])}) | {change:+.0%} "
            f"| {median([m.p50 for m in slow]):.2f} / {median([m.p95 for m in slow]):.2f} |"
        )
        minimum = {10: 0.90, 50: 0.98}.get(concurrency, 0.0)
        exact = all(m.queries == 3 * waves for m in bat + slow)
        targets.append(exact and reduction >= minimum)
        if concurrency >= 5:
            targets.append(p95_bat <= p95_per)
        log(lines[-1])
    return lines, targets


async def cache_table(
    apps: dict[Variant, Application], base: WorkloadConfig, rounds: int,
    log: Callable[[str], None],
) -> tuple[list[str], list[bool]]:  # fmt: skip
    lines = [
        "| duplication | target hit ratio | measured hit ratio | queries per request path "
        "| fewer queries | mean ms | p95 ms | queries batched | mean ms batched | p95 ms batched |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for level in CACHE_LEVELS:
        config = dataclasses.replace(
            base, concurrency=CACHE_CONCURRENCY, requests=CACHE_REQUESTS, duplication=level
        )
        runs = await side_by_side(apps, config, rounds)
        per, bat = runs[PER_REQUEST], runs[BATCHED]
        hit = median([m.result.cache_hit_ratio or 0.0 for m in per + bat])
        q_per = median([m.queries for m in per])
        without_cache = 3 * CACHE_REQUESTS  # every request a miss: three statements each
        lines.append(
            f"| {level.value} | {level.hit_ratio:.0%} | {hit:.1%} | {q_per:g} "
            f"| {1 - q_per / without_cache:.0%} | {median([m.mean for m in per]):.2f} "
            f"| {median([m.p95 for m in per]):.2f} | {median([m.queries for m in bat]):g} "
            f"| {median([m.mean for m in bat]):.2f} | {median([m.p95 for m in bat]):.2f} |"
        )
        targets.append(hit == level.hit_ratio)
        log(lines[-1])
    return lines, targets


async def measure_tables(
    dsns: dict[Variant, str], base: WorkloadConfig, args: argparse.Namespace,
    log: Callable[[str], None],
) -> tuple[tuple[list[str], list[bool]], tuple[list[str], list[bool]]]:  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        apps = {
            variant: Application(dsn, await stack.enter_async_context(application_pool(dsn, base)))
            for variant, dsn in dsns.items()
        }
        by_concurrency = await concurrency_table(apps, base, args.rounds, args.waves, log)
        by_duplication = await cache_table(apps, base, args.rounds, log)
    return by_concurrency, by_duplication


def machine() -> list[str]:
    return [f"* {line}" for line in machine_lines()] + [f"* psycopg {psycopg.__version__}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per table row")
    parser.add_argument("--waves", type=int, default=30, help="waves per run (concurrency table)")
    parser.add_argument("--pool-size", type=int, default=WorkloadConfig().pool_size)
    parser.add_argument("--pg-bin", default=None, help="PostgreSQL binaries (default: embedded)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    dataset = Dataset()
    base = WorkloadConfig(
        dataset=dataset, pool_size=args.pool_size,
        # Long enough that nothing the runs write expires during the benchmark.
        search_cache_ttl_s=6 * 3600, offer_ttl_s=6 * 3600,
    )  # fmt: skip
    with temporary_sandbox(pg_bin=args.pg_bin) as sandbox:
        admin = sandbox.dsn()
        template = "workload_bench_template"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
            version = conn.execute("SHOW server_version").fetchone()
        upgrade(sandbox.dsn(template))
        seeded = seed_database(sandbox.dsn(template), dataset)
        log(f"seeded {seeded.trip_requests} trip requests in {seeded.elapsed_s:.1f} s")
        dsns: dict[Variant, str] = {}
        with psycopg.connect(admin, autocommit=True) as conn:
            for number, variant in enumerate(VARIANTS):
                name = f"workload_{number}"
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
                dsns[variant] = sandbox.dsn(name)
        tables = asyncio.run(measure_tables(dsns, base, args, log))
        (concurrency_lines, concurrency_ok), (cache_lines, cache_ok) = tables
    finished = dt.datetime.now(dt.timezone.utc)
    load = (load_before, os.getloadavg())
    command = "python -m benchmarks.workload_bench " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    report = render(
        args, version[0] if version else "?", seeded.trip_requests, seeded.active_trip_requests,
        started, finished, load, command.strip(), concurrency_lines, cache_lines,
        all(concurrency_ok), all(cache_ok),
    )  # fmt: skip
    write_atomically(args.output, report)
    print(report)
    return 0 if all(concurrency_ok) and all(cache_ok) else 1


def render(
    args: argparse.Namespace, version: str, trips: int, active: int, started: dt.datetime,
    finished: dt.datetime, load: tuple[tuple[float, ...], tuple[float, ...]], command: str,
    concurrency_lines: list[str], cache_lines: list[str], concurrency_ok: bool, cache_ok: bool,
) -> str:  # fmt: skip
    verdict = {True: "met", False: "**missed** (see below)"}
    return "\n".join(
        [
            "# Workload benchmark: per-request vs batched flight search",
            "",
            f"Measured {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC with `{command}`.",
            "",
            *machine(),
            f"* load average (1/5/15 min) {_load(load[0])} at the start, {_load(load[1])} at the "
            "end: other jobs shared the cores, so absolute times are inflated; the paths ran "
            "interleaved, so the comparison holds",
            f"* PostgreSQL {version} (throwaway sandbox: `fsync = off`, pg_stat_statements)",
            f"* data: {trips} trip requests ({active} active), reference `Dataset()`; "
            f"a long-lived pool of {args.pool_size} connections per variant, warmed by one "
            "unmeasured run before each row; batched: batches formed in "
            f"the event-loop turn the requests arrive in (window 0, the default), and, for "
            f"comparison, with a {SLOW_WINDOW_MS:g} ms window",
            f"* {args.rounds} rounds per row, every variant side by side in each round (rotating "
            "order), each on its own copy of the same seeded database; figures are medians "
            "over the rounds, (min–max) where shown",
            "",
            "## Queries and response time by concurrency",
            "",
            f"Waves of N simultaneous requests, {args.waves} waves per run, every request "
            "distinct (no application-cache hits). Queries are pg_stat_statements deltas of the "
            "application's statements per wave; response time is per request, from arrival to "
            "answer, in the application.",
            "",
            *concurrency_lines,
            "",
            f"Targets (3 queries per batch at every concurrency, >= 90% fewer at 10 and >= 98% "
            f"at 50, batched p95 no worse from 5 up): {verdict[concurrency_ok]}.",
            "",
            "## Application cache by duplication",
            "",
            f'{CACHE_REQUESTS} requests at {CACHE_CONCURRENCY} concurrent; "fewer queries" '
            f"compares the per-request path's queries with {3 * CACHE_REQUESTS} (the same "
            "requests without repeats, three statements each).",
            "",
            *cache_lines,
            "",
            f"Target (hit ratio = the level's 70% / 50% / 20%): {verdict[cache_ok]}.",
            "",
            "## Reading the figures",
            "",
            "* The query counts are exact, not sampled: a wave of N distinct requests costs 3N "
            "statements per request and 3 batched, so the reduction is 1 - 1/N (80%, 90%, 98%).",
            "* With an application cache, the per-request path's queries fall by the hit ratio; "
            "the batched path already sends one batch per wave, so repeats save it little.",
            "* Response times are milliseconds here, not the guide's hundreds: the database is "
            "on a local Unix socket, the provider is simulated without latency, nothing crosses "
            "a network. What batching saves is per-statement work (round trips, executor "
            "start-up, the client's handling of each statement) and waiting for a pooled "
            "connection: at 50 concurrent requests the per-request path queues for the pool's "
            f"{args.pool_size} connections. At 5 the gain is small: a batch does all its rows' "
            "work in one backend, one step after another, while five separate requests overlap "
            "the client's and the server's work on the two cores.",
            "* The application's sessions run with `plan_cache_mode = force_generic_plan` (the "
            "workload's default, both paths): under `auto`, PostgreSQL re-plans a prepared "
            "`id = ANY($1)` statement on every call (the generic plan assumes ten array "
            "elements), which cost the batched path 0.2-0.4 ms per batch and made it slower than "
            "the per-request path at 1 and 5 concurrent requests in earlier runs.",
            "* The 2 ms window only adds waiting here: the requests of a wave arrive in one "
            "event-loop turn, so the batches are the same, only later.",
            "",
        ]
    )


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.replace(out.name, path)


if __name__ == "__main__":
    raise SystemExit(main())
