"""The rollout's story between a baseline and a candidate: what replaced what, and the opening
sentences a DBA reads first.

*What replaced what* pairs each statement family that disappeared or was sent less often with
the families that appeared or were sent more often on the same footprint (kind, tables and
columns: ``sqltext.families.Footprint``): a point lookup and its ``= ANY($1)`` form, an insert
per row and its multi-row form. A family that fell with no partner is the same statement sent
less often (``fewer calls``) or ``gone``; one that rose with none is ``new`` or ``grew``: a rollout
can add work. Only the statements the application sends (top level) are paired; statements run
inside them (functions, foreign-key checks) follow their callers.

Calls are compared per request when both windows have a request count, else as calls; a change
smaller than ``min_change`` of the baseline's is no change. The opening says, in three sentences
with the figures and no adjectives the numbers do not support: verify's verdict, the headline
figures, and what the pairs add up to. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dbtools.figures.measures import WindowMeasures, per_request
from dbtools.findings import Finding
from dbtools.output import number, percent

ChangeKind = Literal["replaced", "fewer calls", "gone", "new", "grew"]
FELL: tuple[ChangeKind, ...] = ("replaced", "fewer calls", "gone")
QUIET_STATUSES = frozenset({"pass", "info", "skipped"})  # what the verdict sentence leaves out


@dataclass(frozen=True)
class FamilyCounts:
    """One family as pairing sees it: its footprint and, per period, what it did."""

    fingerprint: str
    footprint: tuple[object, ...]  # equal for a statement and its other forms
    kind: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    calls: Mapping[str, int]
    total_time_ms: Mapping[str, float]
    rows: Mapping[str, int]
    sql: str


@dataclass(frozen=True)
class ChangeFigures:
    """The families of one line together, in one period."""

    calls: int
    calls_per_request: float | None
    total_time_ms: float
    rows: int


@dataclass(frozen=True)
class FamilyChange:
    """One line of *what replaced what*: the baseline's families (``before``), the candidate's
    (``after``: the same fingerprints for a family sent less often or more often), and their
    figures together in each period."""

    change: ChangeKind
    before: tuple[str, ...]
    after: tuple[str, ...]
    kind: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    figures: Mapping[str, ChangeFigures]
    sql: Mapping[str, str]  # each family's statement, by fingerprint


def family_changes(
    families: Iterable[FamilyCounts],
    baseline: str,
    candidate: str,
    requests: Mapping[str, int | None],
    *,
    min_change: float = 0.10,
) -> tuple[FamilyChange, ...]:
    """What replaced what between the periods *baseline* and *candidate* (heaviest first)."""
    per_request_known = all(requests.get(name) for name in (baseline, candidate))

    def level(family: FamilyCounts, name: str) -> float:
        calls = family.calls.get(name, 0)
        return calls / (requests[name] or 1) if per_request_known else float(calls)

    fell: dict[tuple[object, ...], list[tuple[FamilyCounts, ChangeKind]]] = {}
    rose: dict[tuple[object, ...], list[tuple[FamilyCounts, ChangeKind]]] = {}
    for family in families:
        was, now = level(family, baseline), level(family, candidate)
        if now == 0 and was > 0:
            fell.setdefault(family.footprint, []).append((family, "gone"))
        elif was == 0 and now > 0:
            rose.setdefault(family.footprint, []).append((family, "new"))
        elif now < was * (1 - min_change):
            fell.setdefault(family.footprint, []).append((family, "fewer calls"))
        elif now > was * (1 + min_change):
            rose.setdefault(family.footprint, []).append((family, "grew"))

    lines: list[tuple[ChangeKind, list[FamilyCounts], list[FamilyCounts]]] = []
    for footprint in {**fell, **rose}:
        went, came = fell.get(footprint, []), rose.get(footprint, [])
        if went and came:
            lines.append(("replaced", [f for f, _ in went], [f for f, _ in came]))
            continue
        for family, change in went + came:
            before = [] if change == "new" else [family]
            after = [] if change == "gone" else [family]
            lines.append((change, before, after))

    changes = [_line(change, before, after, (baseline, candidate), requests)
               for change, before, after in lines]  # fmt: skip
    return tuple(sorted(changes, key=_heaviest_first))


def _line(
    change: ChangeKind,
    before: list[FamilyCounts],
    after: list[FamilyCounts],
    names: tuple[str, str],
    requests: Mapping[str, int | None],
) -> FamilyChange:
    members = {family.fingerprint: family for family in before + after}.values()
    sample = next(iter(members))
    figures = {}
    for name in names:
        calls = sum(family.calls.get(name, 0) for family in members)
        figures[name] = ChangeFigures(
            calls=calls,
            calls_per_request=per_request(calls, requests.get(name)),
            total_time_ms=sum(family.total_time_ms.get(name, 0.0) for family in members),
            rows=sum(family.rows.get(name, 0) for family in members),
        )
    return FamilyChange(
        change=change,
        before=tuple(family.fingerprint for family in before),
        after=tuple(family.fingerprint for family in after),
        kind=sample.kind,
        tables=sample.tables,
        columns=sample.columns,
        figures=figures,
        sql={family.fingerprint: family.sql for family in members},
    )


def _heaviest_first(change: FamilyChange) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
    return (-max(f.total_time_ms for f in change.figures.values()), change.before, change.after)


# -- the opening ---------------------------------------------------------------------------------


def verdict_sentence(verdict: str, exit_code: int, findings: Sequence[Finding]) -> str:
    """Verify's verdict and the checks that decided it."""
    counted: dict[tuple[str, str], int] = {}
    for finding in findings:
        if finding.status not in QUIET_STATUSES:
            key = (finding.check, finding.status)
            counted[key] = counted.get(key, 0) + 1
    head = f"Verify's verdict: {verdict.upper()} (exit code {exit_code})"
    if not counted:
        return f"{head}: every check passed."
    listed = [f"{check} {status}" + (f" ({count})" if count > 1 else "")
              for (check, status), count in counted.items()]  # fmt: skip
    return f"{head}: {', '.join(listed)}."


