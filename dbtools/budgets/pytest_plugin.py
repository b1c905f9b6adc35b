"""dbtools' pytest plugin: query budgets in an application's own test suite (docs/query-budgets.md).

Installed with dbtools (a ``pytest11`` entry point) and off unless asked for: ``--dbtools-budgets``
(or ``dbtools_budgets = true`` in the ini; ``--dbtools-record`` turns it on too). Off, it adds
its options and the ``query_budget`` marker and nothing else.

On, a test is *budgeted* when it uses the ``dbtools_queries`` fixture or carries the marker
(``@pytest.mark.query_budget(max=3, per="request")``). Its count is the sum of its
``dbtools_queries()`` blocks, or, when it opened none, its whole body (not its fixtures' setup).
The count is held against the marker's limit and the count recorded for the test in the
budgets file beside its module (``--dbtools-record`` records it instead); a rise fails the test
naming what changed, a fall is listed at the end of the run (the budget can be tightened).

What is counted is the database ``dbtools_dsn`` names: override that fixture in the
application's conftest.py to return the DSN of the test worker's own database.
"""

from __future__ import annotations

import pytest

from dbtools.budgets import DSN_VARIABLE, MARKER


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dbtools", "query budgets (dbtools, docs/query-budgets.md)")
    group.addoption("--dbtools-budgets", action="store_true",
                    help="count each budgeted test's statements on the server and hold them "
                         "against its budget")  # fmt: skip
    group.addoption("--dbtools-record", action="store_true",
                    help="record each budgeted test's count in the budgets file beside its "
                         "module (implies --dbtools-budgets)")  # fmt: skip
    group.addoption("--dbtools-dsn", default=None,
                    help=f"the database to count in (default: ini dbtools_dsn, ${DSN_VARIABLE}); "
                         "a conftest's dbtools_dsn fixture overrides it")  # fmt: skip
    parser.addini("dbtools_budgets", "turn query budgets on", type="bool", default=False)
    parser.addini("dbtools_dsn", "the database query budgets count in", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(max, per='test', nested=None): at most max top-level statements per test or "
        "per request, and at most nested nested ones (dbtools query budgets)",
    )
    recording = bool(config.getoption("dbtools_record"))
    if recording or config.getoption("dbtools_budgets") or config.getini("dbtools_budgets"):
        # Only now the counting, with the driver and the parser: off, nothing more is imported.
        from dbtools.budgets.plugin import QueryBudgets

        config.pluginmanager.register(QueryBudgets(config, recording), "dbtools-query-budgets")
