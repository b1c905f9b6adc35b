"""Running a project's env.py as Alembic users run it: one home, in dbtools' interpreter or in the
project's own (``--python PATH``), where this file runs as a script speaking JSON lines.

It imports only the standard library, Alembic and SQLAlchemy (1.4 or 2), so the project's
interpreter needs neither dbtools nor its dependencies; dbtools keeps those on its side.

**The connection handed to env.py.** Every online run sets ``sqlalchemy.url`` on the ``Config``
(the target's URL with the project's driver), passes a connection from an engine whose URL names
that same database in ``config.attributes["connection"]`` (an env.py that opens its own
connection from ``connection.engine`` reaches the same database). With ``asyncpg`` no
connection is passed: an async env.py connects from the URL itself. (An env.py that reads its
URL from its own environment variable gets it from dbtools, which starts this runner with it.)

**Event loops.** env.py runs in a worker thread of an event loop (AnyIO's when the interpreter has
it, else a plain thread): an async env.py may ``asyncio.run`` its migrations, or call back into
the loop with ``anyio.from_thread.run`` as Prefect's does, and a plain one runs as usual.

**Offline.** Whatever the env.py configures, Alembic renders PostgreSQL: ``configure`` is wrapped
to drop any URL or connection, set ``dialect_name="postgresql"``, the named paramstyle (``%`` is
never doubled) and literal binds. Every run records what the env.py configured (its version
table, where it connected). ``alter_column``'s ``existing_type`` is recorded too (the offline SQL
does not carry it).

**Output.** While env.py runs, whatever it prints (a banner, logging configured to stdout) goes to
stderr: stdout stays the caller's. Its ``fileConfig`` logging is not applied.

**Failures** are named by their source (``EnvFailure.source``): ``import`` (a package the
interpreter lacks), ``revision`` (raised in a revision file: its line), ``env.py``, ``driver``
(connecting), or ``dbtools``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine.mock import MockConnection
from sqlalchemy.pool import NullPool

BASE = "base"
DEFAULT_VERSION_TABLE = "alembic_version"
DRIVERS = ("psycopg2", "psycopg", "asyncpg")
# A PostgreSQL URL that is never connected: foreign env.py files pick their dialect from it.
OFFLINE_URL = "postgresql://dbtools@offline.invalid/dbtools"
# The handed connection's statement timeout: DDL-sized (dbtools' env.py sets its own settings).
MIGRATION_STATEMENT_TIMEOUT = "2h"
CONNECT_TIMEOUT_S = 10


class EnvFailure(Exception):
    """A run of env.py failed. *source*: ``import``, ``revision``, ``env.py``, ``driver`` or
    ``dbtools``; *reason*: ``Type: first line`` (``module`` for ``import``: the missing one)."""

    def __init__(
        self, source: str, reason: str, *, where: str = "", partial_sql: str = "", module: str = ""
    ) -> None:
        super().__init__(f"{source}: {reason}{where}")
        self.source, self.reason, self.where = source, reason, where
        self.partial_sql, self.module = partial_sql, module
        self.environment: dict[str, Any] | None = None  # what env.py configured before failing
        self.trace = ""  # the stack where it was raised (shown with dbtools --traceback)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "reason": self.reason,
            "where": self.where,
            "partial_sql": self.partial_sql,
            "module": self.module,
            "environment": self.environment,
            "trace": self.trace,
        }

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> EnvFailure:
        failure = cls(
            found["source"],
            found["reason"],
            where=found["where"],
            partial_sql=found["partial_sql"],
            module=found["module"],
        )
        failure.environment = found.get("environment")
        failure.trace = found.get("trace") or ""
        if failure.trace and hasattr(failure, "add_note"):
            failure.add_note("in the project's interpreter:\n" + failure.trace)
        return failure


def reason_of(err: BaseException) -> str:
    """``Type: first line`` of what went wrong (a driver error: the driver's own)."""
    inner = getattr(err, "orig", None) or err
    text = str(inner).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(inner).__name__}: {first}" if first else type(inner).__name__


