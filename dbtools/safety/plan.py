"""A downgrade plan: the ordered steps Alembic would run to go from one revision down to another,
each classified, with export steps before every statement that destroys data.

The steps come from the revision graph and the offline SQL of each revision (``alembic downgrade
REV:DOWN --sql``), revision by revision. The upgrade SQL of every revision up to ``--from`` is read
too: it says which objects each revision created (so the plan can show that the downgrade removes
every one of them, in reverse order) and what a ``DROP`` needs to know that its own text does not
say (the table of an index, the tables a table's foreign keys reference).

With a live connection (a read-only session) the plan adds the size and estimated rows of each
relation a step touches, and estimated durations from the throughputs in ``Rates``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, replace

from alembic.script import Script

from dbtools.db.connection import session
from dbtools.db.server import inspect_server
from dbtools.errors import ConfigError, UsageError
from dbtools.redaction import redact
from dbtools.safety.classify import (
    Classification,
    DataLoss,
    DbObject,
    SchemaContext,
    classify,
)
from dbtools.safety.live import RelationSize, catalog_context, relation_sizes
from dbtools.safety.locks import Blocking, LockLevel
from dbtools.schema import revisions
from dbtools.schema.online import MigrationSettings
from dbtools.schema.revisions import (
    Environment,
    EnvPyFailed,
    Migrations,
    RunOptions,
    UnrenderableRevision,
    down_revisions,
    heads_of,
)
from dbtools.sqltext.split import OfflineStatement, read_offline_sql

log = logging.getLogger(__name__)

BASE = "base"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Rates:
    """Throughputs the duration estimates assume (bytes of ``pg_total_relation_size`` a second).

    A quarter of what ``benchmarks/downgrade_rates.py`` measured on an idle 2-core machine
    (``benchmarks/RESULTS-downgrade-rates.md``): production is busy, exports cross a network,
    rewrites and index builds compete with the application for I/O. A concurrent index build
    counts double (two table scans; 2.1x a plain build under write load in
    ``benchmarks/RESULTS-index-build.md``).
    """

    export: float = 16 * MiB  # \copy (SELECT …) TO a CSV file (measured 66 MiB/s)
    scan: float = 300 * MiB  # a sequential scan: DELETE, VALIDATE, SET NOT NULL (1248)
    index_build: float = 75 * MiB  # CREATE INDEX (300)
    rewrite: float = 13 * MiB  # VACUUM FULL, CLUSTER, ALTER COLUMN TYPE (54)
    catalog_change_s: float = 0.05  # a catalog-only change once its lock is granted


@dataclass(frozen=True)
class Relation:
    """A relation a step touches: the lock the step takes on it, and (live) its size."""

    name: str
    lock: LockLevel | None
    total_bytes: int | None = None
    estimated_rows: int | None = None
    exists: bool | None = None  # None: no connection


@dataclass(frozen=True)
class Step:
    """One thing to do, in order: a statement Alembic runs, or an export to run before it."""

    number: int
    revision: str
    # "export" (psql, before the downgrade), "statement", "version" (alembic_version), or
    # "unplanned" (a revision whose downgrade SQL cannot be rendered: one warning step)
    kind: str
    sql: str
    action: str
    lock: LockLevel | None
    blocks: Blocking
    in_transaction: bool
    transaction: int  # which transaction of the revision's run (0: not part of the run)
    data_loss: tuple[DataLoss, ...]
    rerunnable: bool
    relations: tuple[Relation, ...]
    work: str  # what its duration depends on: catalog, scan, rewrite, index build, export
    estimated_seconds: float | None
    parser: str
    dropped: tuple[DbObject, ...] = ()
    notes: tuple[str, ...] = ()
    warning: str | None = None

    @property
    def destroys_data(self) -> bool:
        return bool(self.data_loss)


@dataclass(frozen=True)
class RemovedObject:
    """An object a revision's upgrade created and the step of its downgrade that removes it."""

    object: DbObject
    step: int
    how: str  # "dropped", "with table public.x", "with schema s"


