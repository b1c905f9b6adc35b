"""The report's lookups: N+1 suspects (point lookups each request sends) and batchable lookups
(point or small-set lookups at a high rate across requests), what one ``= ANY($n)`` statement
could serve. Their model, built from the query families' figures, and their sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dbtools.output import NO_VALUE, number, percent
from dbtools.reading.rows import IndexRow
from dbtools.report.families import Grouped
from dbtools.report.sections import CodeBlock, Section
from dbtools.report.subjects import Subject, as_read
from dbtools.sqltext.families import (
    Batchable,
    NPlusOne,
    PointLookup,
    StatementShape,
    batching_reduction,
    concurrency_for,
    is_batchable,
    is_key_like,
    is_n_plus_one,
)
from dbtools.sqltext.parse import TableRef

if TYPE_CHECKING:
    from dbtools.report.families import Family, FamilyFigures, FamilyLine
    from dbtools.report.story import FamilyChange


@dataclass(frozen=True)
class Suspect:
    """A point lookup sent per request that one batched ``= ANY($n)`` statement could serve."""

    fingerprint: str
    sql: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    batched_sql: str
    batched_family: str | None  # the batched form's family, when it runs too
    figures: Mapping[str, FamilyFigures | None]


@dataclass(frozen=True)
class Saving:
    """What one batch per *concurrency* concurrent requests would save of a lookup's calls."""

    concurrency: int
    fewer: float


@dataclass(frozen=True)
class LookupFigures:
    """A lookup in one period, and what batching it across requests would save."""

    calls: int
    calls_per_second: float | None
    calls_per_request: float | None
    total_time_ms: float
    batchable: bool  # at the batchable rate in this period
    fewer_calls: tuple[Saving, ...]  # at the guide's concurrency; empty without requests
    concurrency_for_target: int | None  # the fewest requests a batch needs for the target


@dataclass(frozen=True)
class BatchableLookup:
    """A point or small-set lookup on a key or indexed column called at a high rate, whatever
    its calls per request: one ``= ANY($n)`` per batch of concurrent requests could serve it."""

    fingerprint: str
    sql: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    small_set: bool  # ``IN (…)`` rather than ``= $n``
    batched_sql: str
    batched_family: str | None  # the batched form's family, when it runs too
    target: float  # the reduction ``concurrency_for_target`` aims at (verify's)
    figures: Mapping[str, LookupFigures | None]
    replaced_by: tuple[str, ...] = ()  # the families that replaced it (``Report.changes``)


# -- building --------------------------------------------------------------------------------------


def found_in(
    lines: Sequence[FamilyLine],
    families: Mapping[str, Family],
    indexes: Iterable[IndexRow],
    n_plus_one: NPlusOne,
    batchable: Batchable,
    target: float,
    requests: Mapping[str, int | None],
    seconds: Mapping[str, float | None],
) -> tuple[tuple[Suspect, ...], tuple[BatchableLookup, ...]]:
    """The N+1 suspects and the batchable lookups among the families' *lines*, in their order:
    lookups a request sends *n_plus_one*'s times or more, and those on a key or an indexed
    column called at *batchable*'s rate, with the batches *target* (a query reduction) needs."""
    indexed = indexed_columns(indexes)
    suspects, found = [], []
    for line in lines:
        shape = families[line.fingerprint].shape
        lookup = batchable_lookup(line, shape, indexed, batchable, target, families, seconds)
        if lookup is not None:
            found.append(lookup)
        sent = suspect(line, shape, families, requests, n_plus_one)
        if sent is not None:
            suspects.append(sent)
    return tuple(suspects), tuple(found)


def indexed_columns(indexes: Iterable[IndexRow]) -> frozenset[tuple[TableRef, str]]:
    """(table, column) for each index's leading column."""
    return frozenset(
        (TableRef(row.schemaname, row.relname), row.key_columns[0].strip('"').lower())
        for row in indexes
        if row.key_columns
    )


def _on_key_or_index(lookup: PointLookup, indexed: frozenset[tuple[TableRef, str]]) -> bool:
    """Whether every lookup column is named as a key or leads an index of its table."""

    def served(table: str | None, column: str) -> bool:
        if is_key_like(column):
            return True
        if table is None:
            return False
        ref = TableRef.parse(table)
        return any(ref.matches(found) and column == name for found, name in indexed)

    return bool(lookup.keys) and all(served(key.table, key.column) for key in lookup.keys)


