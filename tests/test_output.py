"""What every renderer shares: figures as text, Markdown cells, JSON documents. Pure (no
server)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dbtools.output import (
    SCHEMA_VERSIONS,
    byte_size,
    dump_json,
    json_document,
    markdown_cell,
    number,
    percent,
    signed_percent,
    to_jsonable,
)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 kB"), (123_456, "120.6 kB"),
     (5 * 1024**3, "5.0 GB"), (3 * 1024**4, "3.0 TB"), (2048 * 1024**4, "2048.0 TB"),
     (None, "–")],
)  # fmt: skip
def test_byte_size(size: int | None, text: str) -> None:
    assert byte_size(size) == text


def test_percentages_and_numbers() -> None:
    assert percent(0.12345) == "12.3%"
    assert percent(0.5, 0) == "50%"
    assert percent(None) == "–" and percent(None, missing="no data") == "no data"
    assert signed_percent(0.5) == "+50%" and signed_percent(-0.25) == "-25%"
    assert number(1234567) == "1,234,567"
    assert number(1234.5) == "1,234.50"
    assert number(268.25, 1, unit="/s") == "268.2/s"
    assert number(None, unit=" ms", missing="no data") == "no data"


def test_markdown_cell_is_one_line_with_pipes_escaped() -> None:
    assert markdown_cell("a | b\n  c") == "a \\| b c"
    assert markdown_cell(None) == "" and markdown_cell(3) == "3"


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Row:
    queryid: int
    ratio: float
    colour: Colour
    at: datetime
    path: Path
    flags: tuple[bool, ...]


def test_to_jsonable() -> None:
    moment = datetime(2026, 1, 2, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    row = Row(2**63 - 1, 1 / 3, Colour.RED, moment, Path("/tmp/x"), (True, False))
    assert to_jsonable({"rows": [row]}) == {
        "rows": [
            {
                "queryid": "9223372036854775807",  # 64-bit ids as text
                "ratio": 0.333333,
                "colour": "red",
                "at": "2026-01-02T12:00:00+00:00",
                "path": "/tmp/x",
                "flags": [True, False],
            }
        ]
    }


def test_every_document_is_headed_by_its_schema_version_and_kind() -> None:
    assert json_document("lint", {"passed": True}) == {
        "schema_version": SCHEMA_VERSIONS["lint"],
        "kind": "lint",
        "passed": True,
    }
    text = dump_json("report", {"title": "Größe …"})
    assert text.endswith("}\n") and "Größe …" in text
    assert json.loads(text) == {"schema_version": 2, "kind": "report", "title": "Größe …"}
    with pytest.raises(KeyError):
        json_document("unknown-kind", {})