@dataclass(frozen=True)
class RevisionPlan:
    """The steps that undo one revision, and how to run them."""

    revision: str
    down_revision: str  # "base" below the first revision; "a, b" below a merge
    title: str
    steps: tuple[Step, ...]
    removes: tuple[RemovedObject, ...]
    not_removed: tuple[DbObject, ...]
    command: str  # the alembic command that undoes this revision alone
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveDatabase:
    """The database a plan was made against (sizes and the current revision came from it)."""

    database: str
    server_version_num: int
    current_revision: str


@dataclass(frozen=True)
class DowngradePlan:
    """Everything ``dbtools downgrade-plan`` reports."""

    from_revision: str
    from_source: str  # "head", "current" or "given"
    to_revision: str
    revisions: tuple[RevisionPlan, ...]
    warnings: tuple[str, ...]
    lock_timeout: str | None
    statement_timeout: str | None
    lock_retries: int
    rates: Rates
    live: LiveDatabase | None = None
    # dbtools' own env.py runs these migrations (its lock timeout retries apply)
    env_is_dbtools: bool = True

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(step for revision in self.revisions for step in revision.steps)

    @property
    def estimated_seconds(self) -> float | None:
        """The sum of the steps' estimates; None when one of them is unknown (no connection)."""
        estimates = [step.estimated_seconds for step in self.steps]
        return None if any(e is None for e in estimates) else sum(e or 0.0 for e in estimates)

    @property
    def data_loss_tables(self) -> tuple[str, ...]:
        """Tables whose rows (all or some) the downgrade destroys, in step order."""
        tables = [
            loss.table for step in self.steps if step.kind == "statement" for loss in step.data_loss
        ]
        return tuple(dict.fromkeys(tables))


def build_plan(
    to_revision: str,
    from_revision: str | None = None,
    *,
    dsn: str | None = None,
    ini: revisions.IniPath = None,
    rates: Rates | None = None,
    run: RunOptions | None = None,
) -> DowngradePlan:
    """Plan the downgrade from *from_revision* down to *to_revision*.

    *from_revision*: a revision id, ``"head"`` (every head), or ``"current"`` (the revisions
    recorded in the database at *dsn*); default ``"current"`` with a *dsn*, else ``"head"``.
    *to_revision*: a revision id below it, ``"base"``, or ``"-N"`` (the first N revisions
    Alembic undoes). *dsn*: when given, a read-only session adds relation sizes, row estimates
    and durations, and answers what a revision reads while it is rendered. *ini*: another
    project's migrations (``dbtools.schema.revisions``); *run*: how its env.py runs (its
    interpreter, driver…). An env.py that refuses to run offline plans each revision as one
    "cannot be planned offline" step.

    Only the revisions in the range are rendered: each one's upgrade (what it created) and
    downgrade (the steps). Across a merge the revisions come in the order Alembic runs them. A
    revision whose downgrade cannot be rendered is one warning step; the rest is planned.

    Raises ``UsageError`` for an unknown revision or a target that is not below the start,
    ``ConfigError`` for an empty history, ``ConnectionFailed`` when *dsn* cannot be reached.
    """
    migrations = Migrations(ini, run)
    migrations.require_revisions()
    settings = MigrationSettings.from_alembic(migrations.config(), {})
    refusal = None
    try:
        environment = migrations.environment()
    except EnvPyFailed as err:  # an env.py that refuses offline mode: each revision says so
        environment, refusal = Environment(), str(err)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(session(dsn)) if dsn is not None else None
        live = None
        context = SchemaContext()
        if conn is not None and dsn is not None:
            server = inspect_server(conn)
            heads = revisions.recorded_heads(dsn, environment) or ()
            live = LiveDatabase(server.database, server.version_num, ", ".join(heads) or BASE)
            context.index_tables, context.references = catalog_context(conn)
        start, source = _resolve_from(migrations, from_revision, live)
        chain, target = _resolve_chain(migrations, to_revision, start)
        log.info(
            "planning the downgrade %s -> %s (%d revisions)", _label(start), target, len(chain)
        )
        created, upgrade_warnings = _created_by(migrations, chain, context, dsn)
        applied = {rev.revision for rev in migrations.upgrade_order(start)} if start else set()
        plans: list[RevisionPlan] = []
        preamble: dict[str, str] = {}
        number = 1
        for revision in chain:
            heads = heads_of(applied, migrations)
            plan, settings_made = _plan_revision(
                migrations,
                revision,
                heads,
                context,
                created.get(revision.revision, []),
                number,
                dsn,
                environment.qualified_version_table,
            )
            if revision.revision in upgrade_warnings:
                plan = replace(plan, warnings=(upgrade_warnings[revision.revision], *plan.warnings))
            applied.discard(revision.revision)
            plans.append(plan)
            preamble = preamble or settings_made
            number += len(plan.steps)
        sizes = None
        if conn is not None:
            names = [r.name for plan in plans for step in plan.steps for r in step.relations]
            sizes = relation_sizes(conn, [name for name in names if not name.startswith("(")])
        plans = [_with_estimates(plan, sizes, rates or Rates()) for plan in plans]
    warnings = _warnings(plans, live, _label(start))
    if refusal is not None:
        warnings.insert(0, f"the project's env.py does not run offline ({refusal}): its version "
                           "table is taken to be public.alembic_version")  # fmt: skip
    return DowngradePlan(
        from_revision=_label(start),
        from_source=source,
        to_revision=target,
        revisions=tuple(plans),
        warnings=tuple(warnings),
        lock_timeout=preamble.get("lock_timeout"),
        statement_timeout=preamble.get("statement_timeout"),
        lock_retries=settings.lock_retries,
        rates=rates or Rates(),
        live=live,
        env_is_dbtools=environment.is_dbtools,
    )


