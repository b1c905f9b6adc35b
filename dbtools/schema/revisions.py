"""Alembic as a library, for this project's migrations and for any other project's, as its authors
ship them: finding them, rendering each revision's offline SQL, applying revisions.

**Finding them.** ``ini=`` (``--alembic-ini``) names an ``alembic.ini``, a ``pyproject.toml``
with a ``[tool.alembic]`` table (Alembic 1.16+), a directory holding either (or an ``env.py``:
the script directory itself), or a ``package:directory`` spec. Without it: ``DBTOOLS_ALEMBIC_INI``,
else ``./alembic.ini``, else this project's own (next to the ``dbtools`` package). The ini's
``[alembic]`` section is used, else its one section that has a ``script_location`` (``[main]``).
``script_location``, ``version_locations`` and ``prepend_sys_path`` are honoured as the authors
wrote them: ``%(here)s``, ``package:directory``, absolute paths, and relative ones, which Alembic
reads from the current directory but which mean "next to the ini" (or to one of its parents):
they are resolved there, then in the current directory, and handed to Alembic absolute.

**Driving the project's own env.py.** Online, every run sets ``sqlalchemy.url`` on the ``Config``
*and* passes a SQLAlchemy connection in ``config.attributes["connection"]`` (as Alembic's own
recipes do), plus ``config.attributes["dsn"]`` (dbtools' env.py). Offline, whatever the env.py
configures, Alembic renders PostgreSQL: ``EnvironmentContext.configure`` is wrapped to drop any
URL or connection, set ``dialect_name="postgresql"``, the named paramstyle (so ``%`` is never
doubled) and literal binds. Every run records what the env.py configured (``Environment``): its
version table, whether it used the connection dbtools passed or connected elsewhere, and
whether it is dbtools' env.py.

**One revision at a time.** ``Migrations.render`` and ``Migrations.apply`` run a single
revision step from given heads, so a merge, a branch point or a revision on one branch is
rendered and applied exactly as Alembic would, without touching a sibling branch. A revision
whose offline SQL cannot be rendered raises ``UnrenderableRevision`` (its reason and where in the
revision file); a package the migrations import that is missing raises ``ProjectNotImportable``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from psycopg import conninfo, sql
from sqlalchemy.engine import Connection
from sqlalchemy.engine.mock import MockConnection
from sqlalchemy.pool import NullPool

from dbtools.config import read_toml
from dbtools.db.connection import connect, describe, session
from dbtools.errors import ConfigError, DbtoolsError
from dbtools.redaction import redact
from dbtools.schema.frozen import IniPath as IniPath  # the safety commands name it from here
from dbtools.schema.frozen import find_alembic_ini

log = logging.getLogger(__name__)

BASE = "base"
ALEMBIC_SECTION = "alembic"
DEFAULT_VERSION_TABLE = "alembic_version"
# A PostgreSQL URL that is never connected: foreign env.py files pick their dialect from it.
OFFLINE_URL = "postgresql+psycopg://dbtools@offline.invalid/dbtools"
# The passed connection's statement timeout: DDL-sized (dbtools' env.py sets its own settings).
MIGRATION_STATEMENT_TIMEOUT = "2h"
# Alembic 1.16 reads [tool.alembic] from pyproject.toml (Config(toml_file=…)).
ALEMBIC_READS_TOML = "toml_file" in inspect.signature(Config.__init__).parameters
# How resolved path lists are joined for Alembic: package:dir entries hold a colon, so not os.
_SEPARATOR = "\n" if ALEMBIC_READS_TOML else " "
_PACKAGE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[^/\\:].*$")


class ProjectNotImportable(ConfigError):
    """The migrations import a package this interpreter does not have."""


class UnrenderableRevision(DbtoolsError):
    """A revision whose offline SQL cannot be rendered (it reads results, inspects, raises…)."""

    def __init__(self, revision: str, direction: str, reason: str, partial_sql: str = "") -> None:
        super().__init__(f"revision {revision} ({direction}) cannot be rendered offline: {reason}")
        self.revision = revision
        self.direction = direction
        self.reason = reason
        self.partial_sql = partial_sql


# -- finding a project's migrations ------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """Where a project's migrations are, and how Alembic is to read them."""

    config_file: Path | None  # the .ini (None: a pyproject.toml or a bare script directory)
    toml_file: Path | None  # pyproject.toml with [tool.alembic]
    section: str
    options: dict[str, str]  # script_location, version_locations…, resolved, for set_main_option

    @property
    def directory(self) -> Path:
        """Where the project's own files are: next to its ini (or pyproject.toml, or scripts)."""
        for path in (self.config_file, self.toml_file):
            if path is not None:
                return path.parent
        location = self.options["script_location"]
        return Path(location) if Path(location).is_absolute() else Path.cwd()

    @property
    def name(self) -> str:
        return str(self.config_file or self.toml_file or self.options["script_location"])


