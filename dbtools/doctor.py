"""``doctor``: can each dbtools command work here, as this role? One check function per question.

``read_facts`` asks the server once, as the connected role, everything the checks judge: the
extension and its settings, the Alembic revision (read as the commands read it), the role's
privileges on every monitoring table the manifest of that revision lists (so a table a later
revision adds is covered without a list here), and whether the role may run the queries a
snapshot runs (each run wrapped to return no rows). Privileges are asked of the catalog
(``has_table_privilege`` by OID, ``has_schema_privilege``), never tried with a write: doctor's
session stays read-only, so it is safe on production and on a standby, and a rolled-back
``INSERT`` would still take locks, fire triggers and use up identity values.

Each function in ``CHECKS`` is pure: it reads the facts and returns ``Check``s, findings
(``dbtools.findings``) that also name the commands needing them. A failing check says in
``fix`` the statements that fix it (a ``GRANT`` naming the role and the tables, ``CREATE
EXTENSION``, ``ALTER SYSTEM`` …), one per line. A command is ready when every check it needs
passes. To add a check, write a function and append it to ``CHECKS``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.catalog import quote_ident, read_alembic_revision
from dbtools.db.connection import SQL_MARKER, describe, error_reason, session
from dbtools.db.errors import grant_for
from dbtools.db.server import ServerInfo, inspect_server
from dbtools.errors import EXIT_OK, EXIT_PROBLEMS, ConfigError
from dbtools.findings import FAILING, Finding
from dbtools.reading.live import probe_reading, read_counting_overrides
from dbtools.schema.frozen import IniPath
from dbtools.schema.manifest import Manifest, head_revision, manifest_at
from dbtools.schema.monitoring import (
    DATABASE_STATS,
    FOLD_SAMPLES_FUNCTION,
    INDEX_STATS,
    MONITORING_SCHEMA,
    SNAPSHOTS,
    STATEMENT_STATS,
    STATEMENT_TEXTS,
    TABLE_STATS,
    WRITTEN_BY_OTHERS,
    monitoring_table,
)

log = logging.getLogger(__name__)

SNAPSHOT, CAPTURE, VERIFY, REPORT, LIVE_REPORT = (
    "snapshot", "capture", "verify", "report", "report --live"
)  # fmt: skip
COMMANDS = (SNAPSHOT, CAPTURE, VERIFY, REPORT, LIVE_REPORT)
# How the text groups them (the second stage's collect will join the first group).
COMMAND_GROUPS = ((SNAPSHOT, CAPTURE), (VERIFY,), (REPORT,), (LIVE_REPORT,))
# The commands that read the live statistics (pg_stat_statements and the catalog's views).
MEASURING = (SNAPSHOT, CAPTURE, LIVE_REPORT)
ALEMBIC_VERSION = "public.alembic_version"
UPGRADE = "alembic upgrade head  # as the deploy role"


@dataclass(frozen=True)
class Check(Finding):
    """A finding that names the commands which need it to pass."""

    commands: tuple[str, ...] = COMMANDS

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "commands": list(self.commands)}


def passed(check: str, subject: str, message: str, commands: Sequence[str]) -> Check:
    return Check(check, "pass", subject, message, commands=tuple(commands))


def failed(check: str, subject: str, message: str, fix: str, commands: Sequence[str]) -> Check:
    return Check(check, "fail", subject, message, fix=fix, commands=tuple(commands))


def skipped(check: str, subject: str, because: str, commands: Sequence[str]) -> Check:
    message = f"not checked: {because}"
    return Check(check, "skipped", subject, message, because=because, commands=tuple(commands))


# -- the facts, read once as the connected role --------------------------------------------------


@dataclass(frozen=True)
class TableAccess:
    """What the connected role may do with one monitoring table (all False when it is missing)."""

    name: str  # without the schema
    present: bool
    can_select: bool
    can_insert: bool
    can_delete: bool


@dataclass(frozen=True)
class TrackOverride:
    """A per-role or per-database ``pg_stat_statements.track = none`` (None: every one)."""

    role: str | None
    database: str | None


@dataclass(frozen=True)
class DoctorFacts:
    """Everything the checks judge, read by ``read_facts`` (or built by a test)."""

    info: ServerInfo
    head: str
    revision: str | None = None
    revision_denied: str | None = None  # the server's reason when alembic_version is unreadable
    revision_unknown: str | None = None  # a revision these migrations do not have
    manifest: Manifest = field(
        default_factory=Manifest
    )  # the revision's (head's when it cannot be read or known)
    schema_usable: bool = False
    tables: tuple[TableAccess, ...] = ()
    preload_libraries: str | None = None  # None: hidden from the role (pg_read_all_settings)
    track: str | None = None  # the session's pg_stat_statements.track (None: not loaded)
    track_source: str | None = None
    track_overrides: tuple[TrackOverride, ...] = ()
    statistics_error: str | None = None  # why the snapshot's queries failed as this role

    @property
    def role(self) -> str:
        return quote_ident(self.info.role)

    @property
    def pgss_ready(self) -> bool:
        return self.info.pgss_preloaded and self.info.pgss_version is not None


SCHEMA_SQL = f"""
SELECT {SQL_MARKER} coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usable
FROM (SELECT) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(schema)s
"""

TABLES_SQL = f"""
SELECT {SQL_MARKER} t.name, c.oid IS NOT NULL AS present,
       coalesce(has_table_privilege(c.oid, 'SELECT'), false) AS can_select,
       coalesce(has_table_privilege(c.oid, 'INSERT'), false) AS can_insert,
       coalesce(has_table_privilege(c.oid, 'DELETE'), false) AS can_delete
