"""Project configuration: the ``[tool.dbtools.*]`` tables of ``pyproject.toml``, or a TOML file
given with ``--config``. Malformed files are a ``ConfigError`` (exit code 2), and so is a table
dbtools does not know (``[tool.dbtools.verfy]``): a typo must never leave every default in force
silently.

Durations (``--duration 10m``) and ``DBTOOLS_MAX_DURATION``, which shortens every wait a command
is asked for (a rehearsal of a runbook, docs/rollout.md's test), are read here too."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbtools.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# Every [tool.dbtools.*] table dbtools reads, and who reads it: the one list (a command that gains
# a configuration adds its table here; any other table is an error).
TABLES: dict[str, str] = {
    "verify": "dbtools.verify.thresholds: verify's thresholds and skipped checks",
    "lint": "dbtools.safety.declarations: rules left out, deploy timeouts, revisions not linted",
    "rehearse": "dbtools.safety.declarations: revisions whose downgrade is irreversible",
    "report": "dbtools.report.options: where the report's lookup rules draw their lines",
    "rollout": "dbtools.commands.rollout: the application's deploy, traffic, rollback, load-test "
    "commands",
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


def check_tables(document: Mapping[str, Any], path: Path, *, file_is_pyproject: bool) -> None:
    """Raise ``ConfigError`` for a table of *document* dbtools does not know: any under
    ``[tool.dbtools]``, and (in a file given with ``--config``) any at the top level."""
    tool = document.get("tool", {})
    dbtools = tool.get("dbtools", {}) if isinstance(tool, dict) else {}
    found = (
        [(f"tool.dbtools.{k}", k, v) for k, v in dbtools.items()]
        if isinstance(dbtools, dict)
        else []
    )
    if not file_is_pyproject:
        found += [(k, k, v) for k, v in document.items() if k != "tool" and isinstance(v, dict)]
    for shown, name, value in found:
        if name not in TABLES:
            known = [shown.removesuffix(name) + table for table in TABLES]
            close = difflib.get_close_matches(shown, known, n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise ConfigError(f"{path}: unknown table [{shown}] (known: {', '.join(TABLES)}){hint}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{shown}] must be a table")


def section(
    document: Mapping[str, Any], name: str, path: Path, *, file_is_pyproject: bool = False
) -> dict[str, Any]:
    """The ``[tool.dbtools.NAME]`` table of *document* (in a file given with ``--config`` also a
    bare ``[NAME]``); empty when a pyproject.toml has none. Raises ``ConfigError`` for a table
    dbtools does not know (``check_tables``)."""
    check_tables(document, path, file_is_pyproject=file_is_pyproject)
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
        raise ConfigError(f"{path}: [{name}] must be a table")
    return dict(table)


def layered_table(
    name: str, config_file: Path | None = None, *, project_dir: Path | None = None
) -> tuple[dict[str, Any], str]:
    """``[tool.dbtools.NAME]`` of ``./pyproject.toml`` (or *project_dir*'s), overridden by
    *config_file*'s table (``[NAME]`` or ``[tool.dbtools.NAME]``), and the file to name in
    errors. Raises ``ConfigError`` (see ``section``)."""
    values: dict[str, Any] = {}
    pyproject = (project_dir or Path.cwd()) / "pyproject.toml"
    if pyproject.is_file():
        values.update(section(read_toml(pyproject), name, pyproject, file_is_pyproject=True))
    if config_file is not None:
        values.update(section(read_toml(config_file), name, config_file))
    return values, str(config_file or pyproject)


def has_table(document: Mapping[str, Any], name: str) -> bool:
    """Whether *document* holds a ``[NAME]`` or ``[tool.dbtools.NAME]`` table (a file given
    with ``--config`` to a command that reads several tables need not have each)."""
    tool = document.get("tool", {})
    dbtools = tool.get("dbtools", {}) if isinstance(tool, dict) else {}
    return name in document or (isinstance(dbtools, dict) and name in dbtools)


# -- durations ---------------------------------------------------------------------------------

DURATION_FORMS = "10m, 90s, 1h30m or 14d"
MAX_DURATION_VARIABLE = "DBTOOLS_MAX_DURATION"
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """``10m``, ``90s``, ``1h30m``, ``14d`` or plain seconds (``600``), in seconds; raises
    ``UsageError`` for anything else or a duration that is not positive."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        match = _DURATION.match(value)
        if not match or not value:
            raise UsageError(f"{text!r} is not a duration like {DURATION_FORMS}")
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise UsageError(f"the duration {text!r} must be positive")
    return seconds


def max_duration() -> int | None:
    """The longest wait a command may make, from ``DBTOOLS_MAX_DURATION`` (None when unset):
    a window asked for as ``--duration 10m`` lasts at most this long. Raises ``ConfigError``
    when the variable is not a duration."""
    value = os.environ.get(MAX_DURATION_VARIABLE, "").strip()
    if not value:
        return None
    try:
        return parse_duration(value)
    except UsageError as err:
        raise ConfigError(f"{MAX_DURATION_VARIABLE}: {err}") from err
