"""Rehearse every downgrade before production needs one: upgrade → downgrade → upgrade, revision by
revision, comparing the schema at each step.

For each revision, in the order Alembic applies them (branches and merges included): dump the
schema, upgrade that one revision, dump, downgrade that one revision (a revision on a branch is
undone alone, its sibling branch stays), dump: that must equal the first dump (the downgrade
leaves no trace), upgrade again, dump: that must equal the second (the revision can be
reapplied). ``from_revision``/``to_revision`` rehearse part of the history (the revisions below
are applied without rehearsing them). The first failure stops the rehearsal, unless
``keep_going``: then the database is recreated, brought back to where the failed revision left
the history, and the rehearsal goes on. A revision the project declares irreversible
(``[tool.dbtools.rehearse]``, with a reason) is upgraded but its downgrade is not rehearsed. A
revision whose upgrade changed nothing in the schema passes as "no change" (an upgrade guarded
by "if the table exists" finds nothing to do on a history that does not create the table).

**A base schema.** A history that does not start from an empty database (its first revision
alters tables the application creates with ``create_all``) is rehearsed on a base: a SQL file
(a ``pg_dump --schema-only`` of production too) or a ``module:metadata`` the project's
interpreter creates. The database is recreated empty and the base loaded before the first
revision, and again each time ``keep_going`` recreates it.

**Every failure named by its source**: a revision (its line), the project's env.py, the driver,
or dbtools; a step below ``--from`` that fails is the failure of the revision standing on it.

**Never judging a database it did not migrate.** After every step the version table the
project's env.py uses is read in the rehearsal's database itself: it must hold exactly the
revisions that step leaves. If it does not, the env.py migrated somewhere else: the rehearsal
stops (``MigratedElsewhere``, exit code 2) naming where the env.py connected, when it can be seen.

The schema comparison leaves out what is not a difference, each said in a note: the order of a
table's columns (a downgrade that re-adds a dropped column adds it at the end) and the names
PostgreSQL generates for constraints (NOT NULL constraints on PostgreSQL 18, and ``*_pkey``,
``*_key``, ``*_fkey``, ``*_check`` of the same definition).

It runs in a throwaway sandbox by default. A scratch database given with ``dsn`` is refused when
it holds data (a row in any table but the migrations' own bookkeeping: their version table and
``perf_monitoring.setting_changes``) or is the database ``DATABASE_URL`` names, unless forced: a
rehearsal downgrades it to base first, dropping whatever the migrations created (with
``keep_going`` it may drop and create the database itself). It never reads ``DATABASE_URL`` to
decide where to run.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from alembic.script import Script
from psycopg import conninfo, sql

from dbtools.db.connection import describe, resolve_dsn, session
from dbtools.db.server import inspect_server
from dbtools.errors import DbtoolsError, UsageError
from dbtools.redaction import redact
from dbtools.safety.base import BaseSchema
from dbtools.safety.declarations import declarations_file, rehearse_declarations
from dbtools.safety.live import BOOKKEEPING_TABLES, refuse_data
from dbtools.sandbox import temporary_sandbox
from dbtools.schema import revisions
from dbtools.schema.dump import dump_schema
from dbtools.schema.revisions import (
    BASE,
    Environment,
    EnvPyFailed,
    Migrations,
    ProjectNotImportable,
    RunOptions,
    describe_failure,
    down_revisions,
    heads_of,
    recorded_heads,
    same_database,
)
from dbtools.sqltext.split import split_statements

log = logging.getLogger(__name__)

SANDBOX_DATABASE = "dbtools_rehearsal"


class MigratedElsewhere(DbtoolsError):
    """The project's env.py did not migrate the rehearsal's database (exit code 2)."""


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
    down_revision: str  # "base", or "a, b" below a merge
    upgraded: bool
    downgrade_restores: bool | None  # None: not reached (or not rehearsed: irreversible)
    reupgrade_matches: bool | None
    differences: tuple[SchemaDifference, ...] = ()
    error: str | None = None
    irreversible: str | None = None  # declared irreversible: the reason; downgrade not run
    notes: tuple[str, ...] = ()  # what the comparison left out as no difference
    seconds: float = 0.0
    changed: bool | None = None  # whether the upgrade changed the schema (None: not known)

    @property
    def no_change(self) -> bool:
        """Rehearsed and passed, but its upgrade changed nothing in the schema."""
        return self.passed and self.irreversible is None and self.changed is False

    @property
    def passed(self) -> bool:
        if self.irreversible is not None:
            return self.upgraded
        return bool(self.upgraded and self.downgrade_restores and self.reupgrade_matches)


@dataclass(frozen=True)
class Rehearsal:
    """The rehearsal of every revision asked for, in order; revisions after a failure are not
    run unless it kept going."""

    where: str  # "a sandbox" or the scratch database (without password)
    server_version_num: int
    steps: tuple[RehearsalStep, ...]
    not_run: tuple[str, ...]
    keep_going: bool = False
    stopped: str | None = None  # why it stopped early although it was to keep going
    base: str | None = None  # the base schema the history was rehearsed on

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps) and not self.not_run

    @property
    def failures(self) -> tuple[RehearsalStep, ...]:
        return tuple(step for step in self.steps if not step.passed)


def rehearse(
    *,
    dsn: str | None = None,
    ini: revisions.IniPath = None,
    pg_bin: str | os.PathLike[str] | None = None,
    force: bool = False,
    from_revision: str | None = None,
    to_revision: str | None = None,
    keep_going: bool = False,
    config_file: Path | None = None,
    run: RunOptions | None = None,
    base_schema: str | None = None,
) -> Rehearsal:
    """Rehearse the downgrades in a sandbox (default) or in the scratch database *dsn*.

    *pg_bin*: the sandbox's PostgreSQL binaries. *force*: use *dsn* although it holds data or is
    the database ``DATABASE_URL`` names. *from_revision*/*to_revision*: the first and last
    revision to rehearse (default: every one). *keep_going*: rehearse past failures.
    *config_file*: where the project's ``[tool.dbtools.rehearse]`` is (default: the
    pyproject.toml beside its alembic.ini). *run*: how the project's env.py runs (its
    interpreter, driver, URL variable, versions folders). *base_schema*: a SQL file or a
    ``module:metadata`` the history starts from (module docstring).

    Raises ``UsageError`` when *dsn* is refused, a revision or the base is unknown,
    ``ConfigError`` when the history is empty, ``MigratedElsewhere`` when the project's env.py
    migrates another database, ``EnvPyFailed`` when its env.py fails before any revision runs,
    ``SandboxError`` when no sandbox starts, ``ConnectionFailed`` when *dsn* cannot be reached.
    """
    migrations = Migrations(ini, run)
    migrations.require_revisions()
    base = BaseSchema.parse(base_schema) if base_schema else None
    known = {rev.revision for rev in migrations.upgrade_order()}
    for option, given in (("--from", from_revision), ("--to", to_revision)):
        if given is not None and given not in known:
            raise UsageError(f"{option}: unknown revision {given!r}")
    declared = rehearse_declarations(
        declarations_file(migrations.project.directory, config_file), known
    )
    order = migrations.upgrade_order(to_revision or "heads")
    selected = _selected(migrations, order, from_revision)
    plan = _Plan(migrations, order, selected, declared.irreversible, keep_going, base)
    if dsn is None:
        with _sandbox_database(pg_bin) as (sandbox_dsn, where):
            return plan.run(sandbox_dsn, where, sandbox=True)
    if pg_bin is not None:
        raise UsageError("--pg-bin chooses a sandbox's binaries; it makes no sense with --dsn")
    dsn = resolve_dsn(dsn)
    try:
        environment = migrations.environment()
    except EnvPyFailed:  # an env.py that refuses offline mode: ask it online, changing nothing
        environment = migrations.current(dsn)
    version_table = environment.qualified_version_table
    check_scratch_database(dsn, force=force, bookkeeping=(version_table,))
    target = describe(dsn)
    return plan.run(dsn, f"database {target.database} on {target.host}")


def _selected(migrations: Migrations, order: list[Script], first: str | None) -> set[str]:
    """The revisions of *order* to rehearse: *first* and those standing on it (all without)."""
    if first is None:
        return {rev.revision for rev in order}
    return {
        rev.revision
        for rev in order
        if first in {r.revision for r in migrations.upgrade_order(rev.revision)}
    }


def check_scratch_database(
    dsn: str, *, force: bool = False, bookkeeping: tuple[str, ...] = ()
) -> None:
    """Refuse (``UsageError``) a database that holds data, or that ``DATABASE_URL`` names.

    *bookkeeping*: more tables whose rows the migrations write themselves (a project's own
    version table)."""
    if force:
        return
    application = os.environ.get("DATABASE_URL")
    if application and _same_database(resolve_dsn(application), dsn):
        raise UsageError(
            f"refusing to rehearse in {describe(dsn).database}: it is the database DATABASE_URL "
            "names; give a scratch database (or --allow-data)"
        )
    refuse_data(
        dsn,
        refusing="rehearse",
        because="a rehearsal drops what the migrations created. Use a scratch database (or --allow-data)",
        ignore=(*BOOKKEEPING_TABLES, *bookkeeping),
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


class _StepFailed(Exception):
    """A step of a revision's rehearsal failed (its message says which, redacted)."""


@dataclass
class _Plan:
    """One rehearsal: what to rehearse, and the state of the database while it runs."""

    migrations: Migrations
    order: list[Script]
    selected: set[str]
    irreversible: dict[str, str]
    keep_going: bool
    base: BaseSchema | None = None
    dsn: str = ""
    where: str = ""
    sandbox: bool = False  # the server is dbtools' own: the base's roles may be created there
    applied: set[str] = field(default_factory=set)  # revisions the database holds now

    def run(self, dsn: str, where: str, *, sandbox: bool = False) -> Rehearsal:
        self.dsn, self.where, self.sandbox = dsn, where, sandbox
        with session(dsn) as conn:
            version_num = inspect_server(conn).version_num
        if self.base is not None:
            recreate_database(dsn)  # the base is loaded into an empty database
            self.base.load(dsn, self.migrations, create_roles=sandbox)
        else:
            environment = self._named(lambda: self.migrations.current(dsn))
            if recorded_heads(dsn, environment):
                log.info("downgrading %s to base before rehearsing", where)
                try:
                    self._step(lambda: self.migrations.downgrade(dsn, BASE), "downgrade base", ())
                except _StepFailed as err:
                    raise DbtoolsError(f"cannot downgrade {where} to base first: {err}") from err
        self.applied = set()
        steps: list[RehearsalStep] = []
        not_run: list[str] = []
        blocked: set[str] = set()  # upgrades that failed: nothing standing on them can run
        stopped = None
        chosen = [revision for revision in self.order if revision.revision in self.selected]
        for position, revision in enumerate(chosen, 1):
            name = revision.revision
            if stopped is not None or blocked & self._ancestors(revision):
                not_run.append(name)
                continue
            step = self._rehearse_revision(revision, f"revision {position} of {len(chosen)}")
            steps.append(step)
            if step.passed:
                continue
            if not step.upgraded:
                blocked.add(name)
            if not self.keep_going:
                stopped = "stopped at the first failure"
                continue
            try:
                self._restore()
            except (_StepFailed, DbtoolsError) as err:
                if isinstance(err, MigratedElsewhere | ProjectNotImportable):
                    raise
                stopped = f"could not bring the database back after {name}: {err}"
        return Rehearsal(
            where,
            version_num,
            tuple(steps),
            tuple(not_run),
            keep_going=self.keep_going,
            stopped=stopped if self.keep_going and stopped else None,
            base=str(self.base) if self.base else None,
        )

    def _named(self, action: Callable[[], Environment]) -> Environment:
        """*action*'s result; what the project raises, as ``EnvPyFailed`` naming its source."""
        try:
            return action()
        except DbtoolsError:
            raise
        except Exception as err:  # whatever the project's env.py raises
            raise EnvPyFailed(self.migrations.failure(err)) from err

    def _ancestors(self, revision: Script) -> set[str]:
        return {r.revision for r in self.migrations.upgrade_order(revision.revision)}

    def _rehearse_revision(self, revision: Script, position: str) -> RehearsalStep:
        name = revision.revision
        down = ", ".join(down_revisions(revision)) or BASE
        started = time.monotonic()
        try:
            self._apply_ancestors(revision)
        except _StepFailed as err:
            return RehearsalStep(name, down, upgraded=False, downgrade_restores=None,
                                 reupgrade_matches=None, error=str(err),
                                 seconds=time.monotonic() - started)  # fmt: skip
        before_heads = heads_of(self.applied, self.migrations)
        after_heads = heads_of(self.applied | {name}, self.migrations)
        exclude = (self.migrations.last_environment.qualified_version_table,)

        def step(**fields: Any) -> RehearsalStep:
            return RehearsalStep(name, down, seconds=time.monotonic() - started, **fields)

        log.info("rehearsing %s, %s: upgrade from %s, downgrade, upgrade again",
                 position, name, down)  # fmt: skip
        try:
            before = dump_schema(self.dsn, exclude_tables=exclude)
            self._apply(revision, "upgrade", after_heads)
        except _StepFailed as err:
            return step(upgraded=False, downgrade_restores=None, reupgrade_matches=None,
                        error=f"upgrade: {err}")  # fmt: skip
        upgraded = dump_schema(self.dsn, exclude_tables=exclude)
        changed = upgraded != before
        if name in self.irreversible:
            self.applied.add(name)
            return step(upgraded=True, downgrade_restores=None, reupgrade_matches=None,
                        irreversible=self.irreversible[name], changed=changed)  # fmt: skip
        try:
            self._apply(revision, "downgrade", before_heads)
        except _StepFailed as err:
            self.applied.add(name)  # as far as anyone knows: the database is recreated next
            return step(upgraded=True, downgrade_restores=None, reupgrade_matches=None,
                        error=f"downgrade: {err}")  # fmt: skip
        differences, notes = schema_comparison(
            before, dump_schema(self.dsn, exclude_tables=exclude)
        )
        if differences:
            self.applied.add(name)
            return step(upgraded=True, downgrade_restores=False, reupgrade_matches=None,
                        differences=tuple(differences), notes=tuple(notes))  # fmt: skip
        try:
            self._apply(revision, "upgrade", after_heads)
        except _StepFailed as err:
            self.applied.add(name)
            return step(upgraded=True, downgrade_restores=True, reupgrade_matches=None,
                        error=f"second upgrade: {err}", notes=tuple(notes))  # fmt: skip
        self.applied.add(name)
        again, more = schema_comparison(upgraded, dump_schema(self.dsn, exclude_tables=exclude))
        log.info("rehearsed %s: %s", name, "differs after the second upgrade" if again else "ok")
        return step(upgraded=True, downgrade_restores=True, reupgrade_matches=not again,
                    differences=tuple(again), notes=tuple(dict.fromkeys(notes + more)),
                    changed=changed)  # fmt: skip

    def _apply_ancestors(self, revision: Script) -> None:
        """Upgrade to the revisions *revision* stands on, when they are not applied yet (the
        revisions below ``--from``): one ``alembic upgrade`` each, not rehearsed. A failure is
        ``_StepFailed`` saying which."""
        for down in down_revisions(revision):
            if down in self.applied:
                continue
            wanted = self.applied | {r.revision for r in self.migrations.upgrade_order(down)}
            try:
                self._step(
                    functools.partial(self.migrations.upgrade, self.dsn, down),
                    f"upgrade {down}",
                    heads_of(wanted, self.migrations),
                )
            except _StepFailed as err:
                raise _StepFailed(
                    f"upgrade to {down}, below the revisions rehearsed, failed: {err}"
                ) from err
            self.applied = wanted

    def _apply(self, revision: Script, direction: str, expected: tuple[str, ...]) -> None:
        self._step(
            lambda: self.migrations.apply(self.dsn, revision, direction),
            f"{direction} {revision.revision}",
            expected,
        )

    def _step(self, action: Callable[[], object], what: str, expected: tuple[str, ...]) -> None:
        """Run one migration step, then check in the database itself that the version table
        holds *expected*: ``_StepFailed`` when the step fails, ``MigratedElsewhere`` when the
        env.py connected elsewhere."""
        try:
            action()
        except (ProjectNotImportable, MigratedElsewhere):
            raise
        except Exception as err:  # whatever a revision raises: Alembic, SQLAlchemy, the driver…
            reason = (
                str(err)
                if isinstance(err, DbtoolsError)
                else describe_failure(self.migrations.failure(err))
            )
            self._refuse_elsewhere(what, None, reason)
            raise _StepFailed(reason) from err
        self._refuse_elsewhere(what, expected)

    def _refuse_elsewhere(
        self, what: str, expected: tuple[str, ...] | None, error: str | None = None
    ) -> None:
        environment = self.migrations.last_environment
        elsewhere = not same_database(self.dsn, environment.target)
        if expected is None and not elsewhere:
            return  # a failed step in our own database: an ordinary failure
        found = recorded_heads(self.dsn, environment)
        if expected is not None and tuple(found or ()) == tuple(sorted(expected)) and not elsewhere:
            return
        message = _elsewhere_message(what, self.where, environment, found, expected)
        raise MigratedElsewhere(message + (f"; the step itself failed: {error}" if error else ""))

    def _restore(self) -> None:
        """Recreate the database and upgrade it to the revisions applied so far."""
        log.info("recreating %s and upgrading it to %s", self.where, sorted(self.applied))
        recreate_database(self.dsn)
        if self.base is not None:
            self.base.load(self.dsn, self.migrations, create_roles=self.sandbox)
        done: set[str] = set()
        for head in heads_of(self.applied, self.migrations):
            done |= {r.revision for r in self.migrations.upgrade_order(head)}
            self._step(
                functools.partial(self.migrations.upgrade, self.dsn, head),
                f"upgrade {head}",
                heads_of(done, self.migrations),
            )


def _elsewhere_message(
    what: str,
    where: str,
    environment: Environment,
    found: tuple[str, ...] | None,
    expected: tuple[str, ...] | None,
) -> str:
    table = environment.qualified_version_table
    holds = "does not exist" if found is None else f"holds {', '.join(found) or 'no revision'}"
    wanted = f" (expected {', '.join(expected) or 'no revision'})" if expected is not None else ""
    target = (
        f"it connected to {environment.target}"
        if environment.target
        else "where it connected cannot be seen"
    )
    return (
        f"after `{what}` the version table {table} in {where} {holds}{wanted}: the project's "
        f"env.py migrated another database ({target}); nothing was judged"
    )


def recreate_database(dsn: str) -> None:
    """Drop the database *dsn* names and create it empty (its connections are ended)."""
    name = str(conninfo.conninfo_to_dict(dsn).get("dbname") or describe(dsn).database)
    admin = conninfo.make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as err:
        raise DbtoolsError(f"cannot recreate {name}: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    """The first line of what went wrong (redacted)."""
    text = str(getattr(err, "orig", None) or err).strip()
    return redact(text.splitlines()[0] if text else type(err).__name__)


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
    return schema_comparison(before, after)[0]


def schema_comparison(before: str, after: str) -> tuple[list[SchemaDifference], list[str]]:
    """The objects two normalised dumps disagree on, and notes on what was left out as no
    difference: a table's column order, and constraint names PostgreSQL generates."""
    first, second = _definitions(before), _definitions(after)
    differences: list[SchemaDifference] = []
    notes: list[str] = []
    for identity, text in second.items():
        if identity not in first:
            differences.append(SchemaDifference("left behind", identity))
        elif first[identity] != text:
            note = _no_difference(identity, first[identity], text)
            if note:
                notes.append(note)
            else:
                differences += _column_differences(identity, first[identity], text) or [
                    SchemaDifference("changed", identity, _first_change(first[identity], text))
                ]
    for identity in first:
        if identity not in second:
            differences.append(SchemaDifference("missing", identity))
    renamed = _generated_renames(differences, first, second)
    notes += [
        f"constraint on {table} named {old} before and {new} after: a name PostgreSQL "
        "generates, same definition"
        for table, old, new in renamed
    ]
    gone = {f"constraint {old} on {t}" for t, old, _ in renamed}
    gone |= {f"constraint {new} on {t}" for t, _, new in renamed}
    return [d for d in differences if d.object not in gone], notes


_NOT_NULL_NAME = re.compile(r'\bCONSTRAINT\s+(?:"(?:[^"]|"")+"|\S+)\s+NOT NULL\b', re.I)
_GENERATED = re.compile(r"_(?:pkey|key|fkey|check|excl|not_null)\d*$")


def _no_difference(identity: str, old: str, new: str) -> str | None:
    """Why two definitions of *identity* are the same schema, or None when they differ."""
    if _NOT_NULL_NAME.sub("NOT NULL", old) == _NOT_NULL_NAME.sub("NOT NULL", new):
        return f"{identity}: NOT NULL constraint names differ (PostgreSQL generates them)"
    if identity.startswith("table "):
        old_columns, new_columns = _columns(old), _columns(new)
        if old_columns and sorted(old_columns) == sorted(new_columns):
            return (
                f"{identity}: the same columns in another order (a downgrade that re-adds a "
                "dropped column adds it at the end)"
            )
    return None


def _columns(statement: str) -> list[str]:
    """The column and table-constraint lines of a dumped ``CREATE TABLE``, normalised, with the
    text around them (so that only their order is left out)."""
    text = _NOT_NULL_NAME.sub("NOT NULL", statement)
    start, end = text.find("(\n"), text.rfind("\n)")
    if start < 0 or end < start:
        return []
    lines = [line.strip().rstrip(",") for line in text[start + 2 : end].splitlines()]
    return [text[:start], text[end:], *sorted(line for line in lines if line)]


def _column_differences(identity: str, old: str, new: str) -> list[SchemaDifference]:
    """A table that differs only in its columns, column by column (``column public.t.c left
    behind``); empty when it differs otherwise."""
    if not identity.startswith("table "):
        return []
    before, after = _columns(old), _columns(new)
    if not before or not after or before[:2] != after[:2]:
        return []
    table = identity.removeprefix("table ")
    old_lines = {_column_key(line): line for line in before[2:]}
    new_lines = {_column_key(line): line for line in after[2:]}
    found = []
    for name, line in new_lines.items():
        if name not in old_lines:
            found.append(SchemaDifference("left behind", f"column {table}.{name}"))
        elif old_lines[name] != line:
            found.append(
                SchemaDifference(
                    "changed", f"column {table}.{name}", _both_sides(old_lines[name], line)
                )
            )
    found += [
        SchemaDifference("missing", f"column {table}.{name}")
        for name in old_lines
        if name not in new_lines
    ]
    return found


def _column_key(line: str) -> str:
    """A column's name, or ``CONSTRAINT name`` for a table constraint written in the table."""
    words = line.split()
    return " ".join(words[:2]) if words[0].upper() == "CONSTRAINT" and len(words) > 1 else words[0]


def _generated_renames(
    differences: list[SchemaDifference], first: dict[str, str], second: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(table, old name, new name) of constraints missing in one dump and left behind in the
    other with the same definition, both named as PostgreSQL names them."""
    pattern = re.compile(r"^constraint (?P<name>\S+) on (?P<table>\S+)$")
    missing = [pattern.match(d.object) for d in differences if d.change == "missing"]
    added = [pattern.match(d.object) for d in differences if d.change == "left behind"]
    pairs = []
    for old in filter(None, missing):
        for new in filter(None, added):
            names = old.group("name"), new.group("name")
            if old.group("table") != new.group("table") or not all(map(_GENERATED.search, names)):
                continue
            old_text = first[old.group(0)].replace(names[0], "NAME")
            if old_text == second[new.group(0)].replace(names[1], "NAME"):
                pairs.append((old.group("table"), *names))
                added.remove(new)
                break
    return pairs


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
    """The first lines that differ (one hunk), both sides: ``before → after`` (``(none)`` for a
    side that has no line there)."""
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0):
        if line.startswith("@@") and (removed or added):
            break
        if line.startswith("-") and not line.startswith("---"):
            removed.append(" ".join(line[1:].split()))
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(" ".join(line[1:].split()))
    return _both_sides(" ".join(removed) or "(none)", " ".join(added) or "(none)")


def _both_sides(before: str, after: str, width: int = 100) -> str:
    """``before → after``, each cut to *width* around where they start to differ."""
    pairs = enumerate(zip(before, after, strict=False))
    same = next((i for i, (a, b) in pairs if a != b), min(len(before), len(after)))
    start = max(0, same - width // 3) if max(len(before), len(after)) > width else 0

    def cut(text: str) -> str:
        shown = text[start : start + width]
        return ("…" if start else "") + shown + ("…" if start + width < len(text) else "")

    return f"{cut(before)} → {cut(after)}"
