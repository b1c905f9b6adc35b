"""``dbtools verify``: the rollout gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dbtools.cli.options import config_option, dsn_option, format_option
from dbtools.connection import resolve_dsn

if TYPE_CHECKING:
    from dbtools.measures import WindowMeasures
    from dbtools.verify import VerifyResult

# The library (sqlglot, SQLAlchemy, Alembic) is imported when the command runs.


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "no data" if value is None else fmt.format(value)


def _measure_rows(b: WindowMeasures, c: WindowMeasures) -> list[list[str]]:
    def row(name: str, fn: Callable[[WindowMeasures], str]) -> list[str]:
        return [name, fn(b), fn(c)]

    return [
        row("window", lambda w: f"{w.start_label}..{w.end_label}"),
        row("duration", lambda w: f"{w.seconds:.1f} s"),
        row("trusted", lambda w: "yes" if w.trusted else "NO"),
        row("requests", lambda w: "no data" if w.requests is None
            else f"{w.requests:,} ({w.requests_source})"),
        row("queries (application)", lambda w: f"{w.counts.queries:,}"),
        row("distinct statements", lambda w: f"{w.counts.statements:,}"),
        row("queries per request", lambda w: _num(w.queries_per_request)),
        row("transaction control calls", lambda w: f"{w.counts.transaction_calls:,}"),
        row("nested calls (in functions)", lambda w: f"{w.counts.nested_calls:,}"),
        row("not visible calls", lambda w: f"{w.hidden_calls:,}"),
        row("query rate", lambda w: _num(w.query_rate, "{:.1f}/s")),
        row("buffer cache hit ratio", lambda w: _pct(w.buffer_cache_hit_ratio)),
        row("index hit ratio", lambda w: _pct(w.index_hit_ratio)),
        row("app cache hit ratio", lambda w: _pct(w.app_cache_hit_ratio)),
        row("p95 latency", lambda w: _num(w.p95_ms, "{:.1f} ms")),
        row("error rate", lambda w: _pct(w.error_rate)),
    ]  # fmt: skip


def render_table(result: VerifyResult) -> str:
    """The verify result for people: measures side by side, findings, verdict."""
    from tabulate import tabulate

    scope = result.scope.as_dict()
    narrowed = [f"roles {', '.join(scope['roles'])}"] if scope["roles"] else []
    narrowed += [f"tables {', '.join(scope['tables'])}"] if scope["tables"] else []
    if result.operation:
        narrowed.append(f"operation {result.operation}")
    lines = [
        f"database {result.database}" + (f" (scope: {'; '.join(narrowed)})" if narrowed else ""),
        "",
        tabulate(
            _measure_rows(result.baseline, result.candidate),
            headers=[
                "measure",
                f"baseline {result.baseline.name}",
                f"candidate {result.candidate.name}",
            ],
        ),
        "",
        f"query reduction: {_pct(result.reduction)}",
        "",
        tabulate(
            [
                [
                    f.check,
                    f.status.upper() if f.status != "pass" else f.status,
                    f.subject,
                    f.message,
                ]
                for f in result.findings
            ],
            headers=["check", "status", "subject", "detail"],
        ),
        "",
        f"verdict: {result.verdict.upper()} (exit code {result.exit_code})",
    ]
    return "\n".join(lines)


@click.command("verify")
@dsn_option
@click.option(
    "--baseline",
    required=True,
    metavar="WINDOW",
    help="The window before: LABEL (LABEL:start..LABEL:end, as capture writes) or A..B.",
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
@config_option
@format_option("table", "json")
def verify_command(
    dsn: str | None,
    baseline: str,
    candidate: str,
    roles: tuple[str, ...],
    tables: tuple[str, ...],
    operation: str | None,
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

    \b
    dbtools verify --baseline baseline --candidate candidate
    dbtools verify --baseline b:start..b:end --candidate c1..c2 --format json

    \b
    Exit codes: 0 pass; 1 fail (a threshold missed, no data, or an untrusted window: a
    statistics reset, evictions, a restart, zero requests); 3 rollback (a rollback trigger:
    error rate > 5%, p95 > 1000 ms, cache hit ratio < 20%); 2 usage, configuration or
    connection error (unknown label, malformed config, …).
    """
    from dbtools.analysis import TableRef
    from dbtools.config import load_thresholds
    from dbtools.measures import Scope
    from dbtools.verify import verify

    thresholds = load_thresholds(config_file)
    scope = Scope(frozenset(roles), frozenset(TableRef.parse(t) for t in tables))
    result = verify(
        resolve_dsn(dsn), baseline, candidate,
        scope=scope, thresholds=thresholds, operation=operation,
    )  # fmt: skip
    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(render_table(result))
    click.get_current_context().exit(result.exit_code)


COMMANDS = [verify_command]
