"""The schema a history starts from, when it does not start from an empty database: tables the
application creates with ``create_all`` before its first revision runs (mlflow, dagster,
superset's Flask-AppBuilder), or production's schema.

Given as a SQL file (a ``pg_dump --schema-only`` too) or a ``module:attribute`` naming a
``MetaData`` (or a declarative base) in the project's interpreter. ``rehearse`` loads it into an
empty database; ``lint`` reads its DDL, so that the columns it defines are known to the
revisions that change them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbtools.db.connection import split_password
from dbtools.errors import DbtoolsError, UsageError
from dbtools.redaction import redact
from dbtools.sandbox import client_binary
from dbtools.schema.revisions import EnvPyFailed, Migrations

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

    def load(self, dsn: str, migrations: Migrations) -> None:
        """Create the base in the (empty) database *dsn*; ``DbtoolsError`` naming what failed."""
        if self.metadata is not None:
            with _named(self.metadata):
                tables = migrations.create_all(dsn, self.metadata)
            log.info("base schema: %d tables from %s", len(tables), self.metadata)
            return
        assert self.sql_file is not None
        conninfo_text, env = split_password(dsn)
        args = [str(client_binary("psql")), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]
        args += ["--single-transaction", "--file", str(self.sql_file), "--dbname", conninfo_text]
        result = subprocess.run(args, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise DbtoolsError(
                f"the base schema {self.sql_file} does not load: "
                + redact(lines[-1] if lines else f"psql exited with {result.returncode}")
            )


@contextlib.contextmanager
def _named(spec: str) -> Iterator[None]:
    """``EnvPyFailed`` from the project's interpreter as "the base schema … cannot be created"."""
    try:
        yield
    except EnvPyFailed as err:
        raise DbtoolsError(
            f"the base schema {spec} cannot be created: {redact(err.failure.reason)}"
        ) from err
