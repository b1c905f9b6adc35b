"""The SQL over ``request_metrics``, in one home: what a window's requests add up to (verify, the
canary, the report, the rollout's triggers), per bucket (the report's timelines), and what the
Grafana panels and alert rules run.

The application writes ``request_metrics`` (``dbtools.metrics``): requests, errors, cache hits
and misses, a p95 and (revision 0007) a latency histogram per time bucket, with its variant
(0006) and the statements it counted (0006). Which of those columns a database has is its
revision's (``Layout``). A bucket an interval's end cuts counts by the share of its time inside
(``inside_share``): windows and the dashboard's steps alike.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbtools.db.connection import SQL_MARKER
from dbtools.errors import PrerequisiteMissing
from dbtools.figures.requests import (
    NO_REQUESTS,
    UNNAMED_VARIANT,
    MetricsBucket,
    RequestTotals,
    VariantTotals,
)
from dbtools.schema import latency, monitoring
from dbtools.schema.monitoring import monitoring_table
from dbtools.store.layout import HEAD_LAYOUT, Layout


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


# A bucket's times are known to this slack: its start is the server's clock at the writing
# statement minus an age the writer measured just before (``dbtools.metrics``), and a request
# counts in the bucket of its end, its statements a little before.
EDGE_SLACK_SECONDS = 0.05
# Buckets longer than this are not read (the lower bound of the index scan on bucket_start).
LONGEST_BUCKET_SECONDS = 3600


def inside_share(start: str, end: str, bucket: str = "") -> str:
    """The share of a bucket's time inside [*start*, *end*] (SQL expressions), 0 to 1: how much
    of its requests an interval counts (*bucket*: the table's alias, with its dot)."""
    b = bucket
    return f"""CASE WHEN {b}bucket_seconds <= 0  -- an instant
                THEN ({b}bucket_start >= {start} AND {b}bucket_start <= {end})::int
                ELSE greatest(extract(epoch FROM least({b}bucket_start
                                                       + make_interval(secs => {b}bucket_seconds),
                                                       {end})
                                                 - greatest({b}bucket_start, {start})), 0)
                     / {b}bucket_seconds
           END"""


# A window's request metrics: each bucket that may overlap it (``m``), with the share of its
# time inside (``inside``) and whether an end may cut it (``cut``); the sums ({group}: a row
# per variant, with its queries); the histograms of the overlapping buckets merged.
_REQUEST_TOTALS = """
WITH {marker} m AS (
    SELECT {group_key} AS g, requests, errors, cache_hits, cache_misses, latency_p95_ms,
           {histogram} AS latency_histogram, {queries} AS queries, bucket_seconds,
           {inside} AS inside,
           bucket_start - %(slack)s < %(start)s
               OR bucket_start + make_interval(secs => bucket_seconds) + %(slack)s > %(end)s AS cut
    FROM {request_metrics}
    WHERE bucket_start >= %(start)s - make_interval(secs => %(longest)s)
      AND bucket_start - %(slack)s < %(end)s
      AND bucket_start + make_interval(secs => bucket_seconds) + %(slack)s > %(start)s
      AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
{of_target}), t AS (
    SELECT g, count(*) FILTER (WHERE inside > 0) AS buckets,
           round(coalesce(sum(requests * inside), 0))::bigint AS requests,
           coalesce(sum(errors) FILTER (WHERE inside > 0), 0)::bigint AS errors,
           coalesce(sum(cache_hits) FILTER (WHERE inside > 0), 0)::bigint AS cache_hits,
           coalesce(sum(cache_misses) FILTER (WHERE inside > 0), 0)::bigint AS cache_misses,
           max(latency_p95_ms) FILTER (WHERE requests > 0 AND inside > 0) AS p95_ms_max,
           coalesce(sum(requests) FILTER (WHERE inside > 0), 0)::bigint AS bucket_requests,
           coalesce(sum(requests) FILTER (WHERE NOT cut), 0)::bigint AS requests_low,
           coalesce(sum(requests), 0)::bigint AS requests_high,
           count(*) FILTER (WHERE cut AND requests > 0) AS edge_buckets,
           max(bucket_seconds) FILTER (WHERE cut AND requests > 0)::float8 AS edge_bucket_seconds,
           count(*) FILTER (WHERE inside > 0 AND requests > 0 AND latency_histogram IS NULL)
               AS histogram_missing,
           coalesce(array_agg(latency_p95_ms) FILTER (WHERE inside > 0 AND requests > 0
                                                      AND latency_p95_ms IS NOT NULL),
                    '{{}}') AS p95s,
           coalesce(array_agg(requests) FILTER (WHERE inside > 0 AND requests > 0
                                                AND latency_p95_ms IS NOT NULL),
                    '{{}}') AS p95_requests,
           round(sum(queries * inside))::bigint AS queries,
           sum(queries) FILTER (WHERE NOT cut)::bigint AS queries_low,
           sum(queries)::bigint AS queries_high,
           count(*) FILTER (WHERE inside > 0 AND queries IS NULL) AS uncounted_buckets,
           coalesce(sum(requests) FILTER (WHERE inside > 0 AND latency_histogram IS NOT NULL),
                    0)::bigint AS histogram_requests,
           count(*) FILTER (WHERE inside > 0 AND errors > requests) AS impossible_buckets
    FROM m GROUP BY g
), h AS (
    SELECT g, array_agg(c ORDER BY i) AS latency_histogram
    FROM (SELECT g, u.i, sum(u.c)::bigint AS c
          FROM m CROSS JOIN LATERAL unnest(m.latency_histogram) WITH ORDINALITY AS u(c, i)
          WHERE inside > 0 GROUP BY g, u.i) merged
    GROUP BY g
)
SELECT t.*, h.latency_histogram FROM t LEFT JOIN h ON h.g IS NOT DISTINCT FROM t.g
ORDER BY t.g NULLS FIRST"""
# From revision 0005 an application may write its metrics to a central repository, naming its
# target; rows without one are the database's own.
OF_TARGET = "  AND (target IS NULL OR target = %(target)s::text)\n"


def request_totals_sql(layout: Layout = HEAD_LAYOUT, *, per_variant: bool = False) -> sql.Composed:
    """The request totals of a window (*per_variant*: a row per variant), of the target where
    *layout*'s ``request_metrics`` names targets."""
    of_target = OF_TARGET if layout.has(monitoring.REQUEST_METRICS, "target") else ""
    has = functools.partial(layout.has, monitoring.REQUEST_METRICS)
    return sql.SQL(_REQUEST_TOTALS).format(
        marker=sql.SQL(SQL_MARKER),
        group_key=sql.SQL("variant" if per_variant else "NULL::text"),
        histogram=sql.SQL("latency_histogram" if has("latency_histogram") else "NULL::int[]"),
        queries=sql.SQL("queries" if has("queries") else "NULL::bigint"),
        inside=sql.SQL(inside_share("%(start)s", "%(end)s")),
        request_metrics=_table(monitoring.REQUEST_METRICS),
        of_target=sql.SQL(of_target),
    )


def _totals_params(
    start: datetime, end: datetime, operation: str | None, target: str | None
) -> dict[str, Any]:
    return {"start": start, "end": end, "operation": operation, "target": target,
            "slack": timedelta(seconds=EDGE_SLACK_SECONDS), "longest": LONGEST_BUCKET_SECONDS}  # fmt: skip


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    """``RequestTotals``' fields from a row of ``_REQUEST_TOTALS``."""
    exact = not row["edge_buckets"]
    counted = not row["uncounted_buckets"]
    return {
        "buckets": row["buckets"], "requests": row["requests"], "errors": row["errors"],
        "cache_hits": row["cache_hits"], "cache_misses": row["cache_misses"],
        "p95_ms_max": row["p95_ms_max"],
        "bucket_requests": row["bucket_requests"],
        "requests_low": None if exact else row["requests_low"],
        "requests_high": None if exact else row["requests_high"],
        "edge_buckets": row["edge_buckets"], "edge_bucket_seconds": row["edge_bucket_seconds"],
        "p95": latency.histogram_percentile(row["latency_histogram"] or (), 0.95)
        if not row["histogram_missing"]
        else latency.weighted_percentile(row["p95s"], row["p95_requests"], 0.95),
        "queries": row["queries"] if counted else None,
        "uncounted_buckets": row["uncounted_buckets"],
        "queries_low": None if exact or not counted else row["queries_low"],
        "queries_high": None if exact or not counted else row["queries_high"],
        "histogram_requests": row["histogram_requests"],
        "histogram_count": sum(row["latency_histogram"] or ()),
        "impossible_buckets": row["impossible_buckets"],
    }  # fmt: skip


def load_request_totals(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    operation: str | None = None,
    *,
    target: str | None = None,
    layout: Layout = HEAD_LAYOUT,
) -> RequestTotals:
    """The request metrics of the window [*start*, *end*] (the target's, and those that name
    none): see ``RequestTotals``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            request_totals_sql(layout), _totals_params(start, end, operation, target)
        ).fetchone()
    return NO_REQUESTS if row is None else RequestTotals(**_totals(row))


def load_variant_totals(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    operation: str | None = None,
    *,
    target: str | None = None,
    layout: Layout = HEAD_LAYOUT,
) -> dict[str | None, VariantTotals]:
    """The request metrics of the window [*start*, *end*] (the target's, and those that name
    none), per variant.

    Raises ``PrerequisiteMissing`` when the table has no ``variant`` column (a revision before
    the one that adds it).
    """
    if not layout.has(monitoring.REQUEST_METRICS, "variant"):
        raise PrerequisiteMissing(
            f"{monitoring.monitoring_table(monitoring.REQUEST_METRICS)} has no variant column "
            "at this database's revision: run alembic upgrade head"
        )
    query = request_totals_sql(layout, per_variant=True)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, _totals_params(start, end, operation, target)).fetchall()
    return {row["g"]: VariantTotals(**_totals(row), variant=row["g"]) for row in rows}


# -- per bucket: the report's timelines ------------------------------------------------------------

# The highest p95 of a bucket's rows: the worst second (the timelines and the panels, per bucket).
P95 = "max(latency_p95_ms) FILTER (WHERE requests > 0)"
ERROR_RATE = "sum(errors)::float8 / nullif(sum(requests), 0)"
APP_CACHE_HIT_RATIO = "sum(cache_hits)::float8 / nullif(sum(cache_hits + cache_misses), 0)"
REQUEST_RATE = "sum(requests)::float8 / nullif(max(bucket_seconds), 0)"

_BUCKETS = """SELECT {marker} bucket_start, coalesce(sum(requests), 0)::bigint,
       {p95}, {error_rate}
FROM {request_metrics}
WHERE bucket_start >= %(start)s
  AND bucket_start + make_interval(secs => bucket_seconds) <= %(end)s
{of_target}GROUP BY bucket_start ORDER BY bucket_start"""


def load_buckets(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    target: str | None,
    *,
    layout: Layout = HEAD_LAYOUT,
) -> tuple[MetricsBucket, ...]:
    """The ``request_metrics`` buckets inside [*start*, *end*]: requests, p95, error rate."""
    of_target = OF_TARGET if layout.has(monitoring.REQUEST_METRICS, "target") else ""
    query = sql.SQL(_BUCKETS).format(
        marker=sql.SQL(SQL_MARKER),
        p95=sql.SQL(P95),
        error_rate=sql.SQL(ERROR_RATE),
        request_metrics=_table(monitoring.REQUEST_METRICS),
        of_target=sql.SQL(of_target),
    )
    rows = conn.execute(query, {"start": start, "end": end, "target": target}).fetchall()
    return tuple(MetricsBucket(*row) for row in rows)


# -- Grafana: what the dashboard's panels and the alert rules run ----------------------------------

REQUEST_METRICS = monitoring_table(monitoring.REQUEST_METRICS)
# Grafana's macro for the dashboard's time range (an alert rule's span), on the buckets.
IN_RANGE = "$__timeFilter(bucket_start)"
PERCENTILE = 0.95


def p95_sql(
    group: str, alias: str, column: str, *, series: tuple[str, str] | None = None, where: str = ""
) -> str:
    """The p95 of the ``request_metrics`` rows in the time range, per *group* (an expression,
    shown as *alias*) and *series* (an expression and its alias: a second key, e.g. a panel's
    series), as ``measures.P95_NAME`` defines it for a window (``schema.latency``): the
    percentile of the rows' latency histograms merged, else (a row with requests and no
    histogram: an older writer) the request-weighted 95th percentile of the rows' own p95s.
    *where*: a further condition on the rows (`` AND …``)."""
    at = latency.PERCENTILE_AT_SQL.format(position="i")
    key, named = series if series is not None else ("NULL::text", "")
    shown = f", m.s AS {named}" if named else ""
    return f"""WITH {SQL_MARKER} m AS (
    SELECT {group} AS g, {key} AS s, requests, latency_p95_ms, latency_histogram
    FROM {REQUEST_METRICS} WHERE {IN_RANGE} AND requests > 0{where}
), h AS (
    SELECT g, s, u.i, sum(u.c) AS c
    FROM m CROSS JOIN LATERAL unnest(m.latency_histogram) WITH ORDINALITY AS u(c, i)
    GROUP BY g, s, u.i
), merged AS (
    SELECT DISTINCT ON (g, s) g, s, {at} AS p95
    FROM (SELECT g, s, i, c, sum(c) OVER (PARTITION BY g, s ORDER BY i) AS seen,
                 sum(c) OVER (PARTITION BY g, s) AS total FROM h) x
    WHERE c > 0 AND seen >= {PERCENTILE} * total
    ORDER BY g, s, i
), estimated AS (
    SELECT DISTINCT ON (g, s) g, s, latency_p95_ms AS p95
    FROM (SELECT g, s, latency_p95_ms,
                 sum(requests) OVER (PARTITION BY g, s ORDER BY latency_p95_ms) AS seen,
                 sum(requests) OVER (PARTITION BY g, s) AS total
          FROM m WHERE latency_p95_ms IS NOT NULL) x
    WHERE seen >= {PERCENTILE} * total
    ORDER BY g, s, latency_p95_ms
)
SELECT m.g AS {alias}{shown},
       CASE WHEN bool_and(m.latency_histogram IS NOT NULL) THEN min(merged.p95)
            ELSE min(estimated.p95) END AS "{column}"
