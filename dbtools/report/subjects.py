"""The report's subjects read when the report is made, and their registry.

Each subject declares in its own module, as ``SUBJECT``, everything the report does with it:
its name (``--skip NAME``) and its key in the report (``Report.inspected``, the JSON), its
options (a settings class with defaults), what it reads (``read``, on the report's read-only
session), its model (``build``, pure, from what was read) and its sections (each built from the
model alone, shown in the order of their ``place``). ``REGISTRY`` lists them in the order of
the JSON document's keys: adding a subject is its module and one line here. ``inspection`` reads
and builds every registered subject;
``contents`` lays out their sections; ``cli/report.py`` offers their names to ``--skip``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import psycopg

    from dbtools.figures.windows import Window
    from dbtools.reading.rows import Snapshot, StatementRow
    from dbtools.report.sections import Section
    from dbtools.sqltext.families import Classifier
    from dbtools.store import Store

# name → the module whose SUBJECT it is, in the order of the JSON document's keys.
REGISTRY: dict[str, str] = {
    "activity": "dbtools.report.activity",
    "space": "dbtools.report.space",
    "settings": "dbtools.report.settings",
    "plans": "dbtools.report.plans",
    "advice": "dbtools.report.advice",
    "schema": "dbtools.report.schema_health",
    "timelines": "dbtools.report.timelines",
}
NAMES = tuple(REGISTRY)


@dataclass(frozen=True)
class InspectionOptions:
    """Which subjects are read (their names), each one's settings (by name; a subject not
    named here has its defaults), and the lock timeout of the catalog reads."""

    sections: frozenset[str] = field(default_factory=lambda: frozenset(REGISTRY))  # all
    settings: Mapping[str, Any] = field(default_factory=dict)
    lock_timeout: str = "2s"

    def without(self, skipped: Sequence[str]) -> InspectionOptions:
        """These options with the *skipped* subjects left out."""
        from dataclasses import replace

        return replace(self, sections=self.sections - frozenset(skipped))

    def settings_of(self, name: str) -> Any:
        """Subject *name*'s settings: those given, else its defaults."""
        given = self.settings.get(name)
        return given if given is not None else subject(name).settings()


@dataclass
class Reading:
    """What a subject's ``read`` is given: the session and the statistics the report read;
    *shared* keeps what several subjects read once (the plans, for the plans and the advice)."""

    conn: psycopg.Connection[Any]
    state: Snapshot
    statements: Sequence[StatementRow]  # the rows whose costliest are planned
    options: InspectionOptions
    major: int
    large_table_rows: int
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreReading:
    """What the ``read`` of a subject that reads the store is given: the store, the report's
    windows and the marks ((name, window) pairs), whose samples (``sample_target``'s) it reads,
    how many statements and families it draws, and the classifier of the report's families."""

    store: Store
    windows: Sequence[tuple[str, Window]]
    marks: Sequence[tuple[str, Window]]
    sample_target: str | None
    statements: int
    families: int
    classifier: Classifier | None
    options: InspectionOptions


@dataclass(frozen=True)
class Building:
    """What a subject's ``build`` is given beside its own facts: every subject's facts (by name,
    None when not read) and the statistics."""

    found: Mapping[str, Any]
    options: InspectionOptions
    state: Snapshot
    statements: Sequence[StatementRow]
    major: int
    large_table_rows: int


@dataclass(frozen=True)
class Subject:
    """One subject of the report read from the database (see the module docstring)."""

    name: str  # --skip NAME
    key: str  # its key in Report.inspected and in the JSON document
    settings: Callable[[], Any]  # its options, with their defaults
    read: Callable[[Any], Any]  # what it reads, from a Reading or StoreReading (None: nothing)
    build: Callable[[Any, Building], Any]  # its model, from what it read (pure)
    sections: tuple[Callable[[Any], Section | None], ...]  # each from its model
    place: int  # where its sections go among the subjects' (lower first; < 0: before the costs)
    live_only: bool = False  # read only for the live statistics (--live)
    reads: Literal["database", "store"] = "database"  # the live database, or the samples


@functools.cache
def subject(name: str) -> Subject:
    """The registered subject *name* (its module imported on first use)."""
    declared: Subject = importlib.import_module(REGISTRY[name]).SUBJECT
    assert declared.name == name, f"{REGISTRY[name]} declares {declared.name!r}, not {name!r}"
    return declared


def subjects(reads: str | None = None) -> tuple[Subject, ...]:
    """Every registered subject (those that read *reads* only, when given), in the report's
    order."""
    every = (subject(name) for name in REGISTRY)
    return tuple(s for s in every if reads is None or s.reads == reads)
