"""The report's subjects and their registry.

Each subject declares in its own module, as ``SUBJECT``, everything the report does with it:
its name (``--skip NAME``) and its key in the report (``Report.inspected``, the JSON), its
options (a settings class with defaults), what it reads (``read``: the windows' statistics, the
report's read-only session, or the store's samples), its model (``build``, pure, from what was
read) and its sections (each built from the model alone, or from the report for a subject of
the statistics, shown in the order of their ``place``). ``REGISTRY`` lists them: adding a
subject is its module and one line here (the JSON document's key order is
``jsonformat.KEYS``'s, apart from the registry). ``model.build_report`` builds the subjects of
the windows; ``inspection`` reads and builds the others; ``contents`` lays out their sections;
``cli/report.py`` offers the names of those that may be left out to ``--skip``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import psycopg

    from dbtools.figures.windows import Window
    from dbtools.reading.rows import Snapshot, StatementRow
    from dbtools.report.sections import Section
    from dbtools.sqltext.families import Classifier
    from dbtools.store import Store


class Registered(NamedTuple):
    """A registry line: the module whose ``SUBJECT`` it is, a few words for ``--skip``'s help,
    and whether the report can go without it (the statistics' subjects are the report: the
    summary, the opening and the costs read them, so they are always built)."""

    module: str
    about: str = ""
    skippable: bool = True


REGISTRY: dict[str, Registered] = {
    "statements": Registered("dbtools.report.statements", skippable=False),
    "lookups": Registered("dbtools.report.lookups", skippable=False),
    "families": Registered("dbtools.report.families", skippable=False),
    "health": Registered("dbtools.report.health", skippable=False),
    "activity": Registered("dbtools.report.activity", "--live only"),
    "space": Registered("dbtools.report.space"),
    "settings": Registered("dbtools.report.settings"),
    "plans": Registered("dbtools.report.plans"),
    "advice": Registered("dbtools.report.advice", "index advice"),
    "schema": Registered("dbtools.report.schema_health", "schema health"),
    "timelines": Registered("dbtools.report.timelines", "stored windows"),
}


def skippable() -> tuple[str, ...]:
    """The names ``--skip`` accepts: every subject the report can go without."""
    return tuple(name for name, line in REGISTRY.items() if line.skippable)


def skip_help() -> str:
    """The subjects ``--skip`` accepts, each with its registry line's few words."""
    return ", ".join(
        f"{name} ({line.about})" if line.about else name
        for name, line in REGISTRY.items()
        if line.skippable
    )


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

    def reads(self, name: str) -> bool:
        """Whether subject *name* is read: named in ``sections``, or one the report cannot go
        without."""
        return name in self.sections or not REGISTRY[name].skippable

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


def as_read(found: Any, building: Building) -> Any:
    """The ``build`` of a subject whose ``read`` gives its model already (a subject of the
    windows: its read is pure arithmetic on the statistics read for the report)."""
    return found


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


SectionBuilder = Callable[[Any], "Section | None"]


@dataclass(frozen=True)
class Subject:
    """One subject of the report (see the module docstring)."""

    name: str  # --skip NAME
    key: str  # its key in Report.inspected and in the JSON document
    settings: Callable[[], Any]  # its options, with their defaults
    # what it reads, from a Reading, a StoreReading or (windows) a model.WindowsReading
    read: Callable[[Any], Any]
    build: Callable[[Any, Building], Any]  # its model, from what it read (pure)
    # each from its model (a subject of the windows: from the report, which its module's
    # ``Shown`` protocol describes); a (place, section) pair goes at that place instead
    sections: tuple[SectionBuilder | tuple[int, SectionBuilder], ...]
    place: int  # where its sections go among the subjects' (lower first)
    live_only: bool = False  # read only for the live statistics (--live)
    # the windows' statistics (built for every report), the live database, or the samples
    reads: Literal["windows", "database", "store"] = "database"
    # the Report fields its model (a mapping) fills, for the statistics' subjects (the report's
    # typed spine); none: its model is Report.inspected[key]
    fields: tuple[str, ...] = ()

    def placed(self) -> tuple[tuple[int, SectionBuilder], ...]:
        """Its sections, each with its place."""
        return tuple(s if isinstance(s, tuple) else (self.place, s) for s in self.sections)


@functools.cache
def subject(name: str) -> Subject:
    """The registered subject *name* (its module imported on first use)."""
    module = REGISTRY[name].module
    declared: Subject = importlib.import_module(module).SUBJECT
    assert declared.name == name, f"{module} declares {declared.name!r}, not {name!r}"
    return declared


def subjects(reads: str | None = None) -> tuple[Subject, ...]:
    """Every registered subject (those that read *reads* only, when given), in the report's
    order."""
    every = (subject(name) for name in REGISTRY)
    return tuple(s for s in every if reads is None or s.reads == reads)
