"""A probe for tests/test_make.py, never collected on its own (its name is not ``test_*.py``):
``make test PYTEST_ARGS=tests/make_probe.py`` runs it once per PostgreSQL major, and it fails
deliberately on the one ``DBTOOLS_MAKE_PROBE_FAIL_ON`` names (``embedded``, or a bin directory)."""

from __future__ import annotations

import os


def test_fails_on_the_chosen_server() -> None:
    current = os.environ.get("DBTOOLS_TEST_PG_BIN") or "embedded"
    assert current != os.environ.get("DBTOOLS_MAKE_PROBE_FAIL_ON"), f"deliberate failure: {current}"
