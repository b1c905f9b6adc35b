"""Rehearse every downgrade before production needs one: upgrade → downgrade → upgrade, revision by
revision, comparing the schema at each step.

For each revision, from the first up: dump the schema, upgrade one revision, dump, downgrade one
revision, dump: that must equal the first dump (the downgrade leaves no trace), upgrade again,
dump: that must equal the second (the revision can be reapplied). The first failure stops the
rehearsal (the database then holds what the failed step left) and names the objects the schemas
differ by.

It runs in a throwaway sandbox by default. A scratch database given with ``dsn`` is refused when
it holds data (a row in any table but the migrations' own bookkeeping: ``alembic_version`` and
``perf_monitoring.setting_changes``) or is the database ``DATABASE_URL`` names, unless forced: a rehearsal downgrades it to base first, dropping whatever the migrations
created. It never reads ``DATABASE_URL`` to decide where to run.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from alembic.script import Script
from psycopg import sql

from dbtools.db.connection import describe, resolve_dsn, session
from dbtools.db.server import inspect_server
from dbtools.errors import DbtoolsError, UsageError
from dbtools.redaction import redact
from dbtools.safety.live import current_revision, refuse_data
from dbtools.safety.plan import BASE
from dbtools.sandbox import temporary_sandbox
from dbtools.schema import revisions
from dbtools.schema.dump import dump_schema
from dbtools.sqltext.split import split_statements

log = logging.getLogger(__name__)

SANDBOX_DATABASE = "dbtools_rehearsal"


@dataclass(frozen=True)
class SchemaDifference:
    """An object two schema dumps disagree on."""

    change: str  # "left behind", "missing", "changed"
    object: str  # "index public.ix_widgets_name"
    detail: str = ""  # for "changed": the first line that differs

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.object} {self.change}{detail}"


@dataclass(frozen=True)
class RehearsalStep:
    """The rehearsal of one revision."""

    revision: str
    down_revision: str
    upgraded: bool
    downgrade_restores: bool | None  # None: not reached
    reupgrade_matches: bool | None
    differences: tuple[SchemaDifference, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.upgraded and self.downgrade_restores and self.reupgrade_matches)


@dataclass(frozen=True)
class Rehearsal:
    """The rehearsal of every revision, in order; revisions after a failure are not run."""

    where: str  # "a sandbox" or the scratch database (without password)
    server_version_num: int
    steps: tuple[RehearsalStep, ...]
    not_run: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps) and not self.not_run


def rehearse(
    *,
    dsn: str | None = None,
    ini: revisions.IniPath = None,
    pg_bin: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Rehearsal:
    """Rehearse every revision's downgrade in a sandbox (default) or in the scratch database *dsn*.

    *pg_bin*: the sandbox's PostgreSQL binaries. *force*: use *dsn* although it holds data or is
    the database ``DATABASE_URL`` names.

    Raises ``UsageError`` when *dsn* is refused, ``SandboxError`` when no sandbox starts,
    ``ConnectionFailed`` when *dsn* cannot be reached.
    """
    chain = list(reversed(list(revisions.script_directory(ini).walk_revisions())))
    if dsn is None:
        with _sandbox_database(pg_bin) as (sandbox_dsn, where):
            return _rehearse(sandbox_dsn, where, chain, ini)
    if pg_bin is not None:
        raise UsageError("--pg-bin chooses a sandbox's binaries; it makes no sense with --dsn")
    dsn = resolve_dsn(dsn)
    check_scratch_database(dsn, force=force)
    target = describe(dsn)
    return _rehearse(dsn, f"database {target.database} on {target.host}", chain, ini)


def check_scratch_database(dsn: str, *, force: bool = False) -> None:
    """Refuse (``UsageError``) a database that holds data, or that ``DATABASE_URL`` names."""
    if force:
        return
    application = os.environ.get("DATABASE_URL")
    if application and _same_database(resolve_dsn(application), dsn):
        raise UsageError(
            f"refusing to rehearse in {describe(dsn).database}: it is the database DATABASE_URL "
            "names; give a scratch database (or --force)"
        )
    refuse_data(
        dsn,
        refusing="rehearse",
        because="a rehearsal drops what the migrations created. Use a scratch database (or --force)",
    )


def _same_database(first: str, second: str) -> bool:
    a, b = describe(first), describe(second)
    return (a.host, a.port, a.database) == (b.host, b.port, b.database)


@contextlib.contextmanager
def _sandbox_database(pg_bin: str | os.PathLike[str] | None) -> Iterator[tuple[str, str]]:
    with temporary_sandbox(pg_bin=pg_bin) as sandbox:
        with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SANDBOX_DATABASE)))
        yield sandbox.dsn(SANDBOX_DATABASE), f"a sandbox (PostgreSQL {sandbox.major})"


def _rehearse(dsn: str, where: str, chain: list[Script], ini: revisions.IniPath) -> Rehearsal:
    with session(dsn) as conn:
        version_num = inspect_server(conn).version_num
        start = current_revision(conn)
    if start is not None:
        _run(lambda: revisions.downgrade(dsn, BASE, ini=ini), "downgrade to base before rehearsing")
    steps: list[RehearsalStep] = []
    for position, revision in enumerate(chain):
        step = _rehearse_revision(dsn, revision, ini)
        steps.append(step)
        if not step.passed:
            return Rehearsal(
                where, version_num, tuple(steps), tuple(r.revision for r in chain[position + 1 :])
            )
    return Rehearsal(where, version_num, tuple(steps), ())


def _rehearse_revision(dsn: str, revision: Script, ini: revisions.IniPath) -> RehearsalStep:
    down = revision.down_revision
    if isinstance(down, tuple | list):
        raise UsageError(f"revision {revision.revision} merges branches: rehearse one line")
    down = down or BASE
    name = revision.revision

    def failed(
        stage: str, err: str, upgraded: bool = False, restores: bool | None = None
    ) -> RehearsalStep:
        return RehearsalStep(name, down, upgraded, restores, None, error=f"{stage}: {err}")

    log.info("rehearsing %s: upgrade from %s, downgrade, upgrade again", name, down)
    before = dump_schema(dsn)
    error = _attempt(lambda: revisions.upgrade(dsn, name, ini=ini))
    if error:
        return failed("upgrade", error)
    upgraded = dump_schema(dsn)
    error = _attempt(lambda: revisions.downgrade(dsn, down, ini=ini))
    if error:
        return failed("downgrade", error, upgraded=True)
    downgraded = dump_schema(dsn)
    differences = schema_differences(before, downgraded)
    if differences:
        return RehearsalStep(name, down, True, False, None, tuple(differences))
    error = _attempt(lambda: revisions.upgrade(dsn, name, ini=ini))
    if error:
        return failed("second upgrade", error, upgraded=True, restores=True)
    again = dump_schema(dsn)
    differences = schema_differences(upgraded, again)
    log.info("rehearsed %s: %s", name, "differs after the second upgrade" if differences else "ok")
    return RehearsalStep(name, down, True, True, not differences, tuple(differences))


def _attempt(action: Callable[[], object]) -> str | None:
    """Run *action*; return None, or the first line of what went wrong (redacted)."""
    try:
        action()
    except Exception as err:  # whatever a revision raises: Alembic, SQLAlchemy, psycopg, dbtools
        text = str(getattr(err, "orig", None) or err).strip()
        return redact(text.splitlines()[0] if text else type(err).__name__)
    return None


def _run(action: Callable[[], object], what: str) -> None:
    error = _attempt(action)
    if error:
        raise DbtoolsError(f"{what} failed: {error}")


# -- schema differences ------------------------------------------------------------------------------

_IDENTITIES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I | re.S), label)
    for pattern, label in (
        (r"^CREATE (?:UNIQUE )?INDEX (?P<name>\S+) ON (?:ONLY )?(?P<table>\S+)", "index"),
        (r"^CREATE (?:UNLOGGED )?TABLE (?P<name>\S+)", "table"),
        (r"^CREATE SCHEMA (?P<name>\S+)", "schema"),
        (r"^CREATE (?:OR REPLACE )?(?P<kind>FUNCTION|PROCEDURE) (?P<name>[^(\s]+)", "function"),
        (r"^CREATE SEQUENCE (?P<name>\S+)", "sequence"),
        (r"^CREATE (?:OR REPLACE )?(?P<kind>MATERIALIZED VIEW|VIEW) (?P<name>\S+)", "view"),
        (r"^CREATE (?P<kind>TYPE|DOMAIN) (?P<name>\S+)", "type"),
        (r"^CREATE (?:CONSTRAINT )?TRIGGER (?P<name>\S+) .*? ON (?P<table>\S+)", "trigger"),
        (r"^CREATE EXTENSION (?:IF NOT EXISTS )?(?P<name>\S+)", "extension"),
        (r"^CREATE POLICY (?P<name>\S+) ON (?P<table>\S+)", "policy"),
        (r"^ALTER TABLE (?:ONLY )?(?P<table>\S+) ADD CONSTRAINT (?P<name>\S+)", "constraint"),
        (r"^ALTER TABLE (?:ONLY )?(?P<table>\S+) ALTER COLUMN (?P<name>\S+) ", "column"),
        (r"^ALTER SEQUENCE (?P<name>\S+) OWNED BY", "sequence ownership"),
        (r"^COMMENT ON (?P<kind>[A-Z ]+?) (?P<name>\S+?)(?:\(.*?\))? IS ", "comment"),
    )
)


def object_identity(statement: str) -> str:
    """What a statement of a schema dump defines: ``index public.ix``, ``constraint pk on
    public.t``, ``comment on table public.t``; else its first words."""
    text = " ".join(statement.split())
    for pattern, label in _IDENTITIES:
        match = pattern.match(text)
        if not match:
            continue
        groups = match.groupdict()
        name = groups["name"]
        table = groups.get("table")
        if label == "index" and table and "." in table and "." not in name:
            name = f"{table.rsplit('.', 1)[0]}.{name}"
        if label in ("constraint", "trigger", "policy") and table:
            return f"{label} {name} on {table}"
        if label == "column" and table:
            return f"column {table}.{name} (default or identity)"
        if label == "comment":
            return f"comment on {groups['kind'].lower()} {name}"
        if groups.get("kind") and label in ("function", "view", "type"):
            return f"{groups['kind'].lower()} {name}"
        return f"{label} {name}"
    return " ".join(text.split()[:4])


def schema_differences(before: str, after: str) -> list[SchemaDifference]:
    """The objects two normalised dumps (``dbtools.schema.dump.dump_schema``) disagree on."""
    first, second = _definitions(before), _definitions(after)
    differences = []
    for identity, text in second.items():
        if identity not in first:
            differences.append(SchemaDifference("left behind", identity))
        elif first[identity] != text:
            differences.append(
                SchemaDifference("changed", identity, _first_change(first[identity], text))
            )
    for identity in first:
        if identity not in second:
            differences.append(SchemaDifference("missing", identity))
    return differences


def _definitions(dump: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for statement in split_statements(dump):
        identity = object_identity(statement.sql)
        key, number = identity, 2
        while key in found:
            key, number = f"{identity} #{number}", number + 1
        found[key] = statement.sql
    return found


def _first_change(old: str, new: str) -> str:
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0):
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
            return " ".join(line.split())[:120]
    return ""
