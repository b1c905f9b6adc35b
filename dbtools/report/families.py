"""The report's query families: the statements one fingerprint (``sqltext.families``) groups,
their figures in each period, and their sections (the heaviest families, and the statements
sqlglot cannot parse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbtools.figures.measures import per_request, ratio
from dbtools.output import NO_VALUE, number, percent
from dbtools.reading.rows import StatementRow
from dbtools.report.sections import CodeBlock, Section, ms, one_line, tables_text
from dbtools.report.statements import Key, heaviest_first
from dbtools.report.subjects import Subject, as_read
from dbtools.sqltext.families import StatementShape


@dataclass(frozen=True, slots=True)
class FamilyFigures:
    statements: int
    calls: int
    total_time_ms: float
    share_of_time: float | None
    calls_per_request: float | None
    calls_per_second: float | None = None
    rows: int = 0


@dataclass(frozen=True, slots=True)
class FamilyLine:
    fingerprint: str
    kind: str
    parsed: bool
    tables: tuple[str, ...]  # every table the family may stand for
    sql: str
    figures: Mapping[str, FamilyFigures | None]
    columns: tuple[str, ...] = ()  # what its conditions compare and it writes
    nested: bool = False  # run inside other statements only (functions, foreign-key checks)
    shared_entry: bool = False  # one entry for several tables (foreign-key checks on 18)


@dataclass(slots=True)
class Family:
    """A query family: its shape, and its statements' rows by period (heaviest first)."""

    shape: StatementShape
    members: list[Mapping[str, StatementRow]] = field(default_factory=list)  # per statement

    def figures(
        self, name: str, total_time: float, requests: int | None, seconds: float | None
    ) -> FamilyFigures | None:
        rows = [member[name] for member in self.members if name in member]
        if not rows:
            return None
        calls = sum(row.calls for row in rows)
        time = sum(row.total_exec_time for row in rows)
        return FamilyFigures(
            statements=len(rows),
            calls=calls,
            total_time_ms=time,
            share_of_time=ratio(time, total_time),
            calls_per_request=per_request(calls, requests),
            calls_per_second=ratio(calls, seconds or 0),
            rows=sum(row.rows for row in rows),
        )

    @property
    def nested(self) -> bool:
        return not any(row.toplevel for member in self.members for row in member.values())


def grouped(
    by_key: Mapping[Key, Mapping[str, StatementRow]], shapes: Mapping[Key, StatementShape]
) -> dict[str, Family]:
    """The statements (their rows by period, by key) grouped by their shapes' fingerprints,
    each family's heaviest statement first, so a family is represented by its costliest."""
    families: dict[str, Family] = {}
    for key, rows in sorted(by_key.items(), key=lambda item: _statement_order(item[1])):
        families.setdefault(shapes[key].fingerprint, Family(shapes[key])).members.append(rows)
    return families


def _statement_order(rows: Mapping[str, StatementRow]) -> tuple[float, int]:
    sample = next(iter(rows.values()))
    return (-max(row.total_exec_time for row in rows.values()), sample.queryid)


def lines_of(
    families: Mapping[str, Family],
    covered: Mapping[str, tuple[tuple[str, ...], bool]],
    total_time: Mapping[str, float],
    requests: Mapping[str, int | None],
    seconds: Mapping[str, float | None],
) -> list[FamilyLine]:
    """Each family's line with its figures in each period (by name), heaviest first; its
    tables are those *covered* says it stands for. Its SQL is left empty: rendered when shown."""
    lines = []
    for fingerprint, family in families.items():
        counted = {
            name: family.figures(name, total_time[name], requests[name], seconds[name])
            for name in total_time
        }
        shape = family.shape
        tables, shared = covered[fingerprint]
        lines.append(FamilyLine(
            fingerprint, shape.kind, shape.parsed, tables, "", counted,
            columns=shape.footprint.columns if shape.footprint else (),
            nested=family.nested, shared_entry=shared,
        ))  # fmt: skip
    lines.sort(key=lambda line: (
        heaviest_first({n: f.total_time_ms for n, f in line.figures.items() if f}),
        line.fingerprint,
    ))  # fmt: skip
    return lines


# -- sections --------------------------------------------------------------------------------------


class Shown(Protocol):
    """What the families' sections read of the report (``model.Report``)."""

    @property
    def period_names(self) -> tuple[str, ...]: ...
    @property
    def families(self) -> tuple[FamilyLine, ...]: ...
    @property
    def unparsed(self) -> tuple[FamilyLine, ...]: ...


def _family_cells(figures: FamilyFigures | None) -> list[str]:
    if figures is None:
        return ["0", NO_VALUE, NO_VALUE, NO_VALUE]
    return [
        f"{figures.calls:,}",
        ms(figures.total_time_ms),
        percent(figures.share_of_time),
        number(figures.calls_per_request),
    ]


def _family_rows(report: Shown, lines: Sequence[FamilyLine]) -> list[list[str]]:
    rows = []
    for line in lines:
        first = [line.fingerprint, line.kind, tables_text(line.tables, line.shared_entry)]
        for i, name in enumerate(report.period_names):
            cells = _family_cells(line.figures[name])
            label = first if i == 0 else ["", "", ""]
            period = [name] if len(report.period_names) > 1 else []
            rows.append([*label, *period, *cells, one_line(line.sql) if i == 0 else ""])
    return rows


def _family_headers(report: Shown) -> list[str]:
    period = ["period"] if len(report.period_names) > 1 else []
    return ["family", "kind", "tables", *period, "calls", "total ms", "share of time",
            "calls/request", "statement"]  # fmt: skip


def families_section(report: Shown) -> Section:
    return Section(
        "families",
        "Query families",
        "Statements grouped by fingerprint (sqlglot: constants and placeholders made equal, "
        "IN lists, arrays and VALUES rows collapsed), heaviest first.",
        _family_headers(report),
        _family_rows(report, report.families),
    )


def unparsed_section(report: Shown) -> Section:
    return Section(
        "unparsed",
        "Statements sqlglot cannot parse",
        "Listed verbatim (literals scrubbed), never dropped.",
        _family_headers(report),
        _family_rows(report, report.unparsed),
        [CodeBlock(f"{line.fingerprint}: {line.kind}", line.sql) for line in report.unparsed],
        empty="Every statement was parsed.",
    )


# -- the subject -----------------------------------------------------------------------------------


class _Options(Protocol):
    @property
    def top_families(self) -> int: ...


class Grouped(Protocol):
    """The windows' statements grouped into families (``model.WindowsReading``'s)."""

    @property
    def families(self) -> Mapping[str, Family]: ...
    @property
    def family_lines(self) -> Sequence[FamilyLine]: ...


class Windows(Grouped, Protocol):
    """What the families read of the windows (``model.WindowsReading``)."""

    @property
    def options(self) -> _Options: ...


def _read(windows: Windows) -> dict[str, Any]:
    def shown(line: FamilyLine) -> FamilyLine:  # sqlglot renders only what the report shows
        return dataclasses.replace(line, sql=windows.families[line.fingerprint].shape.sql)

    lines = windows.family_lines
    return {
        "families": tuple(shown(line) for line in lines[: windows.options.top_families]),
        "unparsed": tuple(shown(line) for line in lines if not line.parsed),
    }


SUBJECT = Subject(
    name="families",
    key="families",
    settings=lambda: None,  # how many: ReportOptions.top_families
    read=_read,
    build=as_read,
    sections=(families_section, unparsed_section),
    place=-30,
    reads="windows",
    fields=("families", "unparsed"),
)
