"""Connection settings and the sessions every command opens.

Where the connection comes from, in order: ``--dsn``, ``DATABASE_URL``, then libpq's own ``PG*``
variables and service files (an empty conninfo lets libpq read them). URLs
(``postgresql://``, ``postgres://``, SQLAlchemy's ``postgresql+psycopg://``) and keyword DSNs
(``host=… dbname=…``) are accepted.

Every session is named ``application_name = 'dbtools'`` (so dbtools can leave its own statements
out of what it measures) and carries a statement timeout; read-only sessions open read-only
transactions.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo

from dbtools.errors import ConnectionFailed, DbtoolsError, PrerequisiteMissing, UsageError
from dbtools.redaction import add_connection, add_secret, redact

log = logging.getLogger(__name__)

APPLICATION_NAME = "dbtools"
DEFAULT_STATEMENT_TIMEOUT = "30s"
# Every statement dbtools sends to a measured database carries this comment, so that collection
# can leave dbtools' own statements out (pg_stat_statements does not record application_name).
SQL_MARKER = "/* dbtools */"

_DRIVER_SUFFIX = re.compile(r"^(postgres(?:ql)?)\+\w+://", re.I)
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*)://", re.I)


def resolve_dsn(dsn: str | None = None) -> str:
    """Return the DSN to use: *dsn*, else ``DATABASE_URL``, else ``""`` (libpq's ``PG*``)."""
    chosen = dsn if dsn is not None else os.environ.get("DATABASE_URL", "")
    return normalise_dsn(chosen)


def normalise_dsn(dsn: str) -> str:
    """Return *dsn* in a form libpq accepts, raising ``UsageError`` for what it never could.

    The error names the part that is wrong (``an unclosed quote in the value of password``),
    never its value: libpq's own messages quote it, and redaction cannot find a password in a
    DSN it cannot parse either.
    """
    dsn = dsn.strip()
    dsn = _DRIVER_SUFFIX.sub(lambda m: "postgresql://", dsn)
    scheme = _URL_SCHEME.match(dsn)
    if scheme and scheme.group(1).lower() not in ("postgresql", "postgres"):
        raise UsageError(f"not a PostgreSQL URL: its scheme is {scheme.group(1)}")
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # Not chained: the driver's message (shown by --traceback) quotes the DSN.
        raise UsageError(f"malformed DSN: {dsn_problem(dsn)}") from None
    add_connection(params)  # every DSN dbtools is given passes here: its secrets are masked
    return dsn


_PERCENT_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


def dsn_problem(dsn: str) -> str:
    """What makes *dsn* unreadable to libpq, naming the part, never quoting it."""
    if _URL_SCHEME.match(dsn):
        return _url_problem(dsn.split("://", 1)[1])
    return _keywords_problem(dsn)


def _url_problem(rest: str) -> str:
    """The problem of a URL after ``scheme://``: ``[user[:password]@]hosts[/database][?query]``."""
    location, _, query = rest.partition("?")
    authority, _, database = location.partition("/")
    userinfo, _, hosts = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    parts = (("user name", user), ("password", password), ("host", hosts),
             ("database name", database))  # fmt: skip
    for part, text in parts:
        if _PERCENT_ESCAPE.search(text):
            return f"a bad percent-escape in the URL's {part}"
    if hosts.count("[") != hosts.count("]"):
        return "an unclosed '[' in the URL's host"
    for number, parameter in enumerate(query.split("&") if query else (), 1):
        name, equals, value = parameter.partition("=")
        if not equals:
            return f"the URL's query parameter {number} has no '='"
        if _PERCENT_ESCAPE.search(name) or not name.isidentifier():
            return f"the URL's query parameter {number} has no valid name"
        if _PERCENT_ESCAPE.search(value):
            return f"a bad percent-escape in the value of the URL's query parameter {name}"
        if name not in _CONNECTION_OPTIONS:
            return f"the URL's query parameter {number} ({name}) is not a connection option"
    return "libpq cannot read the URL"


def _keywords_problem(dsn: str) -> str:
    """The problem of a keyword DSN (``key=value key='quoted value'``), read as libpq reads it."""
    position, number, length = 0, 0, len(dsn)
    while True:
        while position < length and dsn[position].isspace():
            position += 1
        if position == length:
            return "libpq cannot read it"
        number += 1
        start = position
        while position < length and dsn[position] != "=" and not dsn[position].isspace():
            position += 1
        keyword = dsn[start:position]
        while position < length and dsn[position].isspace():
            position += 1
        if position == length or dsn[position] != "=":
            return f"word {number} has no '=' (keyword=value expected)"
        if not keyword:
            return f"word {number} has no keyword before '='"
        if keyword not in _CONNECTION_OPTIONS:
            return f"word {number} ({keyword}) is not a connection option"
        position += 1
        while position < length and dsn[position].isspace():
            position += 1
        if position < length and dsn[position] == "'":
            position += 1
            while position < length and dsn[position] != "'":
                position += 2 if dsn[position] == "\\" else 1
            if position >= length:
                return f"an unclosed quote in the value of {keyword}"
            position += 1
        else:
            while position < length and not dsn[position].isspace():
                position += 2 if dsn[position] == "\\" else 1


# libpq's connection options (the keywords of a DSN and the query parameters of a URL).
_CONNECTION_OPTIONS = frozenset(
    option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()
)


@dataclass(frozen=True)
class Target:
    """Where a DSN points, without its password: safe to print."""

    host: str
    port: str
    database: str
    user: str

    def __str__(self) -> str:
        return f"host {self.host} port {self.port} database {self.database} user {self.user}"


def describe(dsn: str) -> Target:
    """Describe where *dsn* (plus libpq's environment defaults) points."""
    params = conninfo.conninfo_to_dict(dsn)
    user = str(params.get("user") or os.environ.get("PGUSER") or _login_name())
    return Target(
        host=str(params.get("host") or os.environ.get("PGHOST") or "local socket"),
        port=str(params.get("port") or os.environ.get("PGPORT") or "5432"),
        database=str(params.get("dbname") or os.environ.get("PGDATABASE") or user),
        user=user,
    )


def connect(
    dsn: str,
    *,
    read_only: bool = True,
    autocommit: bool = False,
    statement_timeout: str = DEFAULT_STATEMENT_TIMEOUT,
    lock_timeout: str | None = None,
    application_name: str = APPLICATION_NAME,
) -> psycopg.Connection[Any]:
    """Open a session with dbtools' name, a statement timeout and (by default) read-only mode.

    Raises ``ConnectionFailed`` with a one-line, password-free message naming the target.
    """
    options = f"-c statement_timeout={statement_timeout}"
    if read_only and autocommit:
        # Autocommit sends no BEGIN READ ONLY (nor any BEGIN/COMMIT that would show up in
        # pg_stat_statements): make every implicit transaction read-only instead.
        options += " -c default_transaction_read_only=on"
    if lock_timeout is not None:
        options += f" -c lock_timeout={lock_timeout}"
    log.info("connecting to %s", describe(dsn))
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            application_name=application_name,
            options=options,
            connect_timeout=int(os.environ.get("PGCONNECT_TIMEOUT", "10")),
        )
    except psycopg.OperationalError as err:
        raise ConnectionFailed(f"cannot connect to {describe(dsn)}: {error_reason(err)}") from err
    add_secret(conn.info.password)  # the one libpq used (from the DSN, PGPASSWORD, ~/.pgpass…)
    conn.read_only = read_only
    return conn