FROM m LEFT JOIN merged ON merged.g = m.g AND merged.s IS NOT DISTINCT FROM m.s
       LEFT JOIN estimated ON estimated.g = m.g AND estimated.s IS NOT DISTINCT FROM m.s
GROUP BY m.g, m.s
HAVING CASE WHEN bool_and(m.latency_histogram IS NOT NULL) THEN min(merged.p95)
            ELSE min(estimated.p95) END IS NOT NULL
ORDER BY 1, 2"""


# The target a row is shown under: its own, else (NULL: written by the application into its own
# database) the database's, whose samples its own repository keeps under the database's name.
ROW_TARGET = "coalesce(target, current_database())"
# A panel's series: a target's variant (rows naming none: UNNAMED_VARIANT).
TARGET_VARIANT = f"{ROW_TARGET} || ' ' || coalesce(variant, '{UNNAMED_VARIANT}')"


def of_targets(selected: str, table: str = "") -> str:
    """The condition (`` AND …``) keeping the rows of the targets *selected* (an SQL list:
    Grafana's ``$target``) and those naming none (the database's own), as a window counts
    them (``OF_TARGET``); *table*: the table's alias, with its dot."""
    return f" AND ({table}target IS NULL OR {table}target IN ({selected}))"


def per_bucket_sql(expression: str, column: str, selected: str) -> str:
    """A panel's SQL: *expression* over the ``request_metrics`` rows of the targets *selected*
    (``of_targets``), one point per bucket and series (a target's variant: ``TARGET_VARIANT``)."""
    return f"""SELECT {SQL_MARKER} bucket_start AS "time", {TARGET_VARIANT} AS metric,
       {expression} AS "{column}"
FROM {REQUEST_METRICS}
WHERE {IN_RANGE}{of_targets(selected)}
GROUP BY 1, 2 ORDER BY 1, 2"""


def per_variant_sql(expression: str, column: str) -> str:
    """An alert rule's SQL: *expression* over the ``request_metrics`` buckets in the span, per
    target (``ROW_TARGET``: a store holds several) and variant."""
    return f"""SELECT {SQL_MARKER} {ROW_TARGET} AS target,
       coalesce(variant, '{UNNAMED_VARIANT}') AS variant,
       {expression} AS "{column}"
FROM {REQUEST_METRICS}
WHERE {IN_RANGE}
GROUP BY 1, 2 HAVING {expression} IS NOT NULL
ORDER BY 1, 2"""


def requests_between_sql(start: str, end: str, target: str) -> str:
    """The requests of the buckets of *target* overlapping [*start*, *end*] (SQL expressions),
    each counted by the share of its time inside (``inside_share``), as a window counts them:
    the dashboard's steps between two samples."""
    return f"""(SELECT round(sum(m.requests * {inside_share(start, end, "m.")}))
             FROM {REQUEST_METRICS} m
             WHERE m.bucket_start < {end}
               AND m.bucket_start >= {start} - make_interval(secs => {LONGEST_BUCKET_SECONDS})
               AND m.bucket_start + make_interval(secs => m.bucket_seconds) > {start}
               {of_targets(target, "m.")})"""