# -- the revision graph ------------------------------------------------------------------------------


def _label(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) or BASE


def _revision(migrations: Migrations, revision: str, option: str) -> Script:
    try:
        return migrations.get(revision)
    except ConfigError as err:
        raise UsageError(f"{option}: unknown revision {revision!r} ({_known(migrations)})") from err


def _known(migrations: Migrations) -> str:
    ids = [rev.revision for rev in migrations.upgrade_order()]
    return "known: " + ", ".join([BASE, *ids, "head"])


def _resolve_from(
    migrations: Migrations, from_revision: str | None, live: LiveDatabase | None
) -> tuple[tuple[str, ...], str]:
    """The heads the downgrade starts from, and where they came from."""
    chosen = from_revision or ("current" if live else "head")
    if chosen == "current":
        if live is None:
            raise UsageError("--from current needs a database connection (--dsn)")
        heads = tuple(h for h in live.current_revision.split(", ") if h != BASE)
        for head in heads:
            _revision(migrations, head, "the database's revision")
        return heads, "current"
    if chosen in ("head", "heads"):
        return migrations.heads(), "head"
    if chosen == BASE:
        return (), "given"
    return (_revision(migrations, chosen, "--from").revision,), "given"


def _resolve_chain(
    migrations: Migrations, to_revision: str, start: tuple[str, ...]
) -> tuple[list[Script], str]:
    """The revisions to undo, in the order Alembic undoes them, and the target's label."""
    everything = migrations.downgrade_order(start, BASE) if start else []
    relative = re.fullmatch(r"-(\d+)", to_revision.strip())
    if relative:
        count = int(relative.group(1))
        if count > len(everything):
            raise UsageError(
                f"--to {to_revision}: fewer than {count} revisions below {_label(start)}"
            )
        chain = everything[:count]
        undone = {rev.revision for rev in chain}
        remaining = {rev.revision for rev in everything} - undone
        return chain, _label(heads_of(remaining, migrations))
    if to_revision == BASE:
        return everything, BASE
    if to_revision == "head":
        heads = migrations.heads()
        to_revision = heads[0] if len(heads) == 1 else to_revision
    target = _revision(migrations, to_revision, "--to").revision
    below = {rev.revision for rev in everything}
    if target in start:
        return [], target
    if target not in below:
        raise UsageError(
            f"--to {target} is not below --from {_label(start)}: a downgrade cannot reach it"
        )
    return migrations.downgrade_order(start, target), target


