"""``dbtools report`` and ``dbtools dashboard``: what a DBA reads, and what Grafana shows."""

from __future__ import annotations

from pathlib import Path

import click

from dbtools.cli.options import config_option, dsn_option, format_option, output_dir_option
from dbtools.db.connection import resolve_dsn
from dbtools.errors import UsageError
from dbtools.output import write_atomically

# The renderers' names, spelled here so that `dbtools --help` need not import the report
# machinery (matplotlib, jinja2, SQLAlchemy); a test checks they match dbtools.report.FORMATS.
REPORT_FORMATS = ("md", "html", "json")


@click.command("report")
@dsn_option
@click.option(
    "--window",
    metavar="WINDOW",
    default=None,
    help="One window: LABEL (LABEL:start..LABEL:end, as capture writes) or A..B.",
)
@click.option(
    "--baseline",
    metavar="WINDOW",
    default=None,
    help="Before/after report: the window before the rollout (with --candidate).",
)
@click.option(
    "--candidate",
    metavar="WINDOW",
    default=None,
    help="Before/after report: the window after the rollout (with --baseline).",
)
@click.option(
    "--live",
    is_flag=True,
    help="The live statistics (totals since the last reset) instead of a window.",
)
@format_option(*REPORT_FORMATS, default="md")
@output_dir_option
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="How many statements to rank.",
)
def report_command(
    dsn: str | None,
    window: str | None,
    baseline: str | None,
    candidate: str | None,
    live: bool,
    output_format: str,
    output_dir: Path,
    top: int,
) -> None:  # fmt: skip
    """Write the DBA's report: top statements, query families, N+1 suspects, health.

    For one window (--window), a baseline and a candidate side by side (--baseline, --candidate:
    each statement's change), or the live statistics (--live). Sections: the statements that
    cost most (total and mean time, calls, rows per call, shared-buffer hit ratio, share of
    time); query families (sqlglot fingerprints) and statements that cannot be parsed (verbatim);
    N+1 suspects (point lookups sent per request that one `= ANY($1)` could serve); buffer cache,
    index and per-table hit ratios (from window deltas); index health (invalid, unused,
    duplicate, overlapping, foreign keys without an index, large tables read by sequential
    scans); autovacuum health (dead tuples, last vacuum/analyze, settings, transaction-ID age).

    Literals are scrubbed from every query text; passwords never appear. The file is written
    atomically to --output-dir as report-<windows>-<UTC time>.<format>; its path is printed.
    HTML is one self-contained file with charts.

    \b
    dbtools report --baseline baseline --candidate candidate --format html
    dbtools report --window b:start..b:end --format json
    dbtools report --live

    Exit codes: 0 written; 2 usage, connection or prerequisite error (nothing written).
    """
    from dbtools.report import ReportOptions, generate_report

    path = generate_report(
        resolve_dsn(dsn), window=window, baseline=baseline, candidate=candidate, live=live,
        fmt=output_format, output_dir=output_dir, options=ReportOptions(top_statements=top),
    )  # fmt: skip
    click.echo(str(path))


@click.command("dashboard")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the dashboard to this file (atomically). Default: standard output.",
)
@click.option(
    "--datasource-uid",
    metavar="UID",
    default=None,
    help="Preselect this Grafana PostgreSQL data source (a dashboard variable).",
)
@config_option
def dashboard_command(
    output: Path | None, datasource_uid: str | None, config_file: Path | None
) -> None:  # fmt: skip
    """Write a Grafana dashboard (JSON) over the perf_monitoring tables.

    Panels for a PostgreSQL data source pointing at the monitored database: database query
    rate, queries per request, app cache hit ratio, response time p95, error rate, index and
    buffer cache hit ratios, request rate, KMS connection-reuse ratio. Alert thresholds are
    verify's (the rollout guide's, or [tool.dbtools.verify] in pyproject.toml, or --config),
    drawn on the panels. Import it in Grafana, or provision it from the file.

    \b
    dbtools dashboard -o monitoring/performance-optimization-dashboard.json

    Exit codes: 0 written; 2 usage or configuration error.
    """
    from dbtools.report.dashboard import render_dashboard
    from dbtools.verify.thresholds import load_thresholds

    text = render_dashboard(load_thresholds(config_file), datasource_uid=datasource_uid)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomically(output, text)
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror or err}") from err
    click.echo(str(output))


COMMANDS = [report_command, dashboard_command]
