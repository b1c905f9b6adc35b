"""The report's options: where its lookup rules draw their lines, and verify's thresholds (the
opening of a two-window report judges the windows with them, as ``dbtools verify`` does).

From ``[tool.dbtools.report]`` and ``[tool.dbtools.verify]`` in ``./pyproject.toml``, then a
``--config FILE`` (its ``[report]`` and ``[verify]`` tables, bare or under ``tool.dbtools``; it
must have one of them). An unknown key or a bad value is a ``ConfigError`` (exit code 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbtools.config import read_toml, section
from dbtools.errors import ConfigError
from dbtools.report.model import ReportOptions
from dbtools.sqltext.families import Batchable, NPlusOne
from dbtools.verify.thresholds import load_thresholds

# Each setting: what it must be, and the rule field it sets.
SETTINGS: dict[str, tuple[str, str, str]] = {
    "n_plus_one_calls_per_request": ("a positive number", "n_plus_one", "calls_per_request"),
    "n_plus_one_min_calls": ("a whole number", "n_plus_one", "min_calls"),
    "batchable_calls_per_second": ("a positive number", "batchable", "calls_per_second"),
    "batchable_min_calls": ("a whole number", "batchable", "min_calls"),
    "batch_concurrency": ("a list of whole numbers >= 1", "batchable", "concurrency"),
    "min_family_change": ("a fraction between 0 and 1", "", "min_family_change"),
    "timeline_statements": ("a whole number", "", "timeline_statements"),
    "timeline_families": ("a whole number", "", "timeline_families"),
}


def _has_table(document: Mapping[str, Any], name: str) -> bool:
    tool = document.get("tool", {})
    dbtools = tool.get("dbtools", {}) if isinstance(tool, dict) else {}
    return name in document or (isinstance(dbtools, dict) and name in dbtools)


def load_report_options(
    config_file: Path | None = None, *, project_dir: Path | None = None, top_statements: int = 20
) -> ReportOptions:
    """The report's options: defaults, then ``pyproject.toml``, then *config_file*.

    Raises ``ConfigError`` for an unreadable or malformed file, one with neither a ``[report]``
    nor a ``[verify]`` table, an unknown key or a bad value.
    """
    values: dict[str, Any] = {}
    pyproject = (project_dir or Path.cwd()) / "pyproject.toml"
    if pyproject.is_file():
        values.update(section(read_toml(pyproject), "report", pyproject, file_is_pyproject=True))
    verify_file = None
    if config_file is not None:
        document = read_toml(config_file)
        if not (_has_table(document, "report") or _has_table(document, "verify")):
            raise ConfigError(f"{config_file}: no [report] or [verify] table (or [tool.dbtools.…])")
        if _has_table(document, "report"):
            values.update(section(document, "report", config_file))
        verify_file = config_file if _has_table(document, "verify") else None
    options = options_from(values, source=str(config_file or pyproject))
    thresholds = load_thresholds(verify_file, project_dir=project_dir)
    return dataclasses.replace(options, top_statements=top_statements, thresholds=thresholds)


def _valid(key: str, value: Any) -> bool:
    kind = SETTINGS[key][0]
    if isinstance(value, bool):
        return False
    if key == "batch_concurrency":
        return (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        )
    if kind == "a whole number":
        return isinstance(value, int) and value >= 0
    if not isinstance(value, (int, float)):
        return False
    return 0 <= value <= 1 if kind.startswith("a fraction") else value > 0


def options_from(values: Mapping[str, Any], *, source: str = "configuration") -> ReportOptions:
    """``ReportOptions`` from a mapping of ``[report]`` settings, validated (``ConfigError``)."""
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown report setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(SETTINGS)}"
        )
    rules: dict[str, Any] = {"n_plus_one": NPlusOne(), "batchable": Batchable()}
    top: dict[str, Any] = {}
    for key, value in values.items():
        kind, rule, name = SETTINGS[key]
        if not _valid(key, value):
            raise ConfigError(f"{source}: {key} must be {kind}, not {value!r}")
        setting = tuple(value) if isinstance(value, list) else value
        if kind != "a whole number" and not isinstance(setting, tuple):
            setting = float(setting)
        if rule:
            rules[rule] = dataclasses.replace(rules[rule], **{name: setting})
        else:
            top[name] = setting
    return ReportOptions(**rules, **top)
