"""The report's statements: the costliest, each with its figures in each period, its change
between the windows, and where its cost goes. Their model, built from the periods' rows, and
their sections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dbtools.figures.measures import per_request, ratio, statement_hit_ratio
from dbtools.output import NO_VALUE, byte_size, number, percent, signed_percent
from dbtools.reading.rows import StatementRow
from dbtools.report.sections import CodeBlock, Section, ms, tables_text
from dbtools.report.subjects import Subject, as_read
from dbtools.sqltext.families import StatementShape

Key = tuple[int, int, int, bool]  # a statement: queryid, user, database, top level


@dataclass(frozen=True, slots=True)
class StatementFigures:
    calls: int
    total_time_ms: float
    mean_time_ms: float | None
    rows_per_call: float | None
    hit_ratio: float | None  # shared buffers
    share_of_time: float | None
    calls_per_request: float | None
    # Where the cost goes: every counter snapshots store (window deltas, or live totals).
    plans: int = 0
    plan_time_ms: float = 0.0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    shared_blks_dirtied: int = 0
    shared_blks_written: int = 0
    local_blks_hit: int = 0
    local_blks_read: int = 0
    temp_blks_read: int = 0
    temp_blks_written: int = 0
    blk_read_time_ms: float = 0.0
    blk_write_time_ms: float = 0.0
    wal_records: int = 0
    wal_bytes: int = 0


@dataclass(frozen=True)
class Change:
    """Candidate against baseline: ``new``, ``gone``, or relative changes (0.5 = +50%)."""

    status: Literal["new", "gone", "changed"]
    calls: float | None = None
    total_time: float | None = None
    mean_time: float | None = None


@dataclass(frozen=True, slots=True)
class StatementLine:
    queryid: int
    role: str | None
    toplevel: bool
    fingerprint: str
    kind: str
    query: str
    figures: Mapping[str, StatementFigures | None]
    change: Change | None
    # The pg_stat_statements columns snapshots do not store (min/max/stddev times, JIT, WAL
    # full-page images…), read live: totals since the entry started counting.
    other_columns: Mapping[str, Any] | None = None
    tables: tuple[str, ...] = ()  # every table the entry may stand for
    shared_entry: bool = False  # one entry for several tables (foreign-key checks on 18)


# -- building --------------------------------------------------------------------------------------


def heaviest_first(times: Mapping[str, float]) -> float:
    return -max(times.values(), default=0.0)


def statement_figures(
    row: StatementRow, total_time: float, requests: int | None
) -> StatementFigures:
    return StatementFigures(
        calls=row.calls,
        total_time_ms=row.total_exec_time,
        mean_time_ms=ratio(row.total_exec_time, row.calls),
        rows_per_call=ratio(row.rows, row.calls),
        hit_ratio=statement_hit_ratio(row),
        share_of_time=ratio(row.total_exec_time, total_time),
        calls_per_request=per_request(row.calls, requests),
        plans=row.plans,
        plan_time_ms=row.total_plan_time,
        shared_blks_hit=row.shared_blks_hit,
        shared_blks_read=row.shared_blks_read,
        shared_blks_dirtied=row.shared_blks_dirtied,
        shared_blks_written=row.shared_blks_written,
        local_blks_hit=row.local_blks_hit,
        local_blks_read=row.local_blks_read,
        temp_blks_read=row.temp_blks_read,
        temp_blks_written=row.temp_blks_written,
        blk_read_time_ms=row.shared_blk_read_time,
        blk_write_time_ms=row.shared_blk_write_time,
        wal_records=row.wal_records,
        wal_bytes=row.wal_bytes,
    )


def _relative(after: float, before: float) -> float | None:
    return after / before - 1 if before else None


def change_between(
    before: StatementFigures | None, after: StatementFigures | None
) -> Change | None:
    """How a statement changed from the baseline to the candidate."""
    if before is None and after is None:
        return None
    if before is None:
        return Change("new")
    if after is None:
        return Change("gone")
    mean = (
        _relative(after.mean_time_ms, before.mean_time_ms)
        if after.mean_time_ms is not None and before.mean_time_ms is not None
        else None
    )
    return Change(
        "changed",
        calls=_relative(after.calls, before.calls),
        total_time=_relative(after.total_time_ms, before.total_time_ms),
        mean_time=mean,
    )


def statement_lines(
    statements: Mapping[Key, Mapping[str, StatementRow]],
    shapes: Mapping[Key, StatementShape],
    covered: Mapping[str, tuple[tuple[str, ...], bool]],
    top: int,
    total_time: Mapping[str, float],
    requests: Mapping[str, int | None],
    names: Sequence[str],
    unstored: Mapping[Key, Mapping[str, Any]] | None,
) -> list[StatementLine]:
    """The *top* statements, heaviest first, with their figures in each period (only those
    shown: a line's figures are most of a report's memory)."""

    def heaviest(key: Key) -> tuple[float, int, str, bool]:
        rows = statements[key]
        sample = next(iter(rows.values()))
        times = {name: row.total_exec_time for name, row in rows.items()}
        return (heaviest_first(times), sample.queryid, sample.rolname or "", not sample.toplevel)

    lines = []
    for key in sorted(statements, key=heaviest)[:top]:
        rows = statements[key]
        figures = {
            name: statement_figures(rows[name], total_time[name], requests[name])
            if name in rows
            else None
            for name in names
        }
        sample = next(iter(rows.values()))
        tables, shared = covered[shapes[key].fingerprint]
        lines.append(
            StatementLine(
                queryid=sample.queryid,
                role=sample.rolname,
                toplevel=sample.toplevel,
                fingerprint=shapes[key].fingerprint,
                kind=shapes[key].kind,
                query=shapes[key].text,
                figures=figures,
                change=change_between(figures[names[0]], figures[names[-1]])
                if len(names) == 2
                else None,
                other_columns=unstored.get(key) if unstored is not None else None,
                tables=tables,
                shared_entry=shared,
            )
        )
    return lines


# -- sections --------------------------------------------------------------------------------------


class Shown(Protocol):
    """What the statements' sections read of the report (``model.Report``)."""

    @property
    def period_names(self) -> tuple[str, ...]: ...
    @property
    def top_statements(self) -> tuple[StatementLine, ...]: ...


