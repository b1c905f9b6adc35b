"""Charts for the HTML report, drawn with matplotlib and inlined as SVG (no network, no files).

Matplotlib's ``Figure`` is used directly (no pyplot state, no GUI backend); text is drawn as
paths, so the SVG needs no font on the viewing machine. A chart is drawn only where its values
differ: bars of one height (three 100% hit ratios, one period's single bar) say nothing a table
does not.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dbtools.report.model import Report, StatementFigures

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn: it takes ~0.3 s
    from matplotlib.figure import Figure

COLOURS = ("#8c9bab", "#2f6fb3")  # baseline grey, candidate blue (a single period: blue)
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


def _time(figures: StatementFigures | None) -> float:
    return figures.total_time_ms if figures else 0.0


def _label(query: str, width: int = 40) -> str:
    flat = re.sub(r"\s+", " ", query).strip()
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def charts(report: Report) -> dict[str, list[str]]:
    """The charts of each section, by section id."""
    drawn = {
        "summary": (queries_per_request(report), hit_ratios(report)),
        "statements": (top_statements(report),),
    }
    return {section: [chart for chart in found if chart is not None]
            for section, found in drawn.items()}  # fmt: skip
