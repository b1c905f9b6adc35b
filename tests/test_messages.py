"""Messages: no part of a DSN's text in an error, a refused privilege told as the GRANT that
lifts it (never "internal error"), progress on long work."""

from __future__ import annotations

import logging
import re

import psycopg
import pytest

from dbtools.db.errors import grant_for
from dbtools.sqltext.families import PROGRESS_FROM, shapes_of
from dbtools.workload.queries import APPLICATION_GRANTS
from tests.conftest import Database
from tests.helpers import assert_usage_error, run_cli, run_dbtools

# -- a DSN's text ---------------------------------------------------------------------------------

UNENCODED = "the URL has an '@' after its user name and password"


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        # libpq reads host "ss", database "w:rd@db.example/app": its errors would quote them
        ("postgresql://alice:p@ss/w:rd@db.example/app", ("ss/w", "w:rd", "rd@", "host ss")),
        ("postgresql://alice:Pa@ss@db.example/app", ("Pa@", "ss@db", "host ss")),
        # no user information at all: host "alice", port "Pa": an invalid port quoted
        ("postgresql://alice:Pa/ss@db.example/app", ('"Pa"', "Pa/", "ss@")),
    ],
)
def test_a_url_whose_password_holds_reserved_characters_shows_none_of_it(
    url: str, fragments: tuple[str, ...]
) -> None:
    for result in (run_dbtools("doctor", "--dsn", url),
                   run_dbtools("doctor", env={"DATABASE_URL": url})):  # fmt: skip
        line = assert_usage_error(result, UNENCODED)
        assert line == (
            f"Error: malformed DSN: {UNENCODED}; percent-encode '@', '/' and ':' inside them "
            "(%40, %2F, %3A)"
        )
        assert not any(fragment in result.stderr for fragment in fragments), result.stderr


def test_the_same_password_percent_encoded_is_read_as_written(database: Database) -> None:
    """The refusal above is no false alarm: encoded, the URL names the right host and role."""
    params = psycopg.conninfo.conninfo_to_dict(database.dsn)
    host = str(params["host"]).replace("/", "%2F")
    url = f"postgresql://nobody_here:p%40ss%2Fw%3Ard@{host}:{params['port']}/{database.name}"
    line = assert_usage_error(run_dbtools("doctor", "--dsn", url), "cannot connect to")
    assert 'role "nobody_here" does not exist' in line
    assert "p@ss" not in line and "w:rd" not in line


# -- a refused privilege --------------------------------------------------------------------------

REFUSED = re.compile(
    r"Error: (?P<what>[^:]+): permission denied for (?P<kind>table|sequence|schema) "
    r"(?P<name>\S+) to role (?P<role>\w+); grant it: (?P<grant>GRANT [A-Z, ]+ ON "
    r"(?:SEQUENCE |SCHEMA )?(?:\w+\.)?(?P=name) TO (?P=role);)"
)


