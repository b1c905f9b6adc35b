"""Run the reference flight-search workload: N requests, C at a time, on one data-access path
or split between both (a canary: ``traffic`` percent on ``path``, the rest on the other).

Requests arrive in waves of ``concurrency`` simultaneous requests (the rollout guide's "10
concurrent requests"); the next wave starts when the last one is answered. Each request first
asks the application cache (shared by both paths, as one application's would be); a miss is
answered through the per-request path (three statements per request) or the batched path (three
statements per batch of coalesced requests). The request metrics go to
``perf_monitoring.request_metrics`` per bucket and per path (``dbtools.metrics``: the variant is
the path's name, and the statements each path sent are counted by the pool's cursors), written
every bucket and once more at the end. With ``variant_roles`` a path's sessions run as its own
database role (the ``role`` setting at connection start: no statement is sent), so that
pg_stat_statements keys its statements apart.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from dbtools.db.catalog import quote_ident
from dbtools.db.connection import connect, error_reason
from dbtools.errors import ConnectionFailed, PrerequisiteMissing, UsageError
from dbtools.figures.measures import hit_ratio, ratio
from dbtools.metrics import MetricsRecorder, instrument_psycopg, percentile
from dbtools.redaction import redact
from dbtools.workload import queries
from dbtools.workload.access import (
    ApplicationPool,
    Batched,
    Dialect,
    FlightSearch,
    Freshness,
    PerRequest,
    Provider,
    SearchRequest,
    SearchResult,
)
from dbtools.workload.cache import SearchCache
from dbtools.workload.catalog import Dataset
from dbtools.workload.coalescer import Coalescer
from dbtools.workload.generator import Duplication, generate_requests

log = logging.getLogger(__name__)

APPLICATION_NAME = "flight-search"
OPERATION = "flight_search"
# What counts as a failed request rather than a bug: the database or the pool said no.
REQUEST_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, PoolTimeout)
# A run in which more requests failed than this share fails (the rollout guide's error-rate
# target): ``WorkloadResult.failed``, and ``dbtools workload run`` exits with code 1.
MAX_ERROR_RATE = 0.01

Progress = Callable[[int, int], None]
PLAN_CACHE_MODES = ("auto", "force_generic_plan", "force_custom_plan")


class DataPath(enum.Enum):
    """How a request reaches the database."""

    PER_REQUEST = "per-request"
    BATCHED = "batched"

    @classmethod
    def parse(cls, value: DataPath | str) -> DataPath:
        if isinstance(value, DataPath):
            return value
        try:
            return cls(value.lower().replace("_", "-"))
        except ValueError:
            choices = ", ".join(path.value for path in cls)
            raise UsageError(f"unknown data path {value!r}; choose one of {choices}") from None

    @property
    def other(self) -> DataPath:
        return DataPath.BATCHED if self is DataPath.PER_REQUEST else DataPath.PER_REQUEST


def split_traffic(requests: int, path: DataPath, traffic: float, seed: int) -> list[DataPath]:
    """Which path each of *requests* requests goes down: exactly ``round(requests * traffic /
    100)`` of them down *path*, chosen by *seed*, the others down the other path."""
    chosen = set(random.Random(f"dbtools-traffic:{seed}").sample(
        range(requests), round(requests * traffic / 100)
    ))  # fmt: skip
    return [path if index in chosen else path.other for index in range(requests)]


@dataclass(frozen=True)
class WorkloadConfig:
    """One run of the workload. Strings are accepted for ``path`` and ``duplication``.

    ``wave_interval_ms`` paces the run: a wave starts at least that long after the previous one
    started (0: as soon as it is answered), e.g. to hold a query rate over a capture window.
    ``batch_window_ms`` is how long the batched path waits for more requests after the first
    one of a batch; 0 (the default) coalesces what arrives in the same event-loop turn, i.e. a
    burst of concurrent requests, without adding any wait; set a few ms when requests trickle
    in. ``app_cache_ttl_s`` should outlast the run for the hit ratio to be the level's.

    ``plan_cache_mode`` is set on the application's sessions (both paths): with the default
    ``auto`` PostgreSQL re-plans a prepared ``id = ANY($1)`` statement on every call (its generic
    plan assumes ten array elements, so the one- or five-element custom plans look cheaper), which
    costs the batched path more client-visible time than executing the statement; generic plans
    are planned once per connection, and use the batch indexes (tested).

    ``traffic`` is the percentage of requests sent down ``path`` (the others go down the other
    path), chosen by ``seed``: exactly ``round(requests * traffic / 100)`` of them.
    ``variant_roles`` maps a path's name to the role its sessions run as (the login role must be
    a member of it); a path not named runs as the login role.
    """

    path: DataPath = DataPath.BATCHED
    traffic: float = 100.0
    variant_roles: Mapping[str, str] = field(default_factory=dict)
    requests: int = 1_000
    concurrency: int = 10
    wave_interval_ms: float = 0.0
    duplication: Duplication = Duplication.MEDIUM
    seed: int = 1
    dataset: Dataset = field(default_factory=Dataset)
    pool_size: int = 10
    batch_window_ms: float = 0.0
    max_batch_size: int = 100
    app_cache_ttl_s: float = 600.0
    provider_latency_ms: float = 0.0
    search_cache_ttl_s: float = 900.0
    offer_ttl_s: float = 1800.0
    record_metrics: bool = True
    bucket_seconds: int = 1  # a window's ends cut at most a bucket each (figures.requests)
    operation: str = OPERATION
    application_name: str = APPLICATION_NAME
    statement_timeout: str = "30s"
    plan_cache_mode: str = "force_generic_plan"
    pool_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", DataPath.parse(self.path))
        object.__setattr__(self, "duplication", Duplication.parse(self.duplication))
        for name in self.variant_roles:
            DataPath.parse(name)
        checks = (
            (0 <= self.traffic <= 100, "traffic is a percentage between 0 and 100"),
            (self.requests >= 0, "requests must not be negative"),
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (self.pool_size >= 1, "pool_size must be at least 1"),
            (self.max_batch_size >= 1, "max_batch_size must be at least 1"),
            (self.batch_window_ms >= 0, "batch_window_ms must not be negative"),
            (self.wave_interval_ms >= 0, "wave_interval_ms must not be negative"),
            (self.app_cache_ttl_s > 0, "app_cache_ttl_s must be positive"),
            (self.provider_latency_ms >= 0, "provider_latency_ms must not be negative"),
            (self.bucket_seconds >= 1, "bucket_seconds must be at least 1"),
            (
                self.plan_cache_mode in PLAN_CACHE_MODES,
                f"plan_cache_mode must be one of {', '.join(PLAN_CACHE_MODES)}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise UsageError(f"workload: {message}")


@dataclass
class PathResult:
    """What one data-access path did in a run (the variant of its request metrics).

    ``round_trips`` is how many times the three statements were sent (per-request path: once per
    cache miss; batched path: once per batch), so ``statements_sent = 3 * round_trips`` (a round
    trip that failed midway sent fewer); ``statements_counted`` is what the pool's counting
    cursors saw (``dbtools.metrics``), the figure written to the metrics' ``queries``.
    """

    path: DataPath
    requests: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    errors: int = 0
    round_trips: int = 0
    batches: int = 0
    batch_size_max: int = 0
    statements_counted: int = 0

    @property
    def statements_sent(self) -> int:
        return queries.STATEMENTS_PER_ROUND_TRIP * self.round_trips

    @property
    def queries_per_request(self) -> float | None:
        return self.statements_sent / self.requests if self.requests else None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "errors": self.errors,
            "round_trips": self.round_trips,
            "batches": self.batches,
            "batch_size_max": self.batch_size_max,
            "statements_sent": self.statements_sent,
            "statements_counted": self.statements_counted,
            "queries_per_request": self.queries_per_request,
        }


@dataclass(frozen=True)
class WorkloadResult:
    """What a run did, as the application saw it: the totals, and each path's (``paths``).

    ``statements_sent = 3 * round_trips`` over both paths. The request-metrics writes carry
    dbtools' marker: snapshots leave them out, as they leave out dbtools' own statements.
    """

    config: WorkloadConfig
    results: tuple[SearchResult, ...]
    latencies_ms: tuple[float, ...]
    cache_hits: int
    cache_misses: int
    errors: int
    round_trips: int
    batches: int
    batch_size_max: int
    provider_calls: int
    metrics_rows: int
    elapsed_s: float
    paths: tuple[PathResult, ...] = ()

    def path(self, path: DataPath | str) -> PathResult:
        """The figures of *path* (zeros when no request went down it)."""
        wanted = DataPath.parse(path)
        return next((p for p in self.paths if p.path is wanted), PathResult(wanted))

    @property
    def requests(self) -> int:
        return len(self.results)

    @property
    def statements_sent(self) -> int:
        return queries.STATEMENTS_PER_ROUND_TRIP * self.round_trips

    @property
    def cache_hit_ratio(self) -> float | None:
        return hit_ratio(self.cache_hits, self.cache_misses)

    @property
    def error_rate(self) -> float | None:
        return ratio(self.errors, self.requests)

    @property
    def failed(self) -> bool:
        """More than ``MAX_ERROR_RATE`` of the requests failed."""
        return self.errors > MAX_ERROR_RATE * self.requests

    @property
    def first_error(self) -> str | None:
        """What the first failed request was told (passwords masked), None when none failed."""
        return next((r.error for r in self.results if r.status == "error"), None)

    def latency_ms(self, fraction: float) -> float | None:
        """The *fraction* quantile of the request latencies (0.95 for p95)."""
        return percentile(self.latencies_ms, fraction) if self.latencies_ms else None

    @property
    def queries_per_request(self) -> float | None:
        return self.statements_sent / self.requests if self.requests else None

    def summary(self) -> dict[str, Any]:
        """The run's figures as plain values (what ``dbtools workload run`` prints)."""
        config = self.config
        return {
            "path": config.path.value,
            "traffic": config.traffic,
            "requests": self.requests,
            "concurrency": config.concurrency,
            "duplication": config.duplication.value,
            "seed": config.seed,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_ratio": self.cache_hit_ratio,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "failed": self.failed,
            "first_error": self.first_error,
            "round_trips": self.round_trips,
            "batches": self.batches,
            "batch_size_max": self.batch_size_max,
            "statements_sent": self.statements_sent,
            "queries_per_request": self.queries_per_request,
            "provider_calls": self.provider_calls,
            "latency_p50_ms": self.latency_ms(0.50),
            "latency_p95_ms": self.latency_ms(0.95),
            "latency_p99_ms": self.latency_ms(0.99),
            "metrics_rows": self.metrics_rows,
            "elapsed_s": self.elapsed_s,
            "paths": {p.path.value: p.summary() for p in self.paths if p.requests},
        }


