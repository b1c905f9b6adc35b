"""The report as one self-contained HTML file: jinja2 template, inline CSS, inline SVG charts.

Nothing in it points outside the file (no scripts, fonts, images or style sheets to fetch), so
it opens the same offline, attached to a ticket, or in a locked-down browser.
"""

from __future__ import annotations

import functools
import re

import jinja2

from dbtools.report.charts import charts
from dbtools.report.contents import sections
from dbtools.report.model import Report
from dbtools.report.sections import moment

TEMPLATE = "report.html.j2"
_NUMERIC = re.compile(r"^[+-]?[\d,]+(\.\d+)?( ?%| ms| s|/s| [kMG]?B)?$")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dbtools", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["moment"] = moment
    env.filters["numeric"] = lambda cell: bool(_NUMERIC.match(cell))
    return env


def render_html(report: Report, *, with_charts: bool = True) -> str:
    """The whole report as an HTML document (*with_charts* False leaves the charts out)."""
    template = environment().get_template(TEMPLATE)
    return template.render(
        report=report,
        sections=sections(report),
        charts=charts(report) if with_charts else {},
    )
