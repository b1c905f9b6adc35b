"""Timelines: what happened between each pair of consecutive samples of a report's span.

The span runs from the report's first window start to its last window end, on the target the
windows were read from. Each *step* (two consecutive samples) gives, from the samples' states
(exact per-statement values at every sample), the calls, total and mean time of the span's top
statements (by total time over the span), and the buffer cache and index hit ratios as
``figures.measures`` counts them for a window. A step across a restart, a reset or an eviction
(``measures.problems_of``) is kept with its problems and no figures: its counters are not
comparable, so nothing of it is drawn. The application's p95 and error rate come per
``request_metrics`` bucket (``Store.request_buckets``: the dashboard's expressions); the
tables' and indexes' sizes at the first and last sample give their growth. The windows themselves are carried for shading, with
the deploy's other windows given as marks (``--mark canary=W``: ``parse_marks``).

The top *families* (``sqltext.families``: statements that differ only in constants, list
lengths or placeholders) are drawn the same way, each step's figures the sums of its
statements'. A step's figures come from what its samples stored, replayed onto the span's first
state (``Store.replay``: a sample stores a row only for an entry that moved): a span of hundreds
of samples reads each entry once plus what moved, never every sample whole. Each step's deltas
are needed per statement, so its sums are the reference's (``sums.sum_deltas``), from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbtools.errors import UsageError
from dbtools.figures.deltas import statement_key
from dbtools.figures.measures import buffer_cache_hit_ratio, hit_ratio, problems_of, ratio
from dbtools.figures.requests import MetricsBucket
from dbtools.figures.sums import application_rows, sum_deltas
from dbtools.figures.windows import Window, WindowRef, parse_window
from dbtools.output import NO_VALUE, byte_size, percent
from dbtools.reading.rows import Snapshot, StatementRow
from dbtools.report.sections import CodeBlock, Section, moment, ms
from dbtools.report.subjects import StoreReading, Subject
from dbtools.sqltext.families import Classifier
from dbtools.sqltext.scrub import scrub_query
from dbtools.store import Store

DEFAULT_STATEMENTS = 5
MIN_INTERVALS = 3  # intervals inside a window before its line on a chart shows a trend
DEFAULT_FAMILIES = 5
MARK_NAME = re.compile(r"^[A-Za-z0-9_][\w.:+-]{0,99}$")
STEP = WindowRef("step", "", "")


@dataclass(frozen=True)
class Shade:
    """A window shaded on the charts: one of the report's, or a mark (``--mark``)."""

    name: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class Step:
    """Two consecutive samples; figures only when their counters are comparable."""

    started_at: datetime
    ended_at: datetime
    comparable: bool
    problems: tuple[str, ...]
    buffer_cache_hit_ratio: float | None
    index_hit_ratio: float | None


@dataclass(frozen=True)
class StatementPoint:
    calls: int
    total_time_ms: float
    mean_time_ms: float | None


@dataclass(frozen=True)
class StatementTimeline:
    """One top statement: a point per step (None where the step is not comparable)."""

    queryid: int
    query: str  # scrubbed
    total_time_ms: float  # over the span's comparable steps
    points: tuple[StatementPoint | None, ...]


@dataclass(frozen=True)
class FamilyTimeline:
    """One top family: a point per step, the sums of its statements' (None: not comparable)."""

    fingerprint: str
    kind: str
    query: str  # the family's SQL as sqlglot writes it (scrubbed, lists collapsed)
    statements: int  # its statement entries that ran in the span
    total_time_ms: float  # over the span's comparable steps
    points: tuple[StatementPoint | None, ...]


@dataclass(frozen=True)
class Growth:
    """A table's or index's size at the span's first and last sample (None: not known)."""

    kind: str  # "table" or "index"
    name: str
    first_bytes: int | None
    last_bytes: int | None
    growth_bytes: int | None


@dataclass(frozen=True)
class Timelines:
    started_at: datetime
    ended_at: datetime
    samples: int
    windows: tuple[Shade, ...]
    steps: tuple[Step, ...]
    statements: tuple[StatementTimeline, ...]
    families: tuple[FamilyTimeline, ...]
    buckets: tuple[MetricsBucket, ...]
    growth: tuple[Growth, ...]

    def intervals_in(self, shade: Shade) -> int:
        """The comparable intervals ending inside *shade*: its points on a chart."""
        return sum(
            1
            for step in self.steps
            if step.comparable and shade.started_at < step.ended_at <= shade.ended_at
        )

    @property
    def sparse_windows(self) -> tuple[tuple[str, int], ...]:
        """Each window with fewer than ``MIN_INTERVALS`` intervals inside (a window captured
        with two snapshots has one), and how many: on a chart a point or two, never a trend."""
        counted = ((shade.name, self.intervals_in(shade)) for shade in self.windows)
        return tuple((name, count) for name, count in counted if count < MIN_INTERVALS)


