"""What makes `alembic upgrade head` safe on a busy database; used by migrations/env.py and the
revisions.

* A migration lock: ``pg_try_advisory_lock`` polled on the migration connection, committing
  between tries, so two deploy jobs never apply anything twice. Never a blocking
  ``pg_advisory_lock``: it deadlocks against a concurrent index build (the build waits for the
  waiting session's transaction).
* ``lock_timeout`` and a DDL-sized ``statement_timeout`` on every migration session, and one retry
  policy (``retry_on_lock_timeout``: bounded retries with backoff when a step hits
  ``lock_not_available``; the final failure names the table) for every step: a revision's
  transaction (migrations/env.py), an index build, a storage-parameter change.
* Index builds with ``CREATE INDEX CONCURRENTLY`` that check ``indisvalid`` afterwards and repair
  an invalid leftover (drop concurrently, rebuild) instead of trusting ``IF NOT EXISTS``.
* Storage parameters set with the previous values recorded, so a downgrade restores exactly what
  was there (SET the keys that had values, RESET the keys that had none).

Every helper also renders plain SQL in offline mode (``alembic upgrade head --sql``). The revisions
pass them their own frozen definitions (``dbtools.schema.manifest.IndexDefinition``,
``TableSettings``), never a declaration that could change under an applied revision.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from alembic import op
from alembic.config import Config
from sqlalchemy.engine import Connection

from dbtools.db.connection import SQL_MARKER
from dbtools.errors import MigrationError
from dbtools.schema.manifest import IndexDefinition, TableSettings
from dbtools.schema.monitoring import SETTING_CHANGES, monitoring_table

log = logging.getLogger("dbtools.schema.online")

# pg_try_advisory_lock key shared by every `alembic upgrade` of this project ("dbtmigr" in ASCII).
MIGRATION_LOCK_KEY = 0x0064_6274_6D69_6772
LOCK_NOT_AVAILABLE = "55P03"
T = TypeVar("T")


@dataclass(frozen=True)
class MigrationSettings:
    """Timeouts and retry policy for migration sessions (alembic.ini, ``-x``, or environment)."""

    lock_timeout: str = "5s"
    statement_timeout: str = "2h"
    lock_retries: int = 3
    retry_backoff_s: float = 1.0
    lock_wait_s: float = 600.0

    @classmethod
    def from_alembic(cls, config: Config, x_args: Mapping[str, str]) -> MigrationSettings:
        """Read ``-x key=value``, else ``DBTOOLS_<KEY>``, else ``dbtools_<key>`` in alembic.ini."""

        def pick(key: str, default: object) -> str:
            return (
                x_args.get(key)
                or os.environ.get(f"DBTOOLS_{key.upper()}")
                or config.get_main_option(f"dbtools_{key}")
                or str(default)
            )

        base = cls()
        try:
            return cls(
                lock_timeout=pick("lock_timeout", base.lock_timeout),
                statement_timeout=pick("statement_timeout", base.statement_timeout),
                lock_retries=int(pick("lock_retries", base.lock_retries)),
                retry_backoff_s=float(pick("retry_backoff", base.retry_backoff_s)),
                lock_wait_s=float(pick("lock_wait", base.lock_wait_s)),
            )
        except ValueError as err:
            raise MigrationError(f"bad migration setting: {err}") from err

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry *attempt* (1-based): doubling from retry_backoff_s."""
        return float(self.retry_backoff_s * 2 ** (attempt - 1))


def settings() -> MigrationSettings:
    """The settings env.py stored for the migration being run."""
    found = op.get_context().config
    stored = found.attributes.get("dbtools.migration_settings") if found is not None else None
    return stored if isinstance(stored, MigrationSettings) else MigrationSettings()


SessionSettings = dict[str, str]


def set_session_timeouts(
    connection: Connection, config: MigrationSettings, *, local: bool = False
) -> SessionSettings:
    """Set the migration's ``lock_timeout`` and ``statement_timeout``; return the values they
    replace (to put back with ``replace_session_settings``).

    SET, not SET LOCAL (autocommit blocks would drop it), unless *local*: inside a caller's
    transaction, where the caller's session must not keep them.
    """
    return replace_session_settings(
        connection,
        {"lock_timeout": config.lock_timeout, "statement_timeout": config.statement_timeout},
        local=local,
    )


