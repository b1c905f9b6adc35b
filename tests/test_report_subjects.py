"""The registry drives the report: each subject read when the report is made (from the database,
or the store's samples) declares itself in its own module (``SUBJECT``), and what
``report.subjects.REGISTRY`` lists is what the report reads, builds, shows and offers to
``--skip``. Pure (no server): the fixed inspection of the fixture, and fixed timelines."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import click
import pytest
from click.testing import CliRunner

from dbtools.cli import cli
from dbtools.cli.report import report_command
from dbtools.report import render
from dbtools.report import subjects as registry
from dbtools.report.contents import sections
from dbtools.report.inspection import Inspection, read_stored
from dbtools.report.jsonformat import KEYS
from dbtools.report.model import ReportOptions, build_report
from dbtools.report.sections import Section
from dbtools.report.subjects import Building, Reading, StoreReading, Subject, subjects
from dbtools.report.timelines import Shade, Step, Timelines
from tests.helpers import GOLDEN
from tests.inspection_fixture import INSPECTION, inspected_report
from tests.report_fixture import GENERATED_AT, report_input

# Timelines as the store's samples would give them: three comparable steps over one window.
T0 = GENERATED_AT - timedelta(minutes=3)
TIMELINES = Timelines(
    T0, GENERATED_AT, 4, (Shade("candidate", T0, GENERATED_AT),),
    tuple(Step(T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1), True, (), 0.5, 0.25)
          for i in range(3)),
    (), (), (), (),
)  # fmt: skip
TIMELINE_SECTIONS = ["timelines", "timeline-lines", "space-growth"]
STATISTICS = {"statements", "lookups", "families", "health"}  # the report's spine: never skipped


def report_with(inspection: Inspection, stored: dict[str, Any] | None = None) -> Any:
    data = dataclasses.replace(
        report_input(),
        inspection=inspection,
        stored={"timelines": TIMELINES} if stored is None else stored,
    )
    return build_report(data, generated_at=GENERATED_AT)  # fmt: skip


def test_each_registered_module_declares_its_subject() -> None:
    for name, line in registry.REGISTRY.items():
        declared = importlib.import_module(line.module).SUBJECT
        assert isinstance(declared, Subject) and declared.name == name
        assert declared.sections, f"{name} shows nothing"


def test_skip_offers_every_subject_in_the_registry_s_order() -> None:
    skip = next(p for p in report_command.params if p.name == "skip")
    offered = tuple(skip.type.choices) if isinstance(skip.type, click.Choice) else ()
    assert offered == registry.skippable() and offered == tuple(
        name for name in registry.REGISTRY if name not in STATISTICS
    )
    shown = CliRunner().invoke(cli, ["report", "--help"]).output
    for name in registry.skippable():
        assert name in shown.partition("--skip")[2], name
    assert "advice (index advice)" in " ".join(shown.partition("--skip")[2].split())


def test_every_registered_subject_is_in_the_report() -> None:
    report = report_with(INSPECTION)
    document = json.loads(render(report, "json"))
    ids = [section.id for section in sections(report)]
    for subject in subjects():
        if subject.fields:  # a subject of the statistics: its sections read the report
            model = report
            assert all(document[key] is not None for key in subject.fields), subject.name
        else:
            model = report.inspected[subject.key]
            assert model is not None and document[subject.key] is not None, subject.name
        own = [build(model) for _, build in subject.placed()]
        assert [s.id for s in own if s is not None] == [
            i for i in ids if i in {s.id for s in own if s}
        ]


# -- a subject added by its module and a registry line ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
    """The probe's options."""

    word: str = "ping"


def probe_section(model: str) -> Section:
    return Section("probe", "Probe", "A subject added by one module and a registry line.",
                   ["said"], [[model]])  # fmt: skip


SUBJECT = Subject(
    name="probe",
    key="probe_model",
    settings=Probe,
    read=lambda reading: reading.options.settings_of("probe").word,
    build=lambda facts, building: f"{facts}, heard",
    sections=(probe_section,),
    place=99,
)


