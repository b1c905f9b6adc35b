"""The budgets file: each test module's recorded counts, committed beside it
(``test_search.py`` → ``test_search.query-budgets.json``), written by ``--dbtools-record``.

JSON with sorted keys and one family per object, so that a pull request's diff shows each test
whose count moved, and which family. Test workers (pytest-xdist) write one file at a time: each
holds an exclusive lock on the file while it reads, merges its tests in and writes it back.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbtools.budgets.count import FamilyCount, QueryCount
from dbtools.errors import UsageError

SUFFIX = ".query-budgets.json"
FORMAT_VERSION = 1


def budget_path(test_file: Path) -> Path:
    """Where the budgets of the tests in *test_file* are kept."""
    return test_file.with_name(test_file.stem + SUFFIX)


def as_json(count: QueryCount) -> dict[str, Any]:
    return {
        "statements": count.statements,
        "nested": count.nested,
        "transactions": count.transactions,
        "requests": count.requests,
        "families": [
            {"family": f.family, "label": f.label, "calls": f.calls, "nested": f.nested,
             "point_lookup": f.point_lookup, "sql": f.sql}
            for f in count.families
        ],
    }  # fmt: skip


def from_json(value: Mapping[str, Any]) -> QueryCount:
    return QueryCount(
        statements=int(value["statements"]),
        nested=int(value["nested"]),
        transactions=int(value.get("transactions", 0)),
        requests=value.get("requests"),
        families=tuple(
            FamilyCount(f["family"], f["label"], int(f["calls"]), bool(f["nested"]), f["sql"],
                        bool(f.get("point_lookup", False)))
            for f in value["families"]
        ),
    )  # fmt: skip


def _parse(text: str, path: Path) -> dict[str, QueryCount]:
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {document.get('version')!r}")
        return {name: from_json(value) for name, value in document["tests"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"{path}: not a query budgets file ({err})") from None


def load_budgets(path: Path) -> dict[str, QueryCount]:
    """The recorded count of each test in the budgets file *path* (none when it is missing);
    raises ``UsageError`` for a file it cannot read."""
    try:
        return _parse(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        return {}


def record_budgets(path: Path, counts: Mapping[str, QueryCount]) -> None:
    """Write *counts* into the budgets file *path*, keeping the other tests' entries."""
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        handle.seek(0)
        tests = _parse(handle.read(), path)
        tests.update(counts)
        document = {
            "version": FORMAT_VERSION,
            "tests": {name: as_json(count) for name, count in sorted(tests.items())},
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
