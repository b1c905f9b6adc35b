"""The sandbox starts, records statements, stops with nothing left, and refuses bad input."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest

from dbtools.errors import SandboxError
from dbtools.sandbox import Sandbox, temporary_sandbox
from tests.conftest import Database, PgServer
from tests.helpers import processes_using, run_dbtools

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
    assert status.returncode == 0 and "running: pid" in status.stdout
    assert processes_using(directory / "data")

    stopped = run_dbtools("sandbox", "stop", "--dir", str(directory), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert processes_using(directory / "data") == []
    assert not directory.exists()
    after = run_dbtools("sandbox", "status", "--dir", str(directory), env=env)
    assert after.returncode == 1 and "no sandbox running" in after.stdout


@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()])
def test_context_manager_always_stops(interrupt: BaseException) -> None:
    seen: list[Path] = []
    with pytest.raises(type(interrupt)), temporary_sandbox(pg_bin=PG_BIN) as sandbox:
        seen.append(sandbox.data_dir)
        with psycopg.connect(sandbox.dsn()) as conn:
            conn.execute("SELECT 1")
        raise interrupt
    assert processes_using(seen[0]) == []
    assert not seen[0].exists()


def _assert_one_line_exit_2(result: object, expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], lines
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_pg_bin_without_postgres_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_dbtools("sandbox", "start", "--dir", str(tmp_path / "sb"), "--pg-bin", str(empty))
    _assert_one_line_exit_2(result, f"no executable 'postgres' in --pg-bin {empty}")
    assert not (tmp_path / "sb").exists()


def test_port_in_use_is_refused(sandbox_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_dbtools(
            "sandbox", "start", "--dir", str(sandbox_dir / "sb"), "--port", str(port),
            env=ENV,
        )  # fmt: skip
    _assert_one_line_exit_2(result, f"port {port} is already in use")
    assert not (sandbox_dir / "sb").exists()


def test_directory_of_a_running_server_is_refused() -> None:
    with temporary_sandbox(pg_bin=PG_BIN) as running:
        before = set(processes_using(running.data_dir))
        for directory, expected in [
            (running.directory, "belongs to a running server"),
            (running.data_dir, "is a PostgreSQL data directory of a running server"),
        ]:
            result = run_dbtools("sandbox", "start", "--dir", str(directory), env=ENV)
            _assert_one_line_exit_2(result, expected)
        # Nothing new was started, and the running server is untouched.
        assert set(processes_using(running.data_dir)) == before
        with psycopg.connect(running.dsn()) as conn:
            conn.execute("SELECT 1")


def test_library_raises_sandbox_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no executable"):
        Sandbox(tmp_path / "sb", pg_bin=tmp_path).start()


def test_runs_as_unprivileged_user_when_root() -> None:
    with temporary_sandbox(pg_bin=PG_BIN) as sandbox:
        owner = sandbox.data_dir.stat().st_uid
        server_uid = Path(f"/proc/{sandbox.status().pid}").stat().st_uid
    expected = os.geteuid() if os.geteuid() != 0 else owner
    assert owner != 0 and server_uid == expected
