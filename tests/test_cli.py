"""The command line: help everywhere, one-line errors, exit codes, where connections come from."""

from __future__ import annotations

import json
import socket

import click
import pytest
from psycopg import conninfo

from dbtools import __version__
from dbtools.cli import cli
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, run_cli, run_dbtools


def _command(group: click.Group, name: str) -> click.Command:
    command = group.get_command(click.Context(group), name)
    assert command is not None, name
    return command


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name in group.list_commands(click.Context(group)):
        command = _command(group, name)
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "dbtools")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = _command(command, name)
    summary = (command.help or "").strip().splitlines()[0]
    assert summary and summary in result.output


def test_version_as_module() -> None:
    result = run_dbtools("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"dbtools, version {__version__}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_names_host_never_password() -> None:
    port = _closed_port()
    result = run_dbtools("doctor", "--dsn", f"postgresql://alice:Sup3rS3cret@127.0.0.1:{port}/app")
    line = assert_usage_error(result, "")
    assert line.startswith(f"Error: cannot connect to host 127.0.0.1 port {port} database app")
    assert "Sup3rS3cret" not in result.stderr


def test_wrong_password_exit_2_without_password(database: Database, pg_server: PgServer) -> None:
    if pg_server.sandbox is None:
        pytest.fail("this test needs the sandbox's password authentication on TCP")
    database.execute("CREATE ROLE dbtools_pw_probe LOGIN PASSWORD 'right-one'")
    try:
        dsn = pg_server.sandbox.tcp_dsn(database.name, "dbtools_pw_probe", "Wr0ngPassw0rd")
        result = run_dbtools("doctor", "--dsn", dsn)
        assert_usage_error(result, "password authentication failed")
        assert "Wr0ngPassw0rd" not in result.stderr
    finally:
        database.execute("DROP ROLE dbtools_pw_probe")


def test_traceback_flag_shows_the_stack() -> None:
    port = _closed_port()
    result = run_dbtools(
        "--traceback", "doctor", "--dsn", f"postgresql://u:pw123456@127.0.0.1:{port}/x"
    )
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "pw123456" not in result.stderr


@pytest.mark.parametrize(
    "bad", ["mysql://u@h/db", "host=h port=5432 =oops", "postgresql://u@h:notaport/db"]
)
def test_malformed_dsn_is_a_usage_error(bad: str) -> None:
    assert_usage_error(run_dbtools("doctor", "--dsn", bad), "")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("postgresql://u:p%zzS3cret@h/db", "a bad percent-escape in the URL's password"),
        ("postgresql://u:S3cret@h/d%zb", "a bad percent-escape in the URL's database name"),
        (
            "postgresql://u:S3cret@h/db?password=S3cret%zz",
            "a bad percent-escape in the value of the URL's query parameter password",
        ),
        ("postgresql://u:S3cret@[::1/db", "an unclosed '[' in the URL's host"),
        (
            "postgresql://u:S3cret@h/db?S3cret&sslmode=require",
            "the URL's query parameter 1 has no '='",
        ),
        ("host=h password='S3cret", "an unclosed quote in the value of password"),
        ("host=h password='S3\\'cret user=u", "an unclosed quote in the value of password"),
        ("host=h S3cretword", "word 2 has no '=' (keyword=value expected)"),
        ("host=h =S3cret", "word 2 has no keyword before '='"),
        ("mysql://u:S3cret@h/db", "not a PostgreSQL URL: its scheme is mysql"),
    ],
)
def test_a_malformed_dsn_is_reported_without_its_secrets(bad: str, expected: str) -> None:
    """libpq's own messages quote the part they stumble on: the password, often."""
    for result in (run_dbtools("doctor", "--dsn", bad),
                   run_dbtools("doctor", env={"DATABASE_URL": bad})):  # fmt: skip
        line = assert_usage_error(result, expected)
        assert line.startswith("Error: malformed DSN: ") or "scheme" in line
        assert "S3cret" not in result.stderr and "S3" not in line


