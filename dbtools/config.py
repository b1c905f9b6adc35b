"""Project configuration: the ``[tool.dbtools.*]`` tables of ``pyproject.toml``, or a TOML file
given with ``--config``. Malformed files are a ``ConfigError`` (exit code 2)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbtools.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# Every [tool.dbtools.*] table dbtools reads, and who reads it.
TABLES: dict[str, str] = {
    "verify": "dbtools.verify.thresholds: verify's thresholds and skipped checks",
    "lint": "dbtools.safety.declarations: rules left out, deploy timeouts, revisions not linted",
    "rehearse": "dbtools.safety.declarations: revisions whose downgrade is irreversible",
    "report": "dbtools.report.options: where the report's lookup rules draw their lines",
}


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at *path*; raises ``ConfigError`` when unreadable or malformed."""
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = tomllib.load(handle)
            return document
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {path}: {err}") from err


def section(
    document: Mapping[str, Any], name: str, path: Path, *, file_is_pyproject: bool = False
) -> dict[str, Any]:
    """The ``[tool.dbtools.NAME]`` table of *document* (in a file given with ``--config`` also a
    bare ``[NAME]``); empty when a pyproject.toml has none."""
    tool = document.get("tool", {})
    dbtools = tool.get("dbtools", {}) if isinstance(tool, dict) else {}
    table = dbtools.get(name) if isinstance(dbtools, dict) else None
    if table is None and not file_is_pyproject:
        table = document.get(name)
        if table is None:
            raise ConfigError(f"{path}: no [{name}] (or [tool.dbtools.{name}]) table")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name} settings must be a table")
    return dict(table)