# A revision that replaces a function a revision below created (its downgrade puts the old body
# back) does not create it.
_REPLACES = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+FUNCTION\b", re.I)


def _created_by(
    migrations: Migrations, chain: list[Script], context: SchemaContext, dsn: str | None
) -> tuple[dict[str, list[DbObject]], dict[str, str]]:
    """Read the upgrade SQL of the revisions in the range (oldest first): the objects each one
    created, in creation order, with *context* learning from them; and a warning for each one
    whose upgrade cannot be rendered (with *dsn*: even with its reads answered there)."""
    created: dict[str, list[DbObject]] = {}
    warnings: dict[str, str] = {}
    for revision in reversed(chain):
        try:
            rendered = _render(migrations, revision, "upgrade", None, dsn)
        except UnrenderableRevision as err:
            warnings[revision.revision] = (
                f"what the upgrade of {revision.revision} created is unknown, so nothing is "
                f"checked as removed: its upgrade cannot be rendered offline: {err.reason}"
            )
            continue
        table = rendered.environment.qualified_version_table
        objects: list[DbObject] = []
        for statement in read_offline_sql(rendered.sql).statements:
            found = classify(statement.sql, context)
            context.learn(found)
            objects += [
                obj
                for obj in found.created
                if obj.name != table
                and not (obj.kind == "function" and _REPLACES.match(statement.sql))
            ]
        created[revision.revision] = objects
    return created, warnings


# -- one revision ------------------------------------------------------------------------------------


def _plan_revision(
    migrations: Migrations,
    revision: Script,
    heads: tuple[str, ...],
    context: SchemaContext,
    created: list[DbObject],
    first_number: int,
    dsn: str | None,
    version_table: str,
) -> tuple[RevisionPlan, dict[str, str]]:
    """The steps of one revision's downgrade (from *heads*), and the session settings its SQL
    starts with. A downgrade that cannot be rendered offline is rendered again with its reads
    answered by *dsn* when there is one, else it is one warning step."""
    down = _label(down_revisions(revision))
    title = _title(revision)
    command = _command(migrations, revision, heads)
    try:
        rendered = _render(migrations, revision, "downgrade", heads, dsn)
    except UnrenderableRevision as err:
        step = _unplanned_step(first_number, revision.revision, err, dsn is not None)
        plan = RevisionPlan(
            revision.revision, down, title, (step,), (), (), command,
            (f"nothing removed by {revision.revision} is checked: its downgrade was not planned",)
            if created
            else (),
        )  # fmt: skip
        return plan, {}
    script = read_offline_sql(rendered.sql)
    statements = script.statements
    classified = [(s, classify(s.sql, context)) for s in statements]
    for _, found in classified:
        context.learn(found)
    rerun = _rerun_verdicts(classified)
    exports = [
        (loss, index)
        for index, (statement, found) in enumerate(classified)
        if not _is_version_step(found, version_table)
        for loss in found.data_loss
        if loss.export_query
    ]
    number = first_number + len(exports)
    statement_numbers = {index: number + index for index in range(len(classified))}
    steps = [
        _export_step(first_number + position, revision.revision, loss, statement_numbers[index])
        for position, (loss, index) in enumerate(exports)
    ]
    for index, (statement, found) in enumerate(classified):
        steps.append(
            _statement_step(
                statement_numbers[index],
                revision.revision,
                statement,
                found,
                rerun[index],
                _is_version_step(found, version_table),
            )
        )
    removes, not_removed = _account(created, steps)
    plan = RevisionPlan(revision.revision, down, title, tuple(steps), removes, not_removed, command)
    return plan, script.settings


