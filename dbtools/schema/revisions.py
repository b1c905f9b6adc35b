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
import json
import logging
import os
import re
import subprocess
import sys
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionMap
from psycopg import conninfo, sql

from dbtools.config import read_toml
from dbtools.db.connection import describe, session
from dbtools.errors import ConfigError, ConnectionFailed, DbtoolsError, UsageError
from dbtools.redaction import redact
from dbtools.schema import envrun
from dbtools.schema.frozen import IniPath as IniPath  # the safety commands name it from here
from dbtools.schema.frozen import find_alembic_ini

log = logging.getLogger(__name__)

BASE = "base"
ALEMBIC_SECTION = "alembic"
DEFAULT_VERSION_TABLE = "alembic_version"
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
    return envrun.new_config(
        str(config_file) if config_file else None,
        str(toml_file) if toml_file else None,
        section,
        output,
    )


def _resolved(config_file: Path | None, toml_file: Path | None, section: str) -> Project:
    """The project with its path options resolved to what its authors meant."""
    config = _new_config(config_file, toml_file, section)
    base = (config_file or toml_file or Path.cwd()).parent
    getter = getattr(config, "get_alembic_option", config.get_main_option)
    location = getter("script_location")
    if not location and config_file is not None and (config_file.parent / "env.py").is_file():
        location = str(config_file.parent)  # Flask-Migrate's layout: the ini beside env.py
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


# -- how the project's env.py is run --------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """How to run a project's env.py (``--python``, ``--driver``, ``--url-env``,
    ``--version-locations``)."""

    python: str | None = None  # the project's interpreter; None: dbtools' own, in-process
    driver: str | None = None  # psycopg2, psycopg or asyncpg; None: detected
    url_env: str | None = None  # an environment variable env.py reads its URL from
    version_locations: tuple[str, ...] = ()  # where the revisions are, when env.py chooses
    env_context: str | None = None  # module:callable, a context manager env.py runs inside
    autocommit: bool = False  # the connection handed to env.py commits every statement

    def __post_init__(self) -> None:
        if self.driver is not None and self.driver not in envrun.DRIVERS:
            raise UsageError(f"--driver: one of {', '.join(envrun.DRIVERS)}, not {self.driver!r}")
        if self.python is not None and not Path(self.python).is_file():
            raise UsageError(f"--python: no such interpreter: {self.python}")


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

    @classmethod
    def from_runner(cls, found: dict[str, Any] | None) -> Environment:
        return cls(**found) if found else cls()


class EnvPyFailed(DbtoolsError):
    """A run of the project's env.py failed; the message names the source (``env.py``, a
    revision, the driver, dbtools)."""

    def __init__(self, failure: envrun.EnvFailure) -> None:
        super().__init__(describe_failure(failure))
        self.failure = failure


def describe_failure(failure: envrun.EnvFailure) -> str:
    """One line naming where a failure came from: ``the revision (line 7 of x.py): …``,
    ``the project's env.py: …``, ``the driver: …``, ``dbtools: …``."""
    reason = redact(failure.reason)
    if failure.source == "revision":
        return f"{reason}{failure.where}"
    who = {"env.py": "the project's env.py", "driver": "the driver", "import": "an import"}
    return f"{who.get(failure.source, failure.source)}: {reason}"


# The project's interpreter loads envrun.py by its path (it has no dbtools to import).
_BOOTSTRAP = """
import importlib.util, json, sys
try:
    spec = importlib.util.spec_from_file_location("dbtools_envrun", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
except ImportError as err:
    print(json.dumps({"failure": {"source": "runner", "reason": str(err),
                                  "module": err.name or "", "where": "", "partial_sql": ""}}))
    sys.exit(0)
module.serve()
"""


