"""Verify's checks: one small pure function per rule, registered in ``RULES``.

A rule reads the ``Evidence`` (both windows' measures, the live state of the objects the
migrations create and the manifest of the database's revision, the thresholds) and returns
findings (``dbtools.findings``: the statuses, and ``CHECK_NAMES`` derived from ``RULES``). A check
whose data is missing says ``no data``; a window that cannot be trusted makes its checks
``untrusted``; neither is a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dbtools.figures.measures import P95_NAME, WindowMeasures
from dbtools.findings import Finding, Rule, Status, check_names, rule
from dbtools.output import beside, percent
from dbtools.schema.manifest import setting_differences
from dbtools.verify.live import IndexState, LiveState
from dbtools.verify.thresholds import Thresholds


@dataclass(frozen=True)
class Evidence:
    """Everything the rules judge."""

    baseline: WindowMeasures
    candidate: WindowMeasures
    reduction: float | None
    live: LiveState
    thresholds: Thresholds = field(default_factory=Thresholds)
    comparison_problems: tuple[str, ...] = ()


@rule("window")
def windows_trusted(e: Evidence) -> list[Finding]:
    """Each window must be trustworthy, and the two comparable."""
    findings = []
    for role, window in (("baseline", e.baseline), ("candidate", e.candidate)):
        if window.trusted:
            findings.append(
                Finding("window", "pass", role, f"{window.start_label}..{window.end_label}")
            )
        else:
            findings.append(Finding("window", "untrusted", role, "; ".join(window.problems)))
    findings += [Finding("window", "untrusted", "comparison", p) for p in e.comparison_problems]
    return findings


@rule("query_reduction")
def query_reduction(e: Evidence) -> list[Finding]:
    """Queries per request must fall by at least min_query_reduction."""
    if not (e.baseline.trusted and e.candidate.trusted) or e.comparison_problems:
        return [Finding("query_reduction", "untrusted", "queries per request",
                        "a window cannot be trusted; see the window findings")]  # fmt: skip
    if e.reduction is None:
        return [Finding("query_reduction", "no data", "queries per request",
                        "no queries per request in the baseline window")]  # fmt: skip
    before, after = e.baseline.queries_per_request, e.candidate.queries_per_request
    assert before is not None and after is not None  # a reduction needs both
    return judge_reduction(before, after, e.reduction, e.thresholds)


def judge_reduction(
    before: float, after: float, reduction: float, t: Thresholds, *, subject: str = ""
) -> list[Finding]:
    """*before* -> *after* queries per request, a *reduction* of at least min_query_reduction."""
    message = (
        f"{subject}{before:.2f} -> {after:.2f} queries per request: "
        f"{beside(reduction, [t.min_query_reduction], percent)} fewer "
        f"(needs >= {percent(t.min_query_reduction)})"
    )
    status: Status = "pass" if reduction >= t.min_query_reduction else "fail"
    return [Finding("query_reduction", status, "queries per request", message,
                    reduction, t.min_query_reduction)]  # fmt: skip


@rule("work_per_request")
def work_per_request(e: Evidence) -> list[Finding]:
    """Beside the headline, what it cannot see: statements per request with the nested ones
    (run inside functions) and database time per request. Work moved into a function lowers
    the headline and not these: a warning."""
    check, subject = "work_per_request", "work per request"
    b, c = e.baseline, e.candidate
    if not (b.trusted and c.trusted) or e.comparison_problems:
        return [Finding(check, "untrusted", subject,
                        "a window cannot be trusted; see the window findings")]  # fmt: skip
    if b.queries_per_request is None or c.queries_per_request is None:
        return [Finding(check, "no data", subject, "no queries per request in a window")]
    headline = f"queries per request fell ({b.queries_per_request:.2f} -> {c.queries_per_request:.2f}) but "
    fell = c.queries_per_request < b.queries_per_request
    shown, warnings = [], []
    before, after = b.statements_per_request, c.statements_per_request
    if before is None or after is None:
        shown.append("nested statements not counted (pg_stat_statements.track is not 'all')")
    else:
        figures = f"({before:.2f} -> {after:.2f})"
        shown.append(f"statements per request, nested ones included, {before:.2f} -> {after:.2f}")
        if fell and after >= before:
            warnings.append(f"{headline}statements per request, nested ones included, did not "
                            f"{figures}: work moved into functions")  # fmt: skip
    before_ms, after_ms = b.exec_time_per_request_ms, c.exec_time_per_request_ms
    if before_ms is not None and after_ms is not None:
        figures = f"({before_ms:.3f} ms -> {after_ms:.3f} ms)"
        shown.append(f"database time per request {before_ms:.3f} ms -> {after_ms:.3f} ms")
        if fell and after_ms >= before_ms:
            warnings.append(f"{'' if warnings else headline}database time per request did not "
                            f"fall {figures}")  # fmt: skip
    if warnings:
        return [Finding(check, "warning", subject, "; ".join(warnings),
                        fix="read the report's statements, nested ones included")]  # fmt: skip
    return [Finding(check, "pass", subject, "; ".join(shown))]


# (status, crossed?, rule shown): the first grade crossed decides; none crossed is a pass.
Grade = tuple[Status, Callable[[float], bool], str]


def _graded(
    check: str,
    subject: str,
    value: float | None,
    *,
    missing: str,
    show: Callable[[float, int], str],
    passing: str,
    grades: tuple[Grade, ...],
    threshold: float,
    limits: tuple[float, ...],
) -> list[Finding]:
    """*limits*: the thresholds the grades compare with; the value is shown with enough decimals
    never to read as one of them (299.96 ms is not "300.0 ms")."""
    if value is None:
        return [Finding(check, "no data", subject, missing)]
    status, rule = next(((s, r) for s, crossed, r in grades if crossed(value)), ("pass", passing))
    shown = beside(value, limits, show)
    return [Finding(check, status, subject, f"{shown} ({rule})", value, threshold)]


@rule("app_cache_hit_ratio")
def app_cache_hit_ratio(e: Evidence) -> list[Finding]:
    """The application's cache hit ratio (request metrics) in the candidate window."""
    return judge_app_cache_hit_ratio(
        e.candidate.app_cache_hit_ratio, e.thresholds,
        missing="no cache hits or misses in the candidate window's request metrics",
    )  # fmt: skip


