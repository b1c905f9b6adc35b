"""Alembic environment: one lock, bounded lock waits, retries, and offline SQL.

The URL comes from ``-x dsn=…`` (or ``config.attributes["dsn"]``), else ``DATABASE_URL`` (libpq's
``PG*`` variables when neither is set). Tools that drive Alembic from their own code hand a
SQLAlchemy ``Engine`` or ``Connection`` in ``config.attributes["connection"]`` instead (Alembic's
cookbook, "Sharing a Connection across one or more programmatic migration commands"):

* an ``Engine``: a connection of its own is taken from it, used as ours, and given back;
* a ``Connection`` outside a transaction: Alembic begins and commits a transaction per revision
  on it, as on ours; it is left open, outside a transaction, with the session's timeouts put back;
* a ``Connection`` inside a transaction: that transaction is the caller's. The revisions run
  inside it and nothing commits or rolls it back; the caller does, and the migration lock
  (``pg_try_advisory_xact_lock``) is held until then. A failed run is rolled back to a savepoint,
  so the caller's transaction is left as it was handed. What cannot run in a transaction
  (``CREATE INDEX CONCURRENTLY``) is refused there, with nothing of the run applied.

Never closed, whichever was handed.

Settings (``-x key=value``, ``DBTOOLS_<KEY>``, or ``dbtools_<key>`` in alembic.ini):
``lock_timeout``, ``statement_timeout``, ``lock_retries``, ``retry_backoff`` (seconds, doubling),
``lock_wait`` (seconds to wait for the migration lock).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from dbtools.db.connection import connect, resolve_dsn
from dbtools.errors import DbtoolsError, MigrationError
from dbtools.redaction import RedactingFilter
from dbtools.schema.online import (
    IN_CALLERS_TRANSACTION,
    MigrationSettings,
    acquire_migration_lock,
    release_migration_lock,
    replace_session_settings,
    retry_on_lock_timeout,
    set_session_timeouts,
    timeout_preamble,
)
from dbtools.sqltext.parse import tables_touched

config = context.config
# Programmatic runs (dbtools.schema.revisions, tests) keep the caller's logging.
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())

x_args = {**config.attributes.get("x_args", {}), **context.get_x_argument(as_dictionary=True)}
try:
    SETTINGS = MigrationSettings.from_alembic(config, x_args)
except DbtoolsError as err:
    raise CommandError(str(err)) from err
config.attributes["dbtools.migration_settings"] = SETTINGS

IN_FAILED_TRANSACTION = "25P02"  # SQLSTATE: current transaction is aborted
CONFIGURE_OPTS: dict[str, Any] = {
    "transaction_per_migration": True,
    "target_metadata": None,
    "compare_type": True,
}


def run_migrations_offline() -> None:
    """Render SQL (``--sql``) without touching a database."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONFIGURE_OPTS,
    )
    for statement in timeout_preamble(SETTINGS):
        context.execute(statement)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    handed = config.attributes.get("connection")
    if isinstance(handed, Connection):
        _require_postgresql(handed.dialect.name)
        _require_usable(handed)
        if handed.in_transaction():
            _run_in_callers_transaction(handed)
        else:
            _run(handed, borrowed=True)
        return
    if isinstance(handed, Engine):
        _require_postgresql(handed.dialect.name)
        engine = handed
    elif handed is not None:
        raise CommandError(
            "config.attributes['connection'] must be a SQLAlchemy Connection or Engine, "
            f"not {type(handed).__module__}.{type(handed).__qualname__}"
        )
    else:
        dsn = resolve_dsn(x_args.get("dsn") or config.attributes.get("dsn"))
        engine = sa.create_engine(
            "postgresql+psycopg://",
            creator=lambda: connect(
                dsn,
                read_only=False,
                statement_timeout=SETTINGS.statement_timeout,
                lock_timeout=SETTINGS.lock_timeout,
                application_name="dbtools-migrate",
            ),
            poolclass=NullPool,
        )
    with engine.connect() as connection:
        if handed is not None:
            _require_usable(connection)
        _run(connection)