FROM unnest(%(names)s::text[]) WITH ORDINALITY AS t(name, position)
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(schema)s
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
ORDER BY t.position
"""

# The session's value (with the server's, the database's and this role's settings applied), and
# every per-database or per-role "none" that reaches this database for another role.
TRACK_SQL = f"""
SELECT {SQL_MARKER} current_setting('pg_stat_statements.track', true) AS track,
       (SELECT source FROM pg_catalog.pg_settings WHERE name = 'pg_stat_statements.track')
           AS source,
       (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'shared_preload_libraries')
           AS preload_libraries
"""


def read_facts(conn: psycopg.Connection[Any], *, ini: IniPath = None) -> DoctorFacts:
    """Read, as the connected role, everything ``CHECKS`` judge (read-only, a few queries)."""
    info = inspect_server(conn)
    head = head_revision(ini)
    facts = DoctorFacts(info=info, head=head)
    try:
        revision = read_alembic_revision(conn, table_exists=info.has_alembic_version)
        facts = dataclasses.replace(facts, revision=revision)
    except psycopg.errors.InsufficientPrivilege as err:
        facts = dataclasses.replace(facts, revision=head, revision_denied=error_reason(err))
    try:
        manifest = manifest_at(facts.revision, ini=ini)
    except ConfigError:
        manifest = manifest_at(head, ini=ini)
        facts = dataclasses.replace(facts, revision_unknown=facts.revision)
    (usable,) = conn.execute(SCHEMA_SQL, {"schema": MONITORING_SCHEMA}).fetchone() or (False,)
    names = {"names": list(manifest.monitoring_tables), "schema": MONITORING_SCHEMA}
    with conn.cursor(row_factory=class_row(TableAccess)) as cur:
        tables = tuple(cur.execute(TABLES_SQL, names).fetchall())
    track, source, libraries = conn.execute(TRACK_SQL).fetchone() or (None, None, None)
    # The per-role and per-database settings a snapshot records; the connected role's own
    # setting is its session's track, judged above.
    overrides = tuple(
        TrackOverride(o["role"], o["database"])
        for o in (read_counting_overrides(conn) if info.reads_role_settings else ())
        if o["setting"] == "pg_stat_statements.track"
        and str(o["value"]).lower() == "none"
        and o["role"] != info.role
    )
    statistics_error = None
    if facts.pgss_ready:
        try:
            probe_reading(conn)
        except psycopg.Error as err:
            statistics_error = error_reason(err)
    return dataclasses.replace(
        facts,
        manifest=manifest,
        schema_usable=bool(usable),
        tables=tables,
        preload_libraries=libraries,
        track=track,
        track_source=source,
        track_overrides=overrides,
        statistics_error=statistics_error,
    )


# -- the checks -----------------------------------------------------------------------------------

CheckFunction = Callable[[DoctorFacts], list[Check]]


def server(facts: DoctorFacts) -> list[Check]:
    """The server's major version (always ok: reading it proves the connection works)."""
    info = facts.info
    return [passed("server", "server", f"PostgreSQL {info.major} ({info.version_num})", COMMANDS)]