@pytest.mark.parametrize(
    ("command", "refusals"),
    [
        # as the application role: it reads travelers (do they hold rows?), fills them and
        # their identity sequences
        (("workload", "seed", "--travelers", "20", "--trip-requests", "40", "--searches", "10"),
         ["GRANT SELECT ON public.travelers", "GRANT SELECT ON public.bookings",
          "GRANT INSERT ON public.travelers", "GRANT INSERT ON public.trip_requests",
          "GRANT UPDATE ON SEQUENCE travelers_id_seq",
          "GRANT UPDATE ON SEQUENCE trip_requests_id_seq"]),
        # as a role without the monitoring grants: what a snapshot reads, then what it stores
        (("snapshot", "--label", "s"),
         ["GRANT SELECT ON public.alembic_version", "GRANT SELECT ON perf_monitoring.snapshots",
          "GRANT INSERT ON perf_monitoring.snapshots",
          "GRANT INSERT ON perf_monitoring.statement_texts",
          # each kind's vanished rows copy the entry's last row: SELECT too
          "GRANT SELECT, INSERT ON perf_monitoring.statement_stats",
          "GRANT SELECT, INSERT ON perf_monitoring.table_stats",
          "GRANT SELECT, INSERT ON perf_monitoring.index_stats",
          "GRANT SELECT, INSERT ON perf_monitoring.database_stats"]),
    ],
    ids=["workload seed", "snapshot"],
)  # fmt: skip
def test_each_refusal_names_the_grant_that_lifts_it(
    migrated_database: Database, command: tuple[str, ...], refusals: list[str]
) -> None:
    """Run as a role with the application's grants only, grant exactly what each error names,
    run again: the command succeeds after the grants named, one by one (each one the statement
    that failed needed: granting it moves the refusal on)."""
    db = migrated_database
    role = f"{db.name}_app"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute("; ".join(grant.format(role=role) for grant in APPLICATION_GRANTS))
    dsn = psycopg.conninfo.make_conninfo(db.dsn, user=role)
    granted = []
    try:
        for attempt in range(len(refusals) + 1):
            args = [*command[:-1], f"{command[-1]}{attempt}"] if "--label" in command else command
            result = run_cli(*args, "--dsn", dsn)
            if result.exit_code == 0:
                break
            line = assert_usage_error(result, "permission denied")
            assert "internal error" not in line
            refused = REFUSED.fullmatch(line)
            assert refused and refused.group("role") == role, line
            db.execute(refused.group("grant"))
            granted.append(refused.group("grant").removesuffix(f" TO {role};"))
        assert granted == refusals, "\n".join(granted)
        assert result.exit_code == 0, result.stderr
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_every_reading_command_names_table_role_and_grant(migrated_database: Database) -> None:
    db = migrated_database
    run_cli("snapshot", "--dsn", db.dsn, "--label", "a")
    run_cli("snapshot", "--dsn", db.dsn, "--label", "b")
    role = f"{db.name}_nobody"
    db.execute(f"CREATE ROLE {role} LOGIN")
    dsn = psycopg.conninfo.make_conninfo(db.dsn, user=role)
    version = f"permission denied for table alembic_version to role {role}; grant it: GRANT "
    try:
        for args, refused in [
            (("verify", "--baseline", "a..b", "--candidate", "a..b"),
             f"reading the schema: {version}SELECT ON public.alembic_version TO {role};"),
            (("report", "--window", "a..b", "-o", "-"),
             f"loading snapshots: permission denied for schema perf_monitoring to role {role}; "
             f"grant it: GRANT USAGE ON SCHEMA perf_monitoring TO {role};"),
            (("report", "--live", "-o", "-"),
             f"reading statistics: {version}SELECT ON public.alembic_version TO {role};"),
            # read through Alembic's own SQL, unqualified: the schema is the search path's
            (("downgrade-plan", "--to", "-1", "-o", "-"),
             f"dbtools downgrade-plan: {version}SELECT ON alembic_version TO {role};"),
        ]:  # fmt: skip
            line = assert_usage_error(run_cli(*args, "--dsn", dsn), refused)
            assert line == f"Error: {refused}" and REFUSED.fullmatch(line), line
        result = run_cli("collect", "--dsn", dsn, "--once")
        assert result.exit_code == 2
        assert result.stderr.strip().endswith(
            f"({version}SELECT ON public.alembic_version TO {role};)"
        )
    finally:
        db.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("error", "statement", "grant"),
    [
        ("permission denied for table t", "SELECT a FROM s.t WHERE b = $1", "SELECT ON s.t"),
        ("permission denied for table t", "INSERT INTO s.t (a) VALUES (1)", "INSERT ON s.t"),
        # the table an INSERT reads is read, not written
        ("permission denied for table u", "INSERT INTO s.t SELECT * FROM s.u", "SELECT ON s.u"),
        ("permission denied for table t",
         'WITH h AS (INSERT INTO "s"."h" (a) VALUES (1) RETURNING id) INSERT INTO "s"."t" '
         "SELECT id FROM h", "INSERT ON s.t"),
        ("permission denied for table t", "COPY s.t (a, b) FROM STDIN", "INSERT ON s.t"),
        ("permission denied for table t", "COPY s.t TO STDOUT", "SELECT ON s.t"),
        ("permission denied for table t", "UPDATE s.t SET a = 1 WHERE b = 2",
         "SELECT, UPDATE ON s.t"),
        ("permission denied for table t", "DELETE FROM ONLY s.t", "DELETE ON s.t"),
        ("permission denied for table t", "TRUNCATE s.u, s.t", "TRUNCATE ON s.t"),
        ("permission denied for table t", "TRUNCATE TABLE s.t", "TRUNCATE ON s.t"),
        ("permission denied for sequence t_id_seq",
         "SELECT setval(pg_get_serial_sequence('t', 'id'), 5)", "UPDATE ON SEQUENCE t_id_seq"),
        ("permission denied for schema s", "SELECT * FROM s.t", "USAGE ON SCHEMA s"),
        ("permission denied for schema s", "CREATE TABLE s.t (a int)", "CREATE ON SCHEMA s"),
        ("permission denied for function f", "SELECT s.f()", "EXECUTE ON FUNCTION s.f"),
    ],
)  # fmt: skip
def test_the_grant_is_the_privilege_the_statement_needed(
    error: str, statement: str, grant: str
) -> None:
    assert grant_for(error, "r", statement=statement) == f"GRANT {grant} TO r;"


# -- progress -------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_parsing_many_statements_logs_n_of_m(
    caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    texts = [f"SELECT a{i} FROM t WHERE b = $1" for i in range(450)]
    with caplog.at_level(logging.INFO, logger="dbtools.sqltext.families"):
        shapes = shapes_of(texts, workers=workers)
        few = shapes_of(texts[: PROGRESS_FROM - 1], workers=workers)
    assert len(shapes) == 450 and len(few) == PROGRESS_FROM - 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "parsing statements: 0 of 450"
    assert lines[-1] == "parsing statements: 450 of 450"
    done = [int(line.split()[2]) for line in lines]
    assert done == sorted(done) and all(line.endswith(" of 450") for line in lines)


def test_capture_counts_down_on_a_stderr_that_is_no_terminal(
    migrated_database: Database,
) -> None:
    db = migrated_database
    result = run_dbtools("capture", "--dsn", db.dsn, "--label", "w", "--duration", "6s")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "capturing: 6 s of 6 s left"
    assert lines[-1] == "capturing: done"
    left = [int(m.group(1)) for line in lines[1:-1]
            if (m := re.fullmatch(r"capturing: (\d) s of 6 s left", line))]  # fmt: skip
    assert len(left) == len(lines) - 2 <= 1 and all(n <= 1 for n in left)
    assert len(result.stdout.splitlines()) == 2  # the two snapshots
    quiet = run_dbtools("capture", "--dsn", db.dsn, "--label", "q", "--duration", "1s", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
