"""``doctor`` without a database: its checks judged from facts, the fixes they print, the
renderings, and a check added by appending a function."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbtools.commands.doctor import (
    CHECKS,
    Check,
    DoctorFacts,
    DoctorResult,
    TableAccess,
    TrackOverride,
    passed,
    render_checks,
    run_checks,
)
from dbtools.db.server import ServerInfo
from dbtools.output import dump_json
from dbtools.schema.manifest import manifest_at
from tests.helpers import check_golden

MONITOR = ServerInfo(
    version_num=150014, database="app", role="dbtools_monitor", pgss_preloaded=True,
    pgss_version="1.10", pgss_schema="public", reads_all_stats=True, has_alembic_version=True,
)  # fmt: skip
HEAD = manifest_at("head")
GRANTED = tuple(
    TableAccess(name, present=True, can_select=True, can_insert=name not in {
        "request_metrics", "app_metrics", "setting_changes"}, can_delete=name not in {
        "request_metrics", "app_metrics", "setting_changes"})
    for name in HEAD.monitoring_tables
)  # fmt: skip
READY = DoctorFacts(
    info=MONITOR, head="0003", revision="0003", manifest=HEAD, schema_usable=True,
    tables=GRANTED, preload_libraries="pg_stat_statements", track="top",
    track_source="configuration file",
)  # fmt: skip


def judge(facts: DoctorFacts, checks: Any = CHECKS) -> DoctorResult:
    return DoctorResult(
        "host db port 5432 database app user dbtools_monitor", facts.info, run_checks(facts, checks)
    )


def failing(result: DoctorResult) -> dict[str, str]:
    return {c.check: c.fix for c in result.checks if c.status == "fail"}


def test_everything_in_place_exits_0() -> None:
    result = judge(READY)
    assert failing(result) == {}
    assert (result.ok, result.exit_code) == (True, 0)
    assert {c.status for c in result.checks} == {"pass"}


def test_a_missing_extension_fails_what_measures_with_its_fix() -> None:
    result = judge(dataclasses.replace(READY, info=dataclasses.replace(MONITOR, pgss_version=None)))
    assert failing(result) == {"pg_stat_statements created": "CREATE EXTENSION pg_stat_statements;"}
    assert (result.ok, result.exit_code) == (False, 1)
    blocked = {c: bool(result.failing(c)) for c in ("snapshot", "verify", "report --live")}
    assert blocked == {"snapshot": True, "verify": False, "report --live": True}
    statuses = {c.check: c.status for c in result.checks}
    assert statuses["statistics readable"] == "skipped"  # it needs the extension


def test_not_preloaded_keeps_the_libraries_already_listed() -> None:
    info = dataclasses.replace(MONITOR, pgss_preloaded=False)
    result = judge(dataclasses.replace(READY, info=info, preload_libraries="auto_explain"))
    fix = failing(result)["pg_stat_statements preloaded"]
    assert fix == (
        "ALTER SYSTEM SET shared_preload_libraries = 'auto_explain, pg_stat_statements';\n"
        "then restart PostgreSQL (a reload is not enough)"
    )
    hidden = judge(dataclasses.replace(READY, info=info, preload_libraries=None))
    (check,) = [c for c in hidden.checks if c.check == "pg_stat_statements preloaded"]
    assert "hidden from this role" in check.message


def test_track_none_on_the_server_and_per_role() -> None:
    facts = dataclasses.replace(
        READY, track="none", track_source="configuration file",
        track_overrides=(TrackOverride("app", None), TrackOverride(None, "app")),
    )  # fmt: skip
    assert failing(judge(facts)) == {
        "pg_stat_statements.track": "ALTER SYSTEM SET pg_stat_statements.track = 'top';\n"
        "SELECT pg_reload_conf();\n"
        "ALTER ROLE app RESET pg_stat_statements.track;\n"
        "ALTER DATABASE app RESET pg_stat_statements.track;"
    }
    # The session's "none" from a database setting is fixed where it is set, not twice.
    from_database = dataclasses.replace(facts, track_source="database", track_overrides=())
    assert failing(judge(from_database)) == {}


def test_a_revision_the_migrations_do_not_have_blocks_every_command() -> None:
    result = judge(dataclasses.replace(READY, revision="0042", revision_unknown="0042"))
    assert failing(result) == {
        "database revision": "use the dbtools release whose migrations include revision 0042"
    }
    assert all(result.failing(command) for command in ("snapshot", "verify", "report"))


def test_never_migrated() -> None:
    info = dataclasses.replace(MONITOR, has_alembic_version=False)
    facts = dataclasses.replace(
        READY, info=info, revision=None, manifest=manifest_at(None), tables=(),
        schema_usable=False,
    )  # fmt: skip
    upgrade = "alembic upgrade head  # as the deploy role"
    assert failing(judge(facts)) == {
        "database revision": upgrade,
        "monitoring schema usable": upgrade,
    }


def test_renderings_golden() -> None:
    facts = dataclasses.replace(
        READY,
        info=dataclasses.replace(MONITOR, reads_all_stats=False),
        tables=tuple(dataclasses.replace(t, can_delete=False) for t in GRANTED),
        revision_denied="permission denied for table alembic_version",
        revision="0003",
    )
    result = judge(facts)
    check_golden("doctor.txt", render_checks(result) + "\n")
    check_golden("doctor.json", dump_json("doctor", result.as_dict()))


def test_a_check_is_a_function_appended_to_the_list() -> None:
    def superuser_free(facts: DoctorFacts) -> list[Check]:
        role = facts.info.role
        if role == "postgres":
            return [Check("not a superuser", "fail", role, role, fix="use a monitoring role",
                          commands=("verify",))]  # fmt: skip
        return [passed("not a superuser", role, role, ("verify",))]

    facts = dataclasses.replace(READY, info=dataclasses.replace(MONITOR, role="postgres"))
    result = judge(facts, (*CHECKS, superuser_free))
    assert result.checks[-1].status == "fail" and result.failing("verify") == [result.checks[-1]]
    assert result.failing("snapshot") == []
    text = render_checks(result).splitlines()
    at = text.index("  FAIL  not a superuser: postgres")
    assert text.index("verify: will fail (1 check)") < at
    assert text[at : at + 2] == [
        "  FAIL  not a superuser: postgres",
        "        fix: use a monitoring role",
    ]