def failure(err: BaseException, script: ScriptDirectory | None) -> EnvFailure:
    """*err*, raised while env.py ran, named by its source: a missing package, the innermost
    revision file on the stack (with its line), else env.py when it is on the stack, else
    dbtools (Alembic as dbtools drove it). Keeps what the run attached to *err* (the SQL
    rendered so far, what env.py configured)."""
    if isinstance(err, EnvFailure):
        return err
    partial_sql = getattr(err, "partial_sql", "")
    if isinstance(err, ModuleNotFoundError):
        found = EnvFailure("import", reason_of(err), module=err.name or "")
    else:
        frames = traceback.extract_tb(err.__traceback__)
        revision_files = _revision_files(script)
        env_py = str(Path(script.dir) / "env.py") if script is not None else None
        revision_frames = [f for f in frames if f.filename in revision_files]
        if revision_frames:
            frame = revision_frames[-1]
            where = f" (line {frame.lineno} of {Path(frame.filename).name})"
            found = EnvFailure("revision", reason_of(err), where=where, partial_sql=partial_sql)
        elif env_py is not None and any(f.filename == env_py for f in frames):
            found = EnvFailure("env.py", reason_of(err), partial_sql=partial_sql)
        else:
            found = EnvFailure("dbtools", reason_of(err), partial_sql=partial_sql)
    found.environment = getattr(err, "environment", None)
    found.trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return found


def _revision_files(script: ScriptDirectory | None) -> set[str]:
    if script is None:
        return set()
    try:
        return {rev.path for rev in script.walk_revisions() if isinstance(rev, Script)}
    except Exception:  # a broken history: no revision file to name
        return set()


# -- the connection handed to env.py -------------------------------------------------------------


def driver_url(url: str, driver: str) -> str:
    """*url* with the driver *driver* (``postgresql+DRIVER://``)."""
    parsed = sa.engine.make_url(url)
    return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def create_engine(
    url: str, driver: str, *, read_only: bool = False, autocommit: bool = False
) -> sa.engine.Engine:
    """A sync engine for *url* with *driver*: DDL-sized statement timeout, dbtools' name;
    *autocommit*: every statement commits (as some projects run their migrations)."""
    options = f"-c statement_timeout={MIGRATION_STATEMENT_TIMEOUT}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    args = {
        "options": options,
        "application_name": "dbtools-migrate",
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    extra: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(driver_url(url, driver), poolclass=NullPool, connect_args=args, **extra)


def hidden(url: object) -> str | None:
    """A URL without its password (None for none)."""
    if url is None:
        return None
    try:
        return sa.engine.make_url(
            str(url) if not isinstance(url, sa.engine.URL) else url
        ).render_as_string(hide_password=True)
    except Exception:  # not a URL: say nothing that could hold a password
        return "(an unreadable URL)"


# -- what an env.py configured -----------------------------------------------------------------


_CONFIGURE_SIGNATURE = inspect.signature(EnvironmentContext.configure)


class _Watch:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.existing_types: dict[str, str] = {}


