"""Query budgets (dbtools.budgets): counts on the server, exact and scoped to one database, and the
pytest plugin run on an application's suite under two pytest-xdist workers, as a subprocess (the
main suite's own invocation stays as it is)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from dbtools.budgets.budget_file import budget_path, load_budgets
from dbtools.budgets.check import against_recorded, changes
from dbtools.budgets.count import CountNotExact, FamilyCount, QueryCount, StatementCounter
from dbtools.workload import queries
from tests.conftest import Database, PgServer
from tests.helpers import REPO

SUITE = Path(__file__).resolve().parent / "fixtures" / "query_budgets"

AUDIT_SCHEMA = """
CREATE TABLE parent (id bigint PRIMARY KEY);
CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent (id),
                    note text);
CREATE TABLE child_audit (child_id bigint, noted_at timestamptz);
CREATE FUNCTION audit_child() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO child_audit VALUES (NEW.id, now());
    RETURN NEW;
END $$;
CREATE TRIGGER child_audit AFTER INSERT ON child FOR EACH ROW EXECUTE FUNCTION audit_child();
INSERT INTO parent VALUES (1), (2);
"""


@pytest.fixture
def counter(database: Database) -> Iterator[StatementCounter]:
    database.execute(AUDIT_SCHEMA)
    counter = StatementCounter(database.dsn)
    try:
        yield counter
    finally:
        counter.close()


def test_a_block_is_counted_exactly_with_nested_statements_and_transactions_apart(
    database: Database, counter: StatementCounter
) -> None:
    with database.connect() as app:
        start = counter.mark()
        with app.transaction():  # BEGIN … COMMIT: transaction control, apart
            for number in range(4):
                app.execute("INSERT INTO child VALUES (%s, 1, %s)", (number, f"secret {number}"))
        for number in range(3):
            app.execute("SELECT note FROM child WHERE id = %s", (number,))
        app.execute("SET application_name = 'secret-name'")  # a literal kept in the view
        count = counter.since(start, requests=3)
    assert (count.statements, count.nested, count.transactions) == (8, 8, 2)
    calls = {(f.label, f.nested): f.calls for f in count.families}
    assert calls == {
        ("insert on child", False): 4,
        ("lookup by id on child", False): 3,
        ("set", False): 1,
        ("insert on child_audit", True): 4,  # the trigger's
        ("foreign-key check on public.parent", True): 4,
    }
    assert not any("secret" in family.sql for family in count.families)
    assert count.per_request == 8 / 3


def test_other_databases_and_dbtools_own_reads_never_count(
    pg_server: PgServer, database: Database, counter: StatementCounter
) -> None:
    other = Database(pg_server, pg_server.create_database())
    try:
        other.execute(AUDIT_SCHEMA)
        start = counter.mark()
        with other.connect() as noise:  # same role, same statements, another database
            for number in range(5):
                noise.execute("INSERT INTO child VALUES (%s, 1, 'x')", (number,))
        counter.mark()  # dbtools' own reads in the counted database
        with database.connect() as app:
            app.execute("INSERT INTO child VALUES (1, 2, 'y')")
        count = counter.since(start)
    finally:
        pg_server.drop_database(other.name)
    assert (count.statements, count.nested) == (1, 2)


def test_with_track_top_nested_statements_are_not_counted_and_the_counter_says_so(
    database: Database,
) -> None:
    database.execute(AUDIT_SCHEMA)
    database.execute(f"ALTER DATABASE {database.name} SET pg_stat_statements.track = top")
    counter = StatementCounter(database.dsn)
    try:
        start = counter.mark()
        with database.connect() as app:
            app.execute("INSERT INTO child VALUES (1, 1, 'x')")
        count = counter.since(start)
    finally:
        counter.close()
    assert counter.track == "top"
    assert (count.statements, count.nested) == (1, 0)


def test_statements_the_reading_role_may_not_see_are_refused(
    pg_server: PgServer, database: Database, counter: StatementCounter
) -> None:
    reader = f"{database.name}_reader"
    database.execute(f"CREATE ROLE {reader} LOGIN")  # no pg_read_all_stats
    try:
        watcher = StatementCounter(conninfo.make_conninfo(database.dsn, user=reader))
        try:
            start = watcher.mark()
            database.execute("SELECT id FROM parent")  # the superuser's: hidden from the reader
            with pytest.raises(CountNotExact, match="pg_read_all_stats"):
                watcher.since(start)
        finally:
            watcher.close()
    finally:
        database.execute(f"DROP ROLE {reader}")


def test_roles_narrow_the_count_to_their_statements(database: Database) -> None:
    app_role = f"{database.name}_app"
    database.execute(AUDIT_SCHEMA)
    database.execute(f"CREATE ROLE {app_role} LOGIN; GRANT SELECT ON parent TO {app_role}")
    counter = StatementCounter(database.dsn, roles={app_role})
    try:
        start = counter.mark()
        database.execute("SELECT id FROM parent")  # the superuser's: another role
        with psycopg.connect(conninfo.make_conninfo(database.dsn, user=app_role)) as app:
            app.execute("SELECT id FROM parent WHERE id = %s", (1,))
            app.execute("SELECT id FROM parent WHERE id = %s", (2,))
            app.commit()
        count = counter.since(start)
    finally:
        counter.close()
        database.execute(f"DROP OWNED BY {app_role}; DROP ROLE {app_role}")
    assert (count.statements, count.transactions) == (2, 2)  # BEGIN, COMMIT
    assert {f.label: f.calls for f in count.families} == {"lookup by id on parent": 2}


def test_a_reset_inside_the_block_is_refused(database: Database, counter: StatementCounter) -> None:
    database.execute("SELECT 1 FROM parent")
    start = counter.mark()
    database.execute("SELECT pg_stat_statements_reset()")
    with pytest.raises(CountNotExact, match="reset or evicted"):
        counter.since(start)


# -- the plugin on the application's suite, under two workers ---------------------------------


def test_the_plugin_is_installed_and_off_unless_asked_for(tmp_path: Path) -> None:
    names = {e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert "dbtools.budgets.pytest_plugin" in names
    (tmp_path / "test_plain.py").write_text(
        "def test_plain(request):\n"
        "    assert not request.config.pluginmanager.has_plugin('dbtools-query-budgets')\n"
        "    assert 'dbtools.budgets.count' not in __import__('sys').modules\n"
    )
    done = _pytest(tmp_path, {})
    assert done.returncode == 0, done.stdout + done.stderr


def _pytest(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, str(directory)],
        capture_output=True, text=True, cwd=directory, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip


class Noise:
    """The flight search's own lookups, sent over and over in another database on the same
    server (same role, same statements) while the suite runs."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            sql = queries.LOAD_TRIP.sql.replace("%(trip_request_id)b", "%(trip_request_id)s")
            while not self.stop.is_set():
                conn.execute(sql, {"trip_request_id": 1 + self.sent % 50})
                self.sent += 1

    def __enter__(self) -> Noise:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_the_request_handler_under_budgets_with_two_workers(
    pg_server: PgServer, seeded_database: Database, tmp_path: Path
) -> None:
    suite = tmp_path / "app"
    suite.mkdir()
    shutil.copy(SUITE / "conftest_app.py", suite / "conftest.py")
    shutil.copy(SUITE / "search_suite.py", suite / "test_search.py")
    env = {"BUDGETS_ADMIN_DSN": pg_server.admin_dsn, "BUDGETS_TEMPLATE": seeded_database.name}
    workers = ("-p", "xdist", "-n", "2", "--dbtools-budgets")
    noise_db = pg_server.create_database(seeded_database.name)
    try:
        with Noise(pg_server.dsn(noise_db)) as noise:
            recorded = _pytest(suite, env, *workers, "--dbtools-record")
            healthy = _pytest(suite, env, *workers)
            broken = _pytest(suite, {**env, "BUDGETS_FALLBACK": "1"}, *workers)
            lighter = _pytest(suite, {**env, "BUDGETS_AUDITED_ROWS": "4"}, *workers)
    finally:
        pg_server.drop_database(noise_db)
    assert noise.sent > 0

    # Recorded under two workers, exactly: the handler's three statements per search call.
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "created: 2/2 workers" in recorded.stdout
    path = budget_path(suite / "test_search.py")
    budgets = load_budgets(path)
    batched = budgets["test_batched_path_at_10_concurrent_requests"]
    assert (batched.statements, batched.requests, batched.transactions) == (3, 10, 0)
    top = {f.label: f.calls for f in batched.families if not f.nested}
    assert top == {
        "select on public.trip_requests": 1,  # id = ANY($1)
        "select on public.flight_offers, public.flight_search_cache": 1,
        "upsert on public.flight_offers, public.flight_search_cache": 1,
    }
    per_request = budgets["test_per_request_path"]
    assert (per_request.statements, per_request.requests) == (3, 1)
    assert {f.label: f.calls for f in per_request.families if not f.nested} == {
        "lookup by id on public.trip_requests": 1,
        "lookup by search_key, trip_request_id on public.flight_offers, "
        "public.flight_search_cache": 1,
        "upsert on public.flight_offers, public.flight_search_cache": 1,
    }
    audited = budgets["test_audited_insert"]
    assert (audited.statements, audited.nested) == (5, 10)
    assert {f.label: f.calls for f in audited.families if f.nested} == {
        "insert on public.trip_notes_audit": 5,
        "foreign-key check on public.trip_requests": 5,
    }
    assert budgets["test_whole_body_counted_without_a_block"].statements == 2
    document = path.read_text()
    assert "private note" not in document
    assert json.loads(document)["version"] == 1

    # The same suite holds to its budgets.
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "4 passed" in healthy.stdout

    # The batched path falling back to a lookup per request: caught, the change named.
    assert broken.returncode == 1, broken.stdout + broken.stderr
    out = broken.stdout
    assert "2 failed, 2 passed" in out
    assert "query budget exceeded: 3 statements, 0 nested; the budget is 2 per test" in out
    assert "rose: select on public.trip_requests: 2 → 3 calls" in out
    assert "query budget exceeded: 12 statements for 10 requests (1.20 per request)" in out
    assert "the budget is 0.3 per request" in out
    assert "statements per request rose: 0.3 → 1.2 (test_search.query-budgets.json)" in out
    assert re.search(
        r"select on public\.trip_requests replaced by lookup by id on public\.trip_requests: "
        r"1 → 10 calls, an N\+1",
        out,
    ), out

    # A count that falls passes, and is reported so the budget can be tightened.
    assert lighter.returncode == 0, lighter.stdout + lighter.stderr
    assert "query budgets" in lighter.stdout
    assert "statements fell: 5 → 4 (test_search.query-budgets.json)" in lighter.stdout
    assert "fell: insert on public.trip_notes: 5 → 4 calls" in lighter.stdout


