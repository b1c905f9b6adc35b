"""``doctor`` without a database: its checks from a server's facts, the renderings, and a check
added by appending a function (what later per-command checks will do)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbtools.db.server import ServerInfo
from dbtools.doctor import CHECKS, Check, DoctorContext, DoctorResult, render_checks, run_checks
from dbtools.output import dump_json
from tests.helpers import check_golden

MONITOR = ServerInfo(
    version_num=150014, database="app", role="dbtools_monitor", pgss_preloaded=True,
    pgss_version=None, pgss_schema=None, reads_all_stats=True, has_alembic_version=True,
)  # fmt: skip


def judge(info: ServerInfo, checks: Any = CHECKS) -> DoctorResult:
    # The built-in checks read only the facts; the session is for checks that ask more.
    context = DoctorContext(conn=None, info=info)  # type: ignore[arg-type]
    found = run_checks(context, checks)
    return DoctorResult("host db port 5432 database app user dbtools_monitor", info, found)


def test_a_missing_extension_fails_doctor_with_exit_code_1() -> None:
    result = judge(MONITOR)
    assert [(c.name, c.ok) for c in result.checks] == [
        ("server", True), ("database", True), ("pg_stat_statements preloaded", True),
        ("pg_stat_statements created", False), ("reads all statistics", True),
    ]  # fmt: skip
    assert (result.ok, result.exit_code) == (False, 1)


def test_everything_in_place_exits_0() -> None:
    result = judge(dataclasses.replace(MONITOR, pgss_version="1.10"))
    assert (result.ok, result.exit_code) == (True, 0)


def test_renderings_golden() -> None:
    result = judge(MONITOR)
    check_golden("doctor.txt", render_checks(result) + "\n")
    check_golden("doctor.json", dump_json("doctor", result.as_dict()))


def test_a_check_is_a_function_appended_to_the_list() -> None:
    def superuser_free(ctx: DoctorContext) -> list[Check]:
        return [Check("not a superuser", ctx.info.role != "postgres", ctx.info.role)]

    result = judge(dataclasses.replace(MONITOR, role="postgres"), (*CHECKS, superuser_free))
    assert result.checks[-1] == Check("not a superuser", False, "postgres")
    assert render_checks(result).splitlines()[-1] == "FAIL  not a superuser: postgres"
