"""The report as JSON for pipelines: stable keys, ``schema_version``, UTC timestamps.

Keys follow the ``Report`` dataclasses' fields (only ever added to; a removal or a change of
meaning bumps ``SCHEMA_VERSION``). Per-period figures are objects keyed by period name. Query
ids are strings (64-bit integers do not survive JavaScript's numbers); floats are rounded to six
decimals so the output does not depend on the last bit of a sum.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dbtools.report.model import Report

_AS_TEXT = frozenset({"queryid"})


def to_jsonable(value: Any, name: str = "") -> Any:
    """*value* (dataclasses, mappings, sequences, datetimes) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if name in _AS_TEXT:
        return str(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def render_json(report: Report) -> str:
    """The report as an indented JSON document (ends with a newline)."""
    return json.dumps(to_jsonable(report), indent=2, ensure_ascii=False) + "\n"