# -- the page's example, run as written -----------------------------------------------------

DOC = REPO / "docs" / "query-budgets.md"


def doc_files() -> dict[str, str]:
    """The page's Python blocks that start with ``# NAME.py``, by NAME.py."""
    blocks = re.findall(r"```python\n# (\w+\.py)\n(.*?)```", DOC.read_text(), re.S)
    return {name: code for name, code in blocks}


def test_the_pages_sqlalchemy_example_runs_as_written(pg_server: PgServer, tmp_path: Path) -> None:
    files = doc_files()
    assert sorted(files) == ["conftest.py", "models.py", "test_orders.py"]
    assert len(files["test_orders.py"].strip().splitlines()) == 15
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    url = pg_server.admin_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {"TEST_DATABASE_URL": url}
    workers = ("-p", "xdist", "-n", "2", "--dbtools-budgets")
    recorded = _pytest(tmp_path, env, *workers, "--dbtools-record")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    budget = load_budgets(budget_path(tmp_path / "test_orders.py"))["test_order_totals"]
    assert (budget.statements, budget.nested, budget.transactions) == (2, 0, 2)

    test = tmp_path / "test_orders.py"
    test.write_text(files["test_orders.py"].replace(".options(selectinload(Customer.orders))", ""))
    lazy = _pytest(tmp_path, env, *workers)
    assert lazy.returncode == 1, lazy.stdout + lazy.stderr
    shown = re.search(r"```\n(query budget exceeded: 4 statements.*?)```", DOC.read_text(), re.S)
    assert shown is not None
    for line in shown.group(1).splitlines():
        assert line in lazy.stdout, lazy.stdout


