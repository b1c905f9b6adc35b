"""``dbtools report`` and ``dbtools dashboard``: what a DBA reads, and what Grafana shows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from dbtools.cli.options import (
    WINDOW_HELP,
    config_option,
    dsn_option,
    emit,
    format_option,
    output_options,
    reading_dsn,
    store_option,
    target_option,
    targets_file_option,
)
from dbtools.db.connection import normalise_dsn
from dbtools.output import Destination
from dbtools.report.subjects import skip_help, skippable

# The renderers' names, spelled here so that `dbtools --help` need not import the report
# machinery (matplotlib, jinja2, SQLAlchemy); a test checks they match dbtools.report.FORMATS.
REPORT_FORMATS = ("md", "html", "json")


@click.command("report")
@dsn_option
@click.option(
    "--window",
    metavar="WINDOW",
    default=None,
    help=f"One window: {WINDOW_HELP}",
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
@click.option(
    "--mark",
    "marks",
    metavar="NAME=WINDOW",
    multiple=True,
    help="Shade another window of the deploy on the timelines (repeatable): --mark "
    "canary=canary, --mark rollback=rb:start..rb:end; WINDOW as for --window. The timelines "
    "span the marks too.",
)
@format_option(*REPORT_FORMATS, default="md")
@output_options
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="How many statements to rank.",
)
@click.option(
    "--skip",
    type=click.Choice(skippable()),
    multiple=True,
    help=f"Leave out a section read when the report is made (repeatable): {skip_help()}.",
)
@target_option
@store_option
@targets_file_option
@config_option(
    help="TOML file with a [verify] table of thresholds and/or a [report] table of the lookup "
    "rules."
)
def report_command(
    dsn: str | None,
    window: str | None,
    baseline: str | None,
    candidate: str | None,
    live: bool,
    marks: tuple[str, ...],
    output_format: str,
    destination: Destination,
    top: int,
    skip: tuple[str, ...],
    target: str | None,
    store: str | None,
    targets_file: Path | None,
    config_file: Path | None,
) -> None:  # fmt: skip
    """Write the DBA's report: the rollout's story, statements, lookups, health.

    For one window (--window), a baseline and a candidate side by side (--baseline, --candidate:
    each statement's change), or the live statistics (--live). Two windows open with verify's
    verdict on them (its thresholds: [tool.dbtools.verify] or --config), the guide's headline
    figures against their thresholds, and what replaced what (each family that fell paired with
    the one that rose on the same tables and columns). Sections: the statements that cost most
    (total and mean time, calls, rows per call, shared-buffer hit ratio, share of time);
    batchable lookups (point or small-set lookups at a high rate, whatever their calls per
    request, with what one `= ANY($1)` per batch would save) and N+1 suspects (point lookups
    each request sends); query families (sqlglot fingerprints) and statements that cannot be
    parsed (verbatim); where each statement's time goes (planning, I/O, temporary blocks, WAL);
    buffer cache, index and per-table hit ratios (from window deltas); index health (invalid,
    unused, rarely used, duplicate, overlapping, foreign keys without an index, large tables
    read by sequential scans); autovacuum health (dead tuples, last vacuum/analyze, settings,
    transaction-ID age); timelines of stored windows (per interval between samples: the top
    statements' and families' calls, total and mean time, hit ratios, the application's p95
    and error rate, charted with the report's windows and each --mark shaded). The lookup
    rules' lines are [tool.dbtools.report] settings (or a [report] table in --config).

    Read from the database when the report is made (leave any out with --skip): activity
    (--live only: long-running statements, idle in transaction, blocked sessions and their
    chains, connections against max_connections); space (table and index sizes, bloat,
    sequences near their end); settings (values, sources, notes); plans of the costliest
    statements (EXPLAIN (GENERIC_PLAN) on PostgreSQL 16+, never executed); index advice
    (hypothetical indexes with hypopg where it is created); schema health (no primary key,
    NOT VALID constraints, foreign-key type mismatches, btree on boolean or array columns,
    mostly-NULL index columns).

    Literals are scrubbed from every query text; passwords never appear. The file is written
    atomically to --output, or to --output-dir (default reports/) as
    report-<windows>-<UTC time>.<format>; its path is printed. --output - prints it instead.
    HTML is one self-contained file with charts. A rollout record of `dbtools rollout` in
    --output-dir whose monitoring window the report reads is named in its notes.

    \b
    dbtools report --baseline baseline --candidate candidate --format html
    dbtools report --baseline baseline --candidate candidate --mark canary=canary \\
        --mark rollback=rollback --format html
    dbtools report --window b:start..b:end --format json --output -
    dbtools report --live

    Exit codes: 0 written; 2 usage, connection or prerequisite error (nothing written).
    """
    from dbtools import make_report
    from dbtools.report import render, report_stem, with_rollout_records
    from dbtools.report.options import load_report_options
    from dbtools.report.subjects import InspectionOptions

    options = dataclasses.replace(
        load_report_options(config_file, top_statements=top),
        inspection=InspectionOptions().without(skip),
    )
    repository = normalise_dsn(store) if store is not None else None
    report = make_report(
        reading_dsn(dsn, repository, target, targets_file), window=window, baseline=baseline,
        candidate=candidate, live=live, options=options, sample_target=target,
        store=repository, marks=marks,
    )  # fmt: skip
    report = with_rollout_records(report, destination.directory)
    text = render(report, output_format)
    emit(text, destination, report_stem(report), output_format, report.generated_at)


@click.command("dashboard")
@format_option("json", default="json")
@output_options
@click.option(
    "--datasource-uid",
    metavar="UID",
    default=None,
    help="Preselect this Grafana PostgreSQL data source (a dashboard variable); the alert "
    "rules query it (required with --alerts).",
)
@click.option(
    "--alerts",
    "alerts_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write Grafana alert rules (unified alerting file provisioning) to FILE "
    "(.yaml, .yml or .json), atomically; its directory must exist.",
)
@config_option
def dashboard_command(
    output_format: str,
    destination: Destination,
    datasource_uid: str | None,
    alerts_file: Path | None,
    config_file: Path | None,
) -> None:
    """Write a Grafana dashboard (JSON) and alert rules over perf_monitoring.

    Panels for a PostgreSQL data source pointing at the monitored database: database query
    rate, queries per request, app cache hit ratio, response time p95, error rate, index and
    buffer cache hit ratios, request rate, KMS connection-reuse ratio. Alert thresholds are
    verify's (the rollout guide's, or [tool.dbtools.verify] in pyproject.toml, or --config),
    drawn on the panels. Import it in Grafana, or provision it from the file. Written
    atomically to --output, or to --output-dir (default reports/) as dashboard-<UTC time>.json;
    its path is printed. --output - prints it instead.

    --alerts FILE writes the guide's alerts as Grafana alert rules for provisioning/alerting/:
    critical (error rate, p95, database query rate), warning (app cache hit ratio, growth of
    the application metric memory_usage_bytes in 30 minutes, kms_connection_reuse_ratio) and
    the automatic rollback triggers (error rate, p95, app cache hit ratio), querying the data
    source --datasource-uid. Its path is printed after the dashboard's (on standard error when
    the dashboard goes to standard output).

    \b
    dbtools dashboard -o monitoring/performance-optimization-dashboard.json
    dbtools dashboard --output -      # JSON on standard output
    dbtools dashboard --datasource-uid pg-main --alerts provisioning/alerting/dbtools.yaml

    Exit codes: 0 written; 2 usage or configuration error (nothing written).
    """
    from dbtools import load_thresholds
    from dbtools.grafana.alerts import check_provisioning_path, render_alert_rules
    from dbtools.grafana.dashboard import render_dashboard
    from dbtools.output import write_output

    alerts = Destination(str(alerts_file)) if alerts_file is not None else None
    if alerts is not None and alerts_file is not None:
        check_provisioning_path(alerts_file)
        alerts.check()
    thresholds = load_thresholds(config_file)
    text = render_dashboard(thresholds, datasource_uid=datasource_uid)
    rules = None
    if alerts is not None:  # both rendered before either is written
        rules = render_alert_rules(thresholds, datasource_uid=datasource_uid)
    # The rules first: a file that cannot be written leaves no dashboard behind either.
    written = write_output(rules, alerts, "alerts", "yaml") if alerts and rules else None
    emit(text, destination, "dashboard", output_format)
    if written is not None:
        click.echo(str(written), err=destination.is_stdout)


COMMANDS = [report_command, dashboard_command]
