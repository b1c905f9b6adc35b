"""The suite fails loudly, with the reason, when no PostgreSQL can be started: it never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def test_no_server_fails_the_suite_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBTOOLS_TEST_")}
    env["DBTOOLS_TEST_PG_BIN"] = str(tmp_path / "no-such-bin")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_sandbox.py::test_pg_stat_statements_is_loaded_and_counts_statements"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "cannot start a PostgreSQL server for the tests" in result.stdout
    assert f"no executable 'postgres' in --pg-bin {tmp_path / 'no-such-bin'}" in result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