def find_project(ini: IniPath = None) -> Project:
    """Locate a project's migrations (see the module docstring). Raises ``ConfigError``."""
    if ini is not None and _PACKAGE_SPEC.match(str(ini)) and not Path(ini).exists():
        return Project(None, None, ALEMBIC_SECTION, {"script_location": str(ini)})
    path = find_alembic_ini(ini)
    if path.is_dir():
        if (path / "alembic.ini").is_file():
            path = path / "alembic.ini"
        elif _has_alembic_table(path / "pyproject.toml"):
            path = path / "pyproject.toml"
        elif (path / "env.py").is_file():
            return Project(None, None, ALEMBIC_SECTION, {"script_location": str(path)})
        else:
            raise ConfigError(f"no alembic.ini, pyproject.toml [tool.alembic] or env.py in {path}")
    if path.suffix == ".toml":
        if not _has_alembic_table(path):
            raise ConfigError(f"{path}: no [tool.alembic] table")
        return _resolved(None, _require_toml_support(path), ALEMBIC_SECTION)
    config = _parse_ini(path)
    section = _ini_section(config, path)
    toml = None
    if not config.file_config.has_option(section, "script_location"):
        beside = path.parent / "pyproject.toml"
        if _has_alembic_table(beside):
            toml = _require_toml_support(beside)
    return _resolved(path, toml, section)


def _parse_ini(path: Path) -> Config:
    config = Config(str(path))
    try:
        config.file_config  # noqa: B018 - parses the file
    except Exception as err:  # configparser's errors have no common root worth naming
        raise ConfigError(f"cannot read {path}: {str(err).splitlines()[0]}") from err
    return config


def _ini_section(config: Config, path: Path) -> str:
    parser = config.file_config
    if parser.has_section(ALEMBIC_SECTION):
        return ALEMBIC_SECTION
    with_scripts = [s for s in parser.sections() if parser.has_option(s, "script_location")]
    if len(with_scripts) == 1:
        return with_scripts[0]
    raise ConfigError(
        f"{path}: no [alembic] section"
        + (
            f", and several with a script_location: {', '.join(with_scripts)}"
            if with_scripts
            else ""
        )
    )


def _has_alembic_table(path: Path) -> bool:
    if not path.is_file():
        return False
    tool = read_toml(path).get("tool", {})
    return isinstance(tool, dict) and isinstance(tool.get("alembic"), dict)


def _require_toml_support(path: Path) -> Path:
    if not ALEMBIC_READS_TOML:
        from alembic import __version__

        raise ConfigError(
            f"{path}: [tool.alembic] needs Alembic 1.16 or later; {sys.executable} has {__version__}"
        )
    return path


def _new_config(
    config_file: Path | None, toml_file: Path | None, section: str, output: TextIO | None = None
) -> Config:
    kwargs: dict[str, Any] = {"ini_section": section}
    if output is not None:
        kwargs["output_buffer"] = output
    if toml_file is not None:
        kwargs["toml_file"] = str(toml_file)
    return Config(str(config_file) if config_file else None, **kwargs)


