"""The schema a history starts from, when it does not start from an empty database: tables the
application creates with ``create_all`` before its first revision runs (mlflow, dagster,
superset's Flask-AppBuilder), or production's schema.

Given as a SQL file (a ``pg_dump --schema-only`` too) or a ``module:attribute`` naming a
``MetaData`` (or a declarative base) in the project's interpreter. ``rehearse`` loads it into an
empty database; ``lint`` reads its DDL, so that the columns it defines are known to the
revisions that change them.

A dump of production is loaded as it is, but for what only production has: the roles it names
(owners, grantees) are created, ``NOLOGIN``, in a sandbox, and named in the error on a server
given with ``--dsn`` (a cluster-wide change is not dbtools' to make there); and a session
setting the server's major does not know (``SET transaction_timeout`` from a pg_dump newer than
the server) is left out, as it sets the loading session, not the schema.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from dbtools.db.connection import session, split_password
from dbtools.errors import DbtoolsError, UsageError
from dbtools.redaction import redact
from dbtools.sandbox import client_binary
from dbtools.schema.revisions import EnvPyFailed, Migrations
from dbtools.sqltext.split import mask_literals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseSchema:
    """A SQL file, or a ``module:attribute`` to ``create_all``."""

    sql_file: Path | None = None
    metadata: str | None = None

    @classmethod
    def parse(cls, given: str) -> BaseSchema:
        """``UsageError`` when *given* is neither an existing file nor ``module:attribute``."""
        path = Path(given)
        if path.is_file():
            return cls(sql_file=path)
        if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", given):
            return cls(metadata=given)
        raise UsageError(f"--base-schema: {given!r} is neither a SQL file nor a module:metadata")

    def __str__(self) -> str:
        return str(self.sql_file) if self.sql_file else f"create_all of {self.metadata}"

    def ddl(self, migrations: Migrations) -> str:
        """The base as SQL (``create_all``'s DDL compiled for PostgreSQL, nothing connected)."""
        if self.sql_file is not None:
            return self.sql_file.read_text()
        assert self.metadata is not None
        with _named(self.metadata):
            return ";\n\n".join(migrations.create_all_ddl(self.metadata)) + ";\n"

    def load(self, dsn: str, migrations: Migrations, *, create_roles: bool = False) -> None:
        """Create the base in the (empty) database *dsn*; ``DbtoolsError`` naming what failed.

        *create_roles*: create the roles a SQL file names that the server lacks (a sandbox's
        server); otherwise a missing role is named in the error."""
        if self.metadata is not None:
            with _named(self.metadata):
                tables = migrations.create_all(dsn, self.metadata)
            log.info("base schema: %d tables from %s", len(tables), self.metadata)
            return
        assert self.sql_file is not None
        # surrogateescape: bytes that are not UTF-8 reach psql as they are in the file
        text = self.sql_file.read_text(encoding="utf-8", errors="surrogateescape")
        script = _without_unknown_settings(text, dsn)
        created: set[str] = set()
        while (error := _psql(script, dsn)) is not None:
            role = _missing_role(error)
            if role is None or role in created or not create_roles:
                hint = (
                    f" (the server has no role {role!r}: create it, or dump with --no-owner "
                    "--no-privileges)"
                    if role is not None and not create_roles
                    else ""
                )
                raise DbtoolsError(
                    f"the base schema {self.sql_file} does not load: {redact(error)}{hint}"
                )
            with session(dsn, read_only=False, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            log.info("base schema: created role %s (NOLOGIN), which %s names", role, self.sql_file)
            created.add(role)


# A top-level ``SET name = value;`` line, as pg_dump writes its session settings.
_SETTING_LINE = re.compile(r"^SET\s+(\w+)\s*(?:=|\bTO\b)[^;\n]*;[ \t]*$", re.I | re.M)
# psql's error line: "psql:FILE:LINE: ERROR:  message".
_PSQL_ERROR = re.compile(r"^psql:.*?:(\d+): (.*)$")
_MISSING_ROLE = re.compile(r'^ERROR:\s+role "(.+)" does not exist$')


def _without_unknown_settings(script: str, dsn: str) -> str:
    """*script* with its session settings the server does not know commented out (line numbers
    kept). A line inside a string or a function body is never one (``mask_literals``)."""
    with session(dsn) as conn:
        known = {name for (name,) in conn.execute("SELECT name FROM pg_settings")}
    pieces, last = [], 0
    for found in _SETTING_LINE.finditer(mask_literals(script)):
        if found.group(1).lower() in known:
            continue
        line = script[found.start() : found.end()]
        log.info("base schema: left out %s (no such setting on this server)", line)
        pieces += [script[last : found.start()], f"-- left out (no such setting here): {line}"]
        last = found.end()
    return "".join(pieces) + script[last:]


def _psql(script: str, dsn: str) -> str | None:
    """Run *script* with psql in one transaction, stopping at the first error: None when it
    loaded, else the error ("line N: ERROR: …")."""
    conninfo_text, env = split_password(dsn)
    args = [str(client_binary("psql")), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]
    args += ["--single-transaction", "--file", "-", "--dbname", conninfo_text]
    script_bytes = script.encode("utf-8", errors="surrogateescape")
    result = subprocess.run(args, input=script_bytes, capture_output=True, env=env)
    if result.returncode == 0:
        return None
    stderr = result.stderr.decode("utf-8", errors="replace")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return f"psql exited with {result.returncode}"
    first_error = next((line for line in lines if _PSQL_ERROR.match(line)), lines[-1])
    located = _PSQL_ERROR.match(first_error)
    return f"line {located.group(1)}: {located.group(2)}" if located else first_error


def _missing_role(error: str) -> str | None:
    """The role *error* says does not exist (the sandbox's messages are in English)."""
    found = _MISSING_ROLE.match(error.split(": ", 1)[-1])
    return found.group(1) if found else None


@contextlib.contextmanager
def _named(spec: str) -> Iterator[None]:
    """``EnvPyFailed`` from the project's interpreter as "the base schema … cannot be created"."""
    try:
        yield
    except EnvPyFailed as err:
        raise DbtoolsError(
            f"the base schema {spec} cannot be created: {redact(err.failure.reason)}"
        ) from err
