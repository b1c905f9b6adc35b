"""A Grafana dashboard (JSON, PostgreSQL data source) over the ``perf_monitoring`` tables.

Panels: application query rate and queries per request, buffer cache hit ratio (the
application's statements' shared blocks, as verify computes it) and index hit ratio: a point
per sample (``dbtools collect``: one per interval), the deltas between consecutive samples'
header sums; and from ``request_metrics``/``app_metrics`` the app cache hit ratio, p95
latency, error rate, request rate and the KMS connection-reuse ratio. Thresholds are verify's
(``config.Thresholds``: the rollout guide's unless configured), drawn on the panels: the guide's
alert lines.

A dashboard variable selects the targets (one series each, named by target) among those in the
samples; the request panels read the selected targets' rows (and those naming none: the
database's own), a series per target and variant (``request_metrics.TARGET_VARIANT``). Consecutive samples make a step only when their counters are comparable (no server
restart, no pg_stat_statements reset or eviction, no database statistics reset in between), as
``figures.measures`` demands of a window. Every panel's SQL carries ``SQL_MARKER``, so Grafana's
polling is left out of what dbtools measures. ``$__timeFilter(column)`` is Grafana's macro for
the dashboard's time range, ``$target`` the selected targets as a quoted list. The tables and
indexes the panels read are checked against the head revision's manifest. The alert rules
(``alerts``) share the panels' sample steps; the SQL over ``request_metrics`` is
``store.request_metrics``' (its one home: a window, a timeline's bucket and a panel count the
same requests the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dbtools.db.connection import SQL_MARKER
from dbtools.errors import ConfigError
from dbtools.schema import monitoring
from dbtools.schema.manifest import Manifest, manifest_at
from dbtools.schema.monitoring import monitoring_table
from dbtools.store.request_metrics import (
    APP_CACHE_HIT_RATIO,
    ERROR_RATE,
    REQUEST_METRICS,
    REQUEST_RATE,
    ROW_TARGET,
    TARGET_VARIANT,
    of_targets,
    p95_sql,
    per_bucket_sql,
    requests_between_sql,
)
from dbtools.verify.thresholds import Thresholds

DASHBOARD_UID = "dbtools-rollout"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_VARIABLE = "datasource"
# Application metrics (``app_metrics.name``) the panels and alert rules read; the README names them.
KMS_REUSE_METRIC = "kms_connection_reuse_ratio"  # a fraction, e.g. 0.85
MEMORY_USAGE_METRIC = "memory_usage_bytes"  # the process's memory in use, bytes
GRID_WIDTH = 12
GRID_HEIGHT = 8


SNAPSHOTS = monitoring_table(monitoring.SNAPSHOTS)
APP_METRICS = monitoring_table(monitoring.APP_METRICS)
# What the panels read; the revision the dashboard is made for must create every one.
TABLES_READ = (SNAPSHOTS, REQUEST_METRICS, APP_METRICS)
# The indexes that keep the panels fast over weeks of samples (one a minute per target): the
# target variable's loose scan, and each panel's range of a target's samples.
INDEXES_READ = (
    f"{monitoring.MONITORING_SCHEMA}.pk_snapshots_target",
    f"{monitoring.MONITORING_SCHEMA}.ix_snapshots_target_taken_at",
)

TARGET_VARIABLE = "target"

# The targets in the samples, by a loose scan of the samples' key (one probe per target,
# whatever the number of samples).
TARGETS_SQL = f"""WITH RECURSIVE {SQL_MARKER} targets AS (
    (SELECT target FROM {SNAPSHOTS} ORDER BY target LIMIT 1)
    UNION ALL
    SELECT (SELECT s.target FROM {SNAPSHOTS} s WHERE s.target > t.target
            ORDER BY s.target LIMIT 1)
    FROM targets t WHERE t.target IS NOT NULL
)
SELECT target FROM targets WHERE target IS NOT NULL"""


# One row per pair of consecutive, comparable samples of a selected target: the deltas between
# their headers' sums (a sample stores only the entries that moved; its header holds the sums
# over all of them). Read through the index on (target, taken_at).
def sample_steps(targets: str) -> str:
    """The ``steps`` CTE over the samples of the targets the SQL condition *targets* selects."""
    return f"""WITH {SQL_MARKER} steps AS (
    SELECT taken_at AS "time", target AS metric,
           lag(taken_at) OVER w AS previous_at,
           extract(epoch FROM taken_at - lag(taken_at) OVER w)::float8 AS seconds,
           queries - lag(queries) OVER w AS queries,
           requests,
           shared_blks_hit - lag(shared_blks_hit) OVER w AS blks_hit,
           shared_blks_read - lag(shared_blks_read) OVER w AS blks_read,
           idx_blks_hit - lag(idx_blks_hit) OVER w AS idx_blks_hit,
           idx_blks_read - lag(idx_blks_read) OVER w AS idx_blks_read,
           lag(taken_at) OVER w IS NOT NULL
           AND server_started_at = lag(server_started_at) OVER w
           AND pgss_stats_reset IS NOT DISTINCT FROM lag(pgss_stats_reset) OVER w
           AND pgss_dealloc IS NOT DISTINCT FROM lag(pgss_dealloc) OVER w
           AND database_stats_reset IS NOT DISTINCT FROM lag(database_stats_reset) OVER w
               AS comparable
    FROM {SNAPSHOTS}
    WHERE {targets} AND $__timeFilter(taken_at)
    WINDOW w AS (PARTITION BY target ORDER BY taken_at)
)"""


# The panels' steps: the targets the dashboard variable selects.
SNAPSHOT_STEPS = sample_steps(f"target IN (${TARGET_VARIABLE})")

QUERY_RATE_SQL = f"""{SNAPSHOT_STEPS}
SELECT "time", metric, queries / nullif(seconds, 0) AS "queries/s"
FROM steps WHERE comparable AND queries >= 0
ORDER BY 1, 2"""

# Requests: the end sample's --requests-served, else the request_metrics buckets overlapping the
# step, each by the share of its time inside it (as a window counts them).
QUERIES_PER_REQUEST_SQL = f"""{SNAPSHOT_STEPS}
SELECT "time", metric,
       queries::float8 / nullif(coalesce(requests, {requests_between_sql("previous_at", '"time"', "metric")}), 0)
           AS "queries per request"
