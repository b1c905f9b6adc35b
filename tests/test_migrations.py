"""The migrations: one head, downgrades that leave no trace, offline SQL that builds the same
schema, and safety under concurrency, faults and locks."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from dbtools.schema.dump import diff, dump_schema
from dbtools.schema.manifest import head_revision, manifest_at
from dbtools.schema.monitoring import MONITORING_SCHEMA
from dbtools.schema.revisions import (
    downgrade,
    offline_sql,
    script_directory,
    upgrade,
)
from tests.conftest import Database
from tests.helpers import REPO

REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008"]
HEAD_REVISION = REVISIONS[-1]
HEAD = manifest_at(HEAD_REVISION)
BATCH_INDEXES = HEAD.batch_indexes
AUTOVACUUM_SETTINGS = HEAD.table_settings
MONITORING_TABLES = HEAD.monitoring_tables


def alembic(dsn: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`alembic -x dsn=… ARGS` in a child process, as a deploy script runs it."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "-x", f"dsn={dsn}", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def assert_same_schema(before: str, after: str) -> None:
    assert before == after, "schema differs:\n" + diff(before, after)


def seed(database: Database, offers: int = 2000) -> None:
    """A few travelers, trip requests and offers, so that builds and locks meet real rows."""
    database.execute(
        f"""
        INSERT INTO travelers (email) SELECT 't' || g || '@example.com' FROM generate_series(1, 50) g;
        INSERT INTO trip_requests (traveler_id, origin_code, destination_code, departure_date,
                                   search_key, status)
        SELECT 1 + g % 50, 'LHR', 'JFK', date '2027-01-01' + g % 30, 'LHR-JFK-' || g % 30,
               CASE WHEN g % 4 = 0 THEN 'expired' ELSE 'active' END
        FROM generate_series(1, 200) g;
        INSERT INTO flight_offers (trip_request_id, offer_key, carrier_code, flight_number,
                                   departure_at, arrival_at, price_total, currency, expires_at)
        SELECT 1 + g % 200, 'offer-' || g, 'BA', 'BA' || g % 300, now(), now() + interval '7 hours',
               100 + g % 900, 'USD', now() + interval '1 hour'
        FROM generate_series(1, {offers}) g;
        """
    )


def index_health(database: Database) -> dict[str, tuple[bool, bool]]:
    rows = database.execute(
        "SELECT c.relname, i.indisvalid, i.indisready FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)",
        ([spec.name for spec in BATCH_INDEXES],),
    )
    return {name: (valid, ready) for name, valid, ready in rows}


def reloptions(database: Database, table: str) -> dict[str, str]:
    rows = database.execute(
        "SELECT option_name, option_value FROM pg_class c, pg_options_to_table(c.reloptions) "
        "WHERE c.oid = %s::regclass",
        (table,),
    )
    return dict(rows)


# -- the revision graph -------------------------------------------------------------------------


def test_one_head_and_a_linear_history() -> None:
    script = script_directory()
    assert script.get_heads() == [HEAD_REVISION] == [head_revision()]
    walked = [rev.revision for rev in script.walk_revisions("base", "heads")]
    assert walked == list(reversed(REVISIONS))


# -- downgrades leave no trace --------------------------------------------------------------------


def test_each_downgrade_restores_the_schema_before_its_upgrade(database: Database) -> None:
    base = dump_schema(database.dsn)
    schema_at = {"base": base}
    previous = "base"
    for revision in REVISIONS:
        upgrade(database.dsn, revision)
        schema_at[revision] = dump_schema(database.dsn)
        assert schema_at[revision] != schema_at[previous], f"{revision} changed nothing"
        downgrade(database.dsn, previous if previous != "base" else "base")
        assert_same_schema(schema_at[previous], dump_schema(database.dsn))
        upgrade(database.dsn, revision)
        assert_same_schema(schema_at[revision], dump_schema(database.dsn))
        previous = revision
    # base -> head -> base -> head
    downgrade(database.dsn, "base")
    assert_same_schema(base, dump_schema(database.dsn))
    upgrade(database.dsn, "head")
    assert_same_schema(schema_at[HEAD_REVISION], dump_schema(database.dsn))
    assert database.execute(f"SELECT count(*) FROM {MONITORING_SCHEMA}.setting_changes") == [
        (sum(len(spec.settings) for spec in AUTOVACUUM_SETTINGS),)
    ]


def test_head_builds_every_declared_object(migrated_database: Database) -> None:
    assert index_health(migrated_database) == {spec.name: (True, True) for spec in BATCH_INDEXES}
    for spec in AUTOVACUUM_SETTINGS:
        assert reloptions(migrated_database, spec.qualified_table) == dict(spec.settings)
    tables = migrated_database.execute(
        "SELECT c.relname, c.relispartition FROM pg_class c "
        "WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1",
        (MONITORING_SCHEMA,),
    )
    assert [t for t, partition in tables if not partition] == sorted(MONITORING_TABLES)
    # 0008: the four sample tables' partitions of today and tomorrow (UTC)
    (today,) = migrated_database.execute("SELECT (now() AT TIME ZONE 'UTC')::date")[0]
    days = [f"{day:%Y%m%d}" for day in (today, today + dt.timedelta(days=1))]
    assert sorted(t for t, partition in tables if partition) == sorted(
        f"{table}_p{day}"
        for table in ("statement_stats", "table_stats", "index_stats", "database_stats")
        for day in days
    )


def test_downgrade_restores_a_dba_setting_exactly(database: Database) -> None:
    upgrade(database.dsn, "0002")
    database.execute(
        "ALTER TABLE flight_offers SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.07)"
    )
    database.execute("ALTER TABLE trip_requests SET (autovacuum_analyze_scale_factor = 0.3)")
    before = {
        spec.table: reloptions(database, spec.qualified_table) for spec in AUTOVACUUM_SETTINGS
    }
    upgrade(database.dsn, "head")
    offers = reloptions(database, "public.flight_offers")
    assert offers["autovacuum_vacuum_scale_factor"] == "0.05" and offers["fillfactor"] == "70"
    downgrade(database.dsn, "0002")
    after = {spec.table: reloptions(database, spec.qualified_table) for spec in AUTOVACUUM_SETTINGS}
    assert (
        after
        == before
        == {
            "flight_offers": {"fillfactor": "70", "autovacuum_vacuum_scale_factor": "0.07"},
            "flight_search_cache": {},
            "trip_requests": {"autovacuum_analyze_scale_factor": "0.3"},
        }
    )
    assert database.execute(f"SELECT count(*) FROM {MONITORING_SCHEMA}.setting_changes") == [(0,)]


# -- offline SQL ----------------------------------------------------------------------------------


def _statements(sql_text: str) -> list[str]:
    """Split Alembic's offline output into statements (DO bodies kept whole)."""
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    for line in sql_text.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        current.append(line)
        in_dollar ^= line.count("$$") % 2 == 1
        if line.rstrip().endswith(";") and not in_dollar:
            statements.append("\n".join(current).strip())
            current = []
    return statements


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_offline_sql_builds_and_drops_indexes_outside_transactions(direction: str) -> None:
    text = (
        offline_sql("base:head")
        if direction == "upgrade"
        else offline_sql("head:base", downgrade=True)
    )
    statements = _statements(text)
    assert statements[:2] == ["SET lock_timeout = '5s';", "SET statement_timeout = '2h';"]
    verb = "CREATE INDEX CONCURRENTLY" if direction == "upgrade" else "DROP INDEX CONCURRENTLY"
    concurrent = [i for i, s in enumerate(statements) if s.startswith(verb)]
    assert len(concurrent) == len(BATCH_INDEXES)
    for position in concurrent:
        last_tx = next(s for s in reversed(statements[:position]) if s in ("BEGIN;", "COMMIT;"))
        assert last_tx == "COMMIT;", f"{statements[position]} would run inside a transaction"
    for spec in BATCH_INDEXES:
        assert any(spec.name in s for s in (statements[i] for i in concurrent))


