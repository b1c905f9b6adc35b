"""``verify --after-rollback``: did the service return to its baseline once the traffic was
routed back (and perhaps after ``alembic downgrade``)?

The candidate is a window after the rollback; the rollout gate asks it for a reduction, these
rules ask it for the baseline again (the rollout guide's "error rates return to baseline"),
each within a tolerance of ``Thresholds``:

* queries per request within ``after_rollback_query_tolerance`` of the baseline's, relative,
  either way: a path that still sends fewer queries has not been rolled back;
* the error rate at most ``after_rollback_error_rate_tolerance`` above the baseline's
  (absolute: 0.005 is half a percentage point);
* p95 latency at most the larger of ``after_rollback_p95_tolerance`` (relative) and
  ``after_rollback_p95_tolerance_ms`` above the baseline's: each window's p95 from its merged
  latency histograms (one slow second cannot raise the baseline's and hide a slower
  candidate), and a few milliseconds on a fast baseline are no regression.

Error rate and p95 come from the application's request metrics; queries per request from
pg_stat_statements, so only it needs both windows trusted. The objects are judged at the
database's current revision (its manifest): present and valid, their use not asked (the path
rolled back to need not use them). Both windows' trust is judged as for the gate. A candidate
shorter than the guide's 30 minutes of monitoring after a rollback (``after_rollback_min_minutes``)
is a warning: the figures hold for the window measured, not yet for the period the guide asks.
"""

from __future__ import annotations

from dbtools.figures.measures import P95_NAME
from dbtools.findings import Finding, Rule, Status, check_names, rule
from dbtools.output import beside, percent
from dbtools.verify.rules import (
    Evidence,
    autovacuum_settings,
    index_defect,
    monitoring_tables,
    nothing_expected,
    windows_trusted,
)


def _status(returned: bool) -> Status:
    return "pass" if returned else "fail"


def _signed_percent(value: float, digits: int) -> str:
    return f"{value * 100:+.{digits}f}%"


def _signed_points(value: float, digits: int) -> str:
    return f"{value * 100:+.{digits}f}"


def _signed_ms(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


@rule("returned_queries_per_request")
def returned_queries_per_request(e: Evidence) -> list[Finding]:
    """Queries per request back within the tolerance of the baseline's, either way."""
    check, subject = "returned_queries_per_request", "queries per request"
    tolerance = e.thresholds.after_rollback_query_tolerance
    if not (e.baseline.trusted and e.candidate.trusted) or e.comparison_problems:
        return [Finding(check, "untrusted", subject,
                        "a window cannot be trusted; see the window findings")]  # fmt: skip
    before, after = e.baseline.queries_per_request, e.candidate.queries_per_request
    if not before or after is None:
        return [Finding(check, "no data", subject, "no queries per request in a window")]
    change = round(after / before - 1, 12)  # 3.3 / 3.0 - 1 is 0.0999…87: 10%
    message = (
        f"{before:.2f} -> {after:.2f} queries per request: "
        f"{beside(change, [tolerance, -tolerance], _signed_percent)} from the baseline "
        f"(allowed ±{percent(tolerance)})"
    )
    returned = abs(change) <= tolerance
    return [Finding(check, _status(returned), subject, message, change, tolerance)]


@rule("returned_error_rate")
def returned_error_rate(e: Evidence) -> list[Finding]:
    """The error rate back to at most the tolerance above the baseline's."""
    check, subject = "returned_error_rate", "error rate"
    tolerance = e.thresholds.after_rollback_error_rate_tolerance
    before, after = e.baseline.error_rate, e.candidate.error_rate
    if before is None or after is None:
        return [Finding(check, "no data", subject,
                        "no requests in a window's request metrics")]  # fmt: skip
    change = round(after - before, 12)
    message = (
        f"{percent(before, 2)} -> {percent(after, 2)}: "
        f"{beside(change, [tolerance], _signed_points)} points from the baseline "
        f"(allowed {_signed_points(tolerance, 2)})"
    )
    returned = change <= tolerance
    return [Finding(check, _status(returned), subject, message, change, tolerance)]


@rule("returned_p95_latency")
def returned_p95_latency(e: Evidence) -> list[Finding]:
    """p95 latency back to at most the tolerance above the baseline's."""
    check, t = "returned_p95_latency", e.thresholds
    before, after = e.baseline.p95_ms, e.candidate.p95_ms
    if before is None or after is None:
        return [Finding(check, "no data", P95_NAME,
                        "no latency in a window's request metrics")]  # fmt: skip
    allowed = max(before * t.after_rollback_p95_tolerance, t.after_rollback_p95_tolerance_ms)
    change = round(after - before, 12)
    b, c = e.baseline, e.candidate
    message = (
        f"{b.p95_text} -> {c.p95_text}: {beside(change, [allowed], _signed_ms)} ms from the "
        f"baseline (allowed {_signed_ms(allowed, 1)} ms: the larger of "
        f"{percent(t.after_rollback_p95_tolerance)} and {t.after_rollback_p95_tolerance_ms:g} ms)"
    )
    returned = change <= allowed
    return [Finding(check, _status(returned), P95_NAME, message, change, allowed)]


@rule("monitoring_period")
def monitoring_period(e: Evidence) -> list[Finding]:
    """The candidate window as long as the guide's monitoring after a rollback; shorter is a
    warning (it does not fail: the figures judged are the window's)."""
    minutes, needed = e.candidate.seconds / 60, e.thresholds.after_rollback_min_minutes
    if minutes >= needed:
        return [Finding("monitoring_period", "pass", "candidate window",
                        f"{minutes:.1f} minutes (>= {needed:g})", minutes, needed)]  # fmt: skip
    return [Finding("monitoring_period", "warning", "candidate window",
                    f"{minutes:.1f} minutes; the guide monitors {needed:g} minutes after a "
                    "rollback", minutes, needed,
                    fix="capture a longer window before calling the rollback done")]  # fmt: skip


@rule("schema_revision")
def schema_revision(e: Evidence) -> list[Finding]:
    """The revision the objects are judged at: any these migrations know (a rollback may have
    downgraded), never a database that was never migrated."""
    revision, head = e.live.alembic_revision, e.live.head_revision
    if revision is None:
        return [Finding("schema_revision", "fail", "alembic_version", "never migrated")]
    where = "head" if revision == head else f"below head {head}"
    return [Finding("schema_revision", "pass", "alembic_version",
                    f"at {revision} ({where}): the objects it declares are judged")]  # fmt: skip


@rule("batch_indexes")
def batch_indexes_in_place(e: Evidence) -> list[Finding]:
    """Every batch index of the database's revision present, valid and ready (not whether the
    candidate used it: the path rolled back to need not)."""
    expected = e.live.manifest.batch_indexes
    if not expected:
        return nothing_expected("batch_indexes", "batch indexes", e)
    findings = []
    for index in expected:
        name = f"{index.schema}.{index.name}"
        defect = index_defect(name, e.live.indexes.get(name))
        findings.append(defect or Finding("batch_indexes", "pass", name, "valid"))
    return findings


AFTER_ROLLBACK_RULES: tuple[Rule[Evidence], ...] = (
    windows_trusted,
    returned_queries_per_request,
    returned_error_rate,
    returned_p95_latency,
    monitoring_period,
    schema_revision,
    batch_indexes_in_place,
    autovacuum_settings,
    monitoring_tables,
)
AFTER_ROLLBACK_CHECK_NAMES: tuple[str, ...] = check_names(AFTER_ROLLBACK_RULES)