FROM steps WHERE comparable AND queries >= 0
ORDER BY 1, 2"""

BUFFER_CACHE_HIT_RATIO_SQL = f"""{SNAPSHOT_STEPS}
SELECT "time", metric, blks_hit::float8 / nullif(blks_hit + blks_read, 0) AS "buffer cache hit ratio"
FROM steps WHERE comparable AND blks_hit >= 0 AND blks_read >= 0
ORDER BY 1, 2"""

INDEX_HIT_RATIO_SQL = f"""{SNAPSHOT_STEPS}
SELECT "time", metric,
       idx_blks_hit::float8 / nullif(idx_blks_hit + idx_blks_read, 0) AS "index hit ratio"
FROM steps WHERE comparable AND idx_blks_hit >= 0 AND idx_blks_read >= 0
ORDER BY 1, 2"""

# The request panels: the selected targets' rows, a series per target and variant.
SELECTED = f"${TARGET_VARIABLE}"
APP_CACHE_HIT_RATIO_SQL = per_bucket_sql(APP_CACHE_HIT_RATIO, "cache hit ratio", SELECTED)
P95_SQL = p95_sql("bucket_start", '"time"', "p95 (ms)", series=(TARGET_VARIANT, "metric"),
                  where=of_targets(SELECTED))  # fmt: skip
ERROR_RATE_SQL = per_bucket_sql(ERROR_RATE, "error rate", SELECTED)
REQUEST_RATE_SQL = per_bucket_sql(REQUEST_RATE, "requests/s", SELECTED)

KMS_REUSE_SQL = f"""SELECT {SQL_MARKER} recorded_at AS "time", {ROW_TARGET} AS metric,
       avg(value) AS "KMS connection reuse ratio"
