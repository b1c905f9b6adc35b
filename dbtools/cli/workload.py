"""``dbtools workload seed|run``: the reference flight-search application, on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click
from tabulate import tabulate

from dbtools.cli.options import (
    dsn_option,
    emit,
    format_option,
    printed_output_option,
    traffic_option,
)
from dbtools.db.connection import resolve_dsn
from dbtools.errors import EXIT_OK, EXIT_PROBLEMS
from dbtools.output import Destination, dump_json, percent
from dbtools.workload import (
    DataPath,
    Dataset,
    Duplication,
    WorkloadConfig,
    WorkloadResult,
    run_workload,
    seed_database,
)
from dbtools.workload.runner import MAX_ERROR_RATE, PLAN_CACHE_MODES

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = Dataset()
_CONFIG_DEFAULTS = WorkloadConfig()


def dataset_options(func: F) -> F:
    """The dataset's size and seed; ``run`` must be given the values ``seed`` was given."""
    options = (
        click.option("--data-seed", type=int, default=_DEFAULTS.seed, show_default=True,
                     help="Seed of the generated data (trips, searches, provider answers)."),
        click.option("--trip-requests", type=click.IntRange(1), default=_DEFAULTS.trip_requests,
                     show_default=True, help="Trip requests in the dataset."),
        click.option("--travelers", type=click.IntRange(1), default=_DEFAULTS.travelers,
                     show_default=True, help="Travelers in the dataset."),
        click.option("--searches", type=click.IntRange(1), default=_DEFAULTS.searches,
                     show_default=True, help="Distinct searches shared by the trip requests."),
        click.option("--active-ratio", type=click.FloatRange(0, 1),
                     default=_DEFAULTS.active_ratio, show_default=True,
                     help="Share of trip requests still active (the rest is history)."),
    )  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _dataset(options: dict[str, Any]) -> Dataset:
    return Dataset(
        seed=options.pop("data_seed"),
        trip_requests=options.pop("trip_requests"),
        travelers=options.pop("travelers"),
        searches=options.pop("searches"),
        active_ratio=options.pop("active_ratio"),
    )


@click.group("workload")
def workload() -> None:
    """Seed and run the reference flight-search workload (the measured application).

    \b
    dbtools workload seed                     # once, into a migrated database
    dbtools workload run --path per-request   # baseline: three statements per request
    dbtools workload run --path batched       # candidate: three statements per batch
    """


@workload.command("seed")
@dsn_option
@dataset_options
@click.option("--replace", is_flag=True, help="Truncate the flight-search tables first.")
@format_option("table", "json")
@printed_output_option
def seed(
    dsn: str | None, replace: bool, output_format: str, destination: Destination, **options: Any
) -> None:
    """Fill the flight-search tables with the reference data set.

    Rows go in with COPY in one transaction, then the tables are vacuumed and analysed.

    The database must be migrated (alembic upgrade head) and its flight-search tables empty,
    unless --replace. Exit code 2 when either is not the case; nothing is written then.
    """
    summary = seed_database(resolve_dsn(dsn), _dataset(options), replace=replace)
    figures = {
        "travelers": summary.travelers,
        "trip_requests": summary.trip_requests,
        "active_trip_requests": summary.active_trip_requests,
        "offers": summary.offers,
        "cache_rows": summary.cache_rows,
        "elapsed_s": round(summary.elapsed_s, 2),
    }
    if output_format == "json":
        text = dump_json("workload-seed", figures)
    else:
        text = tabulate(figures.items(), headers=["seeded", ""], tablefmt="simple")
    emit(text, destination, "workload-seed", output_format)