def test_offline_sql_applied_with_psql_matches_online(
    database: Database, migrated_database: Database
) -> None:
    empty = dump_schema(database.dsn)
    result = database.psql(input=offline_sql("base:head"))
    assert result.returncode == 0, result.stderr
    assert_same_schema(dump_schema(migrated_database.dsn), dump_schema(database.dsn))
    assert database.execute("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    result = database.psql(input=offline_sql("head:base", downgrade=True))
    assert result.returncode == 0, result.stderr
    assert_same_schema(empty, dump_schema(database.dsn))


# -- concurrency, faults and locks ---------------------------------------------------------------


def test_four_simultaneous_upgrades_apply_each_revision_once(database: Database) -> None:
    seed_revision = "0001"
    upgrade(database.dsn, seed_revision)
    seed(database)
    command = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"),
               "-x", f"dsn={database.dsn}", "upgrade", "head"]  # fmt: skip
    runs = [
        subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outputs = [run.communicate(timeout=180)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    log = "".join(outputs)
    for older, newer in itertools.pairwise(REVISIONS):
        assert log.count(f"Running upgrade {older} -> {newer}") == 1, log
    assert "ERROR" not in log and "deadlock" not in log.lower()
    assert index_health(database) == {spec.name: (True, True) for spec in BATCH_INDEXES}
    assert database.execute(f"SELECT count(*) FROM {MONITORING_SCHEMA}.setting_changes") == [
        (sum(len(spec.settings) for spec in AUTOVACUUM_SETTINGS),)
    ]


@contextmanager
def open_writer(database: Database, table: str) -> Iterator[psycopg.Connection[object]]:
    """A transaction that has written to *table* and stays open (holds ROW EXCLUSIVE)."""
    conn = psycopg.connect(database.dsn)
    try:
        conn.execute(f"UPDATE {table} SET updated_at = now() WHERE id = 1")
        yield conn
    finally:
        conn.rollback()
        conn.close()


def wait_for_backend(database: Database, pattern: str, timeout: float = 30) -> int:
    """The pid of this test's migration backend waiting on a lock (its own database only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = database.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'dbtools-migrate' AND query LIKE %s "
            "AND wait_event_type = 'Lock'",
            (pattern,),
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"no migration backend waiting on {pattern}")


def test_terminated_index_build_converges_on_the_next_upgrade(database: Database) -> None:
    upgrade(database.dsn, "0002")
    seed(database)
    # The build of the flight_offers index waits for this open writer after creating its
    # (invalid) catalog entry; terminating it there leaves the invalid leftover behind.
    with open_writer(database, "flight_offers"):
        run = subprocess.Popen(
            [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "-x",
             f"dsn={database.dsn}", "-x", "lock_timeout=60s", "upgrade", "head"],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        pid = wait_for_backend(database, "CREATE INDEX CONCURRENTLY ix_flight_offers_trip_expiry%")
        database.execute("SELECT pg_terminate_backend(%s)", (pid,))
        _, err = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "terminating connection" in err or "server closed the connection" in err
    assert index_health(database)["ix_flight_offers_trip_expiry"] == (False, False)
    assert database.execute("SELECT version_num FROM alembic_version") == [("0002",)]

    again = alembic(database.dsn, "upgrade", "head")
    assert again.returncode == 0, again.stderr
    assert "is invalid (a failed build); dropping it" in again.stderr
    assert index_health(database) == {spec.name: (True, True) for spec in BATCH_INDEXES}
    invalid = database.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    assert invalid == [(0,)]
    assert database.execute("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


class ReaderProbe(threading.Thread):
    """Reads *table* over and over, recording the longest a read had to wait."""

    def __init__(self, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table = dsn, table
        self.longest = 0.0
        self.reads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                conn.execute(f"SELECT count(*) FROM {self.table}")
                self.longest = max(self.longest, time.monotonic() - started)
                self.reads += 1
                time.sleep(0.02)


@pytest.mark.parametrize(
    ("start", "target", "lock_sql", "locked", "message"),
    [
        # An index build meets a manual VACUUM-like lock: the build is retried, then undone.
        ("0002", "head", "LOCK TABLE flight_offers IN SHARE UPDATE EXCLUSIVE MODE",
         "flight_offers", "lock timeout on table public.flight_offers"),
        # A DROP TABLE (ACCESS EXCLUSIVE) in a transactional revision meets an open reader.
        ("0002", "0001", f"SELECT count(*) FROM {MONITORING_SCHEMA}.table_stats",
         f"{MONITORING_SCHEMA}.table_stats", f"lock timeout on {MONITORING_SCHEMA}.table_stats"),
    ],
    ids=["index-build", "drop-table"],
)  # fmt: skip
def test_locked_table_retries_then_fails_cleanly(
    database: Database, start: str, target: str, lock_sql: str, locked: str, message: str
) -> None:
    upgrade(database.dsn, start)
    seed(database, offers=200)
    before = dump_schema(database.dsn)
    holder = psycopg.connect(database.dsn)
    holder.execute(lock_sql)
    reader = ReaderProbe(database.dsn, locked)
    reader.start()
    try:
        started = time.monotonic()
        command = "upgrade" if target == "head" else "downgrade"
        result = alembic(
            database.dsn, "-x", "lock_timeout=300ms", "-x", "lock_retries=2",
            "-x", "retry_backoff=0.1", command, target,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        reader.stop.set()
        reader.join()
        holder.rollback()
        holder.close()
    assert result.returncode != 0
    failure = [line for line in result.stderr.splitlines() if "still locked" in line]
    assert len(failure) == 1 and message in failure[0] and "after 3 tries" in failure[0], (
        result.stderr
    )
    assert len(re.findall(r"lock timeout on .* \(try \d\); retrying", result.stderr)) == 2
    assert elapsed < 30
    # Nothing of the failed revision remains, and readers were never held past the lock timeout.
    assert_same_schema(before, dump_schema(database.dsn))
    assert database.execute("SELECT version_num FROM alembic_version") == [(start,)]
    assert reader.reads > 3
    assert reader.longest < 0.3 + 0.25, f"a reader waited {reader.longest:.2f}s"


# -- squawk --------------------------------------------------------------------------------------


def test_offline_sql_of_each_revision_passes_squawk() -> None:
    from dbtools.safety.lint import lint_revisions, location

    result = lint_revisions()
    assert result.revisions == tuple(REVISIONS)
    squawk = [f for f in result.findings if f.source == "squawk"]
    # Checked revision by revision and direction by direction: every squawk finding belongs to one.
    assert {(location(f).revision, location(f).direction) for f in squawk} <= {
        (r, d) for r in REVISIONS for d in ("upgrade", "downgrade")
    }
    assert result.violations == (), "\n".join(
        f"{location(f).revision} {location(f).direction} {f.check}: {f.subject}"
        for f in result.violations
    )
    # Ignored rules carry a written reason; the project excludes no squawk rule wholesale.
    assert all(len((f.because or "").split()) >= 3 for f in result.ignored)
    assert result.squawk_excluded == {}
    # (Alembic's own alembic_version, squawk's prefer-text-field, is not a finding at all.)
    assert {f.check for f in squawk} == {
        "ban-drop-table", "ban-drop-function", "ban-drop-schema",
        # 0004: the texts column emptied by a rewrite, and filled again by its downgrade
        "changing-column-type", "ban-drop-not-null", "ban-drop-column",
        "adding-not-nullable-field",
        # 0005: the monitoring tables' keys rebuilt target first, in one transaction
        "adding-serial-primary-key-field", "ban-drop-constraint", "disallowed-unique-constraint",
        "require-concurrent-index-creation", "require-concurrent-index-deletion",
        "adding-foreign-key-constraint",
        # 0007: the latency histogram's counts, four bytes each
        "prefer-bigint-over-int",
        # 0008: the sample tables renamed, rebuilt partitioned by day, and dropped
        "renaming-table",
    }  # fmt: skip


# -- the migration lock and programmatic use ------------------------------------------------------


def test_migration_lock_wait_runs_out_naming_the_holder(database: Database) -> None:
    from dbtools.schema.online import MIGRATION_LOCK_KEY

    with psycopg.connect(database.dsn, autocommit=True, application_name="other-deploy") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        holder_pid = holder.info.backend_pid
        started = time.monotonic()
        result = alembic(database.dsn, "-x", "lock_wait=1", "upgrade", "head")
        waited = time.monotonic() - started
    assert result.returncode != 0
    assert (
        f"another migration holds the migration lock: pid {holder_pid} (other-deploy"
        in result.stderr
    )
    assert "waited 1s" in result.stderr and 1 <= waited < 15
    assert database.execute("SELECT to_regclass('public.alembic_version')") == [(None,)]


def test_a_connection_passed_in_config_attributes_is_used(database: Database) -> None:
    import sqlalchemy as sa
    from alembic import command

    from dbtools.schema.revisions import alembic_config

    engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(database.dsn)
    )
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            revision = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert revision.scalar() == HEAD_REVISION
    finally:
        engine.dispose()
    assert index_health(database) == {spec.name: (True, True) for spec in BATCH_INDEXES}


# -- a connection or an engine handed in config.attributes["connection"] ---------------------------


def handed_engine(database: Database) -> Any:
    import sqlalchemy as sa

    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database.dsn))


def migration_lock_free(database: Database) -> bool:
    """Whether another session could take the migration lock now (and leaves it free)."""
    from dbtools.schema.online import MIGRATION_LOCK_KEY

    with psycopg.connect(database.dsn, autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        if got == (True,):
            other.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        return got == (True,)


def seen_from_outside(database: Database) -> tuple[Any, Any]:
    """What another session sees: the caller's own table, and the alembic revision."""
    (row,) = database.execute(
        "SELECT to_regclass('public.callers_work')::text, to_regclass('public.alembic_version')"
        " IS NOT NULL"
    )
    revision = database.execute("SELECT version_num FROM alembic_version") if row[1] else None
    return row[0], revision


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_connection_in_the_callers_transaction_stays_the_callers(
    database: Database, outcome: str
) -> None:
    """Alembic's convention (cookbook: "Sharing a Connection across one or more programmatic
    migration commands"): migrations run inside the caller's transaction, which the caller
    alone commits or rolls back; the migration lock is held until it does."""
    import sqlalchemy as sa
    from alembic import command

    from dbtools.schema.revisions import alembic_config

    engine = handed_engine(database)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE TABLE callers_work (id int)"))
            connection.execute(sa.text("INSERT INTO callers_work VALUES (42)"))
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
            assert connection.in_transaction() and not connection.closed
            assert connection.execute(sa.text("SELECT id FROM callers_work")).all() == [(42,)]
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")
                                      ).all() == [("0002",)]  # fmt: skip
            assert seen_from_outside(database) == (None, None)  # nothing committed yet
            assert not migration_lock_free(database)  # held until the caller's transaction ends
            settings = connection.execute(sa.text(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            )).one()  # fmt: skip
            assert tuple(settings) == ("0", "0")  # the migration's timeouts were its own
            getattr(connection, outcome)()
            assert migration_lock_free(database)
        if outcome == "commit":
            assert seen_from_outside(database) == ("callers_work", [("0002",)])
            assert database.execute("SELECT id FROM callers_work") == [(42,)]
        else:
            assert seen_from_outside(database) == (None, None)
    finally:
        engine.dispose()


def test_concurrent_builds_are_refused_inside_the_callers_transaction(database: Database) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.util import CommandError

    from dbtools.schema.revisions import alembic_config

    engine = handed_engine(database)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE TABLE callers_work (id int)"))
            config = alembic_config()
            config.attributes["connection"] = connection
            with pytest.raises(CommandError) as refused:
                command.upgrade(config, "head")
            message = str(refused.value)
            assert (
                "CREATE INDEX CONCURRENTLY public.ix_trip_requests_active_batch cannot run "
                "inside the caller's transaction" in message
            )
            assert "hand an Engine, or a Connection outside a transaction" in message
            assert "nothing of this run was applied" in message
            # The caller's transaction is open, its own work intact, nothing of the migration in it.
            assert connection.in_transaction()
            assert connection.execute(sa.text(
                "SELECT to_regclass('public.callers_work')::text, "
                "to_regclass('public.alembic_version')::text, to_regclass('public.travelers')::text"
            )).one() == ("callers_work", None, None)  # fmt: skip
            connection.commit()
        assert seen_from_outside(database) == ("callers_work", None)
        assert migration_lock_free(database)
    finally:
        engine.dispose()


def test_a_connection_outside_a_transaction_is_left_open_as_it_was(database: Database) -> None:
    import sqlalchemy as sa
    from alembic import command

    from dbtools.schema.revisions import alembic_config

    engine = handed_engine(database)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SET statement_timeout = '77s'"))
            connection.commit()
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")  # concurrent builds included: Alembic commits
            assert not connection.closed and not connection.in_transaction()
            settings = connection.execute(sa.text(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            )).one()  # fmt: skip
            assert tuple(settings) == ("0", "77s")  # the caller's session settings, restored
            connection.rollback()
            assert migration_lock_free(database)
        assert database.execute("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
        assert index_health(database) == {spec.name: (True, True) for spec in BATCH_INDEXES}
    finally:
        engine.dispose()


def test_an_engine_is_accepted(database: Database) -> None:
    import sqlalchemy as sa
    from alembic import command

    from dbtools.schema.revisions import alembic_config

    engine = handed_engine(database)
    try:
        config = alembic_config()
        config.attributes["connection"] = engine
        command.upgrade(config, "head")
        assert migration_lock_free(database)
        with engine.connect() as connection:  # the engine still works, its pool intact
            revision = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert revision.scalar() == HEAD_REVISION
            assert connection.execute(sa.text("SELECT pg_try_advisory_lock(1)")).scalar()
        command.downgrade(config, "base")
        assert database.execute("SELECT to_regclass('public.travelers')") == [(None,)]
    finally:
        engine.dispose()


REFUSED = {
    "a URL": "must be a SQLAlchemy Connection or Engine, not builtins.str",
    "a psycopg connection": "must be a SQLAlchemy Connection or Engine, not psycopg.Connection",
    "a SQLite engine": "dbtools' migrations need PostgreSQL, not sqlite",
    "a closed connection": "the Connection in config.attributes['connection'] is closed",
    "an autocommit connection": "is in autocommit mode: every statement of a revision would "
    "commit on its own",
    "an autocommit engine": "is in autocommit mode",
    "a failed transaction": "the caller's transaction on the Connection in "
    "config.attributes['connection'] has already failed: roll it back before migrating",
}


@pytest.mark.parametrize("handed", list(REFUSED))
def test_anything_else_handed_is_refused(database: Database, handed: str) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.util import CommandError

    from dbtools.schema.revisions import alembic_config

    engine = handed_engine(database)
    connection = engine.connect()
    psycopg_connection = psycopg.connect(database.dsn)
    things: dict[str, Callable[[], Any]] = {
        "a URL": lambda: database.dsn,
        "a psycopg connection": lambda: psycopg_connection,
        "a SQLite engine": lambda: sa.create_engine("sqlite://"),
        "a closed connection": lambda: connection,
        "an autocommit connection": lambda: connection.execution_options(
            isolation_level="AUTOCOMMIT"
        ),
        "an autocommit engine": lambda: engine.execution_options(isolation_level="AUTOCOMMIT"),
        "a failed transaction": lambda: connection,
    }
    if handed == "a closed connection":
        connection.close()
    if handed == "a failed transaction":
        with pytest.raises(sa.exc.DataError):
            connection.execute(sa.text("SELECT 1/0"))
    config = alembic_config()
    config.attributes["connection"] = things[handed]()
    try:
        with pytest.raises(CommandError) as refused:
            command.upgrade(config, "head")
        assert REFUSED[handed] in str(refused.value)
        assert database.execute("SELECT to_regclass('public.alembic_version')") == [(None,)]
    finally:
        psycopg_connection.close()
        connection.close()
        engine.dispose()
