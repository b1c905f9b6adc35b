"""``dbtools verify``: the rollout gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dbtools.cli.options import (
    WINDOW_HELP,
    config_option,
    dsn_option,
    format_option,
    store_option,
    target_option,
)
from dbtools.db.connection import normalise_dsn, resolve_dsn

# The library (sqlglot, SQLAlchemy, Alembic) is imported when the command runs.


@click.command("verify")
@dsn_option
@click.option(
    "--baseline",
    required=True,
    metavar="WINDOW",
    help=f"The window before: {WINDOW_HELP}",
)
@click.option(
    "--candidate",
    required=True,
    metavar="WINDOW",
    help="The window after the rollout, same forms as --baseline.",
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
@target_option
@store_option
@config_option
@format_option("table", "json")
def verify_command(
    dsn: str | None,
    baseline: str,
    candidate: str,
    roles: tuple[str, ...],
    tables: tuple[str, ...],
    operation: str | None,
    target: str | None,
    store: str | None,
    config_file: Path | None,
    output_format: str,
) -> None:  # fmt: skip
    """Compare a baseline and a candidate window and decide: pass, fail or rollback.

    From the snapshots' deltas (never totals since a reset): queries per request in each window
    over the application's statements (every statement on the database except dbtools' own;
    BEGIN/COMMIT/ROLLBACK shown apart, not counted) and the reduction; buffer cache and index
    hit ratios; from perf_monitoring.request_metrics the app cache hit ratio, p95 latency and
    error rate; the query rate. Live checks: schema at alembic head, every batch index present,
    valid, ready and used in the candidate window, the autovacuum settings, the monitoring
    tables. Thresholds: the rollout guide's, or [tool.dbtools.verify] in pyproject.toml, or
    --config.

    A window is two samples of one target: LABEL (LABEL:start..LABEL:end), A..B (labels or ISO
    times: the samples nearest inside), or last:10m. A window by time is untrusted when an end
    has no sample within twice the collection interval, or its samples lie further apart than
    that; the times of the samples used are printed.

    \b
    dbtools verify --baseline baseline --candidate candidate
    dbtools verify --baseline b:start..b:end --candidate c1..c2 --format json
    dbtools verify --baseline 2026-11-30T09:00Z..2026-11-30T09:10Z --candidate last:10m

    \b
    Exit codes: 0 pass; 1 fail (a threshold missed, no data, or an untrusted window: a
    statistics reset, evictions, a restart, zero requests); 3 rollback (a rollback trigger:
    error rate > 5%, p95 > 1000 ms, cache hit ratio < 20%); 2 usage, configuration or
    connection error (unknown label, malformed config, …).
    """
    from dbtools.sqltext.parse import TableRef
    from dbtools.stats.measures import Scope
    from dbtools.verify import verify
    from dbtools.verify.thresholds import load_thresholds

    thresholds = load_thresholds(config_file)
    scope = Scope(frozenset(roles), frozenset(TableRef.parse(t) for t in tables))
    result = verify(
        resolve_dsn(dsn), baseline, candidate,
        scope=scope, thresholds=thresholds, operation=operation,
        target=target, store=normalise_dsn(store) if store is not None else None,
    )  # fmt: skip
    from dbtools.verify.render import render_table

    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(render_table(result))
    click.get_current_context().exit(result.exit_code)


COMMANDS = [verify_command]