@workload.command("run")
@dsn_option
@click.option(
    "--path",
    "path",
    type=click.Choice([p.value for p in DataPath]),
    default=_CONFIG_DEFAULTS.path.value,
    show_default=True,
    help="per-request: 3 statements per request; batched: 3 per coalesced batch.",
)
@traffic_option(
    default=_CONFIG_DEFAULTS.traffic,
    show_default=True,
    help="Percentage of the requests sent down --path; the rest go down the other path "
    "(a canary: --path batched --traffic 10).",
)
@click.option(
    "--variant-role",
    "variant_roles",
    multiple=True,
    metavar="VARIANT=ROLE",
    help="Run the sessions of VARIANT (a path) as ROLE (the login role must be a member), so that "
    "pg_stat_statements keys its statements apart (repeatable).",
)
@click.option(
    "--requests",
    type=click.IntRange(0),
    default=_CONFIG_DEFAULTS.requests,
    show_default=True,
    help="Requests to send.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=_CONFIG_DEFAULTS.concurrency,
    show_default=True,
    help="Requests arriving together in each wave.",
)
@click.option(
    "--wave-interval-ms",
    type=click.FloatRange(0),
    default=_CONFIG_DEFAULTS.wave_interval_ms,
    show_default=True,
    help="Start a wave at least this long after the previous one (pacing).",
)
@click.option(
    "--duplication",
    type=click.Choice([d.value for d in Duplication]),
    default=_CONFIG_DEFAULTS.duplication.value,
    show_default=True,
    help="Repeated requests: high 70%, medium 50%, low 20% application-cache hits.",
)
@click.option(
    "--seed",
    type=int,
    default=_CONFIG_DEFAULTS.seed,
    show_default=True,
    help="Seed of the request stream; the same seed sends the same requests.",
)
@click.option(
    "--window-ms",
    type=click.FloatRange(0),
    default=_CONFIG_DEFAULTS.batch_window_ms,
    show_default=True,
    help="Batched path: how long a batch waits for more requests.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=_CONFIG_DEFAULTS.max_batch_size,
    show_default=True,
    help="Batched path: most requests in one batch.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(1),
    default=_CONFIG_DEFAULTS.pool_size,
    show_default=True,
    help="Connections in the application's pool.",
)
@click.option(
    "--provider-latency-ms",
    type=click.FloatRange(0),
    default=_CONFIG_DEFAULTS.provider_latency_ms,
    show_default=True,
    help="Simulated flight-provider latency on a search-cache miss.",
)
@click.option(
    "--plan-cache-mode",
    type=click.Choice(PLAN_CACHE_MODES),
    default=_CONFIG_DEFAULTS.plan_cache_mode,
    show_default=True,
    help="plan_cache_mode of the application's sessions (both paths).",
)
@click.option(
    "--bucket-seconds",
    type=click.IntRange(1),
    default=_CONFIG_DEFAULTS.bucket_seconds,
    show_default=True,
    help="Width of a request-metrics bucket.",
)
@click.option(
    "--no-metrics", is_flag=True, help="Do not write perf_monitoring.request_metrics rows."
)
@dataset_options
@format_option("table", "json")
@printed_output_option
def run(
    dsn: str | None,
    path: str,
    window_ms: float,
    max_batch: int,
    no_metrics: bool,
    variant_roles: tuple[str, ...],
    output_format: str,
    destination: Destination,
    **options: Any,
) -> None:
    """Send flight searches through the per-request or batched data path, or both.

    Requests arrive in waves of --concurrency; each asks the in-process search cache first.
    With --traffic PCT, PCT% of the requests (chosen by --seed) go down --path and the rest down
    the other path, as during a canary. The request metrics go to
    perf_monitoring.request_metrics per bucket and per path (the variant), with the statements
    each path sent (counted by the application), written every bucket and at the end. Connects
    as application_name 'flight-search': these are the application's statements, the ones
    dbtools measures. Failed requests are counted and printed ("errors: N of M requests") with
    the first one's error.

    Exit code 0 when at most 1% of the requests failed, 1 when more did, 2 on bad input or a
    database that is not migrated, seeded, reachable and granted to the role (the error names the
    table, the role and the grants the flight search needs).
    """
    dataset = _dataset(options)
    names = {f.name for f in fields(WorkloadConfig)}
    config = WorkloadConfig(
        path=DataPath.parse(path),
        duplication=Duplication.parse(options.pop("duplication")),
        dataset=dataset,
        batch_window_ms=window_ms,
        max_batch_size=max_batch,
        record_metrics=not no_metrics,
        variant_roles=_variant_roles(variant_roles),
        **{key: value for key, value in options.items() if key in names},
    )
    result = run_workload(resolve_dsn(dsn), config)
    summary = result.summary()
    if output_format == "json":
        text = dump_json("workload-run", summary)
    else:
        text = _run_table(result, summary)
    emit(text, destination, "workload-run", output_format)
    click.get_current_context().exit(EXIT_PROBLEMS if result.failed else EXIT_OK)


def _run_table(result: WorkloadResult, summary: dict[str, Any]) -> str:
    """The run's figures, per path beside each other when both ran, and its errors."""
    shown = [(key, value) for key, value in summary.items() if key not in ("first_error", "paths")]
    lines = [tabulate([(key, _show(value)) for key, value in shown], tablefmt="simple")]
    paths = summary["paths"]
    if len(paths) > 1:
        figures = list(next(iter(paths.values())))
        lines += ["", tabulate(
            [[name, *(_show(paths[p][name]) for p in paths)] for name in figures],
            headers=["per path", *paths], tablefmt="simple",
        )]  # fmt: skip
    lines.append(f"errors: {result.errors} of {result.requests} requests "
                 f"({percent(result.error_rate or 0.0)})")  # fmt: skip
    if result.first_error is not None:
        lines.append(f"first error: {result.first_error}")
    if result.failed:
        lines.append(f"{result.errors} of {result.requests} requests failed, more than "
                     f"{percent(MAX_ERROR_RATE, 0)}: exit code {EXIT_PROBLEMS}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _variant_roles(items: tuple[str, ...]) -> dict[str, str]:
    from dbtools.verify.canary import parse_variant_roles

    return {DataPath.parse(path).value: role for path, role in parse_variant_roles(items).items()}


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


COMMANDS = [workload]
