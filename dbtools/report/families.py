"""A query family: the statements one fingerprint (``sqltext.families``) groups, and their
figures in each period of the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dbtools.figures.measures import per_request, ratio
from dbtools.reading.rows import StatementRow
from dbtools.report.statements import Key, heaviest_first
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
