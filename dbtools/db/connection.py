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
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import Copy, conninfo, sql

if TYPE_CHECKING:
    from typing_extensions import Self

from dbtools.errors import ConnectionFailed, UsageError
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
    if scheme and _stray_at(dsn.split("://", 1)[1]):
        # libpq ends the user name and password at the first '@' or '/': the rest of an
        # unencoded password became the host, port or database, which its errors would quote.
        raise UsageError(
            "malformed DSN: the URL has an '@' after its user name and password; "
            "percent-encode '@', '/' and ':' inside them (%40, %2F, %3A)"
        )
    return dsn


def _stray_at(rest: str) -> bool:
    """Whether a URL's text after ``scheme://`` holds an '@' after the user information as
    libpq reads it (up to the first '@' or '/'), before the query string."""
    end = min((i for i in (rest.find("@"), rest.find("/")) if i >= 0), default=len(rest))
    after = rest[end + 1 :] if rest[end : end + 1] == "@" else rest
    return "@" in after.partition("?")[0]


def with_parts(
    dsn: str,
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    dbname: str | None = None,
) -> str:
    """*dsn* (normalised) with the parts given replaced, as pg_dump's ``--host``, ``--port``,
    ``--username`` and ``--dbname`` replace them: a keyword DSN."""
    parts = {"host": host, "port": port, "user": user, "dbname": dbname}
    given = {key: str(value) for key, value in parts.items() if value is not None}
    return normalise_dsn(conninfo.make_conninfo(normalise_dsn(dsn), **given))


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


@dataclass(frozen=True)
class Attempt:
    """The statement a driver error came from, and the role that ran it (its login role)."""

    role: str
    statement: str


_ATTEMPTS: weakref.WeakKeyDictionary[BaseException, Attempt] = weakref.WeakKeyDictionary()


def attempt_of(err: BaseException) -> Attempt | None:
    """What a dbtools session was running when it raised *err* (None: not from one)."""
    return _ATTEMPTS.get(err)


class _Cursor(psycopg.Cursor[Any]):
    """dbtools' cursor: a driver error remembers its statement and role (``attempt_of``), so
    that a refused privilege can be told as the GRANT it lacked (``db.errors.refusal``): the
    server names neither."""

    def _remember(self, err: psycopg.Error, query: Any) -> None:
        try:
            text = query.as_string(self.connection) if isinstance(query, sql.Composable) else query
            statement = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # only a better message is lost
            statement = ""
        _ATTEMPTS[err] = Attempt(self.connection.info.user, statement)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
        try:
            return super().execute(query, params, **kwargs)
        except psycopg.Error as err:
            self._remember(err, query)
            raise

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        try:
            super().executemany(query, params_seq, **kwargs)
        except psycopg.Error as err:
            self._remember(err, query)
            raise

    @contextmanager
    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Copy]:
        try:
            with super().copy(statement, params, **kwargs) as copy:
                yield copy
        except psycopg.Error as err:
            self._remember(err, statement)
            raise


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
            cursor_factory=_Cursor,
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