# -- steps ---------------------------------------------------------------------------------------


def step_between(start: Snapshot, end: Snapshot) -> tuple[Step, Window]:
    """The step from *start* to *end*: its figures, and the window they were counted in."""
    window = Window.between(start, end, STEP)
    sums = sum_deltas(window)
    problems = tuple(problems_of(window, sums))
    comparable = not problems
    step = Step(
        started_at=start.header.taken_at,
        ended_at=end.header.taken_at,
        comparable=comparable,
        problems=problems,
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(sums.counts) if comparable else None,
        index_hit_ratio=hit_ratio(sums.index_blks_hit, sums.index_blks_read)
        if comparable
        else None,
    )
    return step, window


StatementKey = tuple[int, int, int, bool]  # ``deltas.statement_key``
StepPoints = list[dict[StatementKey, StatementPoint] | None]  # None: a step not comparable


def step_points(
    steps: Sequence[tuple[Step, Window]],
) -> tuple[StepPoints, dict[StatementKey, StatementRow]]:
    """Each comparable step's statements that ran (their calls, total and mean time), and a row
    of each statement (for its query id and text)."""
    per_step: StepPoints = []
    rows: dict[StatementKey, StatementRow] = {}
    for step, window in steps:
        if not step.comparable:
            per_step.append(None)
            continue
        points = {}
        for row in window.deltas.statements.rows:
            if row.calls or row.total_exec_time:
                key = statement_key(row)
                points[key] = StatementPoint(
                    row.calls, row.total_exec_time, ratio(row.total_exec_time, row.calls)
                )
                rows[key] = row
        per_step.append(points)
    return per_step, rows


def _summed(points: Iterable[StatementPoint]) -> StatementPoint:
    calls = total = 0.0
    for point in points:
        calls += point.calls
        total += point.total_time_ms
    return StatementPoint(int(calls), total, ratio(total, calls))


def _line(
    per_step: StepPoints, members: Sequence[StatementKey]
) -> tuple[StatementPoint | None, ...]:
    """The points of *members* summed per step (None where a step is not comparable)."""
    return tuple(
        None if points is None else _summed(points[k] for k in members if k in points)
        for points in per_step
    )


def _heaviest(totals: dict[Any, float], top: int) -> list[Any]:
    """The *top* keys of *totals* by total time (ties by key), leaving out those with none."""
    return sorted((key for key, total in totals.items() if total > 0),
                  key=lambda key: (-totals[key], key))[:top]  # fmt: skip


def _totals(per_step: StepPoints) -> dict[StatementKey, float]:
    totals: dict[StatementKey, float] = {}
    for points in per_step:
        for key, point in (points or {}).items():
            totals[key] = totals.get(key, 0.0) + point.total_time_ms
    return totals


def statement_timelines(
    per_step: StepPoints, rows: dict[StatementKey, StatementRow], top: int
) -> tuple[StatementTimeline, ...]:
    """The *top* statements by total time over the comparable steps, a point per step."""
    totals = _totals(per_step)
    return tuple(
        StatementTimeline(
            queryid=rows[key].queryid,
            query=scrub_query(rows[key].query),
            total_time_ms=totals[key],
            points=_line(per_step, [key]),
        )
        for key in _heaviest(totals, top)
    )


def family_timelines(
    per_step: StepPoints,
    rows: dict[StatementKey, StatementRow],
    top: int,
    classifier: Classifier,
) -> tuple[FamilyTimeline, ...]:
    """The *top* families (*classifier*'s fingerprints) by total time over the comparable
    steps, a point per step: the sums of their statements'."""
    totals = _totals(per_step)
    keys = list(totals)
    shapes = dict(zip(keys, classifier.shapes([(rows[k].queryid, rows[k].query) for k in keys]),
                      strict=True))  # fmt: skip
    members: dict[str, list[StatementKey]] = {}
    family_totals: dict[str, float] = {}
    for key in keys:
        fingerprint = shapes[key].fingerprint
        members.setdefault(fingerprint, []).append(key)
        family_totals[fingerprint] = family_totals.get(fingerprint, 0.0) + totals[key]
    found = []
    for fingerprint in _heaviest(family_totals, top):
        shape = shapes[members[fingerprint][0]]
        found.append(FamilyTimeline(
            fingerprint=fingerprint,
            kind=shape.kind,
            query=shape.sql,
            statements=len(members[fingerprint]),
            total_time_ms=family_totals[fingerprint],
            points=_line(per_step, members[fingerprint]),
        ))  # fmt: skip
    return tuple(found)