def batchable_lookup(
    line: FamilyLine,
    shape: StatementShape,
    indexed: frozenset[tuple[TableRef, str]],
    limits: Batchable,
    target: float,
    families: Mapping[str, Family],
    seconds: Mapping[str, float | None],
) -> BatchableLookup | None:
    """*line* as a batchable lookup, when it is one in any period."""
    lookup = shape.lookup
    if lookup is None or line.nested or not _on_key_or_index(lookup, indexed):
        return None
    figures: dict[str, LookupFigures | None] = {}
    for name, found in line.figures.items():
        if found is None:
            figures[name] = None
            continue
        per = found.calls_per_request
        figures[name] = LookupFigures(
            calls=found.calls,
            calls_per_second=found.calls_per_second,
            calls_per_request=per,
            total_time_ms=found.total_time_ms,
            batchable=is_batchable(lookup, found.calls, seconds[name], limits),
            fewer_calls=tuple(Saving(c, batching_reduction(c, per)) for c in limits.concurrency)
            if per is not None
            else (),
            concurrency_for_target=concurrency_for(target, per) if per is not None else None,
        )
    if not any(f is not None and f.batchable for f in figures.values()):
        return None
    batched = lookup.batched_fingerprint
    return BatchableLookup(
        fingerprint=line.fingerprint,
        sql=shape.sql,
        tables=line.tables,
        columns=lookup.columns,
        small_set=lookup.small_set,
        batched_sql=shape.batched_sql or "",
        batched_family=batched if batched in families else None,
        target=target,
        figures=figures,
    )


def suspect(
    line: FamilyLine,
    shape: StatementShape,
    families: Mapping[str, Family],
    requests: Mapping[str, int | None],
    limits: NPlusOne,
) -> Suspect | None:
    """*line* as an N+1 suspect, when its lookups are sent per request in any period."""
    lookup = shape.lookup
    if lookup is None or not any(
        is_n_plus_one(lookup, found.calls, requests[name], limits)
        for name, found in line.figures.items()
        if found is not None
    ):
        return None
    batched = lookup.batched_fingerprint
    return Suspect(
        fingerprint=line.fingerprint,
        sql=shape.sql,
        tables=shape.tables,
        columns=lookup.columns,
        batched_sql=shape.batched_sql or "",
        batched_family=batched if batched in families else None,
        figures=line.figures,
    )


def with_replacements(lookup: BatchableLookup, changes: Sequence[FamilyChange]) -> BatchableLookup:
    """*lookup* with the families that replaced it between the windows, if any."""
    after = tuple(
        fingerprint
        for change in changes
        if change.change == "replaced" and lookup.fingerprint in change.before
        for fingerprint in change.after
    )
    return dataclasses.replace(lookup, replaced_by=after) if after else lookup


class _Rules(Protocol):
    @property
    def n_plus_one(self) -> NPlusOne: ...
    @property
    def batchable(self) -> Batchable: ...
    @property
    def target(self) -> float: ...


class Shown(Protocol):
    """What the lookups' sections read of the report (``model.Report``)."""

    @property
    def period_names(self) -> tuple[str, ...]: ...
    @property
    def n_plus_one(self) -> tuple[Suspect, ...]: ...
    @property
    def batchable(self) -> tuple[BatchableLookup, ...]: ...
    @property
    def rules(self) -> _Rules: ...


# -- sections --------------------------------------------------------------------------------------


def n_plus_one(report: Shown) -> Section:
    rows = []
    code = []
    for suspect in report.n_plus_one:
        first = [suspect.fingerprint, ", ".join(suspect.columns), ", ".join(suspect.tables)]
        for i, name in enumerate(report.period_names):
            figures = suspect.figures[name]
            label = first if i == 0 else ["", "", ""]
            period = [name] if len(report.period_names) > 1 else []
            calls = f"{figures.calls:,}" if figures else "0"
            per_request = number(figures.calls_per_request) if figures else NO_VALUE
            seen = (suspect.batched_family or "not seen") if i == 0 else ""
            rows.append([*label, *period, calls, per_request, seen])
        code.append(CodeBlock(f"{suspect.fingerprint}: point lookup", suspect.sql))
        code.append(CodeBlock(f"{suspect.fingerprint}: batched form", suspect.batched_sql))
    period = ["period"] if len(report.period_names) > 1 else []
    limit = report.rules.n_plus_one.calls_per_request
    times = "once" if limit == 1 else f"{limit:g} times"
    return Section(
        "n-plus-one",
        "N+1 suspects: lookups each request sends",
        f"Point lookups (column = $n) sent {times} or more per request (without a "
        "request count: called often): the N+1 within a request; one statement with "
        "column = ANY($n) could serve the request's, or a batch's, lookups. 'batched form' "
        "names its family when it runs too. Lookups that requests send less often but at a "
        "high rate are under 'Batchable lookups'.",
        ["family", "lookup", "tables", *period, "calls", "calls/request", "batched form"],
        rows,
        code,
        empty=f"No point lookup is sent {times} or more per request.",
    )


