"""``verify --canary``: both variants of a rollout in one window, each judged on its own figures.

During a canary both code paths run against the same database at once, so the whole window's
queries per request mixes them (at 10% traffic a 90% cut on the new path shows as a 9% cut).
Here the window's requests come from the request metrics per variant, and its statements are
attributed to the variants one of two ways, named in the output:

* ``role``: each variant runs as its own database role; pg_stat_statements keys its entries by
  role, so the split is the database's own. A role is only the variant's when its statements
  are: where the application counts each variant's statements (``request_metrics.queries``),
  each role's count must match its variant's within ``canary_max_mismatch`` (two variants
  sharing one role, or a role that ran far less than its variant sent, are untrusted); a role
  whose statements read no block of any table (health checks, ``SET``) did none of the
  variant's work (untrusted); one that ran fewer than ``canary_min_statements`` is too little to
  judge (no data);
* ``app``: the application's own count of the statements it sent (``request_metrics.queries``,
  ``dbtools.metrics``), trusted only when its sum over the window matches the pg_stat_statements
  delta of the application's statements within ``canary_max_mismatch``; otherwise the window is
  untrusted and the output says by how much they differ.

Requests and the application's counts come from the buckets the window overlaps, prorated at
its ends (``figures.requests.RequestTotals``): a variant whose queries per request the cut buckets
could move by more than ``request_edge_tolerance`` is untrusted. With the share asked of the
candidate (``rollout --traffic``, ``--traffic``), its measured share of the two variants'
requests must lie in the ``canary_share_confidence`` interval for that many requests routed
independently (``traffic_share``): a share outside it is named, and fails.

A variant with fewer requests than ``canary_min_requests`` is "too few requests": every check
resting on its figures says ``no data``, never pass. The query reduction is the candidate
variant's queries per request against the baseline variant's; the guide's other thresholds are
judged on the candidate variant's own request metrics, and the query rate on the statements
attributed to it (during a canary the database-wide rate is mostly the baseline's). The objects
the migrations create are judged as ``verify`` judges them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from dbtools.db.catalog import existing_roles
from dbtools.db.errors import translated_errors
from dbtools.errors import UsageError
from dbtools.figures.measures import (
    FIGURE_DEFINITIONS,
    P95_NAME,
    Reconciliation,
    WindowMeasures,
    edge_problem,
    p95_text,
    per_request,
    ratio,
    reduction,
    request_figures,
)
from dbtools.figures.requests import UNNAMED_VARIANT, VariantTotals
from dbtools.figures.sums import Scope, StatementCounts
from dbtools.figures.windows import parse_window
from dbtools.findings import Finding, Rule, Status, rule, run_rules
from dbtools.output import json_document, percent
from dbtools.verify import (
    DEFAULT_SCOPE,
    DEFAULT_THRESHOLDS,
    Judged,
    refuse_unknown_checks,
    refuse_unknown_roles,
)
from dbtools.verify.live import LiveState, reading, unjudged
from dbtools.verify.rules import (
    Evidence,
    autovacuum_settings,
    batch_indexes,
    judge_app_cache_hit_ratio,
    judge_error_rate,
    judge_p95_latency,
    judge_query_rate,
    judge_reduction,
    monitoring_tables,
    schema_at_head,
)
from dbtools.verify.thresholds import Thresholds

log = logging.getLogger(__name__)

Attribution = Literal["role", "app"]
ATTRIBUTIONS: dict[Attribution, str] = {
    "role": "each variant runs as its own database role, and pg_stat_statements keys its "
    "entries by role",
    "app": "the application's counts of its statements, request_metrics.queries, reconciled "
    "with pg_stat_statements",
}


@dataclass(frozen=True)
class CanarySpec:
    """Which variants to compare, and how their statements are attributed.

    Raises ``UsageError`` for variants that are missing or the same, an unknown attribution,
    ``role`` without a role for each variant (or one role for both), and roles with ``app``.
    """

    baseline_variant: str
    candidate_variant: str
    attribution: Attribution
    variant_roles: Mapping[str, str] = field(default_factory=dict)
    traffic: float | None = None  # the candidate's share asked, in percent (None: not asked)

    def __post_init__(self) -> None:
        if self.traffic is not None and not 0 < self.traffic < 100:
            raise UsageError(f"--traffic is the candidate's share in percent, above 0 and below "
                             f"100 for a canary, not {self.traffic:g}")  # fmt: skip
        variants = (self.baseline_variant, self.candidate_variant)
        if not all(v.strip() for v in variants):
            raise UsageError("a canary needs --baseline-variant and --candidate-variant")
        if self.baseline_variant == self.candidate_variant:
            raise UsageError(f"the baseline and the candidate variant are the same "
                             f"({self.baseline_variant!r}): name two code paths")  # fmt: skip
        if self.attribution not in ATTRIBUTIONS:
            raise UsageError(f"unknown attribution {self.attribution!r}; choose role or app")
        if self.attribution == "app":
            if self.variant_roles:
                raise UsageError("--variant-role is for --attribute role")
            return
        strays = sorted(set(self.variant_roles) - set(variants))
        if strays:
            raise UsageError(f"--variant-role names {strays[0]!r}, which is neither the "
                             "baseline nor the candidate variant")  # fmt: skip
        missing = [v for v in variants if not self.variant_roles.get(v)]
        if missing:
            raise UsageError(f"--attribute role needs each variant's role: add --variant-role "
                             f"{missing[0]}=ROLE")  # fmt: skip
        if self.variant_roles[self.baseline_variant] == self.variant_roles[self.candidate_variant]:
            raise UsageError("--attribute role needs a role of its own for each variant (both "
                             f"run as {self.variant_roles[self.baseline_variant]!r})")  # fmt: skip

    def role_of(self, variant: str) -> str | None:
        return self.variant_roles.get(variant)


def parse_variant_roles(items: Iterable[str]) -> dict[str, str]:
    """``VARIANT=ROLE`` items as a mapping; raises ``UsageError`` for a malformed or repeated
    one."""
    roles: dict[str, str] = {}
    for item in items:
        variant, equals, role = item.partition("=")
        if not equals or not variant.strip() or not role.strip():
            raise UsageError(f"--variant-role {item!r}: expected VARIANT=ROLE")
        if variant in roles:
            raise UsageError(f"--variant-role names {variant!r} twice")
        roles[variant] = role
    return roles


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantMeasures:
    """One variant's figures in the canary window. ``queries`` are the statements attributed to
    it (by role or by the application's count), ``reported_queries`` what the application
    counted (None: not counted in every bucket). None elsewhere means no data."""

    variant: str
    role: str | None
    requests: int
    share: float | None  # of the window's requests
    buckets: int
    queries: int | None
    reported_queries: int | None
    queries_per_request: float | None
    query_rate: float | None
    app_cache_hit_ratio: float | None
    p95_ms: float | None  # measures.P95_NAME: from the variant's merged histograms
    error_rate: float | None
    min_requests: int
    p95_estimated: bool = False
    p95_worst_second_ms: float | None = None
    # Why the variant's queries per request cannot be trusted to the edge tolerance (None: can).
    misaligned: str | None = None
    blocks_read: int | None = None  # role: the shared blocks its role's statements read

    @property
    def too_few(self) -> bool:
        return self.requests < self.min_requests

    @property
    def p95_text(self) -> str:
        return p95_text(self.p95_ms, self.p95_estimated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "role": self.role,
            "requests": self.requests,
            "share": self.share,
            "too_few_requests": self.too_few,
            "buckets": self.buckets,
            "queries": self.queries,
            "reported_queries": self.reported_queries,
            "queries_per_request": self.queries_per_request,
            "query_rate": self.query_rate,
            "app_cache_hit_ratio": self.app_cache_hit_ratio,
            "p95_ms": self.p95_ms,
            "p95_estimated": self.p95_estimated,
            "p95_worst_second_ms": self.p95_worst_second_ms,
            "misaligned": self.misaligned,
            "error_rate": self.error_rate,
        }


def _measure_variant(
    name: str,
    totals: VariantTotals | None,
    queries: int | None,
    role: str | None,
    *,
    window_requests: int,
    seconds: float,
    thresholds: Thresholds,
    blocks_read: int | None = None,
) -> VariantMeasures:
    requests = totals.requests if totals else 0
    figures = request_figures(totals)
    reported = totals.queries if totals and not totals.uncounted_buckets else None
    misaligned = None
    if totals is not None and requests:
        # The application's own counts are prorated as its requests are; pg_stat_statements'
        # (by role) are exact.
        bound = totals.queries_edge_error if role is None else totals.edge_error
        misaligned = edge_problem(totals, seconds, thresholds.request_edge_tolerance,
                                  subject=f"{name}'s", bound=bound)  # fmt: skip
    return VariantMeasures(
        variant=name,
        role=role,
        requests=requests,
        share=ratio(requests, window_requests),
        buckets=totals.buckets if totals else 0,
        queries=queries,
        reported_queries=reported,
        queries_per_request=per_request(queries, requests) if queries is not None else None,
        query_rate=ratio(queries, seconds) if queries is not None else None,
        app_cache_hit_ratio=figures.app_cache_hit_ratio,
        p95_ms=figures.p95_ms,
        error_rate=figures.error_rate,
        min_requests=int(thresholds.canary_min_requests),
        p95_estimated=figures.p95_estimated,
        p95_worst_second_ms=figures.p95_worst_second_ms,
        misaligned=misaligned,
        blocks_read=blocks_read,
    )


# -- evidence and rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryEvidence:
    """What the canary's rules judge."""

    whole: WindowMeasures
    baseline: VariantMeasures
    candidate: VariantMeasures
    spec: CanarySpec
    reduction: float | None
    thresholds: Thresholds
    reconciliation: Reconciliation | None = None  # app
    role_queries: Mapping[str, int] = field(default_factory=dict)  # role: statements in scope
    variants_seen: tuple[str, ...] = ()  # the variants the window's request metrics name
    # role: each variant's role's statements against the application's count of the variant's
    role_reconciliations: Mapping[str, Reconciliation] = field(default_factory=dict)

    @property
    def variants(self) -> tuple[VariantMeasures, VariantMeasures]:
        return self.baseline, self.candidate

    @property
    def attributed(self) -> bool:
        """Whether the statements' split between the variants can be trusted."""
        if self.spec.attribution == "app":
            return self.reconciliation is not None and self.reconciliation.matches
        return not any(
            status == "untrusted" for v in self.variants for status, _, _ in [self.role_check(v)]
        )

    def role_check(self, v: VariantMeasures) -> tuple[Status, str, str | None]:
        """Whether *v*'s role ran *v*'s statements (``--attribute role``): a status, a message
        and a fix."""
        ran = f"role {v.role} ran {v.queries or 0:,} statements"
        if not v.requests:
            return "pass", f"{ran} (no requests of {v.variant})", None
        if not v.queries:
            return ("untrusted", f"{v.requests:,} requests, but role {v.role} ran no statement in "
                    "the window", f"check that the {v.variant} code path connects as {v.role}")  # fmt: skip
        counted = self.role_reconciliations.get(v.variant)
        if counted is not None and counted.application is not None and not counted.matches:
            assert counted.difference is not None and counted.relative is not None
            side = "fewer" if counted.difference < 0 else "more"
            return (
                "untrusted",
                f"{ran}; the application counted {counted.application:,} for {v.variant}: "
                f"{abs(counted.difference):,} {side} ({percent(counted.relative)}, tolerance "
                f"{percent(counted.tolerance)}): the role's statements are not the variant's",
                f"give each code path a role of its own (check which role {v.variant} connects "
                "as)",
            )  # fmt: skip
        if v.blocks_read == 0:
            return ("untrusted", f"{ran}, none of which read a block of any table (health "
                    f"checks, SET, SHOW…): not {v.variant}'s work",
                    f"check that the {v.variant} code path connects as {v.role}")  # fmt: skip
        least = int(self.thresholds.canary_min_statements)
        if v.queries < least:
            return ("no data", f"too few statements: {ran}, fewer than {least:,}", None)
        agreed = (f"; the application counted {counted.application:,}"
                  if counted is not None and counted.application is not None else "")  # fmt: skip
        return "pass", f"{ran}{agreed}", None


@rule("window")
def canary_window(e: CanaryEvidence) -> list[Finding]:
    """The window must be trustworthy (as verify's windows)."""
    w = e.whole
    if w.trusted:
        return [Finding("window", "pass", "canary", f"{w.start_label}..{w.end_label}")]
    return [Finding("window", "untrusted", "canary", "; ".join(w.problems))]


@rule("attribution")
def attribution(e: CanaryEvidence) -> list[Finding]:
    """Role: each variant's role ran the variant's statements. App: the application's count
    of its statements matches pg_stat_statements' within the tolerance."""
    if e.spec.attribution == "role":
        findings = []
        for v in e.variants:
            status, message, fix = e.role_check(v)
            findings.append(Finding("attribution", status, v.variant, message, fix=fix or ""))
        return findings
    r = e.reconciliation
    assert r is not None
    subject = "application's statement count"
    if r.application is None:
        return [Finding("attribution", "no data", subject,
                        f"the application did not count its statements in {r.uncounted_buckets} "
                        "request-metrics bucket(s) of the window (queries is NULL)",
                        fix="count them with dbtools.metrics, or use --attribute role")]  # fmt: skip
    assert r.difference is not None and r.relative is not None
    figures = (f"the application counted {r.application:,} statements, pg_stat_statements "
               f"{r.database:,}")  # fmt: skip
    if r.matches:
        return [Finding("attribution", "pass", subject,
                        f"{figures} ({percent(r.relative)} apart; tolerance "
                        f"{percent(r.tolerance)})", r.relative, r.tolerance)]  # fmt: skip
    side = "fewer" if r.difference > 0 else "more"
    return [Finding(
        "attribution", "untrusted", subject,
        f"{figures}: {abs(r.difference):,} {side} ({percent(r.relative)}), more than the "
        f"tolerance {percent(r.tolerance)}; the window cannot be attributed",
        r.relative, r.tolerance,
        fix="statements sent outside a request or on a connection the hooks do not see, or "
        "another application's statements (narrow with --role or --table)",
    )]  # fmt: skip


@rule("variant_requests")
def variant_requests(e: CanaryEvidence) -> list[Finding]:
    """Each variant needs at least canary_min_requests requests: fewer is never a pass."""
    findings = []
    for v in e.variants:
        if v.too_few:
            seen = f" (the window's request metrics name {', '.join(e.variants_seen)})" if (
                not v.requests and e.variants_seen) else ""  # fmt: skip
            findings.append(Finding("variant_requests", "no data", v.variant,
                                    f"too few requests: {v.requests:,}, fewer than "
                                    f"{v.min_requests:,}{seen}", v.requests, v.min_requests))  # fmt: skip
        else:
            findings.append(Finding("variant_requests", "pass", v.variant,
                                    f"{v.requests:,} requests (at least {v.min_requests:,})",
                                    v.requests, v.min_requests))  # fmt: skip
    return findings


def _blocked(e: CanaryEvidence, check: str, subject: str, *variants: VariantMeasures,
             statements: bool) -> list[Finding] | None:  # fmt: skip
    """The finding when *variants*' figures cannot be judged: too few requests, or (for
    figures from statements) a window or an attribution that cannot be trusted."""
    if statements and not e.whole.trusted:
        return [Finding(check, "untrusted", subject, "the window cannot be trusted")]
    if statements and not e.attributed:
        return [Finding(check, "untrusted", subject,
                        "the statements cannot be attributed to the variants")]  # fmt: skip
    misaligned = [v for v in variants if v.misaligned] if statements else []
    if misaligned:
        return [Finding(check, "untrusted", subject, misaligned[0].misaligned or "")]
    few = [v for v in variants if v.too_few]
    if few:
        return [Finding(check, "no data", subject,
                        f"too few requests: {few[0].variant} has {few[0].requests:,}, fewer "
                        f"than {few[0].min_requests:,}")]  # fmt: skip
    if statements and e.spec.attribution == "role":
        thin = [(v, m) for v in variants for s, m, _ in [e.role_check(v)] if s == "no data"]
        if thin:
            return [Finding(check, "no data", subject, f"{thin[0][0].variant}: {thin[0][1]}")]
    return None


def share_interval(asked: float, requests: int, confidence: float) -> tuple[float, float]:
    """The shares of *requests* a candidate asked to serve the share *asked* (a fraction) may
    show with probability *confidence*, each request routed independently: the normal
    approximation of the binomial, with a continuity correction of half a request."""
    z = NormalDist().inv_cdf(0.5 + min(confidence, 1 - 1e-12) / 2)
    half = z * math.sqrt(asked * (1 - asked) / requests) + 0.5 / requests
    return max(0.0, asked - half), min(1.0, asked + half)


@rule("traffic_share")
def traffic_share(e: CanaryEvidence) -> list[Finding]:
    """The candidate's share of the two variants' requests against the share asked (when
    asked): outside the interval for that many requests, the traffic is not routed as asked."""
    if e.spec.traffic is None:
        return []
    c, asked = e.candidate, e.spec.traffic / 100
    requests = e.baseline.requests + c.requests
    subject = f"share of {c.variant}"
    if not requests:
        return [Finding("traffic_share", "no data", subject,
                        f"no requests of {e.baseline.variant} or {c.variant} in the window")]  # fmt: skip
    share = c.requests / requests
    low, high = share_interval(asked, requests, e.thresholds.canary_share_confidence)
    figures = (f"{c.variant} served {percent(share, 1)} of {requests:,} requests; "
               f"{e.spec.traffic:g}% was asked (rollout --traffic)")  # fmt: skip
    interval = (f"{percent(low, 1)} to {percent(high, 1)}, the "
                f"{percent(e.thresholds.canary_share_confidence, 1)} interval for that many "
                "requests routed independently")  # fmt: skip
    if low <= share <= high:
        return [Finding("traffic_share", "pass", subject, f"{figures}: within {interval}",
                        share, asked)]  # fmt: skip
    return [Finding("traffic_share", "fail", subject, f"{figures}: outside {interval}",
                    share, asked,
                    fix="check the traffic routing: the canary's figures are not those of the "
                    "split asked")]  # fmt: skip


@rule("query_reduction")
def canary_query_reduction(e: CanaryEvidence) -> list[Finding]:
    """The candidate variant's queries per request against the baseline variant's."""
    b, c = e.baseline, e.candidate
    blocked = _blocked(e, "query_reduction", "queries per request", b, c, statements=True)
    if blocked:
        return blocked
    if e.reduction is None or b.queries_per_request is None or c.queries_per_request is None:
        return [Finding("query_reduction", "no data", "queries per request",
                        f"no queries per request for {b.variant}")]  # fmt: skip
    return judge_reduction(b.queries_per_request, c.queries_per_request, e.reduction,
                           e.thresholds, subject=f"{b.variant} -> {c.variant}: ")  # fmt: skip


def _of_candidate(e: CanaryEvidence, subject: str) -> str:
    return f"{subject} of {e.candidate.variant}"


def _candidate_metric(e: CanaryEvidence, check: str, subject: str) -> list[Finding] | None:
    return _blocked(e, check, _of_candidate(e, subject), e.candidate, statements=False)


@rule("app_cache_hit_ratio")
def canary_cache_hit_ratio(e: CanaryEvidence) -> list[Finding]:
    """The candidate variant's application cache hit ratio."""
    c = e.candidate
    return _candidate_metric(e, "app_cache_hit_ratio", "application cache hit ratio") or (
        judge_app_cache_hit_ratio(
            c.app_cache_hit_ratio, e.thresholds,
            missing=f"no cache hits or misses of {c.variant} in the window's request metrics",
            subject=_of_candidate(e, "application cache hit ratio"),
        )
    )  # fmt: skip


@rule("p95_latency")
def canary_p95_latency(e: CanaryEvidence) -> list[Finding]:
    """The candidate variant's p95 latency (from its buckets' merged histograms)."""
    c = e.candidate
    return _candidate_metric(e, "p95_latency", P95_NAME) or judge_p95_latency(
        c.p95_ms, e.thresholds,
        missing=f"no latency of {c.variant} in the window's request metrics",
        subject=_of_candidate(e, P95_NAME), estimated=c.p95_estimated,
    )  # fmt: skip


@rule("error_rate")
def canary_error_rate(e: CanaryEvidence) -> list[Finding]:
    """The candidate variant's error rate."""
    c = e.candidate
    return _candidate_metric(e, "error_rate", "error rate") or judge_error_rate(
        c.error_rate, e.thresholds,
        missing=f"no requests of {c.variant} in the window's request metrics",
        subject=_of_candidate(e, "error rate"),
    )  # fmt: skip


@rule("query_rate")
def canary_query_rate(e: CanaryEvidence) -> list[Finding]:
    """The statements per second attributed to the candidate variant."""
    c = e.candidate
    subject = _of_candidate(e, "database query rate")
    blocked = _blocked(e, "query_rate", subject, c, statements=True)
    return blocked or judge_query_rate(c.query_rate, True, e.thresholds, subject=subject)


CANARY_RULES: tuple[Rule[CanaryEvidence], ...] = (
    canary_window,
    attribution,
    variant_requests,
    traffic_share,
    canary_query_reduction,
    canary_cache_hit_ratio,
    canary_p95_latency,
    canary_error_rate,
    canary_query_rate,
)
# The objects the migrations create, judged as verify judges them (on the whole window).
LIVE_RULES: tuple[Rule[Evidence], ...] = (
    schema_at_head,
    batch_indexes,
    autovacuum_settings,
    monitoring_tables,
)


# -- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryResult(Judged):
    """The canary's answer: the whole window's figures, each variant's, findings and verdict."""

    database: str
    whole: WindowMeasures
    baseline: VariantMeasures
    candidate: VariantMeasures
    spec: CanarySpec
    reduction: float | None
    findings: tuple[Finding, ...]
    reconciliation: Reconciliation | None = None
    role_queries: Mapping[str, int] = field(default_factory=dict)
    other_variants: Mapping[str, int] = field(default_factory=dict)  # name: requests
    reported_queries: int | None = None  # every variant's, as the application counted them
    role_reconciliations: Mapping[str, Reconciliation] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    scope: Scope = field(default_factory=Scope)
    operation: str | None = None

    @property
    def attribution_text(self) -> str:
        """Which attribution was used, in words."""
        return f"{self.spec.attribution}: {ATTRIBUTIONS[self.spec.attribution]}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (``output.SCHEMA_VERSIONS["verify-canary"]``)."""
        return json_document(
            "verify-canary",
            {
                "verdict": self.verdict,
                "exit_code": self.exit_code,
                "database": self.database,
                "scope": {**self.scope.as_dict(), "operation": self.operation},
                "window": self.whole.as_dict(),
                "attribution": {
                    "method": self.spec.attribution,
                    "description": ATTRIBUTIONS[self.spec.attribution],
                    "roles": dict(self.spec.variant_roles),
                    "role_queries": dict(self.role_queries),
                    "reconciliation": self.reconciliation.as_dict()
                    if self.reconciliation
                    else None,
                    "role_reconciliations": {
                        variant: r.as_dict() for variant, r in self.role_reconciliations.items()
                    },
                    "traffic_asked": self.spec.traffic,
                },
                "variants": {
                    "baseline": self.baseline.as_dict(),
                    "candidate": self.candidate.as_dict(),
                },
                "other_variants": dict(self.other_variants),
                "reported_queries": self.reported_queries,
                "query_reduction": self.reduction,
                "thresholds": self.thresholds.as_dict(),
                "findings": [finding.as_dict() for finding in self.findings],
                "definitions": dict(FIGURE_DEFINITIONS),
            },
        )


def whole_scope(spec: CanarySpec, scope: Scope = DEFAULT_SCOPE) -> Scope:
    """The statements the whole canary window counts: *scope*'s, and with ``--role`` the
    variants' roles too."""
    roles = frozenset(spec.variant_roles.values()) | scope.roles
    return Scope(roles, scope.tables) if scope.roles else scope


def role_scopes(spec: CanarySpec, scope: Scope = DEFAULT_SCOPE) -> dict[str, Scope]:
    """Each variant role's statements (``--attribute role``), in *scope*'s tables."""
    return {role: Scope(frozenset({role}), scope.tables) for role in spec.variant_roles.values()}


def evaluate_canary(
    whole: WindowMeasures,
    role_counts: Mapping[str, StatementCounts],
    variants: Mapping[str | None, VariantTotals],
    live: LiveState,
    spec: CanarySpec,
    *,
    scope: Scope = DEFAULT_SCOPE,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
) -> CanaryResult:
    """Judge a canary window from its figures (*whole*: over ``whole_scope``), each variant
    role's statements (*role_counts*: over ``role_scopes``), its request metrics per variant and
    the live state (pure: no database access)."""
    refuse_unknown_checks(thresholds)
    role_queries = {role: counts.queries for role, counts in role_counts.items()}
    window_requests = sum(v.requests for v in variants.values())

    def measured(name: str) -> VariantMeasures:
        totals = variants.get(name)
        role = spec.role_of(name)
        blocks = None
        if spec.attribution == "role":
            assert role is not None
            queries: int | None = role_queries[role]
            blocks = role_counts[role].shared_blks_hit + role_counts[role].shared_blks_read
        else:
            queries = totals.queries if totals else None
        return _measure_variant(name, totals, queries, role, window_requests=window_requests,
                                seconds=whole.seconds, thresholds=thresholds,
                                blocks_read=blocks)  # fmt: skip

    baseline, candidate = measured(spec.baseline_variant), measured(spec.candidate_variant)
    role_reconciliations = {
        v.variant: Reconciliation.of(totals, v.queries or 0, thresholds.canary_max_mismatch)
        for v in (baseline, candidate)
        if spec.attribution == "role" and v.reported_queries is not None
        and (totals := variants.get(v.variant)) is not None
    }  # fmt: skip
    uncounted = sum(v.uncounted_buckets for v in variants.values())
    reported = None if uncounted else sum(v.queries or 0 for v in variants.values())
    reconciliation = None
    if spec.attribution == "app":
        reconciliation = Reconciliation(
            reported, whole.counts.queries, thresholds.canary_max_mismatch, uncounted,
            sum(v.queries_slack for v in variants.values()),
        )  # fmt: skip
    fewer = reduction(baseline.queries_per_request, candidate.queries_per_request)
    evidence = CanaryEvidence(
        whole, baseline, candidate, spec, fewer, thresholds, reconciliation, role_queries,
        tuple(sorted(str(name) for name in variants if name is not None)),
        role_reconciliations,
    )  # fmt: skip
    log.info("judging the canary %s: %s against %s", whole.name, candidate.variant,
             baseline.variant)  # fmt: skip
    live_evidence = Evidence(whole, whole, None, live, thresholds)
    findings = [
        *run_rules(CANARY_RULES, evidence, skip=thresholds.skip),
        *unjudged(run_rules(LIVE_RULES, live_evidence, skip=thresholds.skip), live),
    ]
    return CanaryResult(
        database=whole.database_name,
        whole=whole,
        baseline=baseline,
        candidate=candidate,
        spec=spec,
        reduction=fewer,
        findings=tuple(findings),
        reconciliation=reconciliation,
        role_queries=role_queries,
        other_variants={
            UNNAMED_VARIANT if name is None else name: v.requests
            for name, v in variants.items()
            if name not in (spec.baseline_variant, spec.candidate_variant)
        },
        reported_queries=reported,
        role_reconciliations=role_reconciliations,
        thresholds=thresholds,
        scope=scope,
        operation=operation,
    )


def verify_canary(
    dsn: str | None,
    window: str,
    spec: CanarySpec,
    *,
    scope: Scope = DEFAULT_SCOPE,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
    target: str | None = None,
    store: str | None = None,
) -> CanaryResult:
    """Judge the canary window *window* (``W``, ``A..B`` by labels or times, ``last:10m``) of
    *target* on the database at *dsn*; the samples and request metrics are read from the
    central repository *store* when given (else from the database itself).

    Raises ``UsageError`` for unknown labels or roles, ``PrerequisiteMissing`` without the
    monitoring tables or the request metrics' variants, ``ConnectionFailed`` when the server
    cannot be reached (all exit code 2).
    """
    ref = parse_window(window)
    with reading(dsn, store, target) as (conn, stored, live):
        (resolved,) = stored.windows([ref], operation=operation, target=target,
                                     min_coverage=thresholds.min_window_coverage)  # fmt: skip
        with translated_errors("reading the request metrics"):
            variants = stored.variant_totals(resolved.start.taken_at, resolved.end.taken_at,
                                             operation=operation, target=resolved.target)  # fmt: skip
        roles = frozenset(spec.variant_roles.values()) | scope.roles
        if roles:
            known = frozenset[str]()
            if conn is not None:
                with translated_errors("reading the roles"):
                    known = existing_roles(conn, roles)
            refuse_unknown_roles(roles, known | stored.roles_in([resolved], roles - known),
                                 windows=1,
                                 option="--variant-role and --role name roles that run statements")  # fmt: skip
        batch = [f"{i.schema}.{i.name}" for i in live.manifest.batch_indexes]
        (whole,) = stored.measures([resolved], whole_scope(spec, scope), indexes=batch,
                                   edge_tolerance=thresholds.request_edge_tolerance)  # fmt: skip
        role_counts = {
            role: stored.sums([resolved], role_scope)[0].counts
            for role, role_scope in role_scopes(spec, scope).items()
        }
    return evaluate_canary(whole, role_counts, variants, live, spec, scope=scope,
                           thresholds=thresholds, operation=operation)  # fmt: skip
