"""The report as JSON for pipelines: stable keys, ``schema_version`` and ``kind``, UTC timestamps.

The document's keys come in ``KEYS``' order, declared here apart from the subjects' registry
(a subject registered later, not listed, follows them); within them, keys follow the model's
dataclasses' fields. Keys are only ever added to; a removal or a change of meaning bumps the
report's version in ``output.SCHEMA_VERSIONS``. Per-period figures are objects
keyed by period name. ``output.to_jsonable`` writes query ids as strings (64-bit integers do not
survive JavaScript's numbers) and rounds floats to six decimals, so the output does not depend
on the last bit of a sum.
"""

from __future__ import annotations

from typing import Any

from dbtools.output import dump_json, to_jsonable
from dbtools.report.model import Report

# The document's keys in order: the report's own, the statistics' subjects' (each subject's
# fields), then those read when the report is made (each subject's key).
KEYS = (
    "title", "generated_at", "source", "target", "database", "server_version", "periods",
    "query_reduction", "top_statements", "families", "unparsed", "n_plus_one",
    "table_hit_ratios", "indexes", "index_health", "autovacuum", "autovacuum_health", "notes",
    "verification", "story", "batchable", "changes", "rules",
    "activity", "space", "settings", "plans", "index_advice", "schema_health", "timelines",
)  # fmt: skip


def ordered(document: dict[str, Any]) -> dict[str, Any]:
    """*document*'s keys in ``KEYS``' order, any other after them as they came."""
    first = {key: document[key] for key in KEYS if key in document}
    return {**first, **{key: value for key, value in document.items() if key not in first}}


def render_json(report: Report) -> str:
    """The report as an indented JSON document (ends with a newline)."""
    return dump_json("report", ordered(to_jsonable(report)))