def change_text(change: Change | None) -> str:
    if change is None:
        return NO_VALUE
    if change.status != "changed":
        return change.status
    return f"calls {signed_percent(change.calls)}, time {signed_percent(change.total_time)}"


def _statement_cells(figures: StatementFigures | None) -> list[str]:
    if figures is None:
        return ["0", NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE]
    return [
        f"{figures.calls:,}",
        ms(figures.total_time_ms),
        ms(figures.mean_time_ms),
        number(figures.rows_per_call),
        percent(figures.hit_ratio),
        percent(figures.share_of_time),
        number(figures.calls_per_request),
    ]


def top_statements(report: Shown) -> Section:
    headers = ["#", "calls", "total ms", "mean ms", "rows/call", "hit ratio", "share of time",
               "calls/request"]  # fmt: skip
    compare = len(report.period_names) > 1
    if compare:
        headers[1:1] = ["period"]
        headers.append("change")
    rows, code = [], []
    for rank, line in enumerate(report.top_statements, 1):
        for i, name in enumerate(report.period_names):
            cells = _statement_cells(line.figures[name])
            label = str(rank) if i == 0 else ""
            if compare:
                change = change_text(line.change) if i == len(report.period_names) - 1 else ""
                rows.append([label, name, *cells, change])
            else:
                rows.append([label, *cells])
        role = f", role {line.role}" if line.role else ""
        nested = "" if line.toplevel else ", nested"
        shared = f", {tables_text(line.tables, True)}" if line.shared_entry else ""
        code.append(CodeBlock(
            f"#{rank}: {line.kind}{shared}, family {line.fingerprint}{role}{nested}", line.query
        ))  # fmt: skip
    return Section(
        "statements",
        "Statements that cost most",
        "Ranked by execution time; hit ratio is the shared-buffer hit ratio of the statement, "
        "share of time its part of all statements' execution time.",
        headers,
        rows,
        code,
    )


def statement_costs(report: Shown) -> Section:
    """Where each top statement's cost goes: planning, I/O, temporary files, WAL."""
    compare = len(report.period_names) > 1
    rows = []
    for rank, line in enumerate(report.top_statements, 1):
        for i, name in enumerate(report.period_names):
            f = line.figures[name]
            period = [name] if compare else []
            label = str(rank) if i == 0 else ""
            if f is None:
                rows.append([label, *period, *([NO_VALUE] * 10)])
                continue
            rows.append([
                label, *period, f"{f.plans:,}", ms(f.plan_time_ms), ms(f.total_time_ms),
                ms(f.blk_read_time_ms), ms(f.blk_write_time_ms), f"{f.shared_blks_read:,}",
                f"{f.temp_blks_read:,}", f"{f.temp_blks_written:,}", f"{f.wal_records:,}",
                byte_size(f.wal_bytes),
            ])  # fmt: skip
    return Section(
        "statement-costs",
        "Where the statements' time goes",
        "The statements ranked above (same numbers): planning (counted with "
        "pg_stat_statements.track_planning), time reading and writing blocks (with "
        "track_io_timing), blocks read from outside shared buffers, temporary blocks (sorts and "
        "hashes larger than work_mem), and the WAL they wrote. Every other column the server "
        "records is in the JSON.",
        ["#", *(["period"] if compare else []), "plans", "plan ms", "exec ms", "read ms",
         "write ms", "blocks read", "temp read", "temp written", "WAL records", "WAL"],
        rows,
    )  # fmt: skip


# -- the subject -----------------------------------------------------------------------------------


class _Options(Protocol):
    @property
    def top_statements(self) -> int: ...


class Windows(Protocol):
    """What the statements read of the windows (``model.WindowsReading``)."""

    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def by_key(self) -> Mapping[Key, Mapping[str, StatementRow]]: ...
    @property
    def shapes(self) -> Mapping[Key, StatementShape]: ...
    @property
    def covered(self) -> Mapping[str, tuple[tuple[str, ...], bool]]: ...
    @property
    def total_time(self) -> Mapping[str, float]: ...
    @property
    def requests(self) -> Mapping[str, int | None]: ...
    @property
    def unstored(self) -> Mapping[Key, Mapping[str, Any]] | None: ...
    @property
    def options(self) -> _Options: ...


def _read(windows: Windows) -> dict[str, Any]:
    lines = statement_lines(
        windows.by_key, windows.shapes, windows.covered, windows.options.top_statements,
        windows.total_time, windows.requests, windows.names, windows.unstored,
    )  # fmt: skip
    return {"top_statements": tuple(lines)}


COSTS_PLACE = 0  # the statements' costs: after the timelines, before the database's subjects
SUBJECT = Subject(
    name="statements",
    key="statements",
    settings=lambda: None,  # how many: ReportOptions.top_statements (--top)
    read=_read,
    build=as_read,
    sections=(top_statements, (COSTS_PLACE, statement_costs)),
    place=-50,
    reads="windows",
    fields=("top_statements",),
)
