"""Verify's result for people: both windows' figures side by side, the findings, the verdict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timezone

from tabulate import tabulate

from dbtools.figures.measures import (
    P95_DEFINITION,
    P95_NAME,
    RATIO_DEFINITIONS,
    WORST_SECOND_DEFINITION,
    WORST_SECOND_NAME,
    WindowMeasures,
)
from dbtools.findings import Finding
from dbtools.output import number, percent
from dbtools.verify import VerifyResult
from dbtools.verify.canary import CanaryResult, VariantMeasures

NO_DATA = "no data"


def _pct(value: float | None) -> str:
    return percent(value, missing=NO_DATA)


def _num(value: float | None, digits: int = 2, unit: str = "") -> str:
    return number(value, digits, unit=unit, missing=NO_DATA)


def _times(window: WindowMeasures) -> str:
    """The exact times of the window's two samples (a window by time names times it asked)."""
    start = window.started_at.astimezone(timezone.utc)
    end = window.ended_at.astimezone(timezone.utc)
    return f"{start:%Y-%m-%d %H:%M:%S} – {end:{'%H:%M:%S' if end.date() == start.date() else '%Y-%m-%d %H:%M:%S'}}"


def _measure_rows(b: WindowMeasures, c: WindowMeasures) -> list[list[str]]:
    def row(name: str, fn: Callable[[WindowMeasures], str]) -> list[str]:
        return [name, fn(b), fn(c)]

    return [
        row("window", lambda w: f"{w.start_label}..{w.end_label}"),
        row("samples used (UTC)", lambda w: _times(w)),
        row("duration", lambda w: f"{w.seconds:.1f} s"),
        row("trusted", lambda w: "yes" if w.trusted else "NO"),
        row("requests", lambda w: "no data" if w.requests is None
            else f"{w.requests:,} ({w.requests_source}{_bounds(w)})"),
        row("queries (application)", lambda w: f"{w.counts.queries:,}"),
        row("distinct statements", lambda w: f"{w.counts.statements:,}"),
        row("queries per request", lambda w: _num(w.queries_per_request)),
        row("nested statements per request", lambda w: "not counted"
            if w.nested_per_request is None and w.requests else _num(w.nested_per_request)),
        row("database time per request", lambda w: _num(w.exec_time_per_request_ms, 3, " ms")),
        row("transaction control calls", lambda w: f"{w.counts.transaction_calls:,}"),
        row("nested calls (in functions)", lambda w: f"{w.counts.nested_calls:,}"),
        row("not visible calls", lambda w: f"{w.hidden_calls:,}"),
        row("query rate", lambda w: _num(w.query_rate, 1, "/s")),
        row("buffer cache hit ratio (app statements)", lambda w: _pct(w.buffer_cache_hit_ratio)),
        row("index hit ratio (app indexes)", lambda w: _pct(w.index_hit_ratio)),
        row("app cache hit ratio (request metrics)", lambda w: _pct(w.app_cache_hit_ratio)),
        row(P95_NAME, lambda w: w.p95_text),
        row(WORST_SECOND_NAME, lambda w: _num(w.p95_worst_second_ms, 1, " ms")),
        row("error rate", lambda w: _pct(w.error_rate)),
    ]  # fmt: skip


def _bounds(window: WindowMeasures) -> str:
    """The requests' bounds when the window's ends cut request-metrics buckets."""
    if window.requests_bounds is None:
        return ""
    low, high = window.requests_bounds
    return f"; {low:,} to {high:,}: edges prorated"


def _findings_table(findings: Sequence[Finding]) -> str:
    return tabulate(
        [
            [f.check, f.status.upper() if f.status != "pass" else f.status, f.subject, f.message]
            for f in findings
        ],
        headers=["check", "status", "subject", "detail"],
    )