def run_workload(
    dsn: str, config: WorkloadConfig = WorkloadConfig(), *, progress: Progress | None = None
) -> WorkloadResult:
    """Run the workload against a migrated, seeded database and return what it did.

    *progress* is called with (requests answered, requests in total) after every wave. Raises
    ``ConnectionFailed`` when the database cannot be reached or the pool cannot open its
    connections, ``PrerequisiteMissing`` when the schema is missing, ``UsageError`` for a
    configuration it cannot run. Failed requests are counted (``errors``), not raised.
    """
    return asyncio.run(run_workload_async(dsn, config, progress=progress))


async def run_workload_async(
    dsn: str,
    config: WorkloadConfig = WorkloadConfig(),
    *,
    progress: Progress | None = None,
    pool: ApplicationPool | None = None,
) -> WorkloadResult:
    """``run_workload`` for callers that already run an event loop.

    With *pool* (from ``application_pool``) the run reuses its warm connections, as a
    long-running application does (for the paths without a role of their own); otherwise it
    opens and closes a pool of its own, and one per path that runs as its own role.
    """
    requests = generate_requests(config.dataset, config.requests, config.duplication, config.seed)
    paths = split_traffic(config.requests, config.path, config.traffic, config.seed)
    log.info("running %d requests: %s", config.requests, ", ".join(
        f"{sum(p is path for p in paths)} on the {path.value} path" for path in DataPath
        if path in paths))  # fmt: skip
    async with AsyncExitStack() as stack:
        by_role: dict[str | None, ApplicationPool] = {} if pool is None else {None: pool}
        pools: dict[DataPath, tuple[ApplicationPool, str]] = {}
        for path in [p for p in DataPath if p in paths] or [config.path]:
            role = config.variant_roles.get(path.value)
            if role not in by_role:
                by_role[role] = await stack.enter_async_context(
                    application_pool(dsn, config, role=role)
                )
            pools[path] = (by_role[role], role or await _role_of(by_role[role]))
        login_role = await _role_of(next(iter(pools.values()))[0])
        return await _Run(dsn, pools, config, login_role).run(requests, paths, progress)


