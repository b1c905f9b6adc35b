"""Grafana alert rules for the rollout guide's alerts, in the unified alerting file-provisioning
format (``apiVersion: 1``, groups of rules), over the dashboard's PostgreSQL data source.

One rule per alert of the guide: critical (error rate, p95, database query rate), warning (app
cache hit ratio, memory growth, KMS connection reuse) and the automatic rollback triggers (error
rate, p95, cache hit ratio), each with verify's threshold (``Thresholds``: the guide's unless
configured) and over its span: five minutes for rates and ratios, thirty for memory growth.

Each rule is a chain Grafana evaluates: ``A``, the SQL (table format: one row per series, its
text columns the series' labels, its one number the value), then ``B``, a threshold expression
on ``A``, the condition. Request-metric rules give one series per target and variant (the code
path, so a canary's own figures fire; a store holds several targets), application-metric rules
one per target and metric ``labels`` set. The SQL
shares its expressions with the dashboard's panels (``dashboard``); the one rule that reads the
snapshot tables (database query rate) is ``QUERY_RATE_ALERT_SQL``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.db.connection import SQL_MARKER
from dbtools.errors import UsageError
from dbtools.figures.requests import UNNAMED_VARIANT
from dbtools.grafana.dashboard import (
    APP_METRICS,
    DASHBOARD_UID,
    DATASOURCE_TYPE,
    KMS_REUSE_METRIC,
    MEMORY_USAGE_METRIC,
    panels,
    sample_steps,
)
from dbtools.store.request_metrics import (
    APP_CACHE_HIT_RATIO,
    ERROR_RATE,
    ROW_TARGET,
    p95_sql,
    per_variant_sql,
)
from dbtools.verify.thresholds import Thresholds

FOLDER = "dbtools"
GROUP = "dbtools rollout"
EVALUATION_INTERVAL = "1m"
RATE_SPAN_SECONDS = 5 * 60
MEMORY_SPAN_SECONDS = 30 * 60
EXPRESSION_DATASOURCE_UID = "__expr__"
QUERY_REF = "A"
CONDITION_REF = "B"
# Grafana reads these suffixes in provisioning/alerting (any other file there is an error);
# the file is JSON, which its YAML reader reads too.
PROVISIONING_SUFFIXES = (".yaml", ".yml", ".json")
BYTES_PER_MB = 2**20

# -- the SQL: one row per series, text labels then the value ------------------------------------


ERROR_RATE_ALERT_SQL = per_variant_sql(ERROR_RATE, "error rate")
# A variant's p95 over the span: its buckets' latency histograms merged (measures.P95_NAME).
P95_ALERT_SQL = p95_sql(f"coalesce(variant, '{UNNAMED_VARIANT}')", "variant", "p95 (ms)",
                        series=(ROW_TARGET, "target"))  # fmt: skip
APP_CACHE_HIT_RATIO_ALERT_SQL = per_variant_sql(APP_CACHE_HIT_RATIO, "cache hit ratio")

# The only rule over the snapshot tables: statements per second over the comparable steps
# between consecutive snapshots in the span.
QUERY_RATE_ALERT_SQL = f"""{sample_steps("TRUE")}
SELECT metric AS target, sum(queries)::float8 / nullif(sum(seconds), 0) AS "queries/s"
FROM steps WHERE comparable AND queries >= 0
GROUP BY metric HAVING sum(seconds) > 0 ORDER BY 1"""

KMS_REUSE_ALERT_SQL = f"""SELECT {SQL_MARKER} {ROW_TARGET} AS target, labels::text AS series,
       avg(value) AS "KMS connection reuse ratio"
