"""A database's schema as comparable text: ``pg_dump --schema-only``, normalised.

Used to prove that a downgrade leaves no trace (the schema after it equals the schema before the
upgrade) and that offline SQL builds the same schema as an online upgrade.
"""

from __future__ import annotations

import re
import subprocess

from dbtools.db.connection import split_password
from dbtools.db.sandbox import client_binary
from dbtools.errors import DbtoolsError

# Lines that differ between two dumps of the same schema: headers, session settings, and the
# random \restrict key pg_dump writes since 17.6/18.
_NOISE = re.compile(r"^(--.*|\\(un)?restrict .*|SET .*|SELECT pg_catalog\.set_config.*)$")


def dump_schema(dsn: str, *, exclude_tables: tuple[str, ...] = ("public.alembic_version",)) -> str:
    """The schema of the database at *dsn*, with owners, privileges and dump noise removed.

    ``alembic_version`` is left out by default: Alembic keeps that table after a downgrade to base.
    """
    conninfo, env = split_password(dsn)
    args = [str(client_binary("pg_dump")), "--schema-only", "--no-owner", "--no-privileges"]
    args += [f"--exclude-table={table}" for table in exclude_tables]
    result = subprocess.run([*args, "--dbname", conninfo], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise DbtoolsError(f"pg_dump failed: {result.stderr.strip().splitlines()[-1:]}")
    return normalise_dump(result.stdout)


def normalise_dump(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if not _NOISE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def diff(before: str, after: str, *, context: int = 2) -> str:
    """A unified diff of two normalised dumps ('' when they are equal)."""
    import difflib

    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            "before",
            "after",
            n=context,
        )
    )