def judge_app_cache_hit_ratio(
    value: float | None, t: Thresholds, *, missing: str, subject: str = ""
) -> list[Finding]:
    """*value* against the cache-hit thresholds (*subject*: what is judged, when not the
    application's)."""
    return _graded(
        "app_cache_hit_ratio", subject or "application cache hit ratio", value,
        missing=missing, show=percent, passing=f">= {percent(t.min_cache_hit_ratio)}",
        grades=(
            ("rollback", lambda v: v < t.rollback_cache_hit_ratio,
             f"rollback below {percent(t.rollback_cache_hit_ratio)}"),
            ("fail", lambda v: v < t.warning_cache_hit_ratio,
             f"warning alert below {percent(t.warning_cache_hit_ratio)}"),
            ("fail", lambda v: v < t.min_cache_hit_ratio, f">= {percent(t.min_cache_hit_ratio)}"),
        ),
        threshold=t.min_cache_hit_ratio,
        limits=(t.rollback_cache_hit_ratio, t.warning_cache_hit_ratio, t.min_cache_hit_ratio),
    )  # fmt: skip


@rule("p95_latency")
def p95_latency(e: Evidence) -> list[Finding]:
    """The candidate window's p95 latency (``measures.P95_NAME``: from its request-metrics
    buckets' merged latency histograms)."""
    return judge_p95_latency(
        e.candidate.p95_ms, e.thresholds,
        missing="no latency in the candidate window's request metrics",
        estimated=e.candidate.p95_estimated,
    )  # fmt: skip