def _require_postgresql(dialect: str) -> None:
    if dialect != "postgresql":
        raise CommandError(f"dbtools' migrations need PostgreSQL, not {dialect}")


def _require_usable(connection: Connection) -> None:
    """Refuse a handed connection nothing can run on as a migration should."""
    where = "the Connection in config.attributes['connection']"
    if connection.closed:
        raise CommandError(f"{where} is closed")
    if getattr(connection.connection.dbapi_connection, "autocommit", False):
        raise CommandError(
            f"{where} is in autocommit mode: every statement of a revision would commit on its "
            "own, so a failed revision could not be undone; hand an Engine, or a Connection "
            "with a transactional isolation level"
        )


def _run(connection: Connection, *, borrowed: bool = False) -> None:
    """Run on a connection outside any transaction: ours, or a *borrowed* one whose session
    settings are put back afterwards."""
    previous = set_session_timeouts(connection, SETTINGS)
    # Commit before configure(): Alembic treats an open transaction as the caller's and then
    # cannot run autocommit blocks (CREATE INDEX CONCURRENTLY). The transaction is ours: SQLAlchemy
    # began it for the statements above.
    connection.commit()
    acquire_migration_lock(connection, SETTINGS.lock_wait_s)
    try:
        context.configure(connection=connection, **CONFIGURE_OPTS)
        _run_with_lock_retries(connection)
    finally:
        connection.rollback()
        release_migration_lock(connection)
        if borrowed:
            replace_session_settings(connection, previous)
            connection.commit()


def _run_in_callers_transaction(connection: Connection) -> None:
    """Run inside the caller's open transaction without ever committing or rolling it back."""

    def run() -> None:
        # A savepoint: a failed try (a lock timeout, a refused autocommit block) is undone, and
        # the caller's transaction stays as it was handed.
        with connection.begin_nested(), context.begin_transaction():
            context.run_migrations()

    try:
        previous = set_session_timeouts(connection, SETTINGS, local=True)
    except sa.exc.DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) != IN_FAILED_TRANSACTION:
            raise
        raise CommandError(
            "the caller's transaction on the Connection in config.attributes['connection'] has "
            "already failed: roll it back before migrating"
        ) from err
    config.attributes[IN_CALLERS_TRANSACTION] = True  # the online helpers refuse autocommit
    try:
        acquire_migration_lock(connection, SETTINGS.lock_wait_s, in_callers_transaction=True)
        context.configure(connection=connection, **CONFIGURE_OPTS)
        retry_on_lock_timeout(run, what=_locked_tables, config=SETTINGS)
    except MigrationError as err:
        raise CommandError(
            f"{err}; nothing of this run was applied, and the caller's transaction is open as "
            "it was handed"
        ) from err
    finally:
        del config.attributes[IN_CALLERS_TRANSACTION]
        # Put the caller's timeouts back for the rest of its transaction (unless the connection
        # failed: then the transaction is over, and SET LOCAL with it).
        with suppress(sa.exc.DBAPIError):
            replace_session_settings(connection, previous, local=True)


def _run_with_lock_retries(connection: Connection) -> None:
    """Run the pending revisions; a revision whose transaction hit lock_timeout is rolled back
    and rerun (``retry_on_lock_timeout``, the policy of every migration step).

    Each revision commits on its own (transaction_per_migration), so a rerun resumes at the
    revision that failed.
    """

    def run() -> None:
        with context.begin_transaction():
            context.run_migrations()

    retry_on_lock_timeout(
        run,
        what=_locked_tables,
        config=SETTINGS,
        after_failure=connection.rollback,
        outcome="nothing of the failed revision was applied",
    )


def _locked_tables(err: sa.exc.DBAPIError) -> str:
    """The tables the statement that timed out touches (as the failure names them)."""
    return ", ".join(sorted(map(str, tables_touched(err.statement or "") or ()))) or "a table"


try:
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
except DbtoolsError as err:
    raise CommandError(str(err)) from err