def registry_of(monkeypatch: pytest.MonkeyPatch, lines: Any) -> Iterator[None]:
    """The report's registry is *lines* while the test runs."""
    monkeypatch.setattr(registry, "REGISTRY", lines)
    registry.subject.cache_clear()
    yield
    registry.subject.cache_clear()


@pytest.fixture
def probe_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    changed = {name: module for name, module in registry.REGISTRY.items() if name != "space"}
    yield from registry_of(monkeypatch, {**changed, "probe": registry.Registered(__name__)})


@pytest.mark.usefixtures("probe_registered")
def test_the_registry_decides_what_is_read_built_and_shown() -> None:
    names = [s.name for s in subjects()]
    assert "probe" in names and "space" not in names
    options = registry.InspectionOptions()
    assert "probe" in options.sections
    assert options.settings_of("probe") == Probe()
    reading = Reading(None, None, (), options, 16, 0)  # type: ignore[arg-type]
    assert SUBJECT.read(reading) == "ping"
    found = dataclasses.replace(INSPECTION, found={**INSPECTION.found, "probe": "ping"})
    report = report_with(found, stored={})
    assert report.probe_model == "ping, heard"
    document = json.loads(render(report, "json"))
    assert document["probe_model"] == "ping, heard" and "space" not in document
    ids = [section.id for section in sections(report)]
    assert ids[-1] == "probe"  # its place is the last
    assert not any(i.startswith("space-") for i in ids)
    assert "| ping, heard |" in render(report, "md")


def test_a_subject_not_read_is_none_in_the_report_and_shows_nothing() -> None:
    report = report_with(dataclasses.replace(INSPECTION, found={}), stored={})
    assert all(report.inspected[s.key] is None for s in subjects() if not s.fields)
    building = Building({}, registry.InspectionOptions(), None, (), 16, 0)  # type: ignore[arg-type]
    assert building.found == {}
    ids = {section.id for section in sections(report)}
    assert not ids & {"plans", "index-advice", "settings", "schema-health", "space-tables"}
    assert not ids & set(TIMELINE_SECTIONS)


# -- a subject that reads the store: the timelines ------------------------------------------------


def test_the_timelines_are_a_subject_of_the_store_shown_before_the_statements_costs() -> None:
    timelines = registry.subject("timelines")
    assert timelines.reads == "store" and timelines.place < 0
    assert [s.name for s in subjects("store")] == ["timelines"]
    assert "timelines" not in {s.name for s in subjects("database")}
    report = report_with(INSPECTION)
    assert report.timelines is TIMELINES
    ids = [section.id for section in sections(report)]
    costs = ids.index("statement-costs")
    assert ids[costs - 3 : costs] == TIMELINE_SECTIONS  # right before the costs
    from_database = {s.id for subject in subjects("database")
                     for s in (build(report.inspected[subject.key]) for _, build in subject.placed())
                     if s is not None}  # fmt: skip
    assert from_database and all(ids.index(i) > costs for i in from_database)
    document = json.loads(render(report, "json"))
    assert list(document)[-1] == "timelines" and document["timelines"]["samples"] == 4


@pytest.fixture
def timelines_unregistered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    kept = {name: module for name, module in registry.REGISTRY.items() if name != "timelines"}
    yield from registry_of(monkeypatch, kept)


@pytest.mark.usefixtures("timelines_unregistered")
def test_taking_the_timelines_out_of_the_registry_removes_their_sections_and_key() -> None:
    report = report_with(INSPECTION)  # the samples' timelines given, but no subject reads them
    assert "timelines" not in report.inspected
    ids = [section.id for section in sections(report)]
    assert not set(ids) & set(TIMELINE_SECTIONS) and "statement-costs" in ids
    assert "timelines" not in json.loads(render(report, "json"))
    reading = StoreReading(None, [("w", None)], (), None, 5, 5, None,  # type: ignore[arg-type, list-item]
                           registry.InspectionOptions())  # fmt: skip
    assert read_stored(reading) == {}  # nothing reads the store