def size_growth(first: Snapshot, last: Snapshot) -> tuple[Growth, ...]:
    """The application's tables and indexes at *first* and *last*, the largest growth first."""
    sizes: dict[tuple[str, str], list[int | None]] = {}
    for at, snapshot in enumerate((first, last)):
        for table in application_rows(snapshot.tables):
            name = ("table", f"{table.schemaname}.{table.relname}")
            sizes.setdefault(name, [None, None])[at] = table.total_bytes
        for index in application_rows(snapshot.indexes):
            name = ("index", f"{index.schemaname}.{index.indexrelname}")
            sizes.setdefault(name, [None, None])[at] = index.index_bytes
    found = [
        Growth(kind, name, before, after,
               None if before is None or after is None else after - before)
        for (kind, name), (before, after) in sizes.items()
    ]  # fmt: skip
    found.sort(key=lambda g: (-(g.growth_bytes or 0), g.kind, g.name))
    return tuple(found)


# -- marks -------------------------------------------------------------------------------------


def parse_marks(
    values: Sequence[str], taken: Iterable[str] = ()
) -> tuple[tuple[str, WindowRef], ...]:
    """``NAME=WINDOW`` values (``--mark canary=canary``, ``--mark rollback=last:10m``): the
    deploy's windows to shade besides the report's, whose names are *taken*. Raises
    ``UsageError`` for a malformed value, a bad name, a name given twice or a bad window."""
    marks: dict[str, WindowRef] = {}
    names = set(taken)
    for value in values:
        name, equals, reference = value.partition("=")
        if not equals or not reference:
            raise UsageError(f"invalid --mark {value!r}: expected NAME=WINDOW (canary=canary)")
        if not MARK_NAME.match(name):
            raise UsageError(
                f"invalid --mark name {name!r}: letters, digits and _ . : + - (at most 100)"
            )
        if name in marks or name in names:
            raise UsageError(f"--mark {name}: a window of that name is already shaded")
        marks[name] = parse_window(reference)
    return tuple(marks.items())


# -- loading -------------------------------------------------------------------------------------


def load_timelines(
    store: Store,
    windows: Sequence[tuple[str, Window]],
    *,
    marks: Sequence[tuple[str, Window]] = (),
    target: str | None = None,
    statements: int = DEFAULT_STATEMENTS,
    families: int = DEFAULT_FAMILIES,
    classifier: Classifier | None = None,
) -> Timelines:
    """The timelines of the span of *windows* and *marks* ((name, window) pairs, all shaded)
    in *store*, for *target* (``Store.resolve_target``), with the top *statements* and
    *families* (classified by *classifier*)."""
    chosen = store.resolve_target(target)
    shades = tuple(Shade(name, w.start.taken_at, w.end.taken_at) for name, w in (*windows, *marks))
    started_at = min(shade.started_at for shade in shades)
    ended_at = max(shade.ended_at for shade in shades)
    headers = store.headers_between(started_at, ended_at, chosen)
    replay = store.replay(headers, chosen)
    steps = [step_between(a, b) for a, b in replay.steps]
    per_step, rows = step_points(steps)
    return Timelines(
        started_at=started_at,
        ended_at=ended_at,
        samples=len(headers),
        windows=shades,
        steps=tuple(step for step, _ in steps),
        statements=statement_timelines(per_step, rows, statements),
        families=family_timelines(per_step, rows, families, classifier or Classifier()),
        buckets=store.request_buckets(started_at, ended_at, chosen),
        growth=size_growth(replay.first, replay.last) if replay.first and replay.last else (),
    )


# -- its sections -------------------------------------------------------------------------------