def database(facts: DoctorFacts) -> list[Check]:
    """The database and role dbtools is connected as."""
    info = facts.info
    return [passed("database", info.database, f"{info.database} as role {info.role}", COMMANDS)]


def pg_stat_statements_preloaded(facts: DoctorFacts) -> list[Check]:
    """pg_stat_statements must be in shared_preload_libraries (it counts nothing otherwise)."""
    name = "pg_stat_statements preloaded"
    if facts.info.pgss_preloaded:
        return [passed(name, "server", "in shared_preload_libraries", MEASURING)]
    libraries = [lib.strip() for lib in (facts.preload_libraries or "").split(",") if lib.strip()]
    hidden = (
        " (shared_preload_libraries is hidden from this role: keep what it lists)"
        if facts.preload_libraries is None
        else ""
    )
    fix = (
        f"ALTER SYSTEM SET shared_preload_libraries = '{', '.join([*libraries, 'pg_stat_statements'])}';\n"
        "then restart PostgreSQL (a reload is not enough)"
    )
    message = f"not in shared_preload_libraries: nothing is counted{hidden}"
    return [failed(name, "server", message, fix, MEASURING)]


def pg_stat_statements_created(facts: DoctorFacts) -> list[Check]:
    """The extension must be created in this database (its view lives there)."""
    name, info = "pg_stat_statements created", facts.info
    if info.pgss_version is not None:
        message = f"version {info.pgss_version} in schema {info.pgss_schema}"
        return [passed(name, info.database, message, MEASURING)]
    message = f"not created in database {info.database} (a superuser creates it)"
    return [failed(name, info.database, message, "CREATE EXTENSION pg_stat_statements;", MEASURING)]


def statements_tracked(facts: DoctorFacts) -> list[Check]:
    """``pg_stat_statements.track`` must not be ``none`` for the server, the database or any role
    (the statements would run and not be counted)."""
    name, info = "pg_stat_statements.track", facts.info
    if not info.pgss_preloaded:
        return [skipped(name, "server", "pg_stat_statements is not loaded", MEASURING)]
    problems: list[str] = []
    fixes: list[str] = []
    # A "none" from a database or role setting shows in the overrides; this is the server's own.
    if facts.track == "none" and facts.track_source not in ("database", "user", "database user"):
        problems.append(f"none on the server ({facts.track_source})")
        fixes += ["ALTER SYSTEM SET pg_stat_statements.track = 'top';", "SELECT pg_reload_conf();"]
    for override in facts.track_overrides:
        role, database = override.role, override.database
        if role is None:
            problems.append(f"none in database {database}")
            fixes.append(f"ALTER DATABASE {quote_ident(str(database))} RESET {name};")
        elif database is None:
            problems.append(f"none for role {role}")
            fixes.append(f"ALTER ROLE {quote_ident(role)} RESET {name};")
        else:
            problems.append(f"none for role {role} in database {database}")
            fixes.append(f"ALTER ROLE {quote_ident(role)} IN DATABASE {quote_ident(database)} "
                         f"RESET {name};")  # fmt: skip
    if not problems:
        return [passed(name, info.database, str(facts.track), MEASURING)]
    message = "; ".join(problems) + ": those statements run and are not counted"
    return [failed(name, info.database, message, "\n".join(fixes), MEASURING)]


def reads_all_statistics(facts: DoctorFacts) -> list[Check]:
    """Other roles' statements are only visible with pg_read_all_stats (or as a superuser)."""
    name, role = "reads all statistics", facts.info.role
    if facts.info.reads_all_stats:
        return [passed(name, role, "pg_read_all_stats (other roles' statements visible)",
                       MEASURING)]  # fmt: skip
    message = (
        "not a member of pg_read_all_stats: other roles' statements read <insufficient "
        "privilege>, and windows in which they ran are untrusted"
    )
    return [failed(name, role, message, f"GRANT pg_monitor TO {facts.role};", MEASURING)]


