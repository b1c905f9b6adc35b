"""``doctor``: can dbtools measure on this database? One check function per question.

Each function in ``CHECKS`` reads what was gathered once (``DoctorContext``: the server's facts
and the open read-only session, for checks that need to ask more) and returns its checks. To add
a check, write a function and append it to ``CHECKS``; ``run_doctor`` and the renderers follow.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from dbtools.db.connection import describe, session
from dbtools.db.server import ServerInfo, inspect_server
from dbtools.errors import EXIT_OK, EXIT_PROBLEMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One thing dbtools needs, and whether this database has it."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class DoctorContext:
    """What every check may read: the server's facts and a read-only session."""

    conn: psycopg.Connection[Any]
    info: ServerInfo


CheckFunction = Callable[[DoctorContext], list[Check]]


def server(ctx: DoctorContext) -> list[Check]:
    """The server's major version (always ok: reading it proves the connection works)."""
    info = ctx.info
    return [Check("server", True, f"PostgreSQL {info.major} ({info.version_num})")]


def database(ctx: DoctorContext) -> list[Check]:
    """The database and role dbtools is connected as."""
    return [Check("database", True, f"{ctx.info.database} as role {ctx.info.role}")]


def pg_stat_statements_preloaded(ctx: DoctorContext) -> list[Check]:
    """pg_stat_statements must be in shared_preload_libraries (it counts nothing otherwise)."""
    return [Check("pg_stat_statements preloaded", ctx.info.pgss_preloaded,
                  "shared_preload_libraries")]  # fmt: skip


def pg_stat_statements_created(ctx: DoctorContext) -> list[Check]:
    """The extension must be created in this database (its view lives there)."""
    version = ctx.info.pgss_version
    return [Check("pg_stat_statements created", version is not None, version or "missing")]


def reads_all_statistics(ctx: DoctorContext) -> list[Check]:
    """Other roles' statements are only visible with pg_read_all_stats (or as a superuser)."""
    return [Check("reads all statistics", ctx.info.reads_all_stats,
                  "pg_read_all_stats or superuser")]  # fmt: skip


CHECKS: tuple[CheckFunction, ...] = (
    server,
    database,
    pg_stat_statements_preloaded,
    pg_stat_statements_created,
    reads_all_statistics,
)


@dataclass(frozen=True)
class DoctorResult:
    """Every check's outcome, and the facts they were judged on."""

    target: str  # where the DSN points, without its password
    info: ServerInfo
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def as_dict(self) -> dict[str, Any]:
        """The JSON payload (stable keys)."""
        return {
            "target": self.target,
            "ok": self.ok,
            "server": {**dataclasses.asdict(self.info), "major": self.info.major},
            "checks": [check.as_dict() for check in self.checks],
        }


def run_checks(ctx: DoctorContext, checks: Sequence[CheckFunction] = CHECKS) -> tuple[Check, ...]:
    """Every check's outcome, in the order of *checks*."""
    return tuple(found for check in checks for found in check(ctx))


def run_doctor(dsn: str, checks: Sequence[CheckFunction] = CHECKS) -> DoctorResult:
    """Connect to *dsn* (read-only) and run *checks*.

    Raises ``ConnectionFailed`` (exit code 2) when the server cannot be reached.
    """
    target = str(describe(dsn))
    with session(dsn) as conn:
        ctx = DoctorContext(conn, inspect_server(conn))
        found = run_checks(ctx, checks)
    log.info("doctor: %d of %d checks ok", sum(c.ok for c in found), len(found))
    return DoctorResult(target, ctx.info, found)


def render_checks(result: DoctorResult) -> str:
    """One line per check for people: ``ok    name: detail`` or ``FAIL  name: detail``."""
    return "\n".join(
        f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}" for check in result.checks
    )
