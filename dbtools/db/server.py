"""What the connected server is and whether it has what dbtools needs: the one place that reads
the server's version (``inspect_server``) and names its major (``major_of``, ``version_text``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.catalog import ALEMBIC_TABLE_EXISTS
from dbtools.db.connection import SQL_MARKER
from dbtools.errors import PrerequisiteMissing

SERVER_INFO_SQL = f"""
SELECT {SQL_MARKER} current_setting('server_version_num')::int AS version_num,
       current_database() AS database,
       current_user AS role,
       -- shared_preload_libraries is hidden from roles without pg_read_all_settings; the
       -- module's settings are listed in pg_settings (placeholders are not) once it is loaded.
       coalesce('pg_stat_statements' = ANY (string_to_array(replace(
           (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ' ', ''),
           ',')), false)
       OR EXISTS (SELECT FROM pg_settings WHERE name = 'pg_stat_statements.max') AS pgss_preloaded,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS pgss_version,
       (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_stat_statements') AS pgss_schema,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS reads_all_stats,
       {ALEMBIC_TABLE_EXISTS} AS has_alembic_version,
       has_table_privilege('pg_catalog.pg_db_role_setting', 'SELECT') AS reads_role_settings
"""


def major_of(version_num: int) -> int:
    """The major version of a ``server_version_num`` (``150014`` → ``15``)."""
    return version_num // 10000


def version_text(version_num: int) -> str:
    """A ``server_version_num`` as people write it (``150014`` → ``15.14``)."""
    return f"{major_of(version_num)}.{version_num % 10000}"


@dataclass(frozen=True)
class ServerInfo:
    """The facts about a server that decide what dbtools can read there."""

    version_num: int
    database: str
    role: str
    pgss_preloaded: bool
    pgss_version: str | None
    pgss_schema: str | None
    reads_all_stats: bool
    has_alembic_version: bool
    # pg_db_role_setting (per-role and per-database settings) is readable by PUBLIC unless a
    # DBA revoked it.
    reads_role_settings: bool = True

    @property
    def major(self) -> int:
        return major_of(self.version_num)

    @property
    def version(self) -> str:
        return version_text(self.version_num)


def inspect_server(conn: psycopg.Connection[Any]) -> ServerInfo:
    """Read the server's version, the extension's state and the role's reach in one query."""
    with conn.cursor(row_factory=class_row(ServerInfo)) as cur:
        info = cur.execute(SERVER_INFO_SQL).fetchone()
    assert info is not None
    return info


def require_pg_stat_statements(info: ServerInfo) -> None:
    """Raise ``PrerequisiteMissing`` unless pg_stat_statements is preloaded and created."""
    if not info.pgss_preloaded:
        raise PrerequisiteMissing(
            "pg_stat_statements is not in shared_preload_libraries; add it and restart the server"
        )
    if info.pgss_version is None:
        raise PrerequisiteMissing(
            f"the pg_stat_statements extension is not created in database {info.database}; "
            "run: CREATE EXTENSION pg_stat_statements"
        )