FROM {APP_METRICS}
WHERE name = '{KMS_REUSE_METRIC}' AND $__timeFilter(recorded_at)
GROUP BY 1, 2 ORDER BY 1, 2"""

# A series' growth: its latest value in the span minus its earliest (a fall is not growth).
MEMORY_GROWTH_ALERT_SQL = f"""SELECT {SQL_MARKER} {ROW_TARGET} AS target, labels::text AS series,
       ((array_agg(value ORDER BY recorded_at DESC))[1]
        - (array_agg(value ORDER BY recorded_at))[1]) / {BYTES_PER_MB} AS "memory growth (MB)"
FROM {APP_METRICS}
WHERE name = '{MEMORY_USAGE_METRIC}' AND $__timeFilter(recorded_at)
GROUP BY 1, 2 ORDER BY 1, 2"""


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """One Grafana alert rule: *sql*'s value per series compared (``gt``/``lt``) with *limit*."""

    uid: str
    title: str
    severity: str  # critical, warning, rollback
    sql: str
    comparison: str  # Grafana's threshold evaluator: "gt" fires above, "lt" below
    limit: float
    span_seconds: int
    summary: str
    panel_title: str | None = None  # the dashboard panel showing the same figure
    no_data_state: str = "OK"  # optional metrics: their absence is not an alert
    pending: str = "0s"  # Grafana's "for": how long the condition holds before firing


def alert_rules(thresholds: Thresholds | None = None) -> tuple[AlertRule, ...]:
    """The guide's alerts and rollback triggers, with *thresholds* (default: the guide's)."""
    t = thresholds or Thresholds()
    five = RATE_SPAN_SECONDS
    return (
        AlertRule(
            "dbtools-critical-error-rate", "Error rate above critical", "critical",
            ERROR_RATE_ALERT_SQL, "gt", t.critical_error_rate, five,
            f"Error rate over 5 minutes above {t.critical_error_rate:.0%} (per variant).",
            "Error rate", no_data_state="NoData",
        ),
        AlertRule(
            "dbtools-critical-p95", "Response time p95 above critical", "critical",
            P95_ALERT_SQL, "gt", t.critical_p95_ms, five,
            f"p95 over 5 minutes (the buckets' latency histograms merged) above "
            f"{t.critical_p95_ms:g} ms (per variant).",
            "Response time p95", no_data_state="NoData",
        ),
        AlertRule(
            "dbtools-critical-query-rate", "Database query rate above critical", "critical",
            QUERY_RATE_ALERT_SQL, "gt", t.critical_query_rate, five,
            f"Application statements per second over 5 minutes above "
            f"{t.critical_query_rate:g}/s (between consecutive snapshots).",
            "Database query rate",
        ),
        AlertRule(
            "dbtools-warning-cache-hit-ratio", "App cache hit ratio below warning", "warning",
            APP_CACHE_HIT_RATIO_ALERT_SQL, "lt", t.warning_cache_hit_ratio, five,
            f"Search-cache hit ratio over 5 minutes below {t.warning_cache_hit_ratio:.0%} "
            f"(per variant).",
            "App cache hit ratio", pending="1m",
        ),
        AlertRule(
            "dbtools-warning-memory-growth", "Memory usage growth above warning", "warning",
            MEMORY_GROWTH_ALERT_SQL, "gt", t.warning_memory_growth_mb, MEMORY_SPAN_SECONDS,
            f"Application metric {MEMORY_USAGE_METRIC} grew by more than "
            f"{t.warning_memory_growth_mb:g} MB in 30 minutes (per labels set).",
        ),
        AlertRule(
            "dbtools-warning-kms-reuse", "KMS connection reuse ratio below warning", "warning",
            KMS_REUSE_ALERT_SQL, "lt", t.warning_kms_reuse_ratio, five,
            f"Application metric {KMS_REUSE_METRIC} over 5 minutes below "
            f"{t.warning_kms_reuse_ratio:.0%} (per labels set).",
            "KMS connection reuse ratio", pending="1m",
        ),
        AlertRule(
            "dbtools-rollback-error-rate", "Rollback: error rate", "rollback",
            ERROR_RATE_ALERT_SQL, "gt", t.rollback_error_rate, five,
            f"Automatic rollback trigger: error rate over 5 minutes above "
            f"{t.rollback_error_rate:.0%} (per variant).",
            "Error rate", no_data_state="NoData",
        ),
        AlertRule(
            "dbtools-rollback-p95", "Rollback: response time p95", "rollback",
            P95_ALERT_SQL, "gt", t.rollback_p95_ms, five,
            f"Automatic rollback trigger: p95 over 5 minutes (the buckets' latency histograms "
            f"merged) above {t.rollback_p95_ms:g} ms (per variant).",
            "Response time p95", no_data_state="NoData",
        ),
        AlertRule(
            "dbtools-rollback-cache-hit-ratio", "Rollback: app cache hit ratio", "rollback",
            APP_CACHE_HIT_RATIO_ALERT_SQL, "lt", t.rollback_cache_hit_ratio, five,
            f"Automatic rollback trigger: search-cache hit ratio over 5 minutes below "
            f"{t.rollback_cache_hit_ratio:.0%} (per variant).",
            "App cache hit ratio",
        ),
    )  # fmt: skip