async def _role_of(pool: ApplicationPool) -> str:
    """The role the pool's sessions log in as (from the connection: no statement is sent)."""
    async with pool.connection() as conn:
        return str(conn.info.user)


@asynccontextmanager
async def application_pool(
    dsn: str, config: WorkloadConfig, *, role: str | None = None
) -> AsyncIterator[ApplicationPool]:
    """The application's connection pool (``config.pool_size`` connections named
    ``config.application_name``, autocommit, every ``int`` sent as bigint, every statement
    counted for the request being served), open; closed on exit. *role*: the sessions run as it
    (``-c role=…`` at connection start).

    Raises ``ConnectionFailed`` when the server cannot be reached or the connections cannot all
    be opened within ``config.pool_timeout_s``.
    """
    # Fail early with dbtools' one-line message when the server cannot be reached; the probe
    # sends no statement (connecting is not a query), so the counts stay exact.
    connect(dsn, read_only=False, autocommit=True, application_name=config.application_name).close()

    async def configure(conn: AsyncConnection[Any]) -> None:
        # Every integer as bigint: otherwise psycopg picks int2/int4/int8 by value, and a
        # parameter's type is part of pg_stat_statements' query id (one statement, one entry).
        conn.adapters.register_dumper(int, Int8Dumper)
        conn.adapters.register_dumper(int, Int8BinaryDumper)
        instrument_psycopg(conn)

    options = (
        f"-c statement_timeout={config.statement_timeout} "
        f"-c plan_cache_mode={config.plan_cache_mode}"
    )
    if role is not None:
        options += f" -c role={_option_value(role)}"
    pool: ApplicationPool = AsyncConnectionPool(
        dsn,
        min_size=config.pool_size,
        max_size=config.pool_size,
        kwargs={
            "autocommit": True,
            "application_name": config.application_name,
            "options": options,
        },
        configure=configure,
        timeout=config.pool_timeout_s,
        name=config.application_name,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=config.pool_timeout_s)
    except PoolTimeout as err:
        await pool.close()
        raise ConnectionFailed(
            f"the workload's pool could not open {config.pool_size} connections within "
            f"{config.pool_timeout_s:g} s (max_connections reached?)"
        ) from err
    try:
        yield pool
    finally:
        await pool.close()


