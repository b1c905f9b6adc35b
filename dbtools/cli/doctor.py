"""``dbtools doctor``: can dbtools work against this database?"""

from __future__ import annotations

import click

from dbtools.cli.options import dsn_option
from dbtools.db.connection import resolve_dsn, session
from dbtools.db.server import inspect_server


@click.command("doctor")
@dsn_option
def doctor(dsn: str | None) -> None:
    """Check the connection, pg_stat_statements and the role's privileges.

    Exit code 0 when dbtools can measure here, 1 when something is missing.
    """
    with session(resolve_dsn(dsn)) as conn:
        info = inspect_server(conn)
    checks = [
        ("server", True, f"PostgreSQL {info.version_num // 10000} ({info.version_num})"),
        ("database", True, f"{info.database} as role {info.role}"),
        ("pg_stat_statements preloaded", info.pgss_preloaded, "shared_preload_libraries"),
        (
            "pg_stat_statements created",
            info.pgss_version is not None,
            info.pgss_version or "missing",
        ),
        ("reads all statistics", info.reads_all_stats, "pg_read_all_stats or superuser"),
    ]
    for name, ok, detail in checks:
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    if not all(ok for _, ok, _ in checks):
        click.get_current_context().exit(1)


COMMANDS = [doctor]