def replace_session_settings(
    connection: Connection, timeouts: SessionSettings, *, local: bool = False
) -> SessionSettings:
    """Set each of *timeouts* (setting name to value); return the values they replace."""
    previous = {}
    for name, value in timeouts.items():
        previous[name] = connection.execute(
            sa.text("SELECT current_setting(:name)"), {"name": name}
        ).scalar_one()
        connection.execute(
            sa.text("SELECT set_config(:name, :value, :local)"),
            {"name": name, "value": value, "local": local},
        )
    return previous


def timeout_preamble(config: MigrationSettings) -> list[str]:
    """The SET statements that open offline SQL, so a psql-driven deploy has the same limits."""
    return [
        f"SET lock_timeout = '{config.lock_timeout}'",
        f"SET statement_timeout = '{config.statement_timeout}'",
    ]


# -- the migration lock --------------------------------------------------------------------------

_HOLDER_SQL = sa.text(
    """
    SELECT a.pid, a.application_name, a.client_addr::text AS client, a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = (:key >> 32)::oid AND l.objid = (:key & 4294967295)::oid AND l.objsubid = 1
    """
)


def acquire_migration_lock(
    connection: Connection,
    wait_s: float,
    poll_s: float = 0.25,
    key: int = MIGRATION_LOCK_KEY,
    *,
    in_callers_transaction: bool = False,
) -> None:
    """Poll ``pg_try_advisory_lock`` until it is ours, or raise naming the holder's pid.

    Commits after every try, so no transaction stays open while waiting: an index build elsewhere
    waits for open transactions, and a blocked one here would deadlock with it.

    *in_callers_transaction*: the connection is in a transaction that is not ours to commit; take
    ``pg_try_advisory_xact_lock`` instead, held until the caller commits or rolls back (what the
    migration did is only visible then), and never commit.
    """
    function = "pg_try_advisory_xact_lock" if in_callers_transaction else "pg_try_advisory_lock"
    deadline = time.monotonic() + wait_s
    while True:
        # marked: a sample's lock shares the entry (comments are not part of a queryid)
        got = connection.execute(
            sa.text(f"SELECT {SQL_MARKER} {function}(:key)"), {"key": key}
        ).scalar()
        holder = None if got else connection.execute(_HOLDER_SQL, {"key": key}).mappings().first()
        if not in_callers_transaction:
            connection.commit()
        if got:
            return
        if time.monotonic() >= deadline:
            who = (
                f"pid {holder['pid']} ({holder['application_name'] or 'no application_name'}, "
                f"connected {holder['backend_start']:%Y-%m-%d %H:%M:%S})"
                if holder
                else "a session that has since gone"
            )
            raise MigrationError(
                f"another migration holds the migration lock: {who}; waited {wait_s:g}s. "
                "If that run is stuck, cancel it with pg_cancel_backend(pid)"
            )
        time.sleep(poll_s)


def release_migration_lock(connection: Connection, key: int = MIGRATION_LOCK_KEY) -> None:
    connection.execute(sa.text(f"SELECT {SQL_MARKER} pg_advisory_unlock(:key)"), {"key": key})
    connection.commit()


# -- lock timeouts ---------------------------------------------------------------------------------


def is_lock_timeout(err: BaseException) -> bool:
    """True for SQLSTATE 55P03 (lock_not_available), raised by lock_timeout."""
    orig = getattr(err, "orig", err)
    return getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def retry_on_lock_timeout(
    step: Callable[[], T],
    *,
    what: str | Callable[[sa.exc.DBAPIError], str],
    config: MigrationSettings,
    after_failure: Callable[[], None] = lambda: None,
    action: str = "",
    any_error: bool = False,
    outcome: str = "",
) -> T:
    """Run *step*: the one retry policy of every migration step.

    When it fails with lock_not_available (with *any_error*, with any database error), call
    *after_failure* (roll back, drop a leftover), log a warning, wait ``config.backoff`` and run it
    again, up to ``config.lock_retries`` times; then raise ``MigrationError``: "lock timeout on
    WHAT: still locked after N tries (lock_timeout T); [OUTCOME; ]find the holder in pg_locks and
    retry", or for another error "ACTION failed N times: REASON".

    *what* names what was locked ("table public.t"), or derives it from the error; *action*
    says what the step does ("building index public.ix"); *outcome* what a failure leaves.
    """
    for attempt in itertools.count(1):
        try:
            return step()
        except sa.exc.DBAPIError as err:
            locked = is_lock_timeout(err)
            if not (locked or any_error):
                raise
            after_failure()
            target = what(err) if callable(what) else what
            if attempt > config.lock_retries:
                raise MigrationError(
                    _retry_failure(err, target, action, outcome, attempt, config)
                ) from err
            pause = config.backoff(attempt)
            if locked:
                log.warning(
                    "lock timeout on %s (try %d); retrying in %.1fs", target, attempt, pause
                )
            else:
                log.warning(
                    "%s failed (%s, try %d); retrying in %.1fs",
                    action or "a migration step", _reason(err), attempt, pause,
                )  # fmt: skip
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_failure(
    err: sa.exc.DBAPIError,
    what: str,
    action: str,
    outcome: str,
    tries: int,
    config: MigrationSettings,
) -> str:
    if not is_lock_timeout(err):
        return f"{action or 'a migration step'} failed {tries} times: {_reason(err)}"
    during = f" while {action}" if action else ""
    left = f"{outcome}; " if outcome else ""
    return (
        f"lock timeout on {what}{during}: still locked after {tries} tries "
        f"(lock_timeout {config.lock_timeout}); {left}find the holder in pg_locks and retry"
    )


