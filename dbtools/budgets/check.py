"""A block's count against its budget: a marker's limit (``within_limit``) or the count recorded
for the test (``against_recorded``). Pure.

A count above its budget is a failure that names what changed; a count below it is a note (the
budget can be tightened). What changed is the report's story between two windows
(``report.story.family_changes``) with the recorded count as the first window: the families that
rose, appeared, fell or went, a family replaced by another form on the same tables and columns
(``id = ANY($1)`` by ``id = $1``), and a point lookup that multiplied called an N+1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dbtools.budgets.count import FamilyCount, QueryCount
from dbtools.errors import UsageError
from dbtools.report.sections import one_line
from dbtools.report.story import FamilyChange, FamilyCounts, family_changes
from dbtools.sqltext.families import NPlusOne, is_n_plus_one, shape_of

Per = Literal["test", "request"]
RECORDED, NOW = "recorded", "now"
# A point lookup is an N+1 once it is called more than once, at least once per request.
N_PLUS_ONE = NPlusOne(calls_per_request=1.0, min_calls=2)
SQL_WIDTH = 160


@dataclass(frozen=True)
class Limit:
    """A marker's budget: at most *max* top-level statements per test (or per request), and at
    most *nested* nested statements per test when given."""

    max: float
    per: Per = "test"
    nested: int | None = None

    def __post_init__(self) -> None:
        if self.per not in ("test", "request"):
            raise UsageError(f"query_budget: per is 'test' or 'request', not {self.per!r}")
        if self.max < 0 or (self.nested is not None and self.nested < 0):
            raise UsageError("query_budget: a budget is not negative")


@dataclass(frozen=True)
class Verdict:
    """What a check found: failures (over budget) and notes (under it: tighten the budget)."""

    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(self.failures + other.failures, self.notes + other.notes)


def describe(count: QueryCount) -> str:
    """``21 statements for 10 requests (2.10 per request), 4 nested, 2 transaction control``."""
    text = f"{count.statements} statement{'' if count.statements == 1 else 's'}"
    if count.requests:
        text += f" for {count.requests} request{'' if count.requests == 1 else 's'}"
        text += f" ({count.per_request:.2f} per request)"
    text += f", {count.nested} nested"
    if count.transactions:
        text += f", {count.transactions} transaction control"
    return text


def within_limit(count: QueryCount, limit: Limit) -> Verdict:
    """*count* against a marker's *limit*."""
    if limit.per == "request" and not count.requests:
        return Verdict(failures=("query_budget(per='request') needs the requests the test "
                                 "served: dbtools_queries(requests=N)",))  # fmt: skip
    used = count.per_request if limit.per == "request" else count.statements
    assert used is not None
    failures, notes = [], []
    budget = f"the budget is {limit.max:g} per {limit.per}"
    if used > limit.max:
        failures.append(f"query budget exceeded: {describe(count)}; {budget}\n"
                        + "\n".join(family_lines(count)))  # fmt: skip
    elif used < limit.max:
        notes.append(f"{describe(count)}; {budget}: it can be tightened to {used:g}")
    if limit.nested is not None:
        nested = f"{count.nested} nested statements, the budget is {limit.nested}"
        if count.nested > limit.nested:
            failures.append(f"nested budget exceeded: {nested}\n" + "\n".join(family_lines(count)))
        elif count.nested < limit.nested:
            notes.append(f"{nested}: it can be tightened to {count.nested}")
    return Verdict(tuple(failures), tuple(notes))


def against_recorded(count: QueryCount, recorded: QueryCount, where: str) -> Verdict:
    """*count* against the count recorded for the test in *where* (a budgets file): more
    statements, or more nested ones, fail; fewer are a note."""
    per_request = bool(count.requests and recorded.requests)
    failures, notes = [], []
    for what, was, now in (
        ("statements", _level(recorded, per_request), _level(count, per_request)),
        ("nested statements", float(recorded.nested), float(count.nested)),
    ):
        if now == was:
            continue
        unit = " per request" if per_request and what == "statements" else ""
        head = f"{what}{unit} {'rose' if now > was else 'fell'}: {was:g} → {now:g} ({where})"
        lines = "\n".join(changes(recorded, count))
        if now > was:
            failures.append(f"query budget exceeded: {head}; accept with --dbtools-record\n{lines}")
        else:
            notes.append(f"{head}: tighten it with --dbtools-record\n{lines}")
    return Verdict(tuple(failures), tuple(notes))