def judge_p95_latency(
    value: float | None, t: Thresholds, *, missing: str, subject: str = "",
    estimated: bool = False,
) -> list[Finding]:  # fmt: skip
    """*value* (ms; *estimated*: from buckets without a histogram, said so) against the p95
    thresholds."""
    estimate = " (estimate)" if estimated else ""
    return _graded(
        "p95_latency", subject or P95_NAME, value, missing=missing,
        show=lambda v, digits: f"{v:.{digits}f} ms{estimate}", passing=f"< {t.max_p95_ms:g} ms",
        grades=(
            ("rollback", lambda v: v > t.rollback_p95_ms,
             f"rollback above {t.rollback_p95_ms:g} ms"),
            ("critical", lambda v: v > t.critical_p95_ms,
             f"critical above {t.critical_p95_ms:g} ms"),
            ("fail", lambda v: v >= t.max_p95_ms, f"< {t.max_p95_ms:g} ms"),
        ),
        threshold=t.max_p95_ms,
        limits=(t.max_p95_ms, t.critical_p95_ms, t.rollback_p95_ms),
    )  # fmt: skip


@rule("error_rate")
def error_rate(e: Evidence) -> list[Finding]:
    """The candidate window's error rate (request metrics)."""
    return judge_error_rate(
        e.candidate.error_rate, e.thresholds,
        missing="no requests in the candidate window's request metrics",
    )  # fmt: skip


def judge_error_rate(
    value: float | None, t: Thresholds, *, missing: str, subject: str = ""
) -> list[Finding]:
    """*value* against the error-rate thresholds."""
    return _graded(
        "error_rate", subject or "error rate", value, missing=missing,
        show=percent, passing=f"< {percent(t.max_error_rate)}",
        grades=(
            ("rollback", lambda v: v > t.rollback_error_rate,
             f"rollback above {percent(t.rollback_error_rate)}"),
            ("critical", lambda v: v > t.critical_error_rate,
             f"critical above {percent(t.critical_error_rate)}"),
            ("fail", lambda v: v >= t.max_error_rate, f"< {percent(t.max_error_rate)}"),
        ),
        threshold=t.max_error_rate,
        limits=(t.max_error_rate, t.critical_error_rate, t.rollback_error_rate),
    )  # fmt: skip


@rule("query_rate")
def query_rate(e: Evidence) -> list[Finding]:
    """The candidate window's database query rate (application statements per second)."""
    return judge_query_rate(e.candidate.query_rate, e.candidate.trusted, e.thresholds)


def judge_query_rate(
    value: float | None, trusted: bool, t: Thresholds, *, subject: str = "database query rate"
) -> list[Finding]:
    """*value* (statements per second) against the critical query rate."""
    if not trusted:
        return [Finding("query_rate", "untrusted", subject,
                        "the candidate window cannot be trusted")]  # fmt: skip
    if value is None:
        return [Finding("query_rate", "no data", subject, "empty window")]
    status: Status = "critical" if value > t.critical_query_rate else "pass"
    rule = f"critical above {t.critical_query_rate:g}/s"
    return [Finding("query_rate", status, subject, f"{value:.1f}/s ({rule})",
                    value, t.critical_query_rate)]  # fmt: skip


@rule("schema_at_head")
def schema_at_head(e: Evidence) -> list[Finding]:
    """The database must be at the migrations' head."""
    revision, head = e.live.alembic_revision, e.live.head_revision
    if revision == head:
        return [Finding("schema_at_head", "pass", "alembic_version", f"at head {head}")]
    state = "never migrated" if revision is None else f"at {revision}"
    return [Finding("schema_at_head", "fail", "alembic_version", f"{state}, head is {head}")]


def nothing_expected(check: str, what: str, e: Evidence) -> list[Finding]:
    revision = e.live.alembic_revision or "base"
    return [Finding(check, "pass", f"revision {revision}", f"no {what} expected at {revision}")]