def _rule_json(rule: AlertRule, datasource_uid: str, panel_ids: dict[str, int]) -> dict[str, Any]:
    query = {
        "refId": QUERY_REF,
        "relativeTimeRange": {"from": rule.span_seconds, "to": 0},
        "datasourceUid": datasource_uid,
        "model": {
            "refId": QUERY_REF,
            "datasource": {"type": DATASOURCE_TYPE, "uid": datasource_uid},
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": rule.sql,
            "intervalMs": 1000,
            "maxDataPoints": 43200,
        },
    }
    condition = {
        "refId": CONDITION_REF,
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": EXPRESSION_DATASOURCE_UID,
        "model": {
            "refId": CONDITION_REF,
            "datasource": {"type": "__expr__", "uid": EXPRESSION_DATASOURCE_UID},
            "type": "threshold",
            "expression": QUERY_REF,
            "conditions": [{"evaluator": {"type": rule.comparison, "params": [rule.limit]}}],
        },
    }
    linked = (
        {"dashboardUid": DASHBOARD_UID, "panelId": panel_ids[rule.panel_title]}
        if rule.panel_title
        else {}
    )
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": CONDITION_REF,
        "data": [query, condition],
        **linked,
        "noDataState": rule.no_data_state,
        "execErrState": "Error",
        "for": rule.pending,
        "labels": {"severity": rule.severity, "source": "dbtools"},
        "annotations": {"summary": rule.summary},
        "isPaused": False,
    }


def alert_provisioning(
    thresholds: Thresholds | None = None, *, datasource_uid: str
) -> dict[str, Any]:
    """The rules as a Grafana provisioning document over the data source *datasource_uid*."""
    if not datasource_uid:
        raise UsageError(
            "--alerts needs --datasource-uid: Grafana alert rules name their PostgreSQL data "
            "source (a dashboard variable does not reach them)"
        )
    panel_ids = {panel.title: number for number, panel in enumerate(panels(thresholds), 1)}
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER,
                "interval": EVALUATION_INTERVAL,
                "rules": [
                    _rule_json(rule, datasource_uid, panel_ids) for rule in alert_rules(thresholds)
                ],
            }
        ],
    }


def check_provisioning_path(path: Path) -> None:
    """Refuse a file Grafana's provisioning would not read (``UsageError``)."""
    if path.suffix not in PROVISIONING_SUFFIXES:
        raise UsageError(
            f"--alerts {path}: Grafana provisions alert rules from "
            f"{', '.join(PROVISIONING_SUFFIXES)} files only"
        )


def render_alert_rules(thresholds: Thresholds | None = None, *, datasource_uid: str | None) -> str:
    """The provisioning document as indented JSON text (valid YAML too; ends with a newline)."""
    document = alert_provisioning(thresholds, datasource_uid=datasource_uid or "")
    return json.dumps(document, indent=2) + "\n"