def _resolved(config_file: Path | None, toml_file: Path | None, section: str) -> Project:
    """The project with its path options resolved to what its authors meant."""
    config = _new_config(config_file, toml_file, section)
    base = (config_file or toml_file or Path.cwd()).parent
    getter = getattr(config, "get_alembic_option", config.get_main_option)
    location = getter("script_location")
    if not location:
        raise ConfigError(f"{config_file or toml_file}: no script_location")
    options = {"script_location": _resolve_location(str(location), base, "script_location")}
    versions = _path_list(config, "version_locations")
    if versions:
        options["version_locations"] = _SEPARATOR.join(
            _resolve_location(v, base, "version_locations") for v in versions
        )
    prepend = _path_list(config, "prepend_sys_path")
    if prepend:
        options["prepend_sys_path"] = _SEPARATOR.join(
            str(_existing(base, p) or Path(p).resolve()) for p in prepend
        )
    if versions or prepend:
        options["path_separator" if ALEMBIC_READS_TOML else "version_path_separator"] = (
            "newline" if ALEMBIC_READS_TOML else "space"
        )
    return Project(config_file, toml_file, section, options)


def _path_list(config: Config, name: str) -> list[str]:
    """A list option as Alembic splits it (its separator settings, or the toml's list)."""
    reader = {
        "version_locations": getattr(config, "get_version_locations_list", None),
        "prepend_sys_path": getattr(config, "get_prepend_sys_paths_list", None),
    }[name]
    if reader is not None:
        return [p for p in reader() or [] if p]
    raw = config.get_main_option(name)  # Alembic < 1.16
    return [
        p for p in re.split(r"[,\s:]+" if name == "prepend_sys_path" else r"[,\s]+", raw or "") if p
    ]


def _resolve_location(value: str, base: Path, option: str) -> str:
    value = value.strip()
    if _PACKAGE_SPEC.match(value) and not Path(value).exists():
        return value  # package:directory: Alembic finds it through importlib
    found = _existing(base, value)
    if found is None:
        raise ConfigError(
            f"{option} {value!r} not found next to {base}, in its parents, or in {Path.cwd()}"
        )
    return str(found)


def _existing(base: Path, value: str) -> Path | None:
    path = Path(value)
    if path.is_absolute():
        return path if path.is_dir() else None
    for directory in (base, *base.parents, Path.cwd()):
        if (directory / path).is_dir():
            return (directory / path).resolve()
    return None


# -- what an env.py configured -------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """What a project's env.py told Alembic in one run (its ``context.configure`` call)."""

    version_table: str = DEFAULT_VERSION_TABLE
    version_table_schema: str | None = None
    used_our_connection: bool = False
    target: str | None = None  # where it connected when not through our connection (no password)
    is_dbtools: bool = False  # dbtools' own env.py (lock, timeouts, retries)

    @property
    def qualified_version_table(self) -> str:
        """The version table as the plan and lint name relations (schema.table)."""
        return f"{self.version_table_schema or 'public'}.{self.version_table}"


@dataclass
class _Watch:
    calls: list[dict[str, Any]] = field(default_factory=list)


_CONFIGURE_SIGNATURE = inspect.signature(EnvironmentContext.configure)


@contextlib.contextmanager
def _watching_configure(*, offline: bool) -> Iterator[_Watch]:
    """Record every ``context.configure`` call; offline, force PostgreSQL (module docstring)."""
    watch = _Watch()
    original = EnvironmentContext.configure

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

    EnvironmentContext.configure = configure  # type: ignore[method-assign]
    try:
        yield watch
    finally:
        EnvironmentContext.configure = original  # type: ignore[method-assign]


def _environment(watch: _Watch, config: Config, passed: Connection | None) -> Environment:
    if not watch.calls:
        return Environment(is_dbtools=_is_dbtools(config))
    options = watch.calls[-1]
    connection = options.get("connection")
    ours = passed is not None and connection is passed
    target = None
    if connection is not None and not ours:
        target = _url_text(getattr(getattr(connection, "engine", None), "url", None))
    elif options.get("url") is not None:
        target = _url_text(options["url"])
    return Environment(
        version_table=options.get("version_table") or DEFAULT_VERSION_TABLE,
        version_table_schema=options.get("version_table_schema"),
        used_our_connection=ours,
        target=target,
        is_dbtools=_is_dbtools(config),
    )


