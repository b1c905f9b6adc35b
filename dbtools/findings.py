"""One vocabulary for every check dbtools makes: verify's rollout gate (``verify.rules``), the
report's index and autovacuum health (``report.health``), schema health
(``report.schema_health``), space health (``report.space``: sequences near their end, bloat)
and migration lint (``safety.lint``).

A *rule* is a small pure function over its module's evidence (verify's ``Evidence``, health's
``HealthInput``, lint's ``LintScript``) that returns ``Finding``s. ``@rule("name")`` gives it the
name of the check it makes, so a module's check names come from its list of rules
(``check_names``), never from a second list. ``run_rules(rules, evidence)`` runs them in order.

A finding has a check, a status, a subject (what was judged: a window, an index, a table, a
statement), a message, and when the check compares a figure with a limit, a value and a
threshold. Where it helps, ``fix`` says what to run or check next, ``location`` where in a
migration the subject is, ``source`` whose rule it is (dbtools', or squawk's for lint) and
``because`` why a skipped finding was not judged.

Statuses, worst first (``STATUSES``), and what each module's own words map to:

============  =======================================================  =======================
status        meaning                                                  from
============  =======================================================  =======================
``rollback``  a rollback threshold was crossed: undo the rollout       verify
``critical``  act now                                                  verify, health
``fail``      the check does not hold                                  verify; a lint violation
``untrusted`` the data cannot be trusted (a reset, a restart…)         verify
``no data``   nothing to judge                                         verify
``warning``   worth a look; does not fail a gate                       verify, health
``info``      worth knowing; asks for nothing                          health
``skipped``   not judged, on purpose: named in ``skip``, or a lint     verify; a lint finding
              finding ignored with a reason (``because``)              ignored with a reason
``pass``      the check holds                                          verify
============  =======================================================  =======================

``untrusted`` and ``no data`` are never a pass: they count as failing (``FAILING``), as do
``fail`` and ``critical``; ``rollback`` is worse than failing (verify exits 3, not 1).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

Status = Literal[
    "rollback", "critical", "fail", "untrusted", "no data", "warning", "info", "skipped", "pass"
]
STATUSES: tuple[Status, ...] = (
    "rollback", "critical", "fail", "untrusted", "no data", "warning", "info", "skipped", "pass"
)  # fmt: skip
FAILING: frozenset[Status] = frozenset({"fail", "critical", "no data", "untrusted"})
DBTOOLS = "dbtools"


@dataclass(frozen=True)
class Location:
    """Where in a migration a finding is (lint)."""

    revision: str
    direction: str  # upgrade, downgrade, or "-" for a comment in the revision's file
    line: int  # in the offline SQL of revision+direction (in the revision's file for "-")


@dataclass(frozen=True)
class Finding:
    """One check's outcome for one subject."""

    check: str
    status: Status
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None
    fix: str = ""  # what to run or check next ("" when nothing)
    source: str = DBTOOLS  # whose rule found it: dbtools, or squawk (lint)
    location: Location | None = None
    because: str | None = None  # why a skipped finding was not judged

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (every document writes findings with these keys)."""
        return {
            "check": self.check,
            "status": self.status,
            "subject": self.subject,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "fix": self.fix,
            "source": self.source,
            "location": dataclasses.asdict(self.location) if self.location else None,
            "because": self.because,
        }


E = TypeVar("E")


class Rule(Generic[E]):
    """A rule: *judge* (a pure function of the evidence) making the check named *check*.

    Calling it judges; a finding of another check is a bug in the rule (``ValueError``).
    """

    __name__: str  # the function's, as its docstring (functools.update_wrapper)

    def __init__(self, check: str, judge: Callable[[E], Iterable[Finding]]) -> None:
        self.check = check
        self.judge = judge
        functools.update_wrapper(self, judge)

    def __call__(self, evidence: E) -> list[Finding]:
        findings = list(self.judge(evidence))
        strays = sorted({f.check for f in findings} - {self.check})
        if strays:
            raise ValueError(f"rule {self.check} returned findings of {', '.join(strays)}")
        return findings

    def __repr__(self) -> str:
        return f"Rule({self.check!r})"


def rule(check: str) -> Callable[[Callable[[E], Iterable[Finding]]], Rule[E]]:
    """Decorator: the function is a rule making the check named *check*."""

    def named(judge: Callable[[E], Iterable[Finding]]) -> Rule[E]:
        return Rule(check, judge)

    return named


def check_names(rules: Iterable[Rule[Any]]) -> tuple[str, ...]:
    """The checks *rules* make, in order."""
    return tuple(dict.fromkeys(r.check for r in rules))


def run_rules(
    rules: Iterable[Rule[E]], evidence: E, *, skip: Collection[str] = ()
) -> list[Finding]:
    """Every rule's findings on *evidence*, in the rules' order.

    A check named in *skip* still names its subjects, but each of its findings comes back
    ``skipped`` (with no value), never as a pass.
    """
    findings = []
    for each in rules:
        for finding in each(evidence):
            if finding.check in skip:
                finding = Finding(
                    finding.check, "skipped", finding.subject, "skipped by config",
                    because="named in skip",
                )  # fmt: skip
            findings.append(finding)
    return findings


def worst_first(findings: Iterable[Finding]) -> list[Finding]:
    """*findings* by status, worst first, then by check and subject (a stable order)."""
    order = {status: position for position, status in enumerate(STATUSES)}
    return sorted(findings, key=lambda f: (order[f.status], f.check, f.subject))