def statistics_readable(facts: DoctorFacts) -> list[Check]:
    """The role may run every query a snapshot runs (each run here returning no rows)."""
    name, role = "statistics readable", facts.info.role
    if not facts.pgss_ready:
        return [skipped(name, role, "pg_stat_statements is not ready", MEASURING)]
    if facts.statistics_error is None:
        message = "a snapshot's queries of pg_stat_statements and the statistics views run"
        return [passed(name, role, message, MEASURING)]

    def schema_of(object_name: str) -> str | None:
        extension = object_name.startswith("pg_stat_statements")
        return facts.info.pgss_schema if extension else "pg_catalog"

    fix = grant_for(facts.statistics_error, facts.role, schema_of) or ""
    return [failed(name, role, facts.statistics_error, fix, MEASURING)]


def alembic_version_readable(facts: DoctorFacts) -> list[Check]:
    """The role may read the Alembic revision (snapshots record it, verify judges by it)."""
    name, commands = "alembic_version readable", (SNAPSHOT, CAPTURE, VERIFY, LIVE_REPORT)
    if facts.revision_denied is not None:
        schema = ALEMBIC_VERSION.split(".")[0]
        fix = grant_for(facts.revision_denied, facts.role, lambda _: schema)
        fix = fix or f"GRANT SELECT ON {ALEMBIC_VERSION} TO {facts.role};"
        return [failed(name, ALEMBIC_VERSION, facts.revision_denied, fix, commands)]
    if not facts.info.has_alembic_version:
        return [skipped(name, ALEMBIC_VERSION, "the database was never migrated", commands)]
    return [passed(name, ALEMBIC_VERSION, f"revision {facts.revision}", commands)]


def database_revision(facts: DoctorFacts) -> list[Check]:
    """Snapshots are taken at any revision with the monitoring tables (the head, or below it
    after a rollback's downgrade); a revision these migrations do not have leaves verify and
    report nothing to judge the database against."""
    name, subject = "database revision", facts.info.database
    if facts.revision_denied is not None:
        return [skipped(name, subject, "alembic_version is not readable", (SNAPSHOT, CAPTURE))]
    if facts.revision_unknown is not None:
        message = (
            f"revision {facts.revision_unknown} is not one of these migrations (head {facts.head})"
        )
        fix = f"use the dbtools release whose migrations include revision {facts.revision_unknown}"
        return [failed(name, subject, message, fix, COMMANDS)]
    if not facts.manifest.monitoring_tables:
        state = "never migrated" if facts.revision is None else f"at revision {facts.revision}"
        message = f"{state}: no monitoring tables to store snapshots in (head {facts.head})"
        return [failed(name, subject, message, UPGRADE, (SNAPSHOT, CAPTURE))]
    if facts.revision != facts.head:
        message = (
            f"at revision {facts.revision}, below head {facts.head}: snapshots store what its "
            "monitoring tables hold, verify judges the objects it creates"
        )
        return [passed(name, subject, message, (SNAPSHOT, CAPTURE))]
    return [passed(name, subject, f"at head {facts.head}", (SNAPSHOT, CAPTURE))]


def monitoring_schema_usable(facts: DoctorFacts) -> list[Check]:
    """The monitoring schema holds every table the database's revision creates there, and the
    role may use it."""
    name, commands = "monitoring schema usable", (SNAPSHOT, CAPTURE, VERIFY, REPORT)
    if not facts.manifest.monitoring_tables:
        state = (
            "was never migrated"
            if facts.revision is None
            else f"is at revision {facts.revision}, before the monitoring tables"
        )
        return [failed(name, MONITORING_SCHEMA, f"the database {state}", UPGRADE, commands)]
    missing = [monitoring_table(t.name) for t in facts.tables if not t.present]
    if missing:
        message = f"{', '.join(missing)} missing, though revision {facts.revision} has them"
        fix = (
            "recreate them: downgrade below the revision that creates them and upgrade again "
            "(alembic downgrade/upgrade, as the deploy role)"
        )
        return [failed(name, MONITORING_SCHEMA, message, fix, commands)]
    if not facts.schema_usable:
        fix = f"GRANT USAGE ON SCHEMA {MONITORING_SCHEMA} TO {facts.role};"
        message = f"no USAGE on schema {MONITORING_SCHEMA}"
        return [failed(name, MONITORING_SCHEMA, message, fix, commands)]
    return [passed(name, MONITORING_SCHEMA, f"USAGE on {MONITORING_SCHEMA}", commands)]