def _is_dbtools(config: Config) -> bool:
    return "dbtools.migration_settings" in config.attributes


def _url_text(url: object) -> str | None:
    if url is None:
        return None
    if isinstance(url, sa.engine.URL):
        return url.render_as_string(hide_password=True)
    return redact(str(url))


@contextlib.contextmanager
def _preserving_logging() -> Iterator[None]:
    """A project's env.py often calls ``logging.config.fileConfig``, which would disable every
    logger that exists and print Alembic's progress: it is not run, and whatever else the
    env.py does to logging is put back as the caller had it."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved = {
        name: (logger.disabled, logger.level, list(logger.handlers), logger.propagate)
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_state = (root.level, list(root.handlers))
    try:
        # Its env.py may configure logging from the ini: dbtools' output stays dbtools'.
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


# -- errors from the project's code ----------------------------------------------------------------


@contextlib.contextmanager
def _project_imports() -> Iterator[None]:
    """A package the migrations import that this interpreter lacks: one line saying which."""
    try:
        yield
    except ModuleNotFoundError as err:
        raise ProjectNotImportable(
            f"the migrations import {err.name!r}, which {sys.executable} cannot import: install "
            f"the project into that interpreter ({sys.executable} -m pip install …)"
        ) from err


def _where_in_revision(err: BaseException, revision: Script) -> str:
    """``line 57 of versions/x.py`` for the innermost frame in the revision's file."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == revision.path]
    if not frames:
        return ""
    return f" (line {frames[-1].lineno} of {Path(revision.path).name})"