class _ProjectInterpreter:
    """``EnvRunner``'s calls answered by envrun.py running in the project's interpreter, a JSON
    line per call each way; its stderr is ours. *environment*: variables it starts with (the
    target's URL under ``--url-env``: a project may read it once, when it is imported)."""

    def __init__(
        self, python: str, hello: dict[str, Any], environment: dict[str, str] | None = None
    ) -> None:
        self.python = python
        self.environment = dict(environment or {})
        try:
            self.process = subprocess.Popen(
                [python, "-c", _BOOTSTRAP, envrun.__file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, **self.environment},
            )
        except OSError as err:
            raise UsageError(f"--python: cannot run {python}: {err.strerror}") from err
        self.stop = weakref.finalize(self, _stop, self.process)
        try:
            self.versions = self._exchange(hello)
        except envrun.EnvFailure as err:
            if err.source != "runner":
                raise
            raise UsageError(
                f"--python: {python} cannot run dbtools' env runner: {err.reason} (it needs "
                "Alembic and SQLAlchemy, as the project's migrations do)"
            ) from err

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._exchange({"call": name, "args": list(args), "kwargs": kwargs})

    def _exchange(self, request: dict[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self.process.wait()
            raise DbtoolsError(
                f"dbtools' env runner in {self.python} ended (exit code {code}); its stderr "
                "says why"
            )
        answer = json.loads(line)
        if "failure" in answer:
            raise envrun.EnvFailure.from_json(answer["failure"])
        return answer["ok"]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _InProcess:
    """``EnvRunner``'s calls in dbtools' own interpreter (the same interface as
    ``_ProjectInterpreter``)."""

    def __init__(self, runner: envrun.EnvRunner) -> None:
        self.runner = runner

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.runner, name)(*args, **kwargs)


def detect_driver(project: Project, given: str | None, installed: tuple[str, ...]) -> str:
    """The driver the project uses: *given* (``--driver``); the one its ini's ``sqlalchemy.url``
    names (``postgresql://`` is SQLAlchemy's default, psycopg2); one its pyproject.toml depends
    on; else the first of *installed* (psycopg2, psycopg, asyncpg in that order)."""
    if given:
        return given
    config = _new_config(project.config_file, project.toml_file, project.section)
    url = config.get_main_option("sqlalchemy.url") or ""
    named = re.match(r"^postgres(?:ql)?(?:\+(\w+))?://", url)
    if named and (named.group(1) or "psycopg2") in envrun.DRIVERS:
        return named.group(1) or "psycopg2"
    for directory in (project.directory, *project.directory.parents):
        pyproject = directory / "pyproject.toml"
        if not pyproject.is_file():
            continue
        listed = read_toml(pyproject).get("project", {}).get("dependencies", [])
        names = {re.split(r"[\s\[<>=!~;]", str(d), maxsplit=1)[0].lower() for d in listed}
        for driver in envrun.DRIVERS:
            if names & {driver, f"{driver}-binary"}:
                return driver
        break
    if not installed:
        raise UsageError(
            "no PostgreSQL driver found for the project (psycopg2, psycopg or asyncpg): "
            "install one into its interpreter or name it with --driver"
        )
    return installed[0]


# -- the migrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedSql:
    """One revision's offline SQL in one direction, what the env.py configured, and the old type
    of each column an ``alter_column`` changed as its ``existing_type`` says (schema.table.col)."""

    sql: str
    environment: Environment
    existing_types: dict[str, str] = field(default_factory=dict)


class Migrations:
    """A project's migrations as Alembic runs them: found once, then rendered and applied, in
    dbtools' interpreter or in the project's own (``RunOptions.python``)."""

    def __init__(self, ini: IniPath = None, run: RunOptions | None = None) -> None:
        self.run = run or RunOptions()
        project = find_project(ini)
        if self.run.version_locations:
            project = _with_version_locations(project, self.run.version_locations)
        self.project = project
        # What env.py configured in the latest online run, also when that run failed.
        self.last_environment = Environment()
        # --url-env: a project may read its URL once, when imported: it runs in a process of
        # its own, started anew with the URL of each target.
        self.python = self.run.python or (sys.executable if self.run.url_env else None)
        with self._named_failures():
            if self.python is None:
                self.driver = detect_driver(project, self.run.driver, ("psycopg",))
                self.runner: _InProcess | _ProjectInterpreter = _InProcess(
                    envrun.EnvRunner(**self._hello(), driver=self.driver)
                )
            else:
                self.runner = _ProjectInterpreter(self.python, self._hello())
                self.driver = detect_driver(
                    project, self.run.driver, tuple(self.runner.versions["drivers"])
                )
                self.runner.call("use_driver", self.driver)
            self.graph = self._read_graph()
            if not self.graph.heads and not self.run.version_locations:
                self._ask_env_py_where_revisions_are()

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable

    def _hello(self) -> dict[str, Any]:
        project = self.project
        return {
            "config_file": str(project.config_file) if project.config_file else None,
            "toml_file": str(project.toml_file) if project.toml_file else None,
            "section": project.section,
            "options": project.options,
            "env_context": self.run.env_context,
            "autocommit": self.run.autocommit,
        }

    def _call(self, name: str, *args: Any, target: str | None = None, **kwargs: Any) -> Any:
        """One call to the runner; under ``--url-env`` in a runner started with *target* (a
        SQLAlchemy URL; default: a URL never connected) in that variable."""
        runner = self.runner
        if self.run.url_env and isinstance(runner, _ProjectInterpreter):
            url = target or envrun.driver_url(envrun.OFFLINE_URL, self.driver)
            if runner.environment.get(self.run.url_env) != url:
                runner.stop()
                runner = self.runner = _ProjectInterpreter(
                    runner.python, self._hello(), {self.run.url_env: url}
                )
                runner.call("use_driver", self.driver)
        return runner.call(name, *args, **kwargs)

    @property
    def script(self) -> ScriptDirectory:
        """The project's ``ScriptDirectory`` (in dbtools' interpreter only)."""
        if not isinstance(self.runner, _InProcess):
            raise UsageError("the project's scripts are in its own interpreter (--python)")
        return self.runner.runner.script

    def _read_graph(self) -> RevisionMap:
        if isinstance(self.runner, _InProcess):
            return self.runner.runner.script.revision_map
        described = self._call("graph")
        scripts = [
            Script(envrun.project_module(rev), rev["revision"], rev["path"])  # type: ignore[arg-type]
            for rev in described
        ]
        return RevisionMap(lambda: scripts)

    def _ask_env_py_where_revisions_are(self) -> None:
        """An empty history: env.py may choose the versions folder while it runs (Prefect picks
        its dialect's); run it offline and read the revisions from where it pointed Alembic."""
        try:
            locations = self._call("version_locations")
        except Exception as err:  # an env.py that fails offline: the history stays empty
            log.info("asking env.py where its revisions are failed: %s", err)
            return
        if not locations:
            return
        log.info("env.py chose the revisions' locations: %s", ", ".join(locations))
        self.project = _with_version_locations(self.project, tuple(locations))
        self._call("use_version_locations", locations)
        self.graph = self._read_graph()

    def require_revisions(self) -> None:
        """``ConfigError`` for a history with no revision: never a pass over nothing."""
        if self.graph.heads:
            return
        locations = self.project.options.get("version_locations")
        where = (
            ", ".join(locations.split(_SEPARATOR))
            if locations
            else os.path.join(self.project.options["script_location"], "versions")
        )
        raise ConfigError(
            f"no revisions found in {where} ({self.project.name}): if the project's env.py "
            "chooses the versions folder, name it with --version-locations"
        )

    @contextlib.contextmanager
    def _named_failures(self) -> Iterator[None]:
        """A missing package: ``ProjectNotImportable``; a history that does not load (here or
        in the project's interpreter): ``ConfigError``."""
        try:
            yield
        except (ModuleNotFoundError, envrun.EnvFailure) as err:
            found = envrun.failure(err, None)
            if found.source == "import":
                raise ProjectNotImportable(
                    f"the migrations import {found.module!r}, which {self.interpreter} cannot "
                    f"import: install the project into that interpreter ({self.interpreter} -m "
                    "pip install …)"
                    if found.module
                    else f"{self.interpreter} cannot run dbtools' env runner: {found.reason}"
                ) from err
            raise ConfigError(
                f"cannot read the revisions of {self.project.name}: {redact(found.reason)}"
            ) from err
        except DbtoolsError:
            raise
        except Exception as err:  # a revision file that does not load, a missing down revision
            raise ConfigError(
                f"cannot read the revisions of {self.project.name}: {redact(envrun.reason_of(err))}"
            ) from err

    def failure(self, err: BaseException) -> envrun.EnvFailure:
        """*err* (raised by a run of env.py, here or in the project's interpreter), named."""
        script = self.runner.runner._script if isinstance(self.runner, _InProcess) else None
        return envrun.failure(err, script)

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
            config.set_main_option("sqlalchemy.url", self.url(dsn).replace("%", "%%"))
        if x_args:
            config.attributes["x_args"] = dict(x_args)
        return config

    def url(self, dsn: str) -> str:
        """*dsn* as a SQLAlchemy URL with the project's driver."""
        return sqlalchemy_url(dsn, self.driver)

    # -- the graph

    def get(self, revision: str) -> Script:
        """The revision *revision* names; ``ConfigError`` when there is none."""
        try:
            found = self.graph.get_revision(revision)
        except Exception as err:  # RevisionError and its kin
            raise ConfigError(str(err)) from err
        if found is None:
            raise ConfigError(f"unknown revision {revision!r}")
        return found  # type: ignore[return-value]

    def heads(self) -> tuple[str, ...]:
        return tuple(self.graph.heads)

    def upgrade_order(self, upper: str | tuple[str, ...] = "heads") -> list[Script]:
        """Every revision up to *upper*, in an order Alembic can apply them (base first)."""
        return list(reversed(list(self.graph.iterate_revisions(upper, BASE))))  # type: ignore[arg-type]

    def downgrade_order(self, upper: tuple[str, ...], lower: str) -> list[Script]:
        """The revisions ``alembic downgrade`` from heads *upper* to *lower* undoes, in its
        order (a merge first, then each branch's revisions)."""
        try:
            return list(self.graph.iterate_revisions(upper, lower, select_for_downgrade=True))  # type: ignore[arg-type]
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
        live_url = self.url(live_dsn) if live_dsn is not None else None
        try:
            with self._named_imports():
                found = self._call(
                    "render",
                    revision.revision,
                    direction,
                    list(heads) if heads is not None else None,
                    live_url,
                )
        except ProjectNotImportable:
            raise
        except Exception as err:  # whatever a revision or its env.py raises offline
            named = self.failure(err)
            raise UnrenderableRevision(
                revision.revision,
                direction,
                _named_reason(named),
                named.partial_sql,
            ) from err
        return RenderedSql(
            found["sql"], Environment.from_runner(found["environment"]), found["existing_types"]
        )

    def environment(self) -> Environment:
        """What env.py configures offline (its version table; whether it is dbtools'), from a
        run that renders nothing. Raises ``EnvPyFailed`` (an env.py that refuses offline mode)."""
        try:
            with self._named_imports():
                return Environment.from_runner(self._call("environment"))
        except ProjectNotImportable:
            raise
        except Exception as err:  # whatever env.py raises offline
            raise EnvPyFailed(self.failure(err)) from err

    def render_range(self, revision_range: str, *, downgrade: bool = False) -> str:
        """The SQL ``alembic upgrade|downgrade RANGE --sql`` prints, in PostgreSQL."""
        with self._named_imports():
            return str(self._call("render_range", revision_range, downgrade))

    # -- online

    def apply(self, dsn: str, revision: Script, direction: str) -> Environment:
        """Apply one revision's upgrade or downgrade to the database at *dsn*, from its current
        heads (Alembic records the step exactly as ``alembic upgrade|downgrade`` would)."""
        log.info("alembic %s %s (one revision)", direction, revision.revision)
        return self._online("apply", self.url(dsn), revision.revision, direction, dsn=dsn)

    def upgrade(
        self, dsn: str, target: str = "head", x_args: dict[str, str] | None = None
    ) -> Environment:
        log.info("alembic upgrade %s", target)
        return self._online("command", self.url(dsn), "upgrade", target, dsn=dsn, x_args=x_args)

    def downgrade(self, dsn: str, target: str, x_args: dict[str, str] | None = None) -> Environment:
        log.info("alembic downgrade %s", target)
        return self._online("command", self.url(dsn), "downgrade", target, dsn=dsn, x_args=x_args)

    def current(self, dsn: str) -> Environment:
        """Run env.py against *dsn* without applying anything (nor creating the version
        table, as ``alembic current``): what it configures."""
        return self._online("current", self.url(dsn), dsn=dsn)

    def create_all(self, dsn: str, spec: str) -> list[str]:
        """``create_all`` of the project's ``module:metadata`` in the database at *dsn*, in the
        project's interpreter. Raises ``EnvPyFailed``, ``ProjectNotImportable``."""
        try:
            with self._named_imports():
                url = self.url(dsn)
                return list(self._call("create_all", url, spec, target=url))
        except ProjectNotImportable:
            raise
        except Exception as err:  # the module's import, create_all's DDL
            raise EnvPyFailed(self.failure(err)) from err

    def create_all_ddl(self, spec: str) -> list[str]:
        """The DDL ``create_all`` of the project's ``module:metadata`` runs, compiled for
        PostgreSQL in the project's interpreter. Raises ``EnvPyFailed``."""
        try:
            with self._named_imports():
                return list(self._call("create_all_ddl", spec))
        except ProjectNotImportable:
            raise
        except Exception as err:  # the module's import
            raise EnvPyFailed(self.failure(err)) from err

    def _online(self, call: str, *args: Any, **kwargs: Any) -> Environment:
        """Run env.py online; a driver that cannot connect is ``ConnectionFailed``, a missing
        package ``ProjectNotImportable``; anything else the project raises goes up as it is
        (in the project's interpreter: ``envrun.EnvFailure``)."""
        try:
            with self._named_imports():
                found = self._call(call, *args, target=args[0], **kwargs)
        except envrun.EnvFailure as err:
            self.last_environment = Environment.from_runner(err.environment)
            if err.source == "driver":
                raise ConnectionFailed(
                    f"cannot connect to {describe(kwargs['dsn'])} with {self.driver}: "
                    f"{redact(err.reason)}"
                ) from err
            raise
        except Exception as err:
            self.last_environment = Environment.from_runner(getattr(err, "environment", None))
            raise
        self.last_environment = Environment.from_runner(found)
        return self.last_environment

    @contextlib.contextmanager
    def _named_imports(self) -> Iterator[None]:
        """A package the migrations import that the interpreter lacks: one line saying which."""
        try:
            yield
        except (ModuleNotFoundError, envrun.EnvFailure) as err:
            found = envrun.failure(err, None)
            if found.source != "import":
                raise
            raise ProjectNotImportable(
                f"the migrations import {found.module!r}, which {self.interpreter} cannot "
                f"import: install the project into that interpreter ({self.interpreter} -m pip "
                "install …)"
            ) from err


def _named_reason(found: envrun.EnvFailure) -> str:
    """An offline failure's reason, as ``UnrenderableRevision`` gives it."""
    reason = redact(found.reason) + found.where
    return reason if found.source in ("revision", "dbtools") else f"{found.source}: {reason}"


def _with_version_locations(project: Project, locations: tuple[str, ...]) -> Project:
    options = {k: v for k, v in project.options.items() if "separator" not in k}
    options["version_locations"] = _SEPARATOR.join(
        _resolve_location(v, project.directory, "version_locations") for v in locations
    )
    options["path_separator" if ALEMBIC_READS_TOML else "version_path_separator"] = (
        "newline" if ALEMBIC_READS_TOML else "space"
    )
    return Project(project.config_file, project.toml_file, project.section, options)


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


def sqlalchemy_url(dsn: str, driver: str = "psycopg") -> str:
    """*dsn* (URL or keyword DSN) as a SQLAlchemy URL with *driver* (default: dbtools' own)."""
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
        f"postgresql+{driver}",
        username=params.get("user"),
        password=params.get("password"),
        host=host,
        port=int(port) if port else None,
        database=params.get("dbname"),
        query=query,
    )
    return url.render_as_string(hide_password=False)


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