def _grants(facts: DoctorFacts, wanted: Iterable[tuple[str, Iterable[TableAccess]]]) -> list[str]:
    """One ``GRANT privilege ON tables TO role;`` per privilege some present table lacks."""
    statements = []
    for privilege, tables in wanted:
        names = ", ".join(monitoring_table(t.name) for t in tables if t.present)
        if names:
            statements.append(f"GRANT {privilege} ON {names} TO {facts.role};")
    return statements


def _table_check(
    facts: DoctorFacts,
    name: str,
    wanted: list[tuple[str, list[TableAccess]]],
    done: str,
    commands: Sequence[str],
) -> list[Check]:
    if not any(table.present for table in facts.tables):
        return [skipped(name, MONITORING_SCHEMA, "no monitoring tables", commands)]
    fixes = _grants(facts, wanted)
    if not fixes:
        return [passed(name, MONITORING_SCHEMA, done, commands)]
    lacking = "; ".join(
        f"no {privilege} on {', '.join(t.name for t in tables if t.present)}"
        for privilege, tables in wanted
        if any(t.present for t in tables)
    )
    return [failed(name, MONITORING_SCHEMA, lacking, "\n".join(fixes), commands)]


def snapshots_storable(facts: DoctorFacts) -> list[Check]:
    """A snapshot inserts into every monitoring table but those others write (the manifest's,
    so a later revision's table is covered) and reads back the header it stored; from revision
    0005 it reads the target's previous sample from all of them too (it stores what moved)."""
    written = [t for t in facts.tables if t.name not in WRITTEN_BY_OTHERS]
    read = [t for t in written if t.name in _sample_tables(facts)]
    wanted = [
        ("SELECT", [t for t in read if not t.can_select]),
        ("INSERT", [t for t in written if not t.can_insert]),
    ]
    done = f"INSERT on {len(written)} tables, SELECT on {_names(read)}"
    return _table_check(facts, "snapshots storable", wanted, done, (SNAPSHOT, CAPTURE))


# The tables of a compact sample (revision 0005 on): a snapshot reads the target's previous
# sample from them, and ``fold_samples`` deletes from them.
SAMPLE_TABLES = (SNAPSHOTS, STATEMENT_STATS, TABLE_STATS, INDEX_STATS, DATABASE_STATS,
                 STATEMENT_TEXTS)  # fmt: skip


def _names(tables: Sequence[TableAccess]) -> str:
    return tables[0].name if len(tables) == 1 else f"{len(tables)} tables"


def _sample_tables(facts: DoctorFacts) -> tuple[str, ...]:
    """The tables a snapshot reads back and an interrupted capture deletes from: every sample
    table from revision 0005 (``fold_samples``), else the header only (rows cascade)."""
    return SAMPLE_TABLES if FOLD_SAMPLES_FUNCTION in facts.manifest.functions else (SNAPSHOTS,)


def interrupted_capture_removable(facts: DoctorFacts) -> list[Check]:
    """An interrupted capture removes its start snapshot: below revision 0005 its rows go by
    ON DELETE CASCADE; from 0005 ``fold_samples`` deletes, as the role, the rows and texts no
    other sample reads, from every table a snapshot writes."""
    removed = [t for t in facts.tables if t.name in _sample_tables(facts)]
    wanted = [("DELETE", [t for t in removed if not t.can_delete])]
    done = f"DELETE on {_names(removed)}"
    return _table_check(facts, "interrupted capture removable", wanted, done, (CAPTURE,))


def stored_snapshots_readable(facts: DoctorFacts) -> list[Check]:
    """verify and report read every monitoring table of the database's revision."""
    wanted = [("SELECT", [t for t in facts.tables if not t.can_select])]
    done = f"SELECT on {len(facts.tables)} tables"
    return _table_check(facts, "stored snapshots readable", wanted, done, (VERIFY, REPORT))