def _reason(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    first = text.splitlines()[0] if text else ""
    return redact(f"{type(err).__name__}: {first}" if first else type(err).__name__)


# -- the migrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedSql:
    """One revision's offline SQL in one direction, and what the env.py configured."""

    sql: str
    environment: Environment


class Migrations:
    """A project's migrations as Alembic runs them: found once, then rendered and applied."""

    def __init__(self, ini: IniPath = None) -> None:
        self.project = find_project(ini)
        # What env.py configured in the latest online run, also when that run failed.
        self.last_environment = Environment()
        with _project_imports():
            try:
                self.script = ScriptDirectory.from_config(self.config())
                self.script.revision_map.heads  # noqa: B018 - loads every revision file
            except ModuleNotFoundError:
                raise  # _project_imports says which
            except Exception as err:  # a revision file that does not load, a missing down revision
                raise ConfigError(
                    f"cannot read the revisions of {self.project.name}: {_reason(err)}"
                ) from err

    def config(
        self,
        dsn: str | None = None,
        *,
        output: TextIO | None = None,
        x_args: dict[str, str] | None = None,
    ) -> Config:
        """A fresh ``Config`` (env.py may change it), pointed at *dsn* when given."""
        config = _new_config(
            self.project.config_file, self.project.toml_file, self.project.section, output
        )
        for name, value in self.project.options.items():
            config.set_main_option(name, value.replace("%", "%%"))
        config.attributes["configure_logging"] = False
        if dsn is not None:
            config.attributes["dsn"] = dsn
            config.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
        if x_args:
            config.attributes["x_args"] = dict(x_args)
        return config

    # -- the graph

    def get(self, revision: str) -> Script:
        """The revision *revision* names; ``ConfigError`` when there is none."""
        try:
            found = self.script.get_revision(revision)
        except CommandError as err:
            raise ConfigError(str(err)) from err
        if found is None:
            raise ConfigError(f"unknown revision {revision!r}")
        return found

    def heads(self) -> tuple[str, ...]:
        return tuple(self.script.get_heads())

    def upgrade_order(self, upper: str | tuple[str, ...] = "heads") -> list[Script]:
        """Every revision up to *upper*, in an order Alembic can apply them (base first)."""
        return list(reversed(list(self.script.iterate_revisions(upper, BASE))))

    def downgrade_order(self, upper: tuple[str, ...], lower: str) -> list[Script]:
        """The revisions ``alembic downgrade`` from heads *upper* to *lower* undoes, in its
        order (a merge first, then each branch's revisions)."""
        with _project_imports():
            try:
                return list(self.script.iterate_revisions(upper, lower, select_for_downgrade=True))
            except Exception as err:  # RevisionError and its kin: a target not below the start
                raise ConfigError(str(err)) from err

    # -- offline

    def render(
        self,
        revision: Script,
        direction: str,
        *,
        heads: tuple[str, ...] | None = None,
        live_dsn: str | None = None,
    ) -> RenderedSql:
        """The offline SQL of one *revision* in *direction* (``upgrade``/``downgrade``), from
        *heads* (default: its down revisions for an upgrade, itself for a downgrade).

        *live_dsn*: a database the revision's own reads (``op.get_bind().execute(SELECT …)``)
        are answered from, in a read-only session; nothing else runs there.

        Raises ``UnrenderableRevision``, ``ProjectNotImportable``.
        """
        upgrade = direction == "upgrade"
        if heads is None:
            heads = down_revisions(revision) if upgrade else (revision.revision,)
        step = RevisionStep(self.script.revision_map, revision, upgrade)
        buffer = io.StringIO()
        config = self.config(output=buffer)
        config.set_main_option("sqlalchemy.url", OFFLINE_URL)
        destination = revision.revision if upgrade else (down_revisions(revision) or (BASE,))[0]
        with contextlib.ExitStack() as stack:
            if live_dsn is not None:
                stack.enter_context(_reads_from(live_dsn))
            watch = stack.enter_context(_watching_configure(offline=True))
            try:
                with _project_imports():
                    self._run_env(config, [step], heads or None, destination, offline=True)
            except ProjectNotImportable:
                raise
            except Exception as err:  # whatever a revision or its env.py raises offline
                raise UnrenderableRevision(
                    revision.revision,
                    direction,
                    _reason(err) + _where_in_revision(err, revision),
                    buffer.getvalue(),
                ) from err
        return RenderedSql(buffer.getvalue(), _environment(watch, config, None))

    def environment(self) -> Environment:
        """What env.py configures offline (its version table; whether it is dbtools'), from a
        run that renders nothing."""
        config = self.config(output=io.StringIO())
        config.set_main_option("sqlalchemy.url", OFFLINE_URL)
        with _watching_configure(offline=True) as watch, _project_imports():
            self._run_env(config, [], None, None, offline=True)
        return _environment(watch, config, None)

    def render_range(self, revision_range: str, *, downgrade: bool = False) -> str:
        """The SQL ``alembic upgrade|downgrade RANGE --sql`` prints, in PostgreSQL."""
        buffer = io.StringIO()
        config = self.config(output=buffer)
        config.set_main_option("sqlalchemy.url", OFFLINE_URL)
        with _watching_configure(offline=True), _project_imports(), _preserving_logging():
            (command.downgrade if downgrade else command.upgrade)(config, revision_range, sql=True)
        return buffer.getvalue()

    # -- online

    def apply(self, dsn: str, revision: Script, direction: str) -> Environment:
        """Apply one revision's upgrade or downgrade to the database at *dsn*, from its current
        heads (Alembic records the step exactly as ``alembic upgrade|downgrade`` would)."""
        upgrade = direction == "upgrade"
        step = RevisionStep(self.script.revision_map, revision, upgrade)
        destination = revision.revision if upgrade else (down_revisions(revision) or (BASE,))[0]
        log.info("alembic %s %s (one revision)", direction, revision.revision)
        return self._online(
            dsn, lambda config: self._run_env(config, [step], None, destination, offline=False)
        )

    def upgrade(
        self, dsn: str, target: str = "head", x_args: dict[str, str] | None = None
    ) -> Environment:
        log.info("alembic upgrade %s", target)
        return self._online(dsn, lambda config: command.upgrade(config, target), x_args)

    def downgrade(self, dsn: str, target: str, x_args: dict[str, str] | None = None) -> Environment:
        log.info("alembic downgrade %s", target)
        return self._online(dsn, lambda config: command.downgrade(config, target), x_args)

    def current(self, dsn: str) -> Environment:
        """Run env.py against *dsn* without applying anything (nor creating the version
        table, as ``alembic current``): what it configures."""
        return self._online(
            dsn,
            lambda config: self._run_env(config, [], None, None, offline=False, dont_mutate=True),
        )

    def _online(
        self,
        dsn: str,
        run: Callable[[Config], object],
        x_args: dict[str, str] | None = None,
    ) -> Environment:
        config = self.config(dsn, x_args=x_args)
        engine = sa.create_engine(
            "postgresql+psycopg://",
            creator=lambda: connect(
                dsn,
                read_only=False,
                statement_timeout=MIGRATION_STATEMENT_TIMEOUT,
                application_name="dbtools-migrate",
            ),
            poolclass=NullPool,
        )
        try:
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                with _watching_configure(offline=False) as watch:
                    try:
                        with _project_imports(), _preserving_logging():
                            run(config)
                    finally:
                        self.last_environment = _environment(watch, config, connection)
                if connection.in_transaction():
                    connection.commit()
        finally:
            engine.dispose()
        return self.last_environment

    def _run_env(
        self,
        config: Config,
        steps: list[RevisionStep],
        starting: tuple[str, ...] | None,
        destination: str | None,
        *,
        offline: bool,
        dont_mutate: bool = False,
    ) -> None:
        """Run env.py with Alembic's own machinery, applying exactly *steps* from *starting*
        (offline; online the database's own heads)."""
        with (
            _preserving_logging(),
            EnvironmentContext(
                config,
                self.script,
                fn=lambda _heads, _context: steps,
                as_sql=offline,
                starting_rev=starting if offline else None,
                destination_rev=destination,
                dont_mutate=dont_mutate,
            ),
        ):
            self.script.run_env()


def down_revisions(revision: Script) -> tuple[str, ...]:
    """The revisions *revision* is applied on top of (two or more for a merge; none at base)."""
    down = revision.down_revision
    if down is None:
        return ()
    return tuple(down) if isinstance(down, tuple | list) else (down,)


def heads_of(applied: Iterable[str], migrations: Migrations) -> tuple[str, ...]:
    """The heads Alembic records for a set of applied revisions: those no other applied revision
    stands on."""
    applied = set(applied)
    below = {d for rev in applied for d in down_revisions(migrations.get(rev))}
    return tuple(sorted(applied - below))


def sqlalchemy_url(dsn: str) -> str:
    """*dsn* (URL or keyword DSN) as a SQLAlchemy URL with the psycopg driver (dbtools' own)."""
    params = {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items()}
    host = params.pop("host", None)
    query = {k: v for k, v in params.items() if k not in ("user", "password", "dbname", "port")}
    port = params.get("port")
    if host and (host.startswith("/") or "," in host):
        query["host"] = host  # a socket directory (or several hosts): only as a parameter
        if port:
            query["port"] = port
        host, port = None, None
    url = sa.engine.URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=host,
        port=int(port) if port else None,
        database=params.get("dbname"),
        query=query,
    )
    return url.render_as_string(hide_password=False)