def sparse_note(found: Timelines) -> str:
    """What a chart of *found* cannot show: windows with too few intervals for a trend."""
    sparse = found.sparse_windows
    if not sparse:
        return ""
    counts = ", ".join(f"{name} {count}" for name, count in sparse)
    return (
        f" Too few intervals inside a window for a trend ({counts}; a window captured with "
        "two snapshots has one): the charts draw their figures as points, not lines; "
        "`dbtools collect` during the windows gives one interval per sample."
    )


def steps_section(found: Timelines) -> Section:
    rows = [
        [moment(step.started_at), moment(step.ended_at),
         "yes" if step.comparable else "NO: " + "; ".join(step.problems),
         percent(step.buffer_cache_hit_ratio), percent(step.index_hit_ratio)]
        for step in found.steps
    ]  # fmt: skip
    windows = ", ".join(
        f"{w.name} {moment(w.started_at)} to {moment(w.ended_at)}" for w in found.windows
    )
    return Section(
        "timelines",
        "Timelines",
        f"Each interval between consecutive samples of the span ({found.samples} samples; "
        f"windows: {windows}). The charts draw the top statements' calls, total and mean time "
        "per interval (and the top families'), the hit ratios per interval, and the "
        "application's p95 and error rate per request-metrics bucket, with the windows "
        "shaded. An interval across a restart or a reset is not comparable and is not drawn."
        + sparse_note(found),
        ["from", "to", "comparable", "buffer cache hit ratio", "index hit ratio"],
        rows,
        empty="Fewer than two samples in the span.",
    )


def _per_interval(points: Sequence[StatementPoint | None], attribute: str) -> str:
    """A line's figures per interval, in order (NO_VALUE where an interval is not comparable)."""
    return ", ".join(
        NO_VALUE
        if p is None
        else (f"{p.calls:,}" if attribute == "calls" else ms(getattr(p, attribute)))
        for p in points
    )


def lines_section(found: Timelines) -> Section:
    lines = [
        *((f"#{rank}", "statement", line.total_time_ms, line.points, line.query)
          for rank, line in enumerate(found.statements, 1)),
        *((f"F{rank}", f"family {line.fingerprint} ({line.kind}, {line.statements:,} "
           f"statement{'s' if line.statements != 1 else ''})",
           line.total_time_ms, line.points, line.query)
          for rank, line in enumerate(found.families, 1)),
    ]  # fmt: skip
    return Section(
        "timeline-lines",
        "Top statements and families per interval",
        "The statements and the families (their statements summed) with the most execution "
        "time over the span's comparable intervals: calls, total and mean time in each "
        f"interval, in order ({NO_VALUE}: an interval that is not comparable).",
        ["line", "what", "total ms", "calls per interval", "total ms per interval",
         "mean ms per interval"],
        [[rank, what, ms(total), _per_interval(points, "calls"),
          _per_interval(points, "total_time_ms"), _per_interval(points, "mean_time_ms")]
         for rank, what, total, points, _ in lines],
        [CodeBlock(f"{rank}: {what}", query) for rank, what, _, _, query in lines],
        empty="No statement ran in a comparable interval.",
    )  # fmt: skip


def growth_section(found: Timelines) -> Section:
    rows = [
        [g.kind, g.name, byte_size(g.first_bytes), byte_size(g.last_bytes),
         NO_VALUE if g.growth_bytes is None else f"{g.growth_bytes:+,} B"]
        for g in found.growth
    ]  # fmt: skip
    return Section(
        "space-growth",
        "Space growth",
        f"Table and index sizes at the span's first and last sample ({moment(found.started_at)} "
        f"to {moment(found.ended_at)}), the largest growth first.",
        ["kind", "name", "first", "last", "growth"],
        rows,
        empty="No sizes in the samples.",
    )


def _read(reading: StoreReading) -> Timelines | None:
    """The timelines of the report's windows (none for the live statistics)."""
    if not reading.windows:
        return None
    return load_timelines(
        reading.store,
        reading.windows,
        marks=reading.marks,
        target=reading.sample_target,
        statements=reading.statements,
        families=reading.families,
        classifier=reading.classifier,
    )


SECTIONS = (steps_section, lines_section, growth_section)
SUBJECT = Subject(
    name="timelines",
    key="timelines",
    settings=lambda: None,  # how many statements and families: ReportOptions.timeline_*
    read=_read,
    build=lambda found, building: found,  # what was loaded is the model
    sections=SECTIONS,
    place=-10,  # right after the statistics, before the statements' costs
    reads="store",
)
