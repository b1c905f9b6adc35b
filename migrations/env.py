"""Alembic environment: one lock, bounded lock waits, retries, and offline SQL.

The URL comes from ``-x dsn=…`` (or ``config.attributes["dsn"]``), else ``DATABASE_URL`` (libpq's
``PG*`` variables when neither is set), or a SQLAlchemy connection passed in
``config.attributes["connection"]``.

Settings (``-x key=value``, ``DBTOOLS_<KEY>``, or ``dbtools_<key>`` in alembic.ini):
``lock_timeout``, ``statement_timeout``, ``lock_retries``, ``retry_backoff`` (seconds, doubling),
``lock_wait`` (seconds to wait for the migration lock).
"""

from __future__ import annotations

import logging
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from dbtools.db.connection import connect, resolve_dsn
from dbtools.errors import DbtoolsError
from dbtools.redaction import RedactingFilter
from dbtools.schema.online import (
    MigrationSettings,
    acquire_migration_lock,
    release_migration_lock,
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
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
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
    try:
        with engine.connect() as connection:
            _run(connection)
    except DbtoolsError as err:
        raise CommandError(str(err)) from err


def _run(connection: Connection) -> None:
    set_session_timeouts(connection, SETTINGS)
    # Commit before configure(): Alembic treats an open transaction as the caller's and then
    # cannot run autocommit blocks (CREATE INDEX CONCURRENTLY).
    connection.commit()
    acquire_migration_lock(connection, SETTINGS.lock_wait_s)
    try:
        context.configure(connection=connection, **CONFIGURE_OPTS)
        _run_with_lock_retries(connection)
    finally:
        connection.rollback()
        release_migration_lock(connection)


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