def _reason(err: sa.exc.DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if err.orig else str(err)


# -- work outside transactions ---------------------------------------------------------------------

# Set by migrations/env.py when the connection handed in config.attributes["connection"] is inside
# the caller's transaction, which is not Alembic's (nor ours) to commit.
IN_CALLERS_TRANSACTION = "dbtools.in_callers_transaction"


def autocommit_block(what: str) -> AbstractContextManager[None]:
    """Alembic's ``autocommit_block`` for *what* (a statement that cannot run in a transaction).

    Raises ``MigrationError`` when the migration runs inside a caller's transaction: the block
    would commit it.
    """
    context = op.get_context()
    found = context.config
    if not context.as_sql and found is not None and found.attributes.get(IN_CALLERS_TRANSACTION):
        raise MigrationError(
            f"{what} cannot run inside the caller's transaction (the connection in "
            "config.attributes['connection'] is in one, and Alembic must not commit it): hand an "
            "Engine, or a Connection outside a transaction"
        )
    return context.autocommit_block()


# -- concurrent index builds -----------------------------------------------------------------------

_INDEX_STATE_SQL = sa.text(
    """
    SELECT i.indisvalid AND i.indisready AS healthy
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND c.relname = :name
    """
)


def index_state(connection: Connection, spec: IndexDefinition) -> str:
    """``"absent"``, ``"valid"`` or ``"invalid"`` (a failed concurrent build's leftover)."""
    healthy = connection.execute(
        _INDEX_STATE_SQL, {"schema": spec.schema, "name": spec.name}
    ).scalar()
    if healthy is None:
        return "absent"
    return "valid" if healthy else "invalid"


def build_index_concurrently(spec: IndexDefinition) -> bool:
    """Build *spec* with CREATE INDEX CONCURRENTLY; return True if this call built it.

    Online: an existing valid index is kept; an invalid leftover (from a build that was cancelled,
    terminated or timed out) is dropped concurrently and rebuilt. Failures are retried with
    backoff up to ``lock_retries`` times; the final failure drops its own invalid leftover and
    raises ``MigrationError`` naming the table. Offline: renders the build and a check that fails
    loudly if the index is left invalid.
    """
    context = op.get_context()
    config = settings()
    with autocommit_block(f"CREATE INDEX CONCURRENTLY {spec.qualified_name}"):
        if context.as_sql:
            op.execute(spec.create_sql(if_not_exists=True))
            op.execute(_assert_valid_sql(spec))
            return True
        connection = op.get_bind()
        built = False

        def build() -> None:
            nonlocal built
            state = index_state(connection, spec)
            if state == "valid":
                return
            if state == "invalid":
                log.warning("index %s is invalid (a failed build); dropping it", spec.name)
                _execute_retrying(connection, spec.drop_sql(), spec.qualified_table, config)
            connection.exec_driver_sql(spec.create_sql())
            built = True
            if index_state(connection, spec) != "valid":
                raise MigrationError(f"index {spec.qualified_name} is invalid after its build")

        def drop_leftover() -> None:
            if index_state(connection, spec) == "invalid":
                _execute_retrying(connection, spec.drop_sql(), spec.qualified_table, config)

        retry_on_lock_timeout(
            build,
            what=f"table {spec.qualified_table}",
            action=f"building index {spec.qualified_name}",
            config=config,
            after_failure=drop_leftover,
            any_error=True,
        )
        return built


def drop_index_concurrently(spec: IndexDefinition) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS, with the lock retry policy."""
    context = op.get_context()
    with autocommit_block(f"DROP INDEX CONCURRENTLY {spec.qualified_name}"):
        if context.as_sql:
            op.execute(spec.drop_sql())
            return
        _execute_retrying(op.get_bind(), spec.drop_sql(), spec.qualified_table, settings())


def undo_index_builds(built: Sequence[IndexDefinition]) -> None:
    """Drop the indexes this upgrade attempt built, so a failed upgrade leaves no trace."""
    if not built or op.get_context().as_sql:
        return
    for spec in reversed(built):
        drop_index_concurrently(spec)


def _execute_retrying(
    connection: Connection, statement: str, table: str, config: MigrationSettings
) -> None:
    retry_on_lock_timeout(
        lambda: connection.exec_driver_sql(statement), what=f"table {table}", config=config
    )


def _assert_valid_sql(spec: IndexDefinition) -> str:
    return f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = '{spec.qualified_name}'::regclass
               AND NOT (indisvalid AND indisready)) THEN
        RAISE EXCEPTION 'index {spec.qualified_name} is invalid: DROP INDEX CONCURRENTLY it and rerun';
    END IF;
END $$"""


# -- storage parameters with exact undo ----------------------------------------------------------

_LOG = monitoring_table(SETTING_CHANGES)


def set_storage_parameters(revision: str, specs: Iterable[TableSettings]) -> None:
    """Record each key's current value in the settings log, then ALTER TABLE … SET (…).

    One savepoint per table, retried on lock timeouts; runs inside the revision's transaction.
    """
    context = op.get_context()
    config = settings()
    for spec in specs:
        statements = [_record_sql(revision, spec), _set_sql(spec)]
        if context.as_sql:
            for statement in statements:
                op.execute(statement)
            continue
        connection = op.get_bind()

        def apply(connection: Connection = connection, statements: list[str] = statements) -> None:
            with connection.begin_nested():
                for statement in statements:
                    connection.exec_driver_sql(statement)

        retry_on_lock_timeout(apply, what=f"table {spec.qualified_table}", config=config)


def restore_storage_parameters(revision: str, specs: Sequence[TableSettings]) -> None:
    """Undo ``set_storage_parameters`` exactly, table by table in reverse order: SET each key
    that had a value before *revision* back to it, RESET each key that had none; then clear the
    revision's rows from the settings log. Keys nobody recorded (a DBA's fillfactor) are untouched.
    """
    context = op.get_context()
    config = settings()
    for spec in reversed(specs):
        statement = _restore_sql(revision, spec)
        if context.as_sql:
            op.execute(statement)
            continue
        connection = op.get_bind()

        def apply(connection: Connection = connection, statement: str = statement) -> None:
            with connection.begin_nested():
                connection.exec_driver_sql(statement)

        retry_on_lock_timeout(apply, what=f"table {spec.qualified_table}", config=config)
    op.execute(f"DELETE FROM {_LOG} WHERE revision = '{revision}'")


def _record_sql(revision: str, spec: TableSettings) -> str:
    values = ", ".join(f"('{key}', '{value}')" for key, value in spec.settings.items())
    return f"""INSERT INTO {_LOG} (revision, relation, option_name, old_value, new_value)
SELECT '{revision}', '{spec.qualified_table}', k.name, o.option_value, k.value
FROM (VALUES {values}) AS k(name, value)
LEFT JOIN pg_options_to_table(
    (SELECT reloptions FROM pg_class WHERE oid = '{spec.qualified_table}'::regclass)
) AS o ON o.option_name = k.name"""


def _set_sql(spec: TableSettings) -> str:
    pairs = ", ".join(f"{key} = {value}" for key, value in spec.settings.items())
    return f"ALTER TABLE {spec.qualified_table} SET ({pairs})"


def _restore_sql(revision: str, spec: TableSettings) -> str:
    # Dynamic because the old values are only known to the database (offline SQL must work too);
    # no format() here: drivers would read its placeholders as query parameters.
    table = spec.qualified_table
    return f"""DO $$
DECLARE r record;
BEGIN
    -- Restore {table} as it was before revision {revision}.
    FOR r IN SELECT option_name, old_value FROM {_LOG}
             WHERE revision = '{revision}' AND relation = '{table}' ORDER BY id
    LOOP
        IF r.old_value IS NULL THEN
            EXECUTE 'ALTER TABLE {table} RESET (' || quote_ident(r.option_name) || ')';
        ELSE
            EXECUTE 'ALTER TABLE {table} SET (' || quote_ident(r.option_name) || ' = '
                || quote_literal(r.old_value) || ')';
        END IF;
    END LOOP;
END $$"""