def index_defect(name: str, state: IndexState | None) -> Finding | None:
    """A batch index missing, invalid or not ready (None: in place)."""
    if state is None:
        return Finding("batch_indexes", "fail", name, "missing")
    if not state.is_valid or not state.is_ready:
        what = "invalid" if not state.is_valid else "not ready"
        return Finding("batch_indexes", "fail", name,
                       f"{what}: rebuild with REINDEX INDEX CONCURRENTLY {name}")  # fmt: skip
    return None


@rule("batch_indexes")
def batch_indexes(e: Evidence) -> list[Finding]:
    """Every batch index of the database's revision present, valid, ready, and used in the
    candidate window."""
    expected = e.live.manifest.batch_indexes
    if not expected:
        return nothing_expected("batch_indexes", "batch indexes", e)
    findings = []
    for index in expected:
        name = f"{index.schema}.{index.name}"
        defect = index_defect(name, e.live.indexes.get(name))
        if defect is not None:
            findings.append(defect)
            continue
        scans = e.candidate.index_scans.get(name)
        if not e.candidate.trusted:
            findings.append(Finding("batch_indexes", "untrusted", name,
                                    "valid; usage unknown: the candidate window cannot be trusted"))  # fmt: skip
        elif scans is None:
            findings.append(Finding("batch_indexes", "no data", name,
                                    "valid; not in the candidate window's snapshots"))  # fmt: skip
        elif scans == 0:
            findings.append(Finding("batch_indexes", "fail", name,
                                    "valid but unused: 0 scans in the candidate window", 0))  # fmt: skip
        else:
            findings.append(Finding("batch_indexes", "pass", name,
                                    f"valid, {scans} scans in the candidate window", scans))  # fmt: skip
    return findings


@rule("autovacuum_settings")
def autovacuum_settings(e: Evidence) -> list[Finding]:
    """Every per-table autovacuum setting of the database's revision in place."""
    expected = e.live.manifest.table_settings
    if not expected:
        return nothing_expected("autovacuum_settings", "autovacuum settings", e)
    findings = []
    for spec in expected:
        name = f"{spec.schema}.{spec.table}"
        options = e.live.table_options.get(name)
        if options is None:
            findings.append(Finding("autovacuum_settings", "fail", name, "table missing"))
            continue
        wrong = [
            f"{d.option} = {d.found or '(unset)'}, expected {d.expected}"
            for d in setting_differences(spec, options)
        ]
        if wrong:
            findings.append(Finding("autovacuum_settings", "fail", name, "; ".join(wrong)))
        else:
            findings.append(Finding("autovacuum_settings", "pass", name,
                                    f"{len(spec.settings)} settings in place"))  # fmt: skip
    return findings


@rule("monitoring_tables")
def monitoring_tables(e: Evidence) -> list[Finding]:
    """Every monitoring table of the database's revision present."""
    expected = e.live.manifest.monitoring_tables
    missing = [name for name in expected if name not in e.live.monitoring_tables]
    if missing:
        return [Finding("monitoring_tables", "fail", "perf_monitoring",
                        f"missing: {', '.join(missing)}")]  # fmt: skip
    return [Finding("monitoring_tables", "pass", "perf_monitoring",
                    f"{len(expected)} tables present")]  # fmt: skip


RULES: tuple[Rule[Evidence], ...] = (
    windows_trusted,
    query_reduction,
    work_per_request,
    app_cache_hit_ratio,
    p95_latency,
    error_rate,
    query_rate,
    schema_at_head,
    batch_indexes,
    autovacuum_settings,
    monitoring_tables,
)
CHECK_NAMES: tuple[str, ...] = check_names(RULES)
# The checks only a canary makes (``verify.canary``); one [verify] table configures every mode,
# so ``skip`` may name any of them.
CANARY_CHECKS: tuple[str, ...] = ("attribution", "variant_requests", "traffic_share")