@contextlib.contextmanager
def watching_configure(*, offline: bool) -> Iterator[_Watch]:
    """Record every ``context.configure`` call; offline, force PostgreSQL, and record each
    ``alter_column``'s ``existing_type`` (module docstring)."""
    watch = _Watch()
    original = EnvironmentContext.configure
    original_alter = DefaultImpl.alter_column

    def configure(self: EnvironmentContext, *args: Any, **kwargs: Any) -> None:
        bound = _CONFIGURE_SIGNATURE.bind_partial(self, *args, **kwargs).arguments
        options = {k: v for k, v in bound.items() if k not in ("self", "kw")}
        options.update(bound.get("kw", {}))
        if offline:
            options.pop("url", None)
            options.pop("connection", None)
            options["dialect_name"] = "postgresql"
            options["dialect_opts"] = {**(options.get("dialect_opts") or {}), "paramstyle": "named"}
            options["literal_binds"] = True
        watch.calls.append(options)
        original(self, **options)

    def alter_column(self: DefaultImpl, table_name: str, column_name: str, **kw: Any) -> Any:
        existing = kw.get("existing_type")  # PostgreSQL's impl passes it on without type_
        if existing is not None:
            schema = kw.get("schema") or "public"
            try:
                text = sa.types.to_instance(existing).compile(dialect=self.dialect)
            except Exception:  # a type PostgreSQL cannot compile: nothing known
                text = None
            if text:
                watch.existing_types[f"{schema}.{table_name}.{column_name}"] = str(text)
        return original_alter(self, table_name, column_name, **kw)

    EnvironmentContext.configure = configure  # type: ignore[method-assign]
    DefaultImpl.alter_column = alter_column  # type: ignore[method-assign]
    try:
        yield watch
    finally:
        EnvironmentContext.configure = original  # type: ignore[method-assign]
        DefaultImpl.alter_column = original_alter  # type: ignore[method-assign]


def environment_of(watch: _Watch, config: Config, passed: Any) -> dict[str, Any]:
    """What env.py configured: version table, whether it used the connection we passed, where
    it connected otherwise (no password), whether it is dbtools' env.py."""
    is_dbtools = "dbtools.migration_settings" in config.attributes
    if not watch.calls:
        return {"is_dbtools": is_dbtools}
    options = watch.calls[-1]
    connection = options.get("connection")
    ours = passed is not None and connection is passed
    target = None
    if connection is not None and not ours:
        target = hidden(getattr(getattr(connection, "engine", None), "url", None))
    elif options.get("url") is not None:
        target = hidden(options["url"])
    return {
        "version_table": options.get("version_table") or DEFAULT_VERSION_TABLE,
        "version_table_schema": options.get("version_table_schema"),
        "used_our_connection": ours,
        "target": target,
        "is_dbtools": is_dbtools,
    }


# -- what env.py may do to the process ----------------------------------------------------------


