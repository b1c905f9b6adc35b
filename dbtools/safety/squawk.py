"""Running squawk (the ``squawk-cli`` package: a PostgreSQL migration linter) on SQL files and
reading its JSON findings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dbtools.errors import DbtoolsError, PrerequisiteMissing

TIMEOUT_S = 120


@dataclass(frozen=True)
class SquawkFinding:
    """One squawk warning or error: its file, 1-based line, rule, message."""

    file: str
    line: int
    rule: str
    message: str


def squawk_binary() -> Path:
    """``squawk`` next to the running Python (a virtualenv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("squawk")
    if found:
        return Path(found)
    raise PrerequisiteMissing("squawk is not installed: pip install squawk-cli")


def squawk_version() -> str:
    result = subprocess.run(
        [str(squawk_binary()), "--version"], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    return result.stdout.strip().removeprefix("squawk").strip() or "unknown"


def run_squawk(files: Iterable[Path]) -> list[SquawkFinding]:
    """Lint *files* with squawk's default rules.

    An empty configuration file is passed so that a ``.squawk.toml`` lying around cannot exclude
    rules behind dbtools' back: every exclusion carries a reason in ``dbtools.safety.lint``
    (which filters findings itself: ``--exclude`` rejects rule names a squawk version lacks).
    """
    paths = [str(path) for path in files]
    if not paths:
        return []
    with tempfile.TemporaryDirectory(prefix="dbtools-squawk-") as scratch:
        config = Path(scratch) / "squawk.toml"
        config.write_text("")
        args = [str(squawk_binary()), "--config", str(config), "--reporter", "json"]
        try:
            result = subprocess.run(
                [*args, *paths], capture_output=True, text=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired as err:
            raise DbtoolsError(f"squawk did not finish within {TIMEOUT_S}s") from err
    if result.returncode not in (0, 1):
        reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise DbtoolsError(f"squawk failed: {reason}")
    try:
        raw = json.loads(result.stdout or "[]")
    except ValueError as err:
        raise DbtoolsError(
            f"squawk wrote output dbtools cannot read: {result.stdout[:80]!r}"
        ) from err
    return [
        SquawkFinding(
            file=str(item["file"]),
            line=int(item.get("line", 0)) + 1,  # squawk 2 counts lines from 0
            rule=str(item["rule_name"]),
            message=str(item["message"]),
        )
        for item in raw
    ]