FROM {APP_METRICS}
WHERE name = '{KMS_REUSE_METRIC}' AND $__timeFilter(recorded_at){of_targets(SELECTED)}
GROUP BY 1, 2 ORDER BY 1, 2"""


@dataclass(frozen=True)
class Step:
    """A threshold step: from *value* up (None: the base), the panel shows *colour*."""

    value: float | None
    colour: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel: its SQL returns ``time`` and the one value column named."""

    title: str
    description: str
    sql: str
    value_column: str
    unit: str
    steps: tuple[Step, ...] = (Step(None, "green"),)
    maximum: float | None = None


def panels(
    thresholds: Thresholds | None = None, *, manifest: Manifest | None = None
) -> tuple[Panel, ...]:
    """The dashboard's panels, with *thresholds* (default: the guide's) as their steps.

    Their SQL reads monitoring tables and indexes that *manifest* must list (default: the head
    revision's, as the dashboard has no database to ask); ``ConfigError`` names the first it
    lacks.
    """
    expected = manifest if manifest is not None else manifest_at("head")
    indexes = {index.qualified_name for index in expected.indexes}
    missing = [table for table in TABLES_READ if table not in expected.tables]
    missing += [index for index in INDEXES_READ if index not in indexes]
    if missing:
        raise ConfigError(
            f"the dashboard reads {missing[0]}, which revision "
            f"{expected.revision or 'base'} does not create"
        )
    t = thresholds or Thresholds()
    return (
        Panel(
            "Database query rate",
            f"Application statements per second between samples. Critical alert above "
            f"{t.critical_query_rate:g}/s.",
            QUERY_RATE_SQL, "queries/s", "short",
            (Step(None, "green"), Step(t.critical_query_rate, "red")),
        ),
        Panel(
            "Queries per request",
            f"Application statements per request between samples; the rollout must cut it by "
            f"{t.min_query_reduction:.0%} (ten concurrent requests: thirty queries become three).",
            QUERIES_PER_REQUEST_SQL, "queries per request", "short",
        ),
        Panel(
            "App cache hit ratio",
            f"Search-cache hits / (hits + misses), per target and variant. Target above {t.min_cache_hit_ratio:.0%}; "
            f"warning alert below {t.warning_cache_hit_ratio:.0%}; rollback below "
            f"{t.rollback_cache_hit_ratio:.0%}.",
            APP_CACHE_HIT_RATIO_SQL, "cache hit ratio", "percentunit",
            (Step(None, "red"), Step(t.rollback_cache_hit_ratio, "orange"),
             Step(t.warning_cache_hit_ratio, "yellow"), Step(t.min_cache_hit_ratio, "green")),
            maximum=1,
        ),
        Panel(
            "Response time p95",
            "p95 latency of each bucket's requests, from their latency histograms merged "
            f"(every operation), a series per target and variant. Target below {t.max_p95_ms:g} ms; "
            f"critical alert above {t.critical_p95_ms:g} ms; rollback above "
            f"{t.rollback_p95_ms:g} ms.",
            P95_SQL, "p95 (ms)", "ms",
            (Step(None, "green"), Step(t.max_p95_ms, "yellow"), Step(t.critical_p95_ms, "red"),
             Step(t.rollback_p95_ms, "dark-red")),
        ),
        Panel(
            "Error rate",
            f"Errors / requests, per target and variant. Target below {t.max_error_rate:.0%}; critical alert above "
            f"{t.critical_error_rate:.0%}; rollback above {t.rollback_error_rate:.0%}.",
            ERROR_RATE_SQL, "error rate", "percentunit",
            (Step(None, "green"), Step(t.max_error_rate, "yellow"),
             Step(t.critical_error_rate, "red")),
        ),
        Panel(
            "Index hit ratio",
            "Index blocks found in shared buffers / blocks read, application indexes, between "
            "samples.",
            INDEX_HIT_RATIO_SQL, "index hit ratio", "percentunit", maximum=1,
        ),
        Panel(
            "Buffer cache hit ratio",
            "Shared blocks the application's statements found in shared buffers / blocks they "
            "read (pg_stat_statements shared_blks_hit / (hit + read), top-level statements), "
            "between samples: dbtools' own work left out.",
            BUFFER_CACHE_HIT_RATIO_SQL, "buffer cache hit ratio", "percentunit", maximum=1,
        ),
        Panel(
            "Request rate",
            "Requests per second reported by the application, per target and variant "
            "(throughput should rise).",
            REQUEST_RATE_SQL, "requests/s", "reqps",
        ),
        Panel(
            "KMS connection reuse ratio",
            f"Application metric {KMS_REUSE_METRIC}, per target. Warning alert below "
            f"{t.warning_kms_reuse_ratio:.0%}.",
            KMS_REUSE_SQL, "KMS connection reuse ratio", "percentunit",
            (Step(None, "yellow"), Step(t.warning_kms_reuse_ratio, "green")), maximum=1,
        ),
    )  # fmt: skip