# -- reads answered by a live database while rendering ---------------------------------------------


class _ReadingConnection(MockConnection):
    """Alembic's offline "connection", except that plain reads (``SELECT``, ``WITH … SELECT``,
    ``SHOW``) are answered from a live, read-only session."""

    def __init__(self, dialect: Any, dump: Callable[..., Any], live: Connection) -> None:
        super().__init__(dialect, dump)
        self._live = live

    def execute(self, obj: Any, parameters: Any = None, execution_options: Any = None) -> Any:
        if _is_read(obj):
            statement = sa.text(obj) if isinstance(obj, str) else obj
            return self._live.execute(statement, parameters or {})
        return super().execute(obj, parameters, execution_options)


def _is_read(obj: object) -> bool:
    if isinstance(obj, sa.sql.Select):
        return True
    text = (
        obj.text
        if isinstance(obj, sa.sql.elements.TextClause)
        else obj
        if isinstance(obj, str)
        else ""
    )
    return bool(re.match(r"^\s*(SELECT|WITH|SHOW|VALUES)\b", text, re.I)) and not re.search(
        r"\b(INSERT|UPDATE|DELETE|ALTER|CREATE|DROP)\b", text, re.I
    )


@contextlib.contextmanager
def _reads_from(dsn: str) -> Iterator[None]:
    engine = sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: connect(dsn, read_only=True, application_name="dbtools"),
        poolclass=NullPool,
    )
    original = MigrationContext._stdout_connection
    try:
        with engine.connect() as live:

            def stdout_connection(self: MigrationContext, connection: Any) -> MockConnection:
                def dump(construct: Any, *args: Any, **kwargs: Any) -> None:
                    self.impl._exec(construct)

                return _ReadingConnection(self.dialect, dump, live)

            MigrationContext._stdout_connection = stdout_connection  # type: ignore[method-assign]
            try:
                yield
            finally:
                MigrationContext._stdout_connection = original  # type: ignore[method-assign]
                live.rollback()
    finally:
        engine.dispose()