def headline_sentence(
    baseline: WindowMeasures, candidate: WindowMeasures, reduction: float | None, target: float
) -> str:
    """Queries per request (and the reduction against its threshold), queries, query rate."""
    before, after = baseline.queries_per_request, candidate.queries_per_request
    if before is None or after is None:
        qpr = "Queries per request cannot be computed (a window has no request count)"
    else:
        qpr = f"Queries per request went from {before:.2f} to {after:.2f}"
        if reduction is not None:
            direction = "fewer" if reduction >= 0 else "more"
            qpr += f" ({percent(abs(reduction))} {direction}; the threshold is {percent(target)})"
    return (
        f"{qpr}, application queries from {baseline.counts.queries:,} to "
        f"{candidate.counts.queries:,}, the query rate from "
        f"{number(baseline.query_rate, 1, unit='/s')} to "
        f"{number(candidate.query_rate, 1, unit='/s')}."
    )


def _families(count: int) -> str:
    return f"{count} family" if count == 1 else f"{count} families"


def _joined(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def changes_sentence(changes: Sequence[FamilyChange], baseline: str, candidate: str) -> str:
    """What the pairs add up to: the families that fell (with their calls before and after),
    and those that rose."""

    def count(kind: ChangeKind) -> int:
        return sum(1 for change in changes if change.change == kind)

    def calls(kinds: Sequence[ChangeKind], name: str) -> int:
        return sum(c.figures[name].calls for c in changes if c.change in kinds)

    fell = []
    replaced, fewer, gone = count("replaced"), count("fewer calls"), count("gone")
    if replaced:
        verb = "was" if replaced == 1 else "were"
        fell.append(f"{_families(replaced)} {verb} replaced by another form on the same tables "
                    "and columns")  # fmt: skip
    if fewer:
        subject = _families(fewer) if not fell else str(fewer)
        fell.append(f"{subject} {'was' if fewer == 1 else 'were'} sent less often as the same "
                    "statement")  # fmt: skip
    if gone:
        subject = _families(gone) if not fell else str(gone)
        fell.append(f"{subject} disappeared with no replacement")
    if fell:
        went = (f"{_joined(fell)} ({calls(FELL, baseline):,} calls → "
                f"{calls(FELL, candidate):,})")  # fmt: skip
    else:
        went = "no family disappeared or was sent less often"

    rose = []
    new, grew = count("new"), count("grew")
    if new:
        rose.append(f"{_families(new)} appeared without a partner "
                    f"({calls(('new',), candidate):,} calls)")  # fmt: skip
    if grew:
        subject = _families(grew) if not rose else str(grew)
        rose.append(f"{subject} grew ({calls(('grew',), baseline):,} → "
                    f"{calls(('grew',), candidate):,} calls)")  # fmt: skip
    came = _joined(rose) if rose else "no family appeared without a partner or grew"
    sentence = f"{went}; {came}."
    return sentence[0].upper() + sentence[1:]