def test_the_store_is_read_only_for_the_subjects_chosen_and_never_for_the_live_statistics() -> None:
    every = registry.InspectionOptions()
    live = StoreReading(None, (), (), None, 5, 5, None, every)  # type: ignore[arg-type]
    assert read_stored(live) == {"timelines": None}  # no window, no timelines
    skipped = StoreReading(None, [("w", None)], (), None, 5, 5, None,  # type: ignore[arg-type, list-item]
                           every.without(["timelines"]))  # fmt: skip
    assert read_stored(skipped) == {}


# -- the statistics' subjects: statements, lookups, families, health ------------------------------

TINY = """
from dbtools.report.sections import Section
from dbtools.report.subjects import Subject, as_read


def _read(windows):
    return {period.name: len(period.statements) for period in windows.periods}


def _section(model):
    return Section("tiny", "Tiny: statements per period", "Rows each period holds.",
                   ["period", "statements"], [[name, str(n)] for name, n in model.items()])


SUBJECT = Subject(name="tiny", key="tiny", settings=lambda: None, read=_read, build=as_read,
                  sections=(_section,), place=-25, reads="windows")
"""


@pytest.fixture
def tiny_registered(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """A subject of the windows added as a module of its own and one registry line."""
    (tmp_path / "tiny_subject.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = {**registry.REGISTRY, "tiny": registry.Registered("tiny_subject")}
    yield from registry_of(monkeypatch, lines)


@pytest.mark.usefixtures("tiny_registered")
def test_a_subject_of_the_windows_is_its_module_and_a_registry_line() -> None:
    data = report_input()
    counts = {period.name: len(period.statements) for period in data.periods}
    assert len(set(counts.values())) == 2  # the two windows differ: each count is its own
    report = build_report(data, generated_at=GENERATED_AT)
    assert report.tiny == counts
    document = json.loads(render(report, "json"))
    assert list(document)[-1] == "tiny" and document.pop("tiny") == counts
    assert document == json.loads((GOLDEN / "report.json").read_text())  # nothing else moved
    ids = [section.id for section in sections(report)]
    assert ids[ids.index("tiny") - 1 : ids.index("tiny") + 2] == ["unparsed", "tiny", "hit-ratios"]
    md = render(report, "md")
    assert "## Tiny: statements per period" in md
    assert all(re.search(rf"\| {name} +\| {n} +\|", md) for name, n in counts.items()), md
    skipped = ReportOptions(inspection=registry.InspectionOptions().without(["tiny"]))
    left_out = build_report(data, skipped, generated_at=GENERATED_AT)
    assert left_out.tiny is None and "tiny" not in [s.id for s in sections(left_out)]
    assert render(left_out, "md") == (GOLDEN / "report.md").read_text()


@pytest.fixture
def registry_reversed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from registry_of(monkeypatch, dict(reversed(registry.REGISTRY.items())))


@pytest.mark.usefixtures("registry_reversed")
def test_the_registry_s_order_moves_neither_a_key_nor_a_section() -> None:
    assert next(iter(registry.REGISTRY)) == "timelines"
    report = report_with(INSPECTION, stored={})
    assert next(iter(report.inspected)) == "timelines"  # built in the registry's order...
    document = json.loads(render(report, "json"))
    assert list(document) == ["schema_version", "kind", *KEYS]  # ...written in KEYS' order
    assert render(inspected_report(), "md") == (GOLDEN / "report_inspection.md").read_text()
    assert render(inspected_report(), "json") == (GOLDEN / "report_inspection.json").read_text()


def test_the_statistics_are_built_whatever_is_skipped() -> None:
    core = [name for name, line in registry.REGISTRY.items() if not line.skippable]
    assert set(core) == STATISTICS
    assert all(registry.subject(name).reads == "windows" for name in core)
    nothing = ReportOptions(inspection=registry.InspectionOptions(sections=frozenset()))
    report = build_report(report_input(), nothing, generated_at=GENERATED_AT)
    assert render(report, "md") == (GOLDEN / "report.md").read_text()
    result = CliRunner().invoke(cli, ["report", "--live", "--skip", "statements"])
    assert result.exit_code == 2 and "'statements' is not one of" in result.output