def _level(count: QueryCount, per_request: bool) -> float:
    return count.statements / (count.requests or 1) if per_request else float(count.statements)


def family_lines(count: QueryCount) -> list[str]:
    """Every family of *count*, one line each with its statement (N+1s named)."""
    lines = []
    for family in count.families:
        n_plus_one = ", an N+1" if _is_n_plus_one(family, family.calls, count.requests) else ""
        nested = " (nested)" if family.nested else ""
        lines.append(f"  {family.label}{nested}: {_calls(family.calls)}{n_plus_one}")
        lines.append(f"      {one_line(family.sql, SQL_WIDTH)}")
    return lines


def changes(recorded: QueryCount, now: QueryCount) -> list[str]:
    """What changed between *recorded* and *now*, one line per change (and its statements)."""
    families: dict[str, FamilyCount] = {}
    counts: dict[tuple[str, bool], dict[str, int]] = {}
    for name, count in ((RECORDED, recorded), (NOW, now)):
        for family in count.families:
            families[_key(family)] = family
            counts.setdefault((family.family, family.nested), {})[name] = family.calls
    found = family_changes(
        (_family_counts(families[_key_of(key)], calls) for key, calls in counts.items()),
        RECORDED, NOW, {RECORDED: recorded.requests, NOW: now.requests}, min_change=0.0,
    )  # fmt: skip
    lines = []
    for change in found:
        lines.append("  " + _change_text(change, families, now.requests))
        for fingerprint in dict.fromkeys((*change.after, *change.before)):
            lines.append(f"      {one_line(families[fingerprint].sql, SQL_WIDTH)}")
    return lines


def _key(family: FamilyCount) -> str:
    return family.family + (":nested" if family.nested else "")


def _key_of(key: tuple[str, bool]) -> str:
    return key[0] + (":nested" if key[1] else "")


def _family_counts(family: FamilyCount, calls: dict[str, int]) -> FamilyCounts:
    shape = shape_of(family.sql)
    footprint = shape.footprint
    place: tuple[object, ...] = (
        (footprint.kind, footprint.tables, footprint.columns) if footprint else (family.family,)
    )
    return FamilyCounts(
        fingerprint=_key(family),
        footprint=(family.nested, *place),  # nested statements pair only with nested ones
        kind=shape.kind,
        tables=shape.tables,
        columns=footprint.columns if footprint else (),
        calls=calls,
        total_time_ms={},
        rows={},
        sql=family.sql,
    )


def _change_text(
    change: FamilyChange, families: dict[str, FamilyCount], requests: int | None
) -> str:
    was, now = change.figures[RECORDED].calls, change.figures[NOW].calls

    def named(keys: Sequence[str]) -> str:
        return " + ".join(
            families[key].label + (" (nested)" if families[key].nested else "") for key in keys
        )

    calls = f"{was} → {_calls(now)}"
    if change.change == "replaced":
        text = f"{named(change.before)} replaced by {named(change.after)}: {calls}"
    elif change.change == "new":
        text = f"appeared: {named(change.after)}: {calls}"
    elif change.change == "gone":
        text = f"gone: {named(change.before)}: {calls}"
    else:
        verb = "rose" if change.change == "grew" else "fell"
        text = f"{verb}: {named(change.after)}: {calls}"
    if now > was and any(_is_n_plus_one(families[key], now, requests) for key in change.after):
        text += ", an N+1"
    return text


def _is_n_plus_one(family: FamilyCount, calls: int, requests: int | None) -> bool:
    if not family.point_lookup or family.nested:
        return False
    return is_n_plus_one(shape_of(family.sql).lookup, calls, requests, N_PLUS_ONE)


def _calls(calls: int) -> str:
    return f"{calls} call" if calls == 1 else f"{calls} calls"
