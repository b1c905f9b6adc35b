"""The report's one call and its parts: read (``load_input``), build (``build_report``), render
(``render``), write (``write_report``); ``generate_report`` and ``make_report`` chain them.

Every query text is scrubbed of literals before it reaches a report; DSN passwords never do.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from dbtools.db.connection import describe, session
from dbtools.db.errors import translated_errors
from dbtools.errors import UsageError
from dbtools.figures.windows import WindowRef, parse_window
from dbtools.output import DEFAULT_DIRECTORY, Destination, write_output
from dbtools.reading.live import read_live
from dbtools.report import health
from dbtools.report.html import render_html
from dbtools.report.inspection import inspect, read_stored
from dbtools.report.jsonformat import render_json
from dbtools.report.markdown import render_markdown
from dbtools.report.model import (
    Period,
    Report,
    ReportInput,
    ReportOptions,
    Source,
    build_report,
    period_from_snapshot,
    period_from_window,
)
from dbtools.report.subjects import InspectionOptions, StoreReading
from dbtools.report.timelines import DEFAULT_FAMILIES as DEFAULT_TIMELINE_FAMILIES
from dbtools.report.timelines import DEFAULT_STATEMENTS as DEFAULT_TIMELINE_STATEMENTS
from dbtools.report.timelines import parse_marks
from dbtools.schema.manifest import manifest_at
from dbtools.sqltext.families import Classifier, cache_namespace
from dbtools.sqltext.parse_cache import ParseCache
from dbtools.store import Store, open_store
from dbtools.verify import evaluate, measure_options
from dbtools.verify.live import LiveState, read_live_state
from dbtools.verify.thresholds import Thresholds

RENDERERS: dict[str, Callable[[Report], str]] = {
    "md": render_markdown,
    "html": render_html,
    "json": render_json,
}
FORMATS = tuple(RENDERERS)
_WHOLE_WINDOW = re.compile(r"^(.*):start\.\.\1:end$")  # what capture writes: W
_UNSAFE_IN_NAMES = re.compile(r"[^\w.:+-]")  # a label may hold "/" or spaces


def renderer(fmt: str) -> Callable[[Report], str]:
    """The renderer of *fmt* (``md``, ``html``, ``json``); raises ``UsageError`` for others."""
    try:
        return RENDERERS[fmt]
    except KeyError:
        raise UsageError(
            f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None


def render(report: Report, fmt: str) -> str:
    """*report* as ``md``, ``html`` or ``json`` text."""
    return renderer(fmt)(report)


def _windows(
    window: str | None, baseline: str | None, candidate: str | None, live: bool
) -> list[tuple[str | None, str]]:
    """(period name, window reference) pairs; validates that exactly one source was given."""
    given = [window is not None, baseline is not None or candidate is not None, live]
    if sum(given) != 1:
        raise UsageError("give exactly one of --window W, --baseline W1 --candidate W2, --live")
    if baseline is not None or candidate is not None:
        if baseline is None or candidate is None:
            raise UsageError("--baseline and --candidate go together")
        return [("baseline", baseline), ("candidate", candidate)]
    return [] if live else [(None, str(window))]


def load_input(
    conn: psycopg.Connection[Any] | None,
    windows: Sequence[tuple[str | None, str]] = (),
    *,
    target: str = "",
    inspection: InspectionOptions | None = None,
    large_table_rows: int = health.HealthSettings().large_table_rows,
    thresholds: Thresholds | None = None,
    store: Store | None = None,
    sample_target: str | None = None,
    timeline_statements: int = DEFAULT_TIMELINE_STATEMENTS,
    timeline_families: int = DEFAULT_TIMELINE_FAMILIES,
    marks: Sequence[tuple[str, WindowRef]] = (),
    classifier: Classifier | None = None,
) -> ReportInput:
    """Read a report's input on *conn*: the stored *windows* ((name, ``W`` or ``A..B``) pairs;
    none: the live statistics), the catalog facts health needs, and the manifest of the revision
    the latest snapshot was taken at (what its tables' settings are judged against). With
    *inspection*, also what ``inspection.inspect`` reads (activity only for the live statistics).
    Each window's figures are verify's (``Store.measures`` with *thresholds*' tolerances); for
    two windows, also verify's answer on them (``verify.evaluate``, on the live state of the
    migrations' objects, as ``dbtools verify`` reads it).

    Raises ``UsageError`` for malformed or unknown labels, ``PrerequisiteMissing`` without
    pg_stat_statements (live) or the monitoring tables (windows), ``ConfigError`` for a revision
    the migrations do not know. The windows are *sample_target*'s, read from *store* (a
    central repository's) when given, else from *conn*'s database. The timelines' span covers
    the windows and the *marks* ((name, window) pairs: ``timelines.parse_marks``; with windows
    only), all shaded; their families are *classifier*'s. Without *conn* (a *store* read alone:
    no session to the target) the windows are read from the store and what the target's
    catalog would add (foreign keys, autovacuum defaults, the live objects verify checks, the
    inspection) is not read (``LiveState.unread``).
    """
    refs = [parse_window(reference) for _, reference in windows]
    if conn is None and (not refs or store is None):
        raise UsageError("the live statistics need a session to the target: give --dsn")
    verification = None
    from_store: dict[str, Any] = {}
    t = thresholds or Thresholds()
    with translated_errors("reading statistics"):
        if refs:
            if store is None:
                assert conn is not None  # checked above
                store = Store.of(conn)
            stored = store
            every = stored.windows([*refs, *(ref for _, ref in marks)], target=sample_target,
                                   min_coverage=t.min_window_coverage)  # fmt: skip
            chosen = every[: len(refs)]
            live = None
            if len(chosen) == 2:
                live = read_live_state(conn) if conn is not None else LiveState.unread(UNREAD)
            batch = [f"{i.schema}.{i.name}" for i in live.manifest.batch_indexes] if live else []
            measured = stored.measures(chosen, indexes=batch, **measure_options(t))
            loaded = stored.load(chosen)
            periods: tuple[Period, ...] = tuple(
                period_from_window(w, m, name)
                for w, m, (name, _) in zip(loaded, measured, windows, strict=True)
            )
            state = loaded[-1].end_state
            from_store = read_stored(
                StoreReading(
                    stored,
                    [(p.name, w) for p, w in zip(periods, chosen, strict=True)],
                    [(name, w) for (name, _), w in zip(marks, every[len(refs) :], strict=True)],
                    sample_target,
                    timeline_statements,
                    timeline_families,
                    classifier,
                    inspection or InspectionOptions(),
                )
            )
            if live is not None:
                verification = evaluate(measured[0], measured[1], live, thresholds=t)
        else:
            assert conn is not None
            state = read_live(conn)
            periods = (period_from_snapshot(state),)
        catalog = health.read_catalog(conn) if conn is not None else health.Catalog()
        found = (
            inspect(
                conn,
                state,
                periods[-1].statements,
                inspection,
                live=not refs,
                large_table_rows=large_table_rows,
            )
            if inspection is not None and conn is not None
            else None
        )
    source: Source = "live" if not refs else "comparison" if len(refs) == 2 else "window"
    manifest = manifest_at(state.header.alembic_revision)
    return ReportInput(
        source,
        periods,
        state,
        catalog,
        target,
        manifest,
        found,
        verification=verification,
        stored=from_store,
    )


# Why a report on a store alone reads nothing of the target (its note, the live checks' reason).
UNREAD = (
    "the target's DSN is not known (give --dsn, or --targets naming it): read from the store alone"
)


def make_report(
    dsn: str | None,
    *,
    window: str | None = None,
    baseline: str | None = None,
    candidate: str | None = None,
    live: bool = False,
    options: ReportOptions | None = None,
    generated_at: datetime | None = None,
    sample_target: str | None = None,
    store: str | None = None,
    marks: Sequence[str] = (),
) -> Report:
    """Connect to *dsn* (read-only) and build the report of one window, two, or live statistics.

    Exactly one of *window*, *baseline* + *candidate*, *live*; windows of *sample_target*, read
    from the central repository *store* when given; *marks* (``NAME=WINDOW``) shade the
    deploy's other windows on the timelines. Raises ``UsageError`` (bad arguments, unknown
    labels), ``ConnectionFailed``, ``PrerequisiteMissing``: all exit code 2.
    """
    windows = _windows(window, baseline, candidate, live)
    taken = [name or str(parse_window(reference).name) for name, reference in windows]
    marked = parse_marks(marks, taken)
    if marked and live:
        raise UsageError("--mark shades the timelines of stored windows: not with --live")
    options = options or ReportOptions()
    # Parses kept across runs: a report over the statements of the previous one parses nothing.
    parses = ParseCache(namespace=cache_namespace())
    try:
        classifier = Classifier(store=parses)
        with ExitStack() as stack:
            conn = stack.enter_context(session(dsn, autocommit=True)) if dsn is not None else None
            stored = stack.enter_context(open_store(conn, store))
            data = load_input(
                conn,
                windows,
                target=str(describe(dsn)) if dsn is not None else stored.where,
                inspection=options.inspection,
                large_table_rows=options.health.large_table_rows,
                thresholds=options.thresholds,
                store=stored,
                sample_target=sample_target,
                timeline_statements=options.timeline_statements,
                timeline_families=options.timeline_families,
                marks=marked,
                classifier=classifier,
            )
        report = build_report(
            data,
            options,
            generated_at=generated_at or datetime.now(timezone.utc),
            classifier=classifier,
        )
        if dsn is None:
            note = (
                f"Not read from the target: {UNREAD}; its catalog and live objects are not judged."
            )
            report = dataclasses.replace(report, notes=(*report.notes, note))
        return report
    finally:
        parses.close()


def report_stem(report: Report) -> str:
    """``report-live``, ``report-<window>``, ``report-<baseline>-vs-<candidate>``."""
    if report.source == "live":
        return "report-live"
    names = (_WHOLE_WINDOW.sub(r"\1", p.label) for p in report.periods)
    return "report-" + "-vs-".join(_UNSAFE_IN_NAMES.sub("-", name) for name in names)


def with_rollout_records(report: Report, directory: Path) -> Report:
    """*report* with a note naming each rollout record in *directory* (``rollout-*.json``, kind
    ``rollout``, written by ``dbtools rollout``) whose monitoring window the report reads."""
    if report.source == "live":
        return report
    windows = {str(parse_window(period.label)) for period in report.periods}
    notes = []
    for path in sorted(directory.glob("rollout-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a record dbtools can read: no link
        window = record.get("window") if isinstance(record, dict) else None
        if record.get("kind") == "rollout" and window and str(parse_window(window)) in windows:
            notes.append(f"Rollout record of the window {window}: {path.with_suffix('.md')} "
                         f"({record.get('outcome')}, exit code {record.get('exit_code')})")  # fmt: skip
    return dataclasses.replace(report, notes=(*report.notes, *notes)) if notes else report


def write_report(report: Report, fmt: str = "md", output_dir: Path = DEFAULT_DIRECTORY) -> Path:
    """Render *report* and write it atomically to *output_dir* with a timestamped name."""
    destination = Destination(directory=output_dir)
    return write_output(
        render(report, fmt), destination, report_stem(report), fmt, report.generated_at
    )


def generate_report(
    dsn: str,
    *,
    window: str | None = None,
    baseline: str | None = None,
    candidate: str | None = None,
    live: bool = False,
    fmt: str = "md",
    output_dir: Path = DEFAULT_DIRECTORY,
    options: ReportOptions | None = None,
) -> Path:
    """Build the report (see ``make_report``) and write it (see ``write_report``); its path."""
    renderer(fmt)  # a bad format is a usage error before anything is read
    report = make_report(
        dsn, window=window, baseline=baseline, candidate=candidate, live=live, options=options
    )
    return write_report(report, fmt, output_dir)
