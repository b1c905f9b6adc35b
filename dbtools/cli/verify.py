"""``dbtools verify``: the rollout gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dbtools.cli.options import (
    WINDOW_HELP,
    config_option,
    dsn_option,
    emit,
    format_option,
    printed_output_option,
    reading_dsn,
    store_option,
    target_option,
    targets_file_option,
    traffic_option,
)
from dbtools.output import Destination

# The library (psycopg, and sqlglot for --table) is imported when the command runs: a deploy
# script's `dbtools verify --help` and its argument errors cost no driver start-up.


@click.command("verify")
@dsn_option
@click.option(
    "--baseline",
    metavar="WINDOW",
    help=f"The window before: {WINDOW_HELP}",
)
@click.option(
    "--candidate",
    metavar="WINDOW",
    help="The window after the rollout, same forms as --baseline.",
)
@click.option(
    "--canary",
    metavar="WINDOW",
    help="Instead of --baseline/--candidate: one window in which both variants ran.",
)
@click.option(
    "--baseline-variant",
    metavar="NAME",
    help="--canary: the variant (code path) to compare with, e.g. per-request.",
)
@click.option(
    "--candidate-variant",
    metavar="NAME",
    help="--canary: the variant being rolled out, e.g. batched.",
)
@click.option(
    "--attribute",
    "attribution",
    type=click.Choice(["role", "app"]),
    help="--canary: split the statements by database role (--variant-role) or by the "
    "application's counts, reconciled with pg_stat_statements.",
)
@click.option(
    "--variant-role",
    "variant_roles",
    multiple=True,
    metavar="VARIANT=ROLE",
    help="--attribute role: the role VARIANT's sessions run as (one per variant).",
)
@traffic_option(
    default=None,
    help="--canary: the candidate's share of the traffic asked for (rollout --traffic), in "
    "percent; the share measured must lie in the interval for that many requests.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE",
    help="Count only statements run by ROLE (repeatable).",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="[SCHEMA.]TABLE",
    help="Count only statements touching TABLE (repeatable; parsed with sqlglot).",
)
@click.option(
    "--operation",
    default=None,
    metavar="NAME",
    help="Use only request_metrics rows of this operation. Default: all.",
)
@click.option(
    "--after-rollback",
    is_flag=True,
    help="The candidate is a window after a rollback: did error rate, p95 and queries per "
    "request return to the baseline's (tolerances: [tool.dbtools.verify] after_rollback_*)?",
)
@target_option
@store_option
@targets_file_option
@config_option
@format_option("table", "json")
@printed_output_option
def verify_command(
    dsn: str | None,
    baseline: str | None,
    candidate: str | None,
    canary: str | None,
    baseline_variant: str | None,
    candidate_variant: str | None,
    attribution: str | None,
    variant_roles: tuple[str, ...],
    traffic: float | None,
    roles: tuple[str, ...],
    tables: tuple[str, ...],
    operation: str | None,
    after_rollback: bool,
    target: str | None,
    store: str | None,
    targets_file: Path | None,
    config_file: Path | None,
    output_format: str,
    destination: Destination,
) -> None:  # fmt: skip
    """Compare a baseline and a candidate window and decide: pass, fail or rollback.

    From the snapshots' deltas (never totals since a reset): queries per request in each window
    over the application's statements (every statement on the database except dbtools' own;
    BEGIN/COMMIT/ROLLBACK shown apart, not counted) and the reduction; buffer cache and index
    hit ratios; from perf_monitoring.request_metrics the app cache hit ratio, p95 latency and
    error rate; the query rate. Live checks: schema at alembic head, every batch index present,
    valid, ready and used in the candidate window, the autovacuum settings, the monitoring
    tables (read from the target: with --store and no --dsn, from the --targets file's DSN of
    --target, else skipped, saying so). Thresholds: the rollout guide's, or [tool.dbtools.verify] in pyproject.toml, or
    --config.

    A window is two samples of one target: LABEL (LABEL:start..LABEL:end), A..B (labels or ISO
    times: the samples nearest inside), or last:10m. A window by time is untrusted when an end
    has no sample within twice the collection interval, or its samples lie further apart than
    that; the times of the samples used are printed.

    \b
    dbtools verify --baseline baseline --candidate candidate
    dbtools verify --baseline b:start..b:end --candidate c1..c2 --format json
    dbtools verify --baseline baseline --candidate after-rollback --after-rollback
    dbtools verify --baseline 2026-11-30T09:00Z..2026-11-30T09:10Z --candidate last:10m

    --after-rollback: the candidate was measured after the traffic was routed back (and
    perhaps after alembic downgrade). Instead of a reduction it must be back at the baseline:
    queries per request within 10% either way, error rate at most 0.5 points and p95 at most
    25% or 50 ms (the larger) above the baseline's; the objects are judged at the database's
    current revision, present and valid.

    A canary (both code paths live in one window): each variant's queries per request and the
    reduction between them, its statements attributed by role or by the application's own
    counts (request_metrics.queries, reconciled with pg_stat_statements within
    canary_max_mismatch, else the window is untrusted); a variant with fewer requests than
    canary_min_requests is "too few requests", never a pass; the guide's other thresholds are
    judged on the candidate variant's own request metrics. With --traffic PCT (the share
    rollout --traffic asked for), the candidate's share of the requests must lie in the
    canary_share_confidence interval for that many requests (traffic_share).

    \b
    dbtools verify --canary canary --baseline-variant per-request \\
        --candidate-variant batched --attribute app
    dbtools verify --canary canary --baseline-variant per-request \\
        --candidate-variant batched --attribute role \\
        --variant-role per-request=app_v1 --variant-role batched=app_v2

    \b
    Exit codes: 0 pass (after a rollback: returned to the baseline); 1 fail (a threshold
    missed, not returned, no data, or an untrusted window: a statistics reset, evictions, a
    restart, zero requests); 3 rollback (a rollback trigger:
    error rate > 5%, p95 > 1000 ms, cache hit ratio < 20%); 2 usage, configuration or
    connection error (unknown label, malformed config, …).
    """
    from dbtools import load_thresholds, verify_candidate
    from dbtools.db.connection import normalise_dsn
    from dbtools.figures.sums import Scope
    from dbtools.sqltext.parse import TableRef
    from dbtools.verify.render import render_table

    canary_options = {
        "--baseline-variant": baseline_variant, "--candidate-variant": candidate_variant,
        "--attribute": attribution, "--variant-role": variant_roles, "--traffic": traffic,
    }  # fmt: skip
    if canary is None:
        given = [name for name, value in canary_options.items() if value not in (None, ())]
        if given:
            raise click.UsageError(f"{given[0]} is for --canary")
        if baseline is None or candidate is None:
            raise click.UsageError("give --baseline and --candidate (or --canary)")
    elif baseline is not None or candidate is not None:
        raise click.UsageError("--canary judges one window: give it without --baseline/--candidate")
    elif attribution is None:
        raise click.UsageError("--canary needs --attribute role or --attribute app")
    thresholds = load_thresholds(config_file)
    repository = normalise_dsn(store) if store is not None else None
    source = reading_dsn(dsn, repository, target, targets_file)
    scope = Scope(frozenset(roles), frozenset(TableRef.parse(t) for t in tables))
    if canary is not None:
        _canary(source, canary, baseline_variant, candidate_variant, attribution, variant_roles,
                traffic, scope=scope, thresholds=thresholds, operation=operation, target=target,
                store=repository, output_format=output_format,
                destination=destination)  # fmt: skip
        return
    assert baseline is not None and candidate is not None
    result = verify_candidate(
        source, baseline, candidate,
        scope=scope, thresholds=thresholds, operation=operation, after_rollback=after_rollback,
        target=target, store=repository,
    )  # fmt: skip
    if output_format == "json":
        text = json.dumps(result.as_dict(), indent=2)
    else:
        text = render_table(result)
    emit(text, destination, "verify", output_format)
    click.get_current_context().exit(result.exit_code)


def _canary(
    dsn: str | None,
    window: str,
    baseline_variant: str | None,
    candidate_variant: str | None,
    attribution: str | None,
    variant_roles: tuple[str, ...],
    traffic: float | None,
    **options: Any,
) -> None:
    from dbtools import CanarySpec, verify_canary
    from dbtools.verify.canary import parse_variant_roles
    from dbtools.verify.render import render_canary_table

    output_format = options.pop("output_format")
    destination = options.pop("destination")
    spec = CanarySpec(
        baseline_variant or "", candidate_variant or "",
        attribution,  # type: ignore[arg-type]  # click's Choice checked it
        parse_variant_roles(variant_roles), traffic,
    )  # fmt: skip
    result = verify_canary(dsn, window, spec, **options)
    if output_format == "json":
        text = json.dumps(result.as_dict(), indent=2)
    else:
        text = render_canary_table(result)
    emit(text, destination, "verify-canary", output_format)
    click.get_current_context().exit(result.exit_code)


COMMANDS = [verify_command]