def _saving_text(figures: LookupFigures) -> str:
    if not figures.fewer_calls:
        return NO_VALUE
    return " / ".join(f"{saving.fewer * 100:.0f}%" for saving in figures.fewer_calls)


def _batched_form(family: str | None, replaced_by: tuple[str, ...]) -> str:
    if family:
        return family
    if replaced_by:
        return f"{', '.join(replaced_by)} (replaced it)"
    return "not seen"


def batchable(report: Shown) -> Section:
    rules = report.rules.batchable
    levels = " / ".join(str(c) for c in rules.concurrency)
    target = report.batchable[0].target if report.batchable else report.rules.target
    rows, code = [], []
    for lookup in report.batchable:
        first = [lookup.fingerprint, ", ".join(lookup.columns) + (" (IN list)" if lookup.small_set
                 else ""), ", ".join(lookup.tables)]  # fmt: skip
        for i, name in enumerate(report.period_names):
            figures = lookup.figures[name]
            label = first if i == 0 else ["", "", ""]
            period = [name] if len(report.period_names) > 1 else []
            seen = _batched_form(lookup.batched_family, lookup.replaced_by) if i == 0 else ""
            if figures is None:
                rows.append([*label, *period, "0", NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, seen])
                continue
            calls = f"{figures.calls:,}" + ("" if figures.batchable else " (below the rate)")
            rows.append([*label, *period, calls, number(figures.calls_per_second, 1, unit="/s"),
                         number(figures.calls_per_request), _saving_text(figures),
                         number(figures.concurrency_for_target), seen])  # fmt: skip
        code.append(CodeBlock(f"{lookup.fingerprint}: lookup", lookup.sql))
        code.append(CodeBlock(f"{lookup.fingerprint}: batched form", lookup.batched_sql))
    period = ["period"] if len(report.period_names) > 1 else []
    return Section(
        "batchable",
        "Batchable lookups: high-rate lookups across requests",
        f"Point lookups (column = $n) and small-set lookups (column IN (…)) on a key or indexed "
        f"column, called at least {rules.calls_per_second:g} times a second (and "
        f"{rules.min_calls:,} times) in a period, whatever their calls per request: concurrent "
        "requests each send them, and one statement with column = ANY($n) per batch of requests "
        "could serve them all. Fewer calls with one batch per c concurrent requests, as the "
        "rollout guide counts: they send c × (calls per request) lookups, a batch sends one (at "
        "one call per request: 80%, 90%, 98% at 5, 10, 50). 'requests for "
        f"{percent(target, 0)} fewer': the fewest concurrent requests one batch needs for "
        "verify's query reduction. 'batched form': the family of its = ANY form when that "
        "runs, or the family that replaced it between the windows.",
        ["family", "lookup", "tables", *period, "calls", "calls/s", "calls/request",
         f"fewer calls at {levels} concurrent requests",
         f"requests for {percent(target, 0)} fewer", "batched form"],
        rows,
        code,
        empty="No lookup on a key or indexed column runs at the batchable rate.",
    )  # fmt: skip


# -- the subject -----------------------------------------------------------------------------------


class _Snapshot(Protocol):
    @property
    def indexes(self) -> Sequence[IndexRow]: ...


class Windows(Grouped, Protocol):
    """What the lookups read of the windows (``model.WindowsReading``): the families, and
    where the lookups' lines are drawn."""

    @property
    def state(self) -> _Snapshot: ...
    @property
    def options(self) -> _Rules: ...
    @property
    def target(self) -> float: ...
    @property
    def requests(self) -> Mapping[str, int | None]: ...
    @property
    def seconds(self) -> Mapping[str, float | None]: ...
    @property
    def changes(self) -> Sequence[FamilyChange]: ...


def _read(windows: Windows) -> dict[str, Any]:
    options = windows.options
    suspects, found = found_in(
        windows.family_lines, windows.families, windows.state.indexes, options.n_plus_one,
        options.batchable, windows.target, windows.requests, windows.seconds,
    )  # fmt: skip
    return {
        "n_plus_one": suspects,
        "batchable": tuple(with_replacements(lookup, windows.changes) for lookup in found),
    }


SUBJECT = Subject(
    name="lookups",
    key="lookups",
    settings=lambda: None,  # where their lines are drawn: ReportOptions.n_plus_one, .batchable
    read=_read,
    build=as_read,
    sections=(batchable, n_plus_one),
    place=-40,
    reads="windows",
    fields=("n_plus_one", "batchable"),
)