def _render(
    migrations: Migrations,
    revision: Script,
    direction: str,
    heads: tuple[str, ...] | None,
    dsn: str | None,
) -> revisions.RenderedSql:
    """A revision's offline SQL; when it cannot be rendered and there is a database, rendered
    again with the revision's own reads answered there (read-only)."""
    try:
        return migrations.render(revision, direction, heads=heads)
    except UnrenderableRevision:
        if dsn is None:
            raise
        log.info("rendering %s again, its reads answered by the database", revision.revision)
        return migrations.render(revision, direction, heads=heads, live_dsn=dsn)


def _unplanned_step(number: int, revision: str, err: UnrenderableRevision, live: bool) -> Step:
    how = "even with its reads answered by the database" if live else "offline"
    hint = "" if live else " (with --dsn the plan answers the revision's reads from the database)"
    return Step(
        number=number,
        revision=revision,
        kind="unplanned",
        sql=err.partial_sql.strip() or "-- nothing rendered",
        action=f"cannot be planned {how}: {err.reason}",
        lock=None,
        blocks=Blocking.NEITHER,
        in_transaction=False,
        transaction=0,
        data_loss=(),
        rerunnable=False,
        relations=(),
        work="unknown",
        estimated_seconds=None,
        parser="-",
        warning=f"its downgrade cannot be planned {how}: {err.reason}; read the revision's "
        f"downgrade() and what it does by hand{hint}",
    )


def _command(migrations: Migrations, revision: Script, heads: tuple[str, ...]) -> str:
    """The alembic command that undoes *revision* alone, the other heads *heads* staying: the
    down revision for a line or a merge; ``REV@-1`` on a branch whose sibling stays applied
    (``alembic downgrade BRANCH_POINT`` would undo the sibling too)."""
    downs = down_revisions(revision)
    others = set(heads) - {revision.revision}
    if len(downs) == 1 and others:
        sibling_needs_it = any(
            downs[0] in {r.revision for r in migrations.upgrade_order(other)} for other in others
        )
        if sibling_needs_it:
            return f"alembic downgrade {revision.revision}@-1"
    return f"alembic downgrade {downs[0] if downs else BASE}"