def test_what_changed_names_families_that_rose_appeared_and_went() -> None:
    def family(label: str, sql: str, calls: int, nested: bool = False) -> FamilyCount:
        return FamilyCount(label, label, calls, nested, sql)

    recorded = QueryCount(2, 1, 0, (
        family("select on a", "SELECT x FROM a", 1),
        family("delete on c", "DELETE FROM c WHERE y > $1", 1),
        family("insert on log", "INSERT INTO log VALUES ($1)", 1, nested=True),
    ))  # fmt: skip
    now = QueryCount(4, 2, 0, (
        family("select on a", "SELECT x FROM a", 3),
        family("update on b", "UPDATE b SET x = $1", 1),
        family("insert on log", "INSERT INTO log VALUES ($1)", 2, nested=True),
    ))  # fmt: skip
    lines = [line for line in changes(recorded, now) if not line.startswith("      ")]
    assert sorted(lines) == sorted([
        "  rose: select on a: 1 → 3 calls",
        "  appeared: update on b: 0 → 1 call",
        "  gone: delete on c: 1 → 0 calls",
        "  rose: insert on log (nested): 1 → 2 calls",
    ])  # fmt: skip
    verdict = against_recorded(now, recorded, "x.json")
    assert [f.splitlines()[0] for f in verdict.failures] == [
        "query budget exceeded: statements rose: 2 → 4 (x.json); accept with --dbtools-record",
        "query budget exceeded: nested statements rose: 1 → 2 (x.json); accept with "
        "--dbtools-record",
    ]
    assert against_recorded(recorded, now, "x.json").failures == ()
