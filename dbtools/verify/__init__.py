"""``verify``: compare a baseline and a candidate window and decide pass, fail or rollback.

The figures come from snapshot deltas (``dbtools.figures.measures``), the objects the migrations create
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
from dbtools.db.errors import translated_errors
from dbtools.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_ROLLBACK, ConfigError, UsageError
from dbtools.figures.measures import FIGURE_DEFINITIONS, WindowMeasures, query_reduction
from dbtools.figures.sums import Scope
from dbtools.figures.windows import Window, parse_window
from dbtools.findings import FAILING, Finding, Rule, check_names, run_rules
from dbtools.output import json_document
from dbtools.store import Store
from dbtools.verify.live import LiveState, reading, unjudged
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
    baseline: WindowMeasures,
    candidate: WindowMeasures,
    live: LiveState,
    *,
    scope: Scope = DEFAULT_SCOPE,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
    mode: Mode = "rollout",
    rules: tuple[Rule[Evidence], ...] | None = None,
) -> VerifyResult:
    """Judge the figures of the *baseline* window against the *candidate*'s (``Store.measures``
    over *scope*, with *thresholds*' tolerances: ``measure_options``) and the live state (pure:
    no database access)."""
    refuse_unknown_checks(thresholds)
    before, after = baseline, candidate
    comparison = []
    if (before.database_oid, before.database_name) != (after.database_oid, after.database_name):
        comparison.append(
            f"baseline and candidate come from different databases "
            f"({before.database_name}, {after.database_name})"
        )
    reduction = query_reduction(before, after)
    log.info("judging %s against %s", after.name, before.name)
    evidence = Evidence(before, after, reduction, live, thresholds, tuple(comparison))
    rules = rules or RULES_OF_MODE[mode]
    return VerifyResult(
        database=after.database_name,
        baseline=before,
        candidate=after,
        reduction=reduction,
        findings=tuple(unjudged(run_rules(rules, evidence, skip=thresholds.skip), live)),
        thresholds=thresholds,
        scope=scope,
        operation=operation,
        mode=mode,
    )


def measure_options(
    thresholds: Thresholds, scope: Scope = DEFAULT_SCOPE, operation: str | None = None
) -> dict[str, Any]:
    """How verify measures a window (``Store.measures``' keywords): requests prorated at its
    ends within ``request_edge_tolerance``, the application's count of its statements
    reconciled within ``reconcile_tolerance``."""
    return {
        "edge_tolerance": thresholds.request_edge_tolerance,
        "max_mismatch": reconcile_tolerance(thresholds, scope, operation),
    }


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


def refuse_overlap(baseline: Window, candidate: Window) -> None:
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
    dsn: str | None,
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
    given (else from the database itself). With a *store* and no *dsn* the target is not
    connected to: its live checks are skipped (``live.reading``).

    Raises ``UsageError`` for unknown labels or targets, ``PrerequisiteMissing`` without the
    monitoring tables, ``ConnectionFailed`` when a server cannot be reached (all exit code 2).
    """
    refs = [parse_window(baseline), parse_window(candidate)]
    with reading(dsn, store, target) as (conn, stored, live):
        windows = stored.windows(refs, operation=operation, target=target,
                                 min_coverage=thresholds.min_window_coverage)  # fmt: skip
        refuse_overlap(*windows)
        before, after = _measures(conn, stored, windows, scope, live, thresholds, operation)
    mode: Mode = "after-rollback" if after_rollback else "rollout"
    return evaluate(before, after, live, scope=scope, thresholds=thresholds,
                    operation=operation, mode=mode)  # fmt: skip


def window_measures(
    dsn: str | None,
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
    with reading(dsn, store, target) as (conn, stored, live):
        windows = stored.windows([parse_window(window)], operation=operation, target=target,
                                 min_coverage=thresholds.min_window_coverage)  # fmt: skip
        (measures,) = _measures(conn, stored, windows, scope, live, thresholds, operation)
    return measures


def _measures(
    conn: Any,
    store: Store,
    windows: Sequence[Window],
    scope: Scope,
    live: LiveState,
    thresholds: Thresholds,
    operation: str | None,
) -> list[WindowMeasures]:
    """The figures of each of *windows* over *scope* (``Store.measures``), the batch indexes'
    scans among them; requests prorated at the edges and the application's count reconciled
    within *thresholds*' tolerances. Refuses (``UsageError``) roles in *scope* that neither the
    server nor any window knows."""
    known = frozenset[str]()
    if scope.roles and conn is not None:
        with translated_errors("reading the roles"):
            known = existing_roles(conn, scope.roles)
        known |= store.roles_in(windows, scope.roles - known)
    refuse_unknown_roles(scope.roles, known, windows=len(windows))
    batch = [f"{i.schema}.{i.name}" for i in live.manifest.batch_indexes]
    return store.measures(windows, scope, indexes=batch,
                          **measure_options(thresholds, scope, operation))  # fmt: skip