def _title(revision: Script) -> str:
    """The first sentence of the revision's docstring."""
    text = (getattr(revision.module, "__doc__", None) or revision.doc or "").strip()
    paragraph = " ".join(text.split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s", paragraph)[0]


def _is_version_step(found: Classification, version_table: str) -> bool:
    return bool(found.locks) and all(lock.relation == version_table for lock in found.locks)


def _export_file(loss: DataLoss, revision: str) -> str:
    suffix = "" if loss.what == "every row" else f".{revision}"
    return f"{loss.table}{suffix}.csv"


def _export_step(number: int, revision: str, loss: DataLoss, before: int) -> Step:
    target = _export_file(loss, revision)
    return Step(
        number=number,
        revision=revision,
        kind="export",
        sql=f"\\copy ({loss.export_query}) TO '{target}' CSV HEADER",
        action=f"export {loss.table} ({loss.what})",
        lock=LockLevel.ACCESS_SHARE,
        blocks=Blocking.NEITHER,
        in_transaction=False,
        transaction=0,
        data_loss=(),
        rerunnable=True,
        relations=(Relation(loss.table, LockLevel.ACCESS_SHARE),),
        work="export",
        estimated_seconds=None,
        parser="dbtools",
        notes=(
            f"run with psql before `alembic downgrade`: step {before} destroys these rows; "
            "stop the writers of this table first so that the export is complete",
        ),
    )


def _statement_step(
    number: int,
    revision: str,
    statement: OfflineStatement,
    found: Classification,
    rerun: tuple[bool, str | None],
    version: bool,
) -> Step:
    rerunnable, rerun_note = rerun
    notes = list(found.notes)
    if rerun_note:
        notes.append(rerun_note)
    relations = [Relation(lock.relation, lock.level) for lock in found.locks]
    for obj in found.dropped:
        if obj.kind == "index" and all(r.name != obj.name for r in relations):
            relations.append(Relation(obj.name, None))
    return Step(
        number=number,
        revision=revision,
        kind="version" if version else "statement",
        sql=redact(statement.sql),  # a migration may set a role's password
        action=f"record revision ({found.locks[0].relation.rsplit('.', 1)[-1]}): {found.action}"
        if version
        else found.action,
        lock=found.lock,
        blocks=found.blocks,
        in_transaction=statement.in_transaction,
        transaction=statement.block,
        data_loss=() if version else found.data_loss,
        rerunnable=rerunnable,
        relations=tuple(relations),
        work=_work(found),
        estimated_seconds=None,
        parser=found.parser,
        dropped=found.dropped,
        notes=tuple(notes),
        warning=found.warning,
    )


def _work(found: Classification) -> str:
    if found.rewrites_table:
        return "rewrite"
    if found.action.startswith("CREATE INDEX"):
        return "index build"
    if found.scans_table:
        return "scan"
    return "catalog"


def _rerun_verdicts(
    classified: list[tuple[OfflineStatement, Classification]],
) -> list[tuple[bool, str | None]]:
    """Whether each statement can safely run again if the revision is interrupted and rerun.

    The revision's last transaction (the one that records the revision) rolls back as a whole:
    its statements are safe. Everything before it commits on its own when an autocommit block
    starts, so a rerun repeats it: safe when each statement is idempotent, unless its transaction
    also consumes a log (reads rows of a table, then deletes them): a rerun then finds the log
    empty, so only changes driven by the log's rows are safe to repeat, not the others.
    """
    if not classified:
        return []
    last = max(statement.block for statement, _ in classified)
    hazards = _log_hazards(classified)
    verdicts: list[tuple[bool, str | None]] = []
    for index, (statement, found) in enumerate(classified):
        if statement.block == last and statement.in_transaction:
            verdicts.append((True, None))
        elif not found.idempotent:
            verdicts.append(
                (
                    False,
                    "commits before the revision is recorded and cannot run twice: if a later "
                    "step fails, a rerun of the revision fails here or repeats it",
                )
            )
        elif index in hazards:
            verdicts.append((False, hazards[index]))
        else:
            verdicts.append((True, None))
    return verdicts


def _log_hazards(classified: list[tuple[OfflineStatement, Classification]]) -> dict[int, str]:
    """Statements of an early-committed transaction that change the schema without reading the
    log (a table whose rows the same transaction reads, then deletes) that other statements of
    the transaction restore from: a rerun repeats them, but the restore finds no rows."""
    hazards: dict[int, str] = {}
    last = max(statement.block for statement, _ in classified)
    blocks = {s.block for s, _ in classified if s.in_transaction and s.block != last}
    for block in blocks:
        members = [(i, c) for i, (s, c) in enumerate(classified) if s.block == block]
        deleted = {loss.table for _, c in members for loss in c.data_loss}
        readers = {
            lock.relation
            for _, c in members
            for lock in c.locks
            if lock.level is LockLevel.ACCESS_SHARE
        }
        logs = deleted & readers
        if not logs:
            continue
        log = sorted(logs)[0]
        for index, found in members:
            reads_log = any(lock.relation in logs for lock in found.locks)
            changes = (
                found.created
                or found.dropped
                or any(lock.level.rank > LockLevel.ROW_EXCLUSIVE.rank for lock in found.locks)
            )
            if changes and not reads_log:
                hazards[index] = (
                    f"its transaction commits before the revision's later steps and deletes the "
                    f"rows of {log} it restores from: a rerun repeats this change without the "
                    "restore"
                )
    return hazards


def _account(
    created: list[DbObject], steps: list[Step]
) -> tuple[tuple[RemovedObject, ...], tuple[DbObject, ...]]:
    """Match the objects a revision created with the steps of its downgrade that remove them."""
    removed: dict[str, RemovedObject] = {}
    by_name = {obj.name: obj for obj in created}
    statement_steps = [step for step in steps if step.kind == "statement"]
    for step in statement_steps:
        for obj in step.dropped:
            key = obj.name
            if key in by_name and key not in removed:
                removed[key] = RemovedObject(by_name[key], step.number, "dropped")
            dropped_table = obj.kind == "table"
            for other in created:
                if other.name in removed:
                    continue
                if dropped_table and other.table == obj.name:
                    removed[other.name] = RemovedObject(
                        other, step.number, f"with table {obj.name}"
                    )
                elif (
                    obj.kind == "schema"
                    and other.name.startswith(f"{obj.name}.")
                    and ("CASCADE" in step.sql.upper())
                ):
                    removed[other.name] = RemovedObject(
                        other, step.number, f"with schema {obj.name}"
                    )
    order = sorted(removed.values(), key=lambda r: (r.step, r.how != "dropped"))
    missing = tuple(obj for obj in created if obj.name not in removed)
    return tuple(order), missing


# -- live sizes and estimates ----------------------------------------------------------------------


def _with_estimates(
    plan: RevisionPlan, sizes: dict[str, RelationSize] | None, rates: Rates
) -> RevisionPlan:
    """*plan* with relation sizes (when *sizes* came from a live database) and estimates."""
    steps = []
    for step in plan.steps:
        relations = tuple(_sized(r, sizes) for r in step.relations)
        seconds = _estimate(step, relations, rates)
        steps.append(replace(step, relations=relations, estimated_seconds=seconds))
    return replace(plan, steps=tuple(steps))


def _sized(relation: Relation, sizes: dict[str, RelationSize] | None) -> Relation:
    if sizes is None or relation.name.startswith("("):
        return relation
    found = sizes.get(relation.name)
    if found is None:
        return replace(relation, exists=False)
    return replace(
        relation, total_bytes=found.total_bytes, estimated_rows=found.estimated_rows, exists=True
    )


def _estimate(step: Step, relations: tuple[Relation, ...], rates: Rates) -> float | None:
    """Seconds the step works once its locks are granted (lock waits are not included); None
    when that depends on a size nobody measured (no connection)."""
    rate = {
        "export": rates.export,
        "rewrite": rates.rewrite,
        "index build": rates.index_build,
        "scan": rates.scan,
    }.get(step.work)
    if rate is None:
        return rates.catalog_change_s
    if step.work == "index build" and "CONCURRENTLY" in step.action:
        rate /= 2  # two table scans, then a wait for running transactions
    size = relations[0].total_bytes if relations else None
    if size is None:
        return 0.0 if relations and relations[0].exists is False else None
    return (0.0 if step.work == "export" else rates.catalog_change_s) + size / rate


def _warnings(plans: list[RevisionPlan], live: LiveDatabase | None, start: str) -> list[str]:
    warnings: list[str] = []
    if live is not None and live.current_revision != start:
        warnings.append(
            f"the database is at revision {live.current_revision}, the plan starts at {start}: "
            "steps for revisions it does not have will fail"
        )
    exports = {
        (loss_table, step.revision): step.number
        for plan in plans
        for step in plan.steps
        if step.kind == "export"
        for loss_table in [step.relations[0].name]
    }
    for plan in plans:
        for step in plan.steps:
            for loss in step.data_loss if step.kind == "statement" else ():
                exported = exports.get((loss.table, step.revision))
                how = f"export it first (step {exported})" if exported else "no export possible"
                warnings.append(
                    f"data loss: step {step.number} ({step.action}) destroys {loss.what} of "
                    f"{loss.table}; {how}"
                )
            if step.warning:
                warnings.append(f"step {step.number} of revision {step.revision}: {step.warning}")
            if not step.rerunnable and step.kind != "unplanned":
                warnings.append(
                    f"step {step.number} ({step.action}) is not safe to rerun if the downgrade "
                    f"of {step.revision} is interrupted after it"
                )
        warnings += list(plan.warnings)
        for obj in plan.not_removed:
            warnings.append(
                f"the downgrade of {plan.revision} does not remove {obj}, which its upgrade creates"
            )
    return warnings


__all__ = [
    "BASE",
    "DowngradePlan",
    "LiveDatabase",
    "Rates",
    "Relation",
    "RemovedObject",
    "RevisionPlan",
    "Step",
    "build_plan",
]
