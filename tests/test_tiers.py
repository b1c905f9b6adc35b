"""The fast tier (``make test-fast``) runs every test that needs no PostgreSQL server, and really
starts none: here it runs with no server binaries anywhere, so a test that tried would fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def fast_tier() -> str:
    """The mark expression ``make test-fast`` runs (the Makefile is its one home)."""
    found = re.search(r"^FAST_TIER\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert found, "the Makefile defines FAST_TIER"
    return found.group(1).strip()


@pytest.mark.slow  # runs the whole fast tier in a child pytest
def test_the_fast_tier_starts_no_server(sandbox_dir: Path) -> None:
    # A short path in /tmp: Chromium (the report's chart test) puts sockets in $TMPDIR.
    nowhere, scratch = sandbox_dir / "no-postgres-here", sandbox_dir / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBTOOLS_")}
    # Every way a test could get a server leads to binaries that do not exist; whatever the
    # tests create in a temporary directory lands in *scratch*.
    env.update(DBTOOLS_TEST_PG_BIN=str(nowhere), DBTOOLS_PG_BIN=str(nowhere), TMPDIR=str(scratch))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", fast_tier()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-4000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 300, summary
    assert re.search(r"\d+ deselected", summary), summary
    assert not re.search(r"failed|error|skipped", summary), summary
    assert list(scratch.rglob("postmaster.pid")) == []


def test_server_tests_are_marked_through_their_fixtures() -> None:
    """``server`` comes from the fixtures a test uses (directly or through another fixture),
    or by hand on a test that starts a sandbox itself."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", "server", "tests/test_demo.py", "tests/test_sandbox.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    marked = {line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line}
    assert marked == {
        # through migrated_database -> pg_server, database -> pg_server, pg_server itself
        "test_demo_on_a_given_database_measures_exactly_what_the_workload_sent",
        "test_demo_refuses_a_database_that_holds_data",
        "test_pg_stat_statements_is_loaded_and_counts_statements",
        "test_start_status_stop_leaves_no_process",
        "test_start_by_major_runs_that_major",
        # by hand: they start sandboxes of their own
        "test_demo_command_runs_on_a_sandbox_and_leaves_no_process",
        "test_interrupted_demo_stops_its_server",
        "test_context_manager_always_stops[interrupt0]",
        "test_context_manager_always_stops[interrupt1]",
        "test_port_in_use_is_refused",
        "test_directory_of_a_running_server_is_refused",
        "test_runs_as_unprivileged_user_when_root",
    }