def _connection_forms(database: Database) -> dict[str, tuple[list[str], dict[str, str]]]:
    params = conninfo.conninfo_to_dict(database.dsn)
    host, port, user, name = (str(params.get(k, "")) for k in ("host", "port", "user", "dbname"))
    url = f"postgresql://{user}@/{name}?host={host}&port={port}"
    # An empty DATABASE_URL counts as unset, so libpq's own variables decide.
    return {
        "url option": (["--dsn", url], {"DATABASE_URL": ""}),
        "sqlalchemy url": (["--dsn", url.replace("postgresql://", "postgresql+psycopg://")], {}),
        "keyword dsn": (["--dsn", f"host={host} port={port} user={user} dbname={name}"], {}),
        "DATABASE_URL": ([], {"DATABASE_URL": url}),
        "PG* variables": ([], {"DATABASE_URL": "", "PGHOST": host, "PGPORT": port,
                               "PGUSER": user, "PGDATABASE": name}),
    }  # fmt: skip


@pytest.mark.parametrize(
    "form", ["url option", "sqlalchemy url", "keyword dsn", "DATABASE_URL", "PG* variables"]
)
def test_connection_settings_sources(migrated_database: Database, form: str) -> None:
    database = migrated_database
    args, env = _connection_forms(database)[form]
    result = run_dbtools("doctor", *args, env={"DATABASE_URL": "", **env})
    assert result.returncode == 0, result.stderr
    assert f"database: {database.name} as role" in result.stdout


def test_group_help_lists_every_exit_code() -> None:
    text = run_cli("--help").output
    for code, meaning in [("0", "success"), ("1", "checks found problems"),
                          ("2", "usage, configuration or connection error"),
                          ("3", "rollback threshold"), ("130", "interrupted (Ctrl-C, SIGTERM)")]:  # fmt: skip
        assert any(line.split()[:1] == [code] and meaning in line for line in text.splitlines())


def test_demo_dsn_help_says_what_happens_without_one() -> None:
    text = " ".join(run_cli("demo", "--help").output.split())
    assert "Without --dsn the demo starts a throwaway embedded PostgreSQL" in text
    assert "$DATABASE_URL is never used" in text


def test_doctor_json(migrated_database: Database) -> None:
    database = migrated_database
    result = run_cli("doctor", "--dsn", database.dsn, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["schema_version"], document["kind"], document["ok"]) == (2, "doctor", True)
    assert document["server"]["database"] == database.name
    assert [c["check"] for c in document["checks"]] == [
        "server", "database", "pg_stat_statements preloaded", "pg_stat_statements created",
        "pg_stat_statements.track", "reads all statistics", "statistics readable",
        "alembic_version readable", "database revision", "monitoring schema usable",
        "snapshots storable", "interrupted capture removable", "stored snapshots readable",
    ]  # fmt: skip
    assert {c["status"] for c in document["checks"]} == {"pass"}
    assert all(state["ready"] for state in document["commands"].values())


def test_doctor_fails_on_a_database_never_migrated(database: Database) -> None:
    result = run_cli("doctor", "--dsn", database.dsn)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "  FAIL  monitoring schema usable: the database was never migrated" in lines
    assert "snapshot: will fail (2 checks); capture: will fail (2 checks)" in lines


def test_verbose_logs_progress_without_the_password(migrated_database: Database) -> None:
    dsn = conninfo.make_conninfo(migrated_database.dsn, password="Pw-in-the-DSN")
    quiet = run_dbtools("snapshot", "--label", "quiet", "--dsn", dsn)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = run_dbtools("-v", "snapshot", "--label", "loud", "--dsn", dsn)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert lines[0].startswith("INFO dbtools.db.connection: connecting to host ")
    assert lines[-1].startswith(
        f"INFO dbtools.store.snapshots: snapshot 'loud' of {migrated_database.name} stored: "
    )
    assert "Pw-in-the-DSN" not in loud.stderr
