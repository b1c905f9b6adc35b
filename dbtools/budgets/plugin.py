"""The query budgets plugin's work, registered by ``pytest_plugin`` when budgets are on: the
``dbtools_dsn`` and ``dbtools_queries`` fixtures, counting each budgeted test, holding it to its
budget, recording it, and the notes at the end of the run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbtools.budgets import DSN_VARIABLE, MARKER
from dbtools.budgets.budget_file import budget_path, load_budgets, record_budgets
from dbtools.budgets.check import Limit, Verdict, against_recorded, within_limit
from dbtools.budgets.count import Mark, QueryCount, StatementCounter
from dbtools.errors import DbtoolsError

FIXTURE = "dbtools_queries"
NOTE = "dbtools_query_budget"  # the user property that carries a note to the controller


@dataclass
class Queries:
    """One block's count, filled when the block ends."""

    requests: int | None = None
    count: QueryCount = field(default_factory=QueryCount)

    @property
    def statements(self) -> int:
        return self.count.statements

    @property
    def nested(self) -> int:
        return self.count.nested

    @property
    def transactions(self) -> int:
        return self.count.transactions

    @property
    def families(self) -> dict[str, int]:
        """Calls by family label (nested ones suffixed ``(nested)``)."""
        found: dict[str, int] = {}
        for family in self.count.families:
            label = family.label + (" (nested)" if family.nested else "")
            found[label] = found.get(label, 0) + family.calls
        return found


class BlockCounter:
    """The ``dbtools_queries`` fixture: ``with dbtools_queries(requests=10) as q: …`` counts
    a block on the server; the test's budget applies to its blocks added up."""

    def __init__(self, counter: StatementCounter) -> None:
        self.counter = counter
        self.blocks: list[QueryCount] = []

    @contextmanager
    def __call__(self, *, requests: int | None = None) -> Iterator[Queries]:
        queries = Queries(requests)
        start = self.counter.mark()
        yield queries
        queries.count = self.counter.since(start, requests=requests)
        self.blocks.append(queries.count)

    def total(self) -> QueryCount:
        return sum(self.blocks[1:], self.blocks[0])


def _name(item: pytest.Item) -> str:
    """The test's name in its module's budgets file."""
    return item.nodeid.split("::", 1)[1]


class QueryBudgets:
    """The plugin, registered when query budgets are on."""

    def __init__(self, config: pytest.Config, recording: bool) -> None:
        self.config = config
        self.recording = recording
        self.notes: list[tuple[str, str]] = []
        self.recorded: set[Path] = set()

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture(scope="session")
    def dbtools_dsn(self) -> str:
        """The database to count in: --dbtools-dsn, ini dbtools_dsn, $DBTOOLS_BUDGETS_DSN.
        Override it to return the test worker's own database."""
        dsn = (self.config.getoption("dbtools_dsn") or self.config.getini("dbtools_dsn")
               or os.environ.get(DSN_VARIABLE))  # fmt: skip
        if not dsn:
            pytest.fail("query budgets: no database to count in: override the dbtools_dsn "
                        f"fixture, or give --dbtools-dsn or ${DSN_VARIABLE}", pytrace=False)  # fmt: skip
        return str(dsn)

    @pytest.fixture
    def dbtools_queries(
        self, request: pytest.FixtureRequest, dbtools_dsn: str
    ) -> Iterator[BlockCounter]:
        """Count a block on the server: ``with dbtools_queries() as q: …; q.statements``."""
        try:
            counter = StatementCounter(dbtools_dsn)
        except DbtoolsError as err:
            pytest.fail(f"query budgets: {err}", pytrace=False)
        if counter.track != "all":
            request.node.user_properties.append((NOTE, (
                f"{request.node.nodeid}: pg_stat_statements.track = {counter.track}: nested "
                "statements (triggers, functions, foreign-key checks) are not counted")))  # fmt: skip
        try:
            yield BlockCounter(counter)
        finally:
            counter.close()

    # -- hooks ------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:  # a marked test is counted even when it does not ask for the fixture
            names = getattr(item, "fixturenames", None)
            if item.get_closest_marker(MARKER) and names is not None and FIXTURE not in names:
                names.append(FIXTURE)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        blocks = getattr(item, "funcargs", {}).get(FIXTURE)
        if not isinstance(blocks, BlockCounter):
            return (yield)
        start: Mark = blocks.counter.mark()
        try:
            result = yield
        except Exception:
            # The test failed on its own (its assert on the count, say): its report still says
            # what changed, in a section of its own. Nothing is recorded.
            with contextlib.suppress(DbtoolsError):
                count = blocks.total() if blocks.blocks else blocks.counter.since(start)
                failures = self._verdict(item, count, record=False).failures
                if failures:
                    item.add_report_section("call", "query budget", "\n".join(failures))
            raise
        try:
            count = blocks.total() if blocks.blocks else blocks.counter.since(start)
            verdict = self._verdict(item, count, record=self.recording)
        except DbtoolsError as err:
            pytest.fail(f"query budgets: {err}", pytrace=False)
        for note in verdict.notes:
            item.user_properties.append((NOTE, f"{item.nodeid}: {note}"))
        if verdict.failures:
            pytest.fail("\n".join(verdict.failures), pytrace=False)
        return result

    def _verdict(self, item: pytest.Item, count: QueryCount, *, record: bool) -> Verdict:
        verdict = Verdict()
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            if marker.args:
                raise DbtoolsError("query_budget takes keywords: query_budget(max=3, per='test')")
            verdict += within_limit(count, Limit(**marker.kwargs))
        path = budget_path(item.path)
        if record:
            record_budgets(path, {_name(item): count})
            item.user_properties.append((NOTE, f"recorded in {path.name}: {_name(item)}"))
            return verdict
        recorded = load_budgets(path).get(_name(item))
        if recorded is not None:
            verdict += against_recorded(count, recorded, path.name)
        return verdict

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Here in the controller too: pytest-xdist sends each report with its user properties
        # (those of the call phase: the teardown's report carries them again).
        if report.when == "call":
            self.notes += [(name, str(value)) for name, value in report.user_properties
                           if name == NOTE]  # fmt: skip

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.notes:
            return
        terminalreporter.section("query budgets")
        for _, note in self.notes:
            terminalreporter.write_line(note)