class _Run:
    def __init__(
        self,
        dsn: str,
        pools: Mapping[DataPath, tuple[ApplicationPool, str]],
        config: WorkloadConfig,
        login_role: str,
    ) -> None:
        self.config = config
        self.roles = {path: role for path, (_, role) in pools.items()}
        self.login_role = login_role
        # A failure that is the setup's, not a request's (a missing table or grant): the run
        # stops after the wave that met it and raises it, and records no metrics.
        self.refused: PrerequisiteMissing | None = None
        self.provider = Provider(config.dataset.seed, config.provider_latency_ms / 1000)
        freshness = Freshness(
            timedelta(seconds=config.search_cache_ttl_s), timedelta(seconds=config.offer_ttl_s)
        )
        dialects: dict[DataPath, Dialect] = {
            DataPath.PER_REQUEST: PerRequest(),
            DataPath.BATCHED: Batched(),
        }
        self.searches = {
            path: FlightSearch(pool, dialects[path], self.provider, freshness)
            for path, (pool, _) in pools.items()
        }
        self.cache: SearchCache[SearchResult] = SearchCache(config.app_cache_ttl_s)
        self.coalescer: Coalescer[SearchRequest, SearchResult] = Coalescer(
            self._answer_batch,
            window_s=config.batch_window_ms / 1000,
            max_size=config.max_batch_size,
        )
        self.counts = {path: PathResult(path) for path in pools}
        self.recorder = MetricsRecorder(
            dsn,
            operation=config.operation,
            bucket_seconds=config.bucket_seconds,
            flush_interval_s=config.bucket_seconds if config.record_metrics else None,
            counts_statements=True,  # application_pool's sessions count what they execute
            application_name=config.application_name,
        )

    async def run(
        self, requests: list[SearchRequest], paths: list[DataPath], progress: Progress | None
    ) -> WorkloadResult:
        started = time.perf_counter()
        try:
            answered = await self._waves(requests, paths, progress, started)
        finally:
            self.recorder.stop()
        metrics_rows = 0
        if self.config.record_metrics:
            try:
                await asyncio.to_thread(self.recorder.flush, final=True)
            except psycopg.Error as err:
                refused = self._refusal(err, self.login_role)
                if refused is None:
                    raise
                raise refused from err
            metrics_rows = self.recorder.rows_written
        totals = list(self.counts.values())
        return WorkloadResult(
            config=self.config,
            results=tuple(result for result, _ in answered),
            latencies_ms=tuple(latency for _, latency in answered),
            cache_hits=sum(p.cache_hits for p in totals),
            cache_misses=sum(p.cache_misses for p in totals),
            errors=sum(p.errors for p in totals),
            round_trips=sum(p.round_trips for p in totals),
            batches=sum(p.batches for p in totals),
            batch_size_max=max((p.batch_size_max for p in totals), default=0),
            provider_calls=self.provider.calls,
            metrics_rows=metrics_rows,
            elapsed_s=time.perf_counter() - started,
            paths=tuple(self.counts[path] for path in DataPath if path in self.counts),
        )

    async def _waves(
        self,
        requests: list[SearchRequest],
        paths: list[DataPath],
        progress: Progress | None,
        started: float,
    ) -> list[tuple[SearchResult, float]]:
        answered: list[tuple[SearchResult, float]] = []
        size = self.config.concurrency
        interval = self.config.wave_interval_ms / 1000
        for number, start in enumerate(range(0, len(requests), size)):
            await asyncio.sleep(max(started + number * interval - time.perf_counter(), 0))
            wave = zip(requests[start : start + size], paths[start : start + size], strict=True)
            answered += await asyncio.gather(*(self._handle(r, path) for r, path in wave))
            if self.refused is not None:
                break
            if progress is not None:
                progress(len(answered), len(requests))
        await self.coalescer.drain()
        for path, search in self.searches.items():
            self.counts[path].round_trips = search.round_trips
        if self.refused is not None:
            raise self.refused
        return answered

    async def _handle(self, request: SearchRequest, path: DataPath) -> tuple[SearchResult, float]:
        counts = self.counts[path]
        with self.recorder.request(path.value) as record:
            future, miss = self.cache.claim(request.cache_key)
            try:
                if miss:
                    result = await self._answer(request, path)
                    self.cache.complete(request.cache_key, result)
                else:
                    result = await asyncio.shield(future)
            except REQUEST_ERRORS as err:
                if miss:
                    self.cache.fail(request.cache_key, err)
                self.refused = self.refused or self._refusal(err, self.roles[path])
                result = SearchResult(
                    request.trip_request_id, request.search.search_key, "error", error=_reason(err)
                )
            record.cache_hit = not miss
            record.error = result.status == "error"
        counts.requests += 1
        counts.cache_hits += not miss
        counts.cache_misses += miss
        counts.errors += record.error
        counts.statements_counted += record.statements
        return result, record.latency_ms or 0.0

    async def _answer(self, request: SearchRequest, path: DataPath) -> SearchResult:
        if path is DataPath.BATCHED:
            return await self.coalescer.submit(request)
        (result,) = await self.searches[path].search([request])
        return result

    async def _answer_batch(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        counts = self.counts[DataPath.BATCHED]
        try:
            return await self.searches[DataPath.BATCHED].search(requests)
        finally:
            counts.batches += 1
            counts.batch_size_max = max(counts.batch_size_max, len(requests))
            self.recorder.record_batch(len(requests), variant=DataPath.BATCHED.value)

    def _refusal(self, err: Exception, role_name: str) -> PrerequisiteMissing | None:
        """The setup's failure that *err* reveals (a missing table or grant), else None."""
        if isinstance(err, (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)):
            message = (
                f"the flight-search schema is missing or outdated ({error_reason(err)}); "
                "run the migrations (alembic upgrade head) and seed the data first"
            )
        elif isinstance(err, psycopg.errors.InsufficientPrivilege):
            role = quote_ident(role_name)
            grants = "; ".join(grant.format(role=role) for grant in queries.APPLICATION_GRANTS)
            message = (
                f"role {role_name} may not run the flight search ({error_reason(err)}); "
                f"it needs: {grants}"
            )
        else:
            return None
        refusal = PrerequisiteMissing(message)
        refusal.__cause__ = err  # --traceback shows the server's error
        return refusal


def _reason(err: Exception) -> str:
    """A failed request's error on one line, without a password."""
    if isinstance(err, psycopg.Error):
        return error_reason(err)
    return redact(str(err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _option_value(value: str) -> str:
    """*value* as one word of libpq's ``options`` (spaces and backslashes escaped)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")
