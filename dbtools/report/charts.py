"""Charts for the HTML report, drawn with matplotlib and inlined as SVG (no network, no files).

Matplotlib's ``Figure`` is used directly (no pyplot state, no GUI backend); text is drawn as
paths, so the SVG needs no font on the viewing machine. A chart is drawn only where its values
differ: bars of one height (three 100% hit ratios, one period's single bar) say nothing a table
does not.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbtools.report.model import Report
from dbtools.report.statements import StatementFigures

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn: it takes ~0.3 s
    from matplotlib.figure import Figure

COLOURS = ("#8c9bab", "#2f6fb3")  # baseline grey, candidate blue (a single period: blue)
MARK_COLOURS = ("#e08a1e", "#c23b3b", "#3c9a5f", "#8a5cb8")  # the marks' shades, in turn
TOP_STATEMENTS = 10


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or doctype


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.subplots()


def _differ(values: Sequence[float | None]) -> bool:
    """Whether *values* hold at least two different figures (what makes a chart say something)."""
    return len({value for value in values if value is not None}) > 1


def _colours(count: int) -> Sequence[str]:
    return COLOURS[-count:] if count <= len(COLOURS) else [COLOURS[-1]] * count


def queries_per_request(report: Report) -> str | None:
    """One bar per period: queries per request (None unless the periods' figures differ)."""
    values = [p.queries_per_request for p in report.periods]
    if not _differ(values):
        return None
    figure, axes = _figure(5, 2.8)
    names = [p.name for p in report.periods]
    bars = axes.bar(names, [v or 0 for v in values], color=_colours(len(names)))
    axes.bar_label(bars, labels=[f"{v:.2f}" if v is not None else "no data" for v in values])
    axes.set_ylabel("queries per request")
    title = "Queries per request"
    if report.query_reduction is not None:
        title += f" ({report.query_reduction:.0%} fewer)"
    axes.set_title(title)
    axes.margins(y=0.15)
    return _svg(figure)


def top_statements(report: Report) -> str | None:
    """Horizontal bars: execution time of the costliest statements, per period."""
    lines = report.top_statements[:TOP_STATEMENTS]
    names = report.period_names
    if not _differ([_time(line.figures[name]) for line in lines for name in names]):
        return None
    figure, axes = _figure(7, 0.45 * len(lines) * max(len(names), 1) + 1.2)
    height = 0.8 / len(names)
    for i, (name, colour) in enumerate(zip(names, _colours(len(names)), strict=True)):
        times = [_time(line.figures[name]) for line in lines]
        positions = [rank + i * height for rank in range(len(lines))]
        axes.barh(positions, times, height=height, color=colour, label=name)
    axes.set_yticks(
        [rank + height * (len(names) - 1) / 2 for rank in range(len(lines))],
        [f"#{rank} {_label(line.query)}" for rank, line in enumerate(lines, 1)],
    )
    axes.invert_yaxis()
    axes.set_xlabel("execution time (ms)")
    axes.set_title("Statements by execution time")
    if len(names) > 1:
        axes.legend()
    return _svg(figure)


def hit_ratios(report: Report) -> str | None:
    """Grouped bars: buffer cache, index and table hit ratios per period (0-100%); None unless
    they differ."""
    measures = (
        ("buffer cache", "buffer_cache_hit_ratio"),
        ("index", "index_hit_ratio"),
        ("table", "table_hit_ratio"),
    )
    if not _differ([getattr(p, attribute) for p in report.periods for _, attribute in measures]):
        return None
    names = report.period_names
    figure, axes = _figure(6, 3)
    width = 0.8 / len(names)
    for i, (period, colour) in enumerate(zip(report.periods, _colours(len(names)), strict=True)):
        values = [getattr(period, attribute) for _, attribute in measures]
        bars = axes.bar(
            [m + i * width for m in range(len(measures))],
            [100 * (v or 0) for v in values],
            width=width,
            color=colour,
            label=period.name,
        )
        axes.bar_label(bars, labels=[f"{v:.1%}" if v is not None else "no data" for v in values])
    axes.set_xticks(
        [m + width * (len(names) - 1) / 2 for m in range(len(measures))],
        [label for label, _ in measures],
    )
    axes.set_ylim(0, 115)
    axes.set_ylabel("hit ratio (%)")
    axes.set_title("Hit ratios")
    if len(names) > 1:
        axes.legend(loc="lower right")
    return _svg(figure)


@dataclass(frozen=True)
class Series:
    label: str
    times: tuple[datetime, ...]
    values: tuple[float | None, ...]  # None: no figure there (a step that is not comparable)


@dataclass(frozen=True)
class TimelinePlot:
    """What one timeline chart draws: its lines, and the report's windows shaded beneath."""

    title: str
    ylabel: str
    series: tuple[Series, ...]
    shaded: tuple[tuple[str, datetime, datetime], ...]
    note: str = ""  # drawn under the title: what the chart cannot show


def timeline_plots(report: Report) -> list[TimelinePlot]:
    """The timeline charts of *report* (``report.timelines``): per step, the top statements'
    and families' calls, total and mean time and the hit ratios; per request-metrics bucket,
    p95 and error rate. A chart with no value is left out."""
    timelines = report.timelines
    if timelines is None:
        return []
    ends = tuple(step.ended_at for step in timelines.steps)
    starts = tuple(bucket.started_at for bucket in timelines.buckets)
    shaded = tuple((w.name, w.started_at, w.ended_at) for w in timelines.windows)
    statements = [(f"#{rank} {_label(line.query, 30)}", line.points)
                  for rank, line in enumerate(timelines.statements, 1)]  # fmt: skip
    families = [(f"F{rank} {_label(line.query, 30)}", line.points)
                for rank, line in enumerate(timelines.families, 1)]  # fmt: skip

    def lines(found: Sequence[tuple[str, Sequence[Any]]], attribute: str) -> tuple[Series, ...]:
        return tuple(
            Series(label, ends, tuple(None if p is None else getattr(p, attribute) for p in points))
            for label, points in found
        )

    def percent(values: Sequence[float | None]) -> tuple[float | None, ...]:
        return tuple(None if v is None else 100 * v for v in values)

    sparse = ", ".join(f"{name}: {count}" for name, count in timelines.sparse_windows)
    note = f"too few intervals per window for a trend ({sparse}): points" if sparse else ""
    plots = [
        TimelinePlot(f"{title} per interval{whose}", unit, lines(found, attribute), shaded, note)
        for whose, found in (("", statements), (" (families)", families))
        for title, unit, attribute in (("Calls", "calls", "calls"),
                                       ("Total time", "total time (ms)", "total_time_ms"),
                                       ("Mean time", "mean time (ms)", "mean_time_ms"))
    ]  # fmt: skip
    plots += [
        TimelinePlot("Hit ratios per interval", "hit ratio (%)", (
            Series("buffer cache", ends,
                   percent([s.buffer_cache_hit_ratio for s in timelines.steps])),
            Series("index", ends, percent([s.index_hit_ratio for s in timelines.steps])),
        ), shaded, note),
        TimelinePlot("Application p95 per bucket", "p95 (ms)", (
            Series("p95", starts, tuple(b.p95_ms for b in timelines.buckets)),), shaded),
        TimelinePlot("Application error rate per bucket", "error rate (%)", (
            Series("error rate", starts,
                   percent([b.error_rate for b in timelines.buckets])),), shaded),
    ]  # fmt: skip
    return [p for p in plots if any(v is not None for s in p.series for v in s.values)]


def shade_colours(report: Report) -> list[str]:
    """A colour per shaded window: the periods' (grey, blue), then the marks' in turn."""
    periods = len(report.periods)
    timelines = report.timelines
    marks = len(timelines.windows) - periods if timelines else 0
    return [*_colours(periods), *(MARK_COLOURS[i % len(MARK_COLOURS)] for i in range(marks))]


def draw_timeline(plot: TimelinePlot, colours: Sequence[str]) -> str:
    """*plot* as an SVG line chart (a gap where a value is None), its windows shaded in
    *colours* (one each)."""
    figure, axes = _figure(7, 3)
    for (name, start, end), colour in zip(plot.shaded, colours, strict=True):
        axes.axvspan(start, end, color=colour, alpha=0.2, label=name)
    # A sparse chart draws its figures as points: a line between two windows' single points
    # would read as a trend.
    style = {"linestyle": "none", "markersize": 6} if plot.note else {"markersize": 3}
    for series in plot.series:
        values = [math.nan if v is None else v for v in series.values]
        axes.plot(series.times, values, marker="o", label=series.label, **style)
    axes.set_ylabel(plot.ylabel)
    axes.set_title(f"{plot.title}\n{plot.note}" if plot.note else plot.title)
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return _svg(figure)


def _time(figures: StatementFigures | None) -> float:
    return figures.total_time_ms if figures else 0.0


def _label(query: str, width: int = 40) -> str:
    """*query* on one line, cut to *width*, as text: its ``$1`` placeholders escaped, or
    matplotlib would typeset the text between two of them as mathematics."""
    flat = re.sub(r"\s+", " ", query).strip()
    cut = flat if len(flat) <= width else flat[: width - 1] + "…"
    return cut.replace("$", r"\$")


def charts(report: Report) -> dict[str, list[str]]:
    """The charts of each section, by section id."""
    drawn = {
        "summary": (queries_per_request(report), hit_ratios(report)),
        "statements": (top_statements(report),),
        "timelines": tuple(
            draw_timeline(plot, shade_colours(report)) for plot in timeline_plots(report)
        ),
    }
    return {section: [chart for chart in found if chart is not None]
            for section, found in drawn.items()}  # fmt: skip