CHECKS: tuple[CheckFunction, ...] = (
    server,
    database,
    pg_stat_statements_preloaded,
    pg_stat_statements_created,
    statements_tracked,
    reads_all_statistics,
    statistics_readable,
    alembic_version_readable,
    database_revision,
    monitoring_schema_usable,
    snapshots_storable,
    interrupted_capture_removable,
    stored_snapshots_readable,
)


# -- the outcome ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorResult:
    """Every check's outcome, and the facts they were judged on."""

    target: str  # where the DSN points, without its password
    info: ServerInfo
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(check.status in FAILING for check in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def failing(self, command: str) -> list[Check]:
        """The failing checks *command* needs (none: it is ready)."""
        return [c for c in self.checks if command in c.commands and c.status in FAILING]

    def as_dict(self) -> dict[str, Any]:
        """The JSON payload (stable keys)."""
        return {
            "target": self.target,
            "ok": self.ok,
            "server": {**dataclasses.asdict(self.info), "major": self.info.major},
            "checks": [check.as_dict() for check in self.checks],
            "commands": {
                command: {
                    "ready": not self.failing(command),
                    "failing": [c.check for c in self.failing(command)],
                }
                for command in COMMANDS
            },
        }


def run_checks(facts: DoctorFacts, checks: Sequence[CheckFunction] = CHECKS) -> tuple[Check, ...]:
    """Every check's outcome, in the order of *checks*."""
    return tuple(found for check in checks for found in check(facts))


def run_doctor(
    dsn: str, checks: Sequence[CheckFunction] = CHECKS, *, ini: IniPath = None
) -> DoctorResult:
    """Connect to *dsn* (read-only, autocommit: no BEGIN/COMMIT reaches pg_stat_statements) and
    run *checks* as its role; *ini* points at another migration directory.

    Raises ``ConnectionFailed`` (exit code 2) when the server cannot be reached.
    """
    target = str(describe(dsn))
    with session(dsn, autocommit=True) as conn:
        facts = read_facts(conn, ini=ini)
    found = run_checks(facts, checks)
    log.info("doctor: %d of %d checks pass", sum(c.status == "pass" for c in found), len(found))
    return DoctorResult(target, facts.info, found)


_MARKS = {"pass": "ok  ", "skipped": "--  "}


def render_checks(result: DoctorResult) -> str:
    """For people: the checks every command needs, then each group of commands with whether each
    will work and the checks it needs, one line each (``ok``, ``FAIL``, ``--`` not checked),
    every FAIL followed by its fix. A check shown under an earlier group is shown again only when
    it fails (its fix beside every command it blocks)."""
    lines = [f"dbtools doctor: {result.target} (PostgreSQL {result.info.version})", ""]
    everywhere = [check for check in result.checks if set(check.commands) == set(COMMANDS)]
    lines += ["every command", *(_line(check, ()) for check in everywhere)]
    shown = list(everywhere)
    for group in COMMAND_GROUPS:
        lines += ["", "; ".join(f"{command}: {_readiness(result, command)}" for command in group)]
        again = 0
        for check in result.checks:
            needed = [command for command in group if command in check.commands]
            if not needed or (check in shown and check.status not in FAILING):
                again += bool(needed) and check not in everywhere
                continue
            lines.append(_line(check, needed if len(needed) < len(group) else ()))
            shown.append(check)
        if again:
            lines.append(
                f"  {_MARKS['pass']}  and {again} check{'s' if again > 1 else ''} shown above"
            )
    return "\n".join(lines)


def _readiness(result: DoctorResult, command: str) -> str:
    count = len(result.failing(command))
    return f"will fail ({count} check{'s' if count > 1 else ''})" if count else "ready"


def _line(check: Check, only: Sequence[str]) -> str:
    mark = _MARKS.get(check.status, "FAIL")
    scope = f" ({', '.join(only)} only)" if only else ""
    lines = [f"  {mark}  {check.check}{scope}: {check.message}"]
    if check.status in FAILING:
        for number, fix in enumerate(check.fix.splitlines()):
            lines.append(f"        {'fix: ' if number == 0 else '     '}{fix}")
    return "\n".join(lines)
