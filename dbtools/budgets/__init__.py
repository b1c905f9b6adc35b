"""Query budgets in an application's own test suite: what a block of its code sent to PostgreSQL,
counted on the server from pg_stat_statements (``count``), held against a test's budget, a
marker's limit or a recorded budgets file (``check``, ``budget_file``), through a pytest plugin
that is off unless asked for (``pytest_plugin``; docs/query-budgets.md)."""

MARKER = "query_budget"  # @pytest.mark.query_budget(max=3, per="request")
DSN_VARIABLE = "DBTOOLS_BUDGETS_DSN"  # the database to count in, when no fixture says
