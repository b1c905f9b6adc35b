"""What every renderer shares: where generated files land (a timestamped name, written
atomically: a temporary file in the same directory, then a rename, so a reader never sees half a
file and a failure leaves none), figures as text (percentages, numbers, byte sizes), Markdown
table cells, and JSON documents (``to_jsonable``; ``schema_version`` and ``kind`` from one table,
``SCHEMA_VERSIONS``)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_DIRECTORY = Path("reports")


def timestamped_path(
    stem: str, suffix: str, directory: Path = DEFAULT_DIRECTORY, now: datetime | None = None
) -> Path:
    """``reports/<stem>-20261128T134500Z.<suffix>`` (UTC); *stem* made safe for a file name.

    A name already taken (two reports in the same second) gets ``-2``, ``-3``… so that nothing
    written earlier is replaced.
    """
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    safe = re.sub(r"[^\w.-]+", "-", stem).strip("-")
    base = f"{safe}-{moment:%Y%m%dT%H%M%SZ}"
    path = directory / f"{base}.{suffix}"
    counter = 1
    while path.exists():
        counter += 1
        path = directory / f"{base}-{counter}.{suffix}"
    return path


def write_atomically(path: Path, text: str) -> Path:
    """Write *text* to *path* through a temporary file and a rename; return *path*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(handle, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


# -- figures as text -----------------------------------------------------------------------------

NO_VALUE = "–"  # what a table shows for a figure with no data


def percent(value: float | None, digits: int = 1, *, missing: str = NO_VALUE) -> str:
    """A fraction as a percentage: ``0.1234`` as ``12.3%``; *missing* for None."""
    return missing if value is None else f"{value * 100:.{digits}f}%"


def signed_percent(value: float | None, *, missing: str = NO_VALUE) -> str:
    """A relative change as a signed whole percentage: ``0.5`` as ``+50%``."""
    return missing if value is None else f"{value * 100:+.0f}%"


def number(value: float | None, digits: int = 2, *, unit: str = "", missing: str = NO_VALUE) -> str:
    """An integer with thousands separators, a float with *digits* decimals as well, then
    *unit* (``"/s"``, ``" ms"``); *missing* for None."""
    if value is None:
        return missing
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def byte_size(size: int | None, *, missing: str = NO_VALUE) -> str:
    """``123456`` as ``120.6 kB`` (powers of 1024, as PostgreSQL's ``pg_size_pretty``)."""
    if size is None:
        return missing
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def markdown_cell(value: object) -> str:
    """*value* as one cell of a Markdown pipe table: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


# -- JSON documents ------------------------------------------------------------------------------

# Every JSON document dbtools writes, by kind, with its schema version. Keys are only ever added
# within a version; removing or renaming a key, or changing its meaning, bumps the kind's version
# here (and CHANGELOG.md says so).
SCHEMA_VERSIONS: dict[str, int] = {
    "verify": 1,
    "report": 2,  # 2: findings share dbtools.findings' keys (check, status, …, fix)
    "downgrade-plan": 1,
    "rehearsal": 1,
    "lint": 2,  # 2: findings share dbtools.findings' keys (check, status, …, location)
    "workload-seed": 1,
    "workload-run": 1,
}

# Fields whose integers are shown as strings: 64-bit ids do not survive JavaScript's numbers.
AS_TEXT = frozenset({"queryid"})
FLOAT_DIGITS = 6  # so that a document does not depend on the last bit of a sum


def to_jsonable(value: Any, name: str = "") -> Any:
    """*value* as JSON-ready data: dataclasses by field, mappings, sequences, enums by value,
    datetimes in UTC ISO 8601, floats rounded to ``FLOAT_DIGITS``; anything else as text.
    *name* is the field the value came from (``AS_TEXT`` fields become strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, name)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if name in AS_TEXT:
        return str(value)
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, (int, str)):
        return value
    return str(value)


def json_document(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """*payload* headed by ``schema_version`` (from ``SCHEMA_VERSIONS``) and ``kind``."""
    return {"schema_version": SCHEMA_VERSIONS[kind], "kind": kind, **payload}


def dump_json(kind: str, payload: Mapping[str, Any]) -> str:
    """The *kind* document of *payload* as indented JSON text, ending with a newline."""
    return json.dumps(json_document(kind, payload), indent=2, ensure_ascii=False) + "\n"