@contextlib.contextmanager
def preserving_logging() -> Iterator[None]:
    """A project's env.py often calls ``logging.config.fileConfig``, which would disable every
    logger that exists and print Alembic's progress: it is not run, and whatever else the
    env.py changes in logging is put back afterwards."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved = {
        name: (logger.disabled, logger.level, list(logger.handlers), logger.propagate)
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_state = (root.level, list(root.handlers))
    try:
        with mock.patch("logging.config.fileConfig", lambda *args, **kwargs: None):
            yield
    finally:
        for name, logger in list(manager.loggerDict.items()):
            if not isinstance(logger, logging.Logger):
                continue
            disabled, level, handlers, propagate = saved.get(
                name, (False, logging.NOTSET, [], True)
            )
            logger.disabled, logger.level, logger.propagate = disabled, level, propagate
            logger.handlers[:] = handlers
        root.level, root.handlers[:] = root_state[0], root_state[1]


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Whatever env.py prints, through ``sys.stdout`` or file descriptor 1, goes to stderr."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = None
    with contextlib.suppress(OSError):
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def in_worker_thread(run: Callable[[], Any]) -> Any:
    """*run* in a worker thread of an event loop (AnyIO's when installed): an async env.py may
    start its own loop there, or call back into this one with ``anyio.from_thread.run``."""
    try:
        import anyio
        import anyio.to_thread
    except ImportError:
        pass
    else:

        async def main() -> Any:
            return await anyio.to_thread.run_sync(run)

        return anyio.run(main)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as err:  # handed back to the caller's thread below
            outcome["error"] = err

    thread = threading.Thread(target=target, name="dbtools-env-py")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# -- reads answered by a live database while rendering -----------------------------------------


class _OfflineConnection(MockConnection):
    """Alembic's offline "connection", which revisions may also ``close()`` (a session they
    opened on it); with *live*, plain reads (``SELECT``, ``WITH … SELECT``, ``SHOW``) are
    answered from a live, read-only session."""

    def __init__(self, dialect: Any, dump: Callable[..., Any], live: Any = None) -> None:
        super().__init__(dialect, dump)
        self._live = live

    def execute(self, obj: Any, parameters: Any = None, execution_options: Any = None) -> Any:
        if self._live is not None and is_read(obj):
            statement = sa.text(obj) if isinstance(obj, str) else obj
            return self._live.execute(statement, parameters or {})
        return super().execute(obj, parameters, execution_options)

    def close(self) -> None:
        """Nothing to close offline."""


def is_read(obj: object) -> bool:
    if isinstance(obj, sa.sql.Select):
        return True
    if isinstance(obj, sa.sql.elements.TextClause):
        text = obj.text
    else:
        text = obj if isinstance(obj, str) else ""
    return bool(re.match(r"^\s*(SELECT|WITH|SHOW|VALUES)\b", text, re.I)) and not re.search(
        r"\b(INSERT|UPDATE|DELETE|ALTER|CREATE|DROP)\b", text, re.I
    )


@contextlib.contextmanager
def offline_connection(url: str | None = None, driver: str = "psycopg") -> Iterator[None]:
    """Offline runs get ``_OfflineConnection``; with *url*, its reads answered there."""
    original = MigrationContext._stdout_connection
    with contextlib.ExitStack() as stack:
        live = None
        if url is not None:
            engine = create_engine(url, driver, read_only=True)
            stack.callback(engine.dispose)
            live = stack.enter_context(engine.connect())
            stack.callback(live.rollback)

        def stdout_connection(self: MigrationContext, connection: Any) -> MockConnection:
            def dump(construct: Any, *args: Any, **kwargs: Any) -> None:
                self.impl._exec(construct)

            return _OfflineConnection(self.dialect, dump, live)

        MigrationContext._stdout_connection = stdout_connection  # type: ignore[method-assign]
        try:
            yield
        finally:
            MigrationContext._stdout_connection = original  # type: ignore[method-assign]


# -- the runner ---------------------------------------------------------------------------------


def new_config(
    config_file: str | None, toml_file: str | None, section: str, output: TextIO | None = None
) -> Config:
    kwargs: dict[str, Any] = {"ini_section": section}
    if output is not None:
        kwargs["output_buffer"] = output
    if toml_file is not None:
        kwargs["toml_file"] = toml_file
    return Config(config_file, **kwargs)


class EnvRunner:
    """A project's migrations, run through its env.py. Every method takes and returns JSON-able
    values (the same calls cross the pipe to a runner in the project's interpreter)."""

    def __init__(
        self,
        *,
        config_file: str | None,
        toml_file: str | None,
        section: str,
        options: dict[str, str],
        driver: str | None = "psycopg",
        env_context: str | None = None,
        autocommit: bool = False,
    ) -> None:
        self.config_file, self.toml_file, self.section = config_file, toml_file, section
        self.options = dict(options)
        self.driver = driver or "psycopg"
        self.env_context = env_context
        self.autocommit = autocommit
        self._script: ScriptDirectory | None = None

    def use_driver(self, driver: str) -> None:
        self.driver = driver

    @property
    def offline_url(self) -> str:
        """A URL never connected, with the project's driver (an env.py may pick its dialect, or
        its versions folder, from it)."""
        return driver_url(OFFLINE_URL, self.driver)

    # -- the graph

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = self._load(self.config())
        return self._script

    def _load(self, config: Config) -> ScriptDirectory:
        """The revisions, loaded inside the project's context (they may import its app)."""
        script = ScriptDirectory.from_config(config)
        with stdout_to_stderr():
            self._inside(lambda: script.revision_map.heads)  # loads every revision file
        return script

    def config(
        self,
        url: str | None = None,
        *,
        output: TextIO | None = None,
        dsn: str | None = None,
        x_args: dict[str, str] | None = None,
    ) -> Config:
        """A fresh ``Config`` (env.py may change it), pointed at *url* when given."""
        config = new_config(self.config_file, self.toml_file, self.section, output)
        for name, value in self.options.items():
            config.set_main_option(name, value.replace("%", "%%"))
        config.attributes["configure_logging"] = False
        if url is not None:
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        if dsn is not None:
            config.attributes["dsn"] = dsn  # dbtools' own env.py reads it
        if x_args:
            config.attributes["x_args"] = dict(x_args)
        return config

    def graph(self) -> list[dict[str, Any]]:
        """Every revision: id, down revisions, branch labels, dependencies, file, docstring."""
        found = []
        for rev in self.script.walk_revisions():
            module = getattr(rev, "module", None)
            found.append(
                {
                    "revision": rev.revision,
                    "down_revision": _listed(rev.down_revision),
                    # the module's own labels (Alembic adds those of the branch to the revision's)
                    "branch_labels": _listed(getattr(module, "branch_labels", None)),
                    "depends_on": _listed(getattr(module, "depends_on", None)),
                    "path": rev.path,
                    "doc": getattr(module, "__doc__", None) or rev.doc or "",
                }
            )
        return found

    def version_locations(self) -> list[str]:
        """Where the revisions are once env.py has run (offline, nothing rendered): an env.py
        may choose the versions folder itself (Prefect picks its dialect's)."""
        config = self.config(self.offline_url, output=io.StringIO())
        script = ScriptDirectory.from_config(config)
        self._run_env(config, script, [], None, None, offline=True)
        locations = list(script.version_locations or [])
        chosen = config.get_main_option("version_locations")
        if chosen and not locations:
            locations = [p for p in re.split(r"[\s,]+", chosen) if p]
        return [str(p) for p in locations]

    def use_version_locations(self, locations: list[str]) -> None:
        """Read the revisions from *locations* from now on."""
        self.options["version_locations"] = "\n".join(locations)
        self.options["path_separator"] = "newline"
        self.options.pop("version_path_separator", None)
        self._script = None

    # -- offline

    def render(
        self,
        revision: str,
        direction: str,
        heads: list[str] | None = None,
        live_url: str | None = None,
    ) -> dict[str, Any]:
        """The offline SQL of one revision in *direction* from *heads*, what env.py configured,
        and the ``existing_type`` of each altered column. Raises ``EnvFailure`` (with the SQL
        rendered so far)."""
        script = self.script
        rev = script.get_revision(revision)
        assert rev is not None
        upgrade = direction == "upgrade"
        if heads is None:
            heads = list(_listed(rev.down_revision)) if upgrade else [revision]
        step = RevisionStep(script.revision_map, rev, upgrade)
        buffer = io.StringIO()
        config = self.config(self.offline_url, output=buffer)
        destination = revision if upgrade else (_listed(rev.down_revision) or [BASE])[0]
        with contextlib.ExitStack() as stack:
            driver = self._sync_driver() if live_url is not None else self.driver
            stack.enter_context(offline_connection(live_url, driver))
            watch = stack.enter_context(watching_configure(offline=True))
            try:
                self._run_env(config, script, [step], tuple(heads) or None, destination,
                              offline=True)  # fmt: skip
            except Exception as err:  # whatever a revision or its env.py raises offline
                err.partial_sql = buffer.getvalue()  # type: ignore[attr-defined]
                raise
        return {
            "sql": buffer.getvalue(),
            "environment": environment_of(watch, config, None),
            "existing_types": watch.existing_types,
        }

    def environment(self) -> dict[str, Any]:
        """What env.py configures offline, from a run that renders nothing."""
        config = self.config(self.offline_url, output=io.StringIO())
        with watching_configure(offline=True) as watch:
            self._run_env(config, self.script, [], None, None, offline=True)
        return environment_of(watch, config, None)

    def render_range(self, revision_range: str, downgrade: bool = False) -> str:
        """The SQL ``alembic upgrade|downgrade RANGE --sql`` prints, in PostgreSQL."""
        buffer = io.StringIO()
        config = self.config(self.offline_url, output=buffer)
        with watching_configure(offline=True), preserving_logging(), stdout_to_stderr():
            run = command.downgrade if downgrade else command.upgrade
            in_worker_thread(lambda: self._inside(lambda: run(config, revision_range, sql=True)))
        return buffer.getvalue()

    # -- online

    def apply(
        self, url: str, revision: str, direction: str, dsn: str | None = None
    ) -> dict[str, Any]:
        """Apply one revision's upgrade or downgrade from the database's current heads."""
        script = self.script
        rev = script.get_revision(revision)
        assert rev is not None
        upgrade = direction == "upgrade"
        step = RevisionStep(script.revision_map, rev, upgrade)
        destination = revision if upgrade else (_listed(rev.down_revision) or [BASE])[0]
        return self._online(
            url,
            dsn,
            None,
            lambda config: self._run_env(config, script, [step], None, destination, offline=False),
        )

    def command(
        self,
        url: str,
        name: str,
        target: str,
        dsn: str | None = None,
        x_args: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``alembic upgrade|downgrade TARGET``."""
        run = {"upgrade": command.upgrade, "downgrade": command.downgrade}[name]

        def alembic(config: Config) -> None:
            with preserving_logging(), stdout_to_stderr():
                in_worker_thread(lambda: self._inside(lambda: run(config, target)))

        return self._online(url, dsn, x_args, alembic)

    def current(self, url: str, dsn: str | None = None) -> dict[str, Any]:
        """Run env.py against *url* without applying anything (nor creating the version
        table, as ``alembic current``): what it configures."""
        return self._online(
            url,
            dsn,
            None,
            lambda config: self._run_env(
                config, self.script, [], None, None, offline=False, dont_mutate=True
            ),
        )

    def create_all(self, url: str, spec: str) -> list[str]:
        """``MetaData.create_all`` of *spec* (``module:attribute``, a ``MetaData`` or a declarative
        base) on *url*: the base schema a history starts from. Returns the tables created."""
        metadata = self._metadata(spec)
        engine = create_engine(url, self._sync_driver())
        try:
            with engine.begin() as connection:
                metadata.create_all(connection)
        finally:
            engine.dispose()
        return sorted(metadata.tables)

    def create_all_ddl(self, spec: str) -> list[str]:
        """The statements ``create_all`` of *spec* runs on an empty PostgreSQL database (its
        tables, then their indexes), compiled without connecting."""
        metadata = self._metadata(spec)
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        statements = []
        for table in metadata.sorted_tables:
            statements.append(str(sa.schema.CreateTable(table).compile(dialect=dialect)).strip())
            statements += [
                str(sa.schema.CreateIndex(index).compile(dialect=dialect)).strip()
                for index in table.indexes
            ]
        return statements

    def _metadata(self, spec: str) -> sa.MetaData:
        module_name, _, attribute = spec.partition(":")
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as ``python -c`` and Alembic's prepend_sys_path do
        with stdout_to_stderr(), preserving_logging():
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        metadata = getattr(target, "metadata", target)
        if not isinstance(metadata, sa.MetaData):
            raise EnvFailure("dbtools", f"{spec} is not a MetaData (nor has a .metadata)")
        return metadata

    def _sync_driver(self) -> str:
        """The driver for dbtools' own connections in this interpreter: the project's, unless it
        is async; then whichever sync driver is installed."""
        if self.driver != "asyncpg":
            return self.driver
        for name in ("psycopg2", "psycopg"):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
                return name
        raise EnvFailure(
            "driver", f"the project's driver is asyncpg and {sys.executable} has no sync driver "
            "(psycopg2 or psycopg) for dbtools' own reads"
        )  # fmt: skip

    def _online(
        self,
        url: str,
        dsn: str | None,
        x_args: dict[str, str] | None,
        run: Callable[[Config], object],
    ) -> dict[str, Any]:
        """Run env.py online; what it configured is returned, or attached to the exception
        (``environment``) when it failed."""
        url = driver_url(url, self.driver)
        config = self.config(url, dsn=dsn, x_args=x_args)
        with contextlib.ExitStack() as stack:
            connection = None
            if self.driver != "asyncpg":  # an async env.py connects from the URL itself
                engine = create_engine(url, self.driver, autocommit=self.autocommit)
                stack.callback(engine.dispose)
                try:
                    connection = stack.enter_context(engine.connect())
                except Exception as err:
                    raise EnvFailure("driver", reason_of(err)) from err
                config.attributes["connection"] = connection
            watch = stack.enter_context(watching_configure(offline=False))
            try:
                run(config)
            except Exception as err:
                err.environment = environment_of(watch, config, connection)  # type: ignore[attr-defined]
                raise
            if connection is not None and connection.in_transaction():
                _commit(connection)
            return environment_of(watch, config, connection)

    def _run_env(
        self,
        config: Config,
        script: ScriptDirectory,
        steps: list[RevisionStep],
        starting: tuple[str, ...] | None,
        destination: str | None,
        *,
        offline: bool,
        dont_mutate: bool = False,
    ) -> None:
        """Run env.py with Alembic's own machinery, applying exactly *steps* from *starting*
        (offline; online the database's own heads)."""
        context = EnvironmentContext(
            config,
            script,
            fn=lambda _heads, _context: steps,
            as_sql=offline,
            starting_rev=starting if offline else None,
            destination_rev=destination,
            dont_mutate=dont_mutate,
        )

        def run() -> None:
            with context:  # inside the project's context: entering it may run Alembic too
                script.run_env()

        with preserving_logging(), stdout_to_stderr():
            in_worker_thread(lambda: self._inside(run))

    def _inside(self, run: Callable[[], Any]) -> Any:
        """*run* inside the project's own context (``env_context``: ``module:callable``
        returning a context manager, such as its application's context), entered in the
        thread env.py runs in."""
        if not self.env_context:
            return run()
        module_name, _, name = self.env_context.partition(":")
        factory: Any = importlib.import_module(module_name)
        for part in name.split("."):
            factory = getattr(factory, part)
        with factory():
            return run()


def _commit(connection: Any) -> None:
    """Commit what env.py left open (SQLAlchemy 1.4 without ``future`` has no ``commit``)."""
    if hasattr(connection, "commit"):
        connection.commit()
    else:
        connection.get_transaction().commit()


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [str(v) for v in value]
    return [str(value)]


# -- the runner in the project's interpreter ----------------------------------------------------


def serve() -> None:
    """Answer requests, one JSON line each on stdin, on the file descriptor stdout had: stdout
    itself goes to stderr for good, so nothing the project prints can corrupt the answers."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    hello = json.loads(sys.stdin.readline())
    runner = EnvRunner(**hello)
    versions = {
        "python": sys.executable,
        "sqlalchemy": sa.__version__,
        "alembic": importlib.import_module("alembic").__version__,
        "drivers": [d for d in DRIVERS if importlib.util.find_spec(d) is not None],
    }
    answers.write(json.dumps({"ok": versions}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            method = getattr(runner, request["call"])
            answer: dict[str, Any] = {
                "ok": method(*request.get("args", []), **request.get("kwargs", {}))
            }
        except EnvFailure as err:
            answer = {"failure": err.to_json()}
        except BaseException as err:
            answer = {"failure": failure(err, runner._script).to_json()}
        answers.write(json.dumps(answer, default=str) + "\n")


def project_module(revision: dict[str, Any]) -> types.SimpleNamespace:
    """A stand-in for a revision's module from its description (``EnvRunner.graph``)."""
    down = revision["down_revision"]
    return types.SimpleNamespace(
        down_revision=down[0] if len(down) == 1 else (tuple(down) or None),
        branch_labels=tuple(revision["branch_labels"]) or None,
        depends_on=tuple(revision["depends_on"]) or None,
        __doc__=revision["doc"],
    )


if __name__ == "__main__":
    serve()
