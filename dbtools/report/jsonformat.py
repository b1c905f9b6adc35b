"""The report as JSON for pipelines: stable keys, ``schema_version`` and ``kind``, UTC timestamps.

Keys follow the ``Report`` dataclasses' fields (only ever added to; a removal or a change of
meaning bumps the report's version in ``output.SCHEMA_VERSIONS``). Per-period figures are objects
keyed by period name. ``output.to_jsonable`` writes query ids as strings (64-bit integers do not
survive JavaScript's numbers) and rounds floats to six decimals, so the output does not depend
on the last bit of a sum.
"""

from __future__ import annotations

from dbtools.output import dump_json, to_jsonable
from dbtools.report.model import Report


def render_json(report: Report) -> str:
    """The report as an indented JSON document (ends with a newline)."""
    return dump_json("report", to_jsonable(report))