def render_table(result: VerifyResult) -> str:
    """The verify result for people: measures side by side, findings, verdict."""
    scope = result.scope.as_dict()
    narrowed = [f"roles {', '.join(scope['roles'])}"] if scope["roles"] else []
    narrowed += [f"tables {', '.join(scope['tables'])}"] if scope["tables"] else []
    if result.operation:
        narrowed.append(f"operation {result.operation}")
    lines = [
        f"database {result.database}" + (f" (scope: {'; '.join(narrowed)})" if narrowed else ""),
        *(
            ["after a rollback: did the candidate return to the baseline?"]
            if result.mode == "after-rollback"
            else []
        ),
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
        *(f"{w.name}: {note}" for w in (result.baseline, result.candidate) for note in w.notes),
        f"query reduction: {_pct(result.reduction)}",
        *(f"{name.replace('_', ' ')}: {text}" for name, text in RATIO_DEFINITIONS.items()),
        f"{P95_NAME}: {P95_DEFINITION}; {WORST_SECOND_NAME}: {WORST_SECOND_DEFINITION}",
        "",
        _findings_table(result.findings),
        "",
        f"verdict: {result.verdict.upper()} (exit code {result.exit_code})",
    ]
    return "\n".join(lines)


def _canary_rows(result: CanaryResult) -> list[list[str]]:
    w, b, c = result.whole, result.baseline, result.candidate

    def row(name: str, whole: str, each: Callable[[VariantMeasures], str]) -> list[str]:
        return [name, whole, each(b), each(c)]

    def requests(v: VariantMeasures) -> str:
        share = f" ({_pct(v.share)})" if v.share is not None else ""
        return f"{v.requests:,}{share}" + (" TOO FEW" if v.too_few else "")

    def counted(value: int | None) -> str:
        return "not counted" if value is None else f"{value:,}"

    whole_requests = "no data" if w.requests is None else f"{w.requests:,}"
    return [
        row("requests", whole_requests, requests),
        row("queries", f"{w.counts.queries:,}", lambda v: counted(v.queries)),
        row("queries per request", _num(w.queries_per_request),
            lambda v: _num(v.queries_per_request)),
        row("query rate", _num(w.query_rate, 1, "/s"), lambda v: _num(v.query_rate, 1, "/s")),
        row("queries the application counted", counted(result.reported_queries),
            lambda v: counted(v.reported_queries)),
        row("app cache hit ratio", _pct(w.app_cache_hit_ratio),
            lambda v: _pct(v.app_cache_hit_ratio)),
        row(P95_NAME, w.p95_text, lambda v: v.p95_text),
        row(WORST_SECOND_NAME, _num(w.p95_worst_second_ms, 1, " ms"),
            lambda v: _num(v.p95_worst_second_ms, 1, " ms")),
        row("error rate", _pct(w.error_rate), lambda v: _pct(v.error_rate)),
    ]  # fmt: skip


def render_canary_table(result: CanaryResult) -> str:
    """The canary's result for people: the whole window and each variant side by side, how
    the statements were attributed, the findings, the verdict."""
    w, b, c = result.whole, result.baseline, result.candidate
    roles = result.spec.variant_roles
    attribution = [f"attribution: {result.attribution_text}"]
    if roles:
        attribution.append("roles: " + ", ".join(f"{v} as {r}" for v, r in roles.items()))
        others = w.counts.queries - sum(result.role_queries.values())
        if others:
            attribution.append(f"queries of other roles (in the whole window only): {others:,}")
    if result.reconciliation is not None:
        r = result.reconciliation
        if r.application is None:
            attribution.append("reconciliation: the application did not count its statements "
                               f"in {r.uncounted_buckets} bucket(s)")  # fmt: skip
        else:
            attribution.append(
                f"reconciliation: the application counted {r.application:,} statements, "
                f"pg_stat_statements {r.database:,} ({_pct(r.relative)} apart; tolerance "
                f"{_pct(r.tolerance)}): {'trusted' if r.matches else 'UNTRUSTED'}"
            )
    if result.other_variants:
        attribution.append("other variants in the window: " + ", ".join(
            f"{name} {requests:,} requests"
            for name, requests in result.other_variants.items()))  # fmt: skip
    lines = [
        f"database {result.database}, canary window {w.start_label}..{w.end_label} "
        f"({w.seconds:.1f} s, trusted: {'yes' if w.trusted else 'NO'})",
        *attribution,
        "",
        tabulate(
            _canary_rows(result),
            headers=["measure", "whole window", f"baseline {b.variant}", f"candidate {c.variant}"],
        ),
        "",
        f"query reduction ({c.variant} against {b.variant}): {_pct(result.reduction)}",
        "",
        _findings_table(result.findings),
        "",
        f"verdict: {result.verdict.upper()} (exit code {result.exit_code})",
    ]
    return "\n".join(lines)
