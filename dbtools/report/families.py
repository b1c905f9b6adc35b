"""A query family: the statements one fingerprint (``sqltext.families``) groups, and their
figures in each period of the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dbtools.figures.measures import per_request, ratio
from dbtools.reading.rows import StatementRow
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