# -- the version table, read in the database itself -------------------------------------------------


def recorded_heads(dsn: str, environment: Environment) -> tuple[str, ...] | None:
    """The revisions the version table env.py uses holds in the database at *dsn* (sorted);
    None when that table does not exist there."""
    parts = [p for p in (environment.version_table_schema, environment.version_table) if p]
    table = sql.Identifier(*parts)
    with session(dsn) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),))
        found = exists.fetchone()
        if not found or not found[0]:
            return None
        rows = conn.execute(sql.SQL("SELECT version_num FROM {}").format(table)).fetchall()
    return tuple(sorted(str(row[0]) for row in rows))


def same_database(dsn: str, target: str | None) -> bool:
    """Whether the URL *target* (an env.py's own connection) points at the database *dsn*."""
    if target is None:
        return True
    try:
        url = sa.engine.make_url(target)
    except sa.exc.ArgumentError:
        return False
    ours = describe(dsn)
    host = url.host or str(url.query.get("host") or "") or None
    port = str(url.port or url.query.get("port") or ours.port)
    return (url.database, host or ours.host, port) == (ours.database, ours.host, ours.port)


# -- the module-level API (this project's migrations unless ini= says otherwise) -------------------


def alembic_config(
    dsn: str | None = None,
    *,
    output: TextIO | None = None,
    x_args: dict[str, str] | None = None,
    ini: IniPath = None,
) -> Config:
    """An Alembic ``Config`` for the migrations, pointed at *dsn* (else DATABASE_URL/PG*).

    Programmatic runs leave the caller's logging alone; *output* receives offline SQL.
    """
    return Migrations(ini).config(dsn, output=output, x_args=x_args)


def script_directory(ini: IniPath = None) -> ScriptDirectory:
    return Migrations(ini).script


def upgrade(
    dsn: str, target: str = "head", *, x_args: dict[str, str] | None = None, ini: IniPath = None
) -> None:
    Migrations(ini).upgrade(dsn, target, x_args)


def downgrade(
    dsn: str, target: str, *, x_args: dict[str, str] | None = None, ini: IniPath = None
) -> None:
    Migrations(ini).downgrade(dsn, target, x_args)


def offline_sql(revision_range: str, *, downgrade: bool = False, ini: IniPath = None) -> str:
    """The SQL Alembic would run for *revision_range* (``"base:head"``, ``"0003:0002"``)."""
    return Migrations(ini).render_range(revision_range, downgrade=downgrade)
