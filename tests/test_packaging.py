"""Packaging: building dbtools' wheel prints no deprecation warning (the licence is an SPDX
expression, as setuptools 77 and PEP 639 have it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.mark.slow  # builds a wheel in an isolated build environment (pip fetches setuptools)
def test_the_wheel_builds_without_deprecation_warnings(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.whl")] == ["dbtools"]
    assert "deprecat" not in output.lower(), output
