"""``verify``: compare a baseline and a candidate window and decide pass, fail or rollback.

The figures come from snapshot deltas (``dbtools.stats.measures``), the objects the migrations create
are read live from the catalog, the checks are ``dbtools.verify.rules``. Verdict and exit code:

* ``rollback`` (exit 3) when any finding crossed a rollback threshold;
* ``fail`` (exit 1) when any finding failed, is critical, has no data, or rests on a window
  that cannot be trusted;
* ``pass`` (exit 0) otherwise.

``after_rollback=True`` judges the candidate (a window after the traffic was routed back, and
perhaps after ``alembic downgrade``) by ``verify.rollback``'s rules instead: did it return to
the baseline? Same verdicts and exit codes.

Refused (``UsageError``, exit 2) before anything is judged: a baseline and a candidate that
are the same window or overlap (one period's statements would count on both sides), and a
``--role`` that names no role (neither in ``pg_roles`` now nor in either window).

Everything is read in one read-only, autocommit session: about ten statements, whatever the
number of statements, tables or indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dbtools.db.catalog import existing_roles
from dbtools.db.connection import repository, session
from dbtools.db.errors import translated_errors
from dbtools.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_ROLLBACK, ConfigError, UsageError
from dbtools.findings import FAILING, Finding, Rule, check_names, run_rules
from dbtools.output import json_document
from dbtools.stats.measures import (
    FIGURE_DEFINITIONS,
    Scope,
    WindowMeasures,
    measure,
    measure_window,
    query_reduction,
    sum_deltas,
)
from dbtools.stats.sql_sums import roles_in_windows, sum_windows
from dbtools.stats.windows import (
    ResolvedWindows,
    Window,
    WindowBounds,
    loaded_windows,
    parse_window,
    resolve_windows,
)
from dbtools.verify.live import LiveState, read_live_state
from dbtools.verify.rollback import AFTER_ROLLBACK_RULES
from dbtools.verify.rules import CANARY_CHECKS, RULES, Evidence
from dbtools.verify.thresholds import Thresholds

log = logging.getLogger(__name__)

DEFAULT_SCOPE = Scope()
DEFAULT_THRESHOLDS = Thresholds()
Verdict = Literal["pass", "fail", "rollback"]
EXIT_CODES: dict[str, int] = {"pass": EXIT_OK, "fail": EXIT_PROBLEMS, "rollback": EXIT_ROLLBACK}
Mode = Literal["rollout", "after-rollback"]
RULES_OF_MODE: dict[Mode, tuple[Rule[Evidence], ...]] = {
    "rollout": RULES,
    "after-rollback": AFTER_ROLLBACK_RULES,
}
# Every check a mode or a canary makes: what ``skip`` may name (one configuration serves all).
KNOWN_CHECKS: tuple[str, ...] = (
    *check_names(r for rules in RULES_OF_MODE.values() for r in rules),
    *CANARY_CHECKS,
)


def verdict_of(findings: Sequence[Finding]) -> Verdict:
    """rollback if any finding says so, else fail if any fails (or lacks data), else pass."""
    if any(f.status == "rollback" for f in findings):
        return "rollback"
    if any(f.status in FAILING for f in findings):
        return "fail"
    return "pass"


class Judged:
    """What a result with findings answers: its verdict and the exit code for a deploy script
    (mixed into ``VerifyResult`` and the canary's result)."""

    findings: tuple[Finding, ...]

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass(frozen=True)
class VerifyResult(Judged):
    """Verify's answer: the two windows' figures, the findings and the verdict."""

    database: str
    baseline: WindowMeasures
    candidate: WindowMeasures
    reduction: float | None
    findings: tuple[Finding, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    scope: Scope = field(default_factory=Scope)
    operation: str | None = None
    mode: Mode = "rollout"

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (``output.SCHEMA_VERSIONS["verify"]``; keys are only ever added)."""
        return json_document(
            "verify",
            {
                "verdict": self.verdict,
                "exit_code": self.exit_code,
                "mode": self.mode,
                "database": self.database,
                "scope": {**self.scope.as_dict(), "operation": self.operation},
                "windows": {
                    "baseline": self.baseline.as_dict(),
                    "candidate": self.candidate.as_dict(),
                },
                "query_reduction": self.reduction,
                "thresholds": self.thresholds.as_dict(),
                "findings": [finding.as_dict() for finding in self.findings],
                "definitions": dict(FIGURE_DEFINITIONS),
            },
        )


def evaluate(
    baseline: Window | WindowMeasures,
    candidate: Window | WindowMeasures,
    live: LiveState,
    *,
    scope: Scope = DEFAULT_SCOPE,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
    mode: Mode = "rollout",
    rules: tuple[Rule[Evidence], ...] | None = None,
) -> VerifyResult:
    """Judge two windows (loaded, or their figures already measured) and the live state (pure:
    no database access)."""
    refuse_unknown_checks(thresholds)
    mismatch = reconcile_tolerance(thresholds, scope, operation)
    before, after = (
        w if isinstance(w, WindowMeasures)
        else measure_window(w, scope, edge_tolerance=thresholds.request_edge_tolerance,
                            max_mismatch=mismatch)
        for w in (baseline, candidate)
    )  # fmt: skip
    comparison = []
    if (before.database_oid, before.database_name) != (after.database_oid, after.database_name):
        comparison.append(
            f"baseline and candidate come from different databases "
            f"({before.database_name}, {after.database_name})"
        )
    reduction = query_reduction(before, after)
    log.info("judging %s against %s", after.name, before.name)
    evidence = Evidence(before, after, reduction, live, thresholds, tuple(comparison))
    return VerifyResult(
        database=after.database_name,
        baseline=before,
        candidate=after,
        reduction=reduction,
        findings=tuple(run_rules(rules or RULES_OF_MODE[mode], evidence, skip=thresholds.skip)),
        thresholds=thresholds,
        scope=scope,
        operation=operation,
        mode=mode,
    )


def reconcile_tolerance(
    thresholds: Thresholds, scope: Scope, operation: str | None
) -> float | None:
    """How far the application's own count of its statements may lie from pg_stat_statements'
    in a window (``canary_max_mismatch``); None when they cannot be compared: the statements
    narrowed to tables, or the requests to one operation (its count covers its own only)."""
    if scope.tables or operation is not None:
        return None
    return thresholds.canary_max_mismatch


def refuse_unknown_checks(thresholds: Thresholds) -> None:
    """Raise ``ConfigError`` when ``skip`` names a check neither verify nor a canary makes."""
    unknown = sorted(set(thresholds.skip) - set(KNOWN_CHECKS))
    if unknown:
        raise ConfigError(f"skip names unknown check(s) {', '.join(unknown)}; known: "
                          f"{', '.join(KNOWN_CHECKS)}")  # fmt: skip


def refuse_overlap(baseline: WindowBounds, candidate: WindowBounds) -> None:
    """Raise ``UsageError`` when the two windows are the same or share any time (a shared end
    snapshot is fine: ``a..b`` then ``b..c``)."""
    b, c = baseline, candidate
    if (b.start.id, b.end.id) == (c.start.id, c.end.id):
        raise UsageError(
            f"the baseline and the candidate are the same window ({b.ref}): compare two "
            "separate windows"
        )
    b_start, b_end = b.start.taken_at, b.end.taken_at
    c_start, c_end = c.start.taken_at, c.end.taken_at
    if b_start < c_end and c_start < b_end:
        raise UsageError(
            f"the baseline {b.ref} and the candidate {c.ref} overlap ({b_start:%H:%M:%S}-"
            f"{b_end:%H:%M:%S} and {c_start:%H:%M:%S}-{c_end:%H:%M:%S} UTC): a statement in "
            "both would count twice; compare two separate windows"
        )


def statement_roles(windows: Sequence[Window]) -> frozenset[str]:
    """The roles with a statement entry at either end of one of *windows*."""
    return frozenset(
        row.rolname for w in windows for s in (w.start, w.end) for row in s.statements
        if row.rolname is not None
    )  # fmt: skip


def refuse_unknown_roles(
    roles: frozenset[str],
    known: frozenset[str],
    *,
    windows: int,
    option: str = "--role names a role whose statements count",
) -> None:
    """Raise ``UsageError`` naming the first role of *roles* not in *known*: the roles that
    exist and those that ran a statement in the *windows* windows judged (a role dropped since
    still counts); *option* says what names it."""
    unknown = sorted(roles - known)
    if unknown:
        where = "either window" if windows > 1 else "the window"
        raise UsageError(
            f"unknown role {unknown[0]!r}: not in pg_roles, and no statement of it in {where} "
            f"({option})"
        )


def verify(
    dsn: str,
    baseline: str,
    candidate: str,
    *,
    scope: Scope = DEFAULT_SCOPE,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
    after_rollback: bool = False,
    target: str | None = None,
    store: str | None = None,
) -> VerifyResult:
    """Compare the windows *baseline* and *candidate* (``W``, ``A..B`` by labels or times,
    ``last:10m``) of *target* on the database at *dsn* (*after_rollback*: did the candidate
    return to the baseline?); the samples are read from the central repository *store* when
    given (else from the database itself).

    Raises ``UsageError`` for unknown labels or targets, ``PrerequisiteMissing`` without the
    monitoring tables, ``ConnectionFailed`` when a server cannot be reached (all exit code 2).
    """
    refs = [parse_window(baseline), parse_window(candidate)]
    with session(dsn, autocommit=True) as conn, repository(conn, store) as samples:
        with translated_errors("reading the schema"):
            live = read_live_state(conn)
        resolved = resolve_windows(samples, refs, operation=operation, target=target,
                                   min_coverage=thresholds.min_window_coverage)  # fmt: skip
        refuse_overlap(*resolved.bounds)
        before, after = _measures(conn, samples, resolved, scope, live, thresholds, operation)
    mode: Mode = "after-rollback" if after_rollback else "rollout"
    return evaluate(before, after, live, scope=scope, thresholds=thresholds,
                    operation=operation, mode=mode)  # fmt: skip


def window_measures(
    dsn: str,
    window: str,
    *,
    scope: Scope = DEFAULT_SCOPE,
    operation: str | None = None,
    target: str | None = None,
    store: str | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> WindowMeasures:
    """The figures of one window (``W``, ``A..B``, ``last:10m``) of *target*, and why it cannot
    be trusted when it cannot (a deploy's preflight asks this of its baseline), judged with
    *thresholds*' tolerances. Raises as ``verify`` does."""
    with session(dsn, autocommit=True) as conn, repository(conn, store) as samples:
        with translated_errors("reading the schema"):
            live = read_live_state(conn)
        resolved = resolve_windows(samples, [parse_window(window)], operation=operation,
                                   target=target,
                                   min_coverage=thresholds.min_window_coverage)  # fmt: skip
        (measures,) = _measures(conn, samples, resolved, scope, live, thresholds, operation)
    return measures


def _measures(
    conn: Any,
    samples: Any,
    resolved: ResolvedWindows,
    scope: Scope,
    live: LiveState,
    thresholds: Thresholds,
    operation: str | None,
) -> list[WindowMeasures]:
    """The figures of each of the *resolved* windows over *scope*: summed in the database where
    it holds compact samples, else from the samples' states; requests prorated at the edges and
    the application's count reconciled within *thresholds*' tolerances. Refuses
    (``UsageError``) roles in *scope* that neither the server nor any window knows."""
    known = frozenset[str]()
    if scope.roles:
        with translated_errors("reading the roles"):
            known = existing_roles(conn, scope.roles)
    with translated_errors("summing the windows"):
        if resolved.layout.samples and resolved.target is not None:
            # Compact samples: the database sums the windows (a few rows come back).
            batch = [f"{i.schema}.{i.name}" for i in live.manifest.batch_indexes]
            sums = sum_windows(samples, resolved.target, resolved.bounds, scope,
                               indexes=batch)  # fmt: skip
            if not scope.roles <= known:
                known |= roles_in_windows(samples, resolved.target, resolved.bounds,
                                          scope.roles - known)  # fmt: skip
        else:
            windows = loaded_windows(samples, resolved)
            sums = [sum_deltas(w, scope) for w in windows]
            known |= statement_roles(windows)
    refuse_unknown_roles(scope.roles, known, windows=len(resolved.bounds))
    mismatch = reconcile_tolerance(thresholds, scope, operation)
    return [
        measure(b, s, scope, edge_tolerance=thresholds.request_edge_tolerance,
                max_mismatch=mismatch)
        for b, s in zip(resolved.bounds, sums, strict=True)
    ]  # fmt: skip