@contextmanager
def session(dsn: str, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
    """``connect`` as a context manager that always closes the connection."""
    conn = connect(dsn, **kwargs)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn driver errors raised while doing *what* into one-line ``DbtoolsError``s (exit 2).

    Missing privileges and objects become ``PrerequisiteMissing``; a lost connection
    ``ConnectionFailed``; anything else from the server a ``DbtoolsError`` naming *what*.
    """
    try:
        yield
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable) as err:
        raise PrerequisiteMissing(f"{what}: {error_reason(err)}") from err
    except psycopg.errors.QueryCanceled as err:
        raise DbtoolsError(f"{what}: cancelled ({error_reason(err)})") from err
    except psycopg.OperationalError as err:
        raise ConnectionFailed(f"{what}: {error_reason(err)}") from err
    except psycopg.Error as err:
        raise DbtoolsError(f"{what}: {error_reason(err)}") from err


def split_password(dsn: str) -> tuple[str, dict[str, str]]:
    """For client programs (pg_dump, psql): the DSN without its password, and an environment
    carrying it as PGPASSWORD, so that it never shows on a command line."""
    params = conninfo.conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = {**os.environ}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return conninfo.make_conninfo("", **params), env


def error_reason(err: psycopg.Error) -> str:
    """The useful part of a server or libpq error, on one line, without a password."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    # libpq says 'connection to server at "h" (1.2.3.4), port 5 failed: FATAL:  …'; the target
    # is already named, so keep only what went wrong.
    text = re.sub(r"^.*?connection to server (at|on) .*? failed: ", "", text)
    text = re.sub(r"^FATAL:\s+", "", text)
    return redact(text)


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