def _datasource() -> dict[str, str]:
    return {"type": DATASOURCE_TYPE, "uid": f"${{{DATASOURCE_VARIABLE}}}"}


def _panel_json(panel: Panel, number: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "min": 0,
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": step.colour, "value": step.value} for step in panel.steps],
        },
        "custom": {
            "drawStyle": "line",
            "lineWidth": 2,
            "showPoints": "always",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line+area" if len(panel.steps) > 1 else "off"},
        },
        "color": {"mode": "palette-classic"},
    }
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    return {
        "id": number,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": _datasource(),
        "gridPos": {
            "h": GRID_HEIGHT,
            "w": GRID_WIDTH,
            "x": (number - 1) % 2 * GRID_WIDTH,
            "y": (number - 1) // 2 * GRID_HEIGHT,
        },
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {
                "refId": "A",
                "datasource": _datasource(),
                "editorMode": "code",
                "format": "time_series",
                "rawQuery": True,
                "rawSql": panel.sql,
            }
        ],
    }


def dashboard(
    thresholds: Thresholds | None = None,
    *,
    datasource_uid: str | None = None,
    title: str = "dbtools: performance rollout",
) -> dict[str, Any]:
    """The dashboard as a Grafana JSON model (import it, or provision it from a file).

    The data source is a dashboard variable (any PostgreSQL data source pointing at the
    monitored database); *datasource_uid* preselects one.
    """
    current = (
        {"selected": True, "text": datasource_uid, "value": datasource_uid}
        if datasource_uid
        else {}
    )
    return {
        "uid": DASHBOARD_UID,
        "title": title,
        "description": "Database half of the performance rollout: the perf_monitoring tables "
        "dbtools collect and snapshots write, per target, and the application's request metrics.",
        "tags": ["dbtools", "postgresql", "rollout"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": DATASOURCE_VARIABLE,
                    "label": "PostgreSQL",
                    "type": "datasource",
                    "query": DATASOURCE_TYPE,
                    "current": current,
                    "hide": 0,
                },
                {
                    "name": TARGET_VARIABLE,
                    "label": "Target",
                    "type": "query",
                    "datasource": _datasource(),
                    "query": TARGETS_SQL,
                    "definition": TARGETS_SQL,
                    "refresh": 1,  # when the dashboard loads: a new target shows up
                    "multi": True,
                    "includeAll": True,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": [
            _panel_json(panel, number) for number, panel in enumerate(panels(thresholds), 1)
        ],
    }


def render_dashboard(
    thresholds: Thresholds | None = None, *, datasource_uid: str | None = None
) -> str:
    """The dashboard as indented JSON text (ends with a newline)."""
    model = dashboard(thresholds, datasource_uid=datasource_uid)
    return json.dumps(model, indent=2) + "\n"
