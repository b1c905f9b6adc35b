"""``dbtools downgrade-plan``: the head → base plan of the real migrations (golden file), its
order, locks and data-loss warnings, a live plan's sizes, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbtools import build_plan
from dbtools.safety.classify import DbObject, SchemaContext, classify
from dbtools.safety.locks import Blocking, LockLevel
from dbtools.safety.plan import DowngradePlan
from dbtools.safety.render import plan_markdown
from dbtools.schema.manifest import head_revision, manifest_at
from dbtools.schema.monitoring import MONITORING_SCHEMA
from dbtools.schema.revisions import downgrade, offline_sql
from dbtools.sqltext.split import read_offline_sql
from tests.conftest import Database
from tests.helpers import REPO, assert_usage_error, check_golden, run_cli

GOLDEN = "downgrade_plan_head_to_base.md"
BROKEN_INI = REPO / "tests" / "fixtures" / "broken_migrations" / "alembic.ini"
OFFLINE = {"DATABASE_URL": ""}


@pytest.fixture(scope="module")
def head_to_base() -> DowngradePlan:
    return build_plan("base", "head")


def test_head_to_base_plan_matches_the_golden_file(head_to_base: DowngradePlan) -> None:
    check_golden(GOLDEN, plan_markdown(head_to_base))


def _created_in_order() -> list[DbObject]:
    context, created = SchemaContext(), []
    for statement in read_offline_sql(offline_sql("base:head")).statements:
        found = classify(statement.sql, context)
        context.learn(found)
        created += [
            obj
            for obj in found.created
            # CREATE OR REPLACE of a function a revision below created creates nothing (a table
            # a revision rebuilds, 0008's sample tables, is created and removed again)
            if obj.name != "public.alembic_version"
            and not (obj.kind == "function" and obj in created)
        ]
    return created


def test_plan_removes_every_object_created_in_reverse_order(head_to_base: DowngradePlan) -> None:
    created = _created_in_order()
    removed = [r for revision in head_to_base.revisions for r in revision.removes]
    assert sorted(str(r.object) for r in removed) == sorted(str(obj) for obj in created)
    assert all(not revision.not_removed for revision in head_to_base.revisions)
    # Objects dropped by their own statement go in exactly the reverse order of creation (the
    # columns one revision adds, in the order its downgrade writes); the rest (indexes) go with
    # their table.
    explicit = [r.object.name for r in removed if r.how == "dropped"]
    columns = {obj.name for obj in created if obj.kind == "column"}
    assert [name for name in explicit if name not in columns] == [
        obj.name for obj in reversed(created) if obj.name in explicit and obj.name not in columns
    ]
    implicit = {r.object.name: r.how for r in removed if r.how != "dropped"}
    assert implicit and all(how.startswith("with table ") for how in implicit.values())
    assert {index.qualified_name for index in manifest_at("head").batch_indexes} <= set(explicit)
    # 14 tables, 10 indexes, a schema, a function, the six columns 0004 adds, 0005's 22
    # columns, 5 indexes (its keys are constraints) and function, 0006's two columns (the
    # request metrics' variant and queries) and 0007's one (their latency histogram), 0008's
    # four sample tables rebuilt partitioned (with 4 indexes; their keys are constraints), its
    # three functions, and its 4 entries tables (keys: constraints), 8 trigger functions and 8
    # triggers
    assert len(created) == len(removed) == 94
    assert len(columns) == 31


def test_plan_lock_levels_and_transactions(head_to_base: DowngradePlan) -> None:
    steps = [s for s in head_to_base.steps if s.kind == "statement"]
    by_action: dict[str, set[tuple[object, ...]]] = {}
    for step in steps:
        key = step.action.split(" (")[0]
        by_action.setdefault(key, set()).add((step.lock, step.blocks, step.in_transaction))
    assert by_action["DROP TABLE"] == {
        (LockLevel.ACCESS_EXCLUSIVE, Blocking.READS_AND_WRITES, True)
    }
    assert by_action["DROP INDEX CONCURRENTLY"] == {
        (LockLevel.SHARE_UPDATE_EXCLUSIVE, Blocking.NEITHER, False)
    }
    # 0003's storage parameters; 0008's grants copied to the rebuilt tables (no lock of note)
    assert by_action["DO block"] == {
        (LockLevel.SHARE_UPDATE_EXCLUSIVE, Blocking.NEITHER, True),
        (None, Blocking.NEITHER, True),
    }
    assert by_action["DELETE"] == {(LockLevel.ROW_EXCLUSIVE, Blocking.NEITHER, True)}
    assert all(step.rerunnable for step in head_to_base.steps)
    assert not any(step.warning for step in head_to_base.steps)
    assert [r.revision for r in head_to_base.revisions] == [
        "0008", "0007", "0006", "0005", "0004", "0003", "0002", "0001"
    ]  # fmt: skip
    assert head_to_base.from_revision == head_revision() and head_to_base.to_revision == "base"


def test_data_loss_warnings_name_every_monitoring_table_after_its_export(
    head_to_base: DowngradePlan,
) -> None:
    monitoring = {f"{MONITORING_SCHEMA}.{table}" for table in manifest_at("head").monitoring_tables}
    loss_warnings = [w for w in head_to_base.warnings if w.startswith("data loss:")]
    for table in monitoring:
        assert any(f" of {table};" in warning for warning in loss_warnings), table
    exports = {
        step.relations[0].name: step.number
        for step in head_to_base.steps
        if step.kind == "export"
        and step.sql.startswith(f"\\copy (SELECT * FROM {step.relations[0].name})")
    }
    drops = {
        loss.table: step.number
        for step in head_to_base.steps
        if step.action == "DROP TABLE"
        for loss in step.data_loss
    }
    assert monitoring <= set(drops)
    assert all(exports[table] < drops[table] for table in drops)
    assert set(head_to_base.data_loss_tables) == set(drops)


def test_plan_from_a_middle_revision(head_to_base: DowngradePlan) -> None:
    plan = build_plan("-1", "0002")
    assert [r.revision for r in plan.revisions] == ["0002"]
    assert plan.to_revision == "0001"
    assert build_plan("0003", "0003").revisions == ()


def test_broken_migration_plan_warns_about_the_forgotten_index() -> None:
    plan = build_plan("base", ini=BROKEN_INI)
    assert (
        "the downgrade of b002 does not remove index public.ix_widgets_name, which its upgrade "
        "creates"
    ) in plan.warnings


def test_live_plan_reads_the_revision_sizes_and_rows(migrated_database: Database) -> None:
    rows = 500
    migrated_database.execute(
        f"""INSERT INTO {MONITORING_SCHEMA}.request_metrics (bucket_start, bucket_seconds, operation)
        SELECT now() - make_interval(mins => g), 60, 'search' FROM generate_series(1, {rows}) g"""
    )
    migrated_database.execute(f"ANALYZE {MONITORING_SCHEMA}.request_metrics")
    downgrade(migrated_database.dsn, "0002")
    plan = build_plan("0001", dsn=migrated_database.dsn)
    assert plan.from_source == "current" and plan.from_revision == "0002"
    assert plan.live is not None and plan.live.current_revision == "0002"
    export = next(
        s for s in plan.steps if s.kind == "export" and "request_metrics" in s.relations[0].name
    )
    relation = export.relations[0]
    assert relation.exists and relation.estimated_rows == rows
    assert relation.total_bytes is not None and relation.total_bytes > 8192
    assert export.estimated_seconds is not None and export.estimated_seconds > 0
    assert plan.estimated_seconds is not None


def test_live_plan_warns_when_the_database_is_elsewhere(migrated_database: Database) -> None:
    downgrade(migrated_database.dsn, "0002")
    plan = build_plan("0001", "head", dsn=migrated_database.dsn)
    assert plan.warnings[0].startswith(
        f"the database is at revision 0002, the plan starts at {head_revision()}"
    )
    missing = [r for s in plan.steps for r in s.relations if r.exists is False]
    batch_indexes = {index.qualified_name for index in manifest_at("head").batch_indexes}
    assert batch_indexes <= {r.name for r in missing}


# -- the command -------------------------------------------------------------------------------------


def test_command_writes_markdown_atomically(tmp_path: Path) -> None:
    target = tmp_path / "plan.md"
    result = run_cli("downgrade-plan", "--to", "base", "--offline", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{target}\n"
    assert result.stderr.startswith(f"Downgrade {head_revision()} → base: ")
    check_golden(GOLDEN, target.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["plan.md"]  # no temporary file left


def test_command_default_path_is_timestamped_in_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("downgrade-plan", "--to", "0002", env=OFFLINE)
    assert result.exit_code == 0, result.output
    written = list((tmp_path / "reports").iterdir())
    assert len(written) == 1
    assert written[0].name.startswith(f"downgrade-plan-{head_revision()}-to-0002-")
    assert written[0].suffix == ".md"


def test_command_json_on_stdout() -> None:
    result = run_cli(
        "downgrade-plan", "--to", "0002", "--format", "json", "--output", "-", env=OFFLINE
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1 and payload["kind"] == "downgrade-plan"
    assert [r["revision"] for r in payload["revisions"]] == [
        "0008", "0007", "0006", "0005", "0004", "0003"
    ]  # fmt: skip
    assert [s["action"] for s in payload["revisions"][-1]["steps"]][-4:-1] == [
        "DROP INDEX CONCURRENTLY"
    ] * 3
    assert payload["data_loss_tables"] == [
        f"{MONITORING_SCHEMA}.{table}"
        # 0008's downgrade drops the entries tables and the partitioned sample tables (their rows copied into the
        # unpartitioned ones first: the plan cannot tell); 0007's and 0006's drop the request
        # metrics' histogram, variant and queries; 0005's the target columns (and tombstones)
        # of every sample table and the metrics tables; 0004's and 0003's, what they added
        for table in ("database_stats_entries", "index_stats_entries", "table_stats_entries",
                      "statement_stats_entries", "database_stats", "index_stats", "table_stats",
                      "statement_stats", "request_metrics", "app_metrics", "statement_texts", "snapshots",
                      "setting_changes")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--to", "0010"],
            "Error: --to: unknown revision '0010' (known: base, 0001, 0002, 0003, 0004, 0005, "
            "0006, 0007, 0008, head)",
        ),
        (["--from", "0001", "--to", "0002"], "Error: --to 0002 is not below --from 0001"),
        (["--from", "nope", "--to", "base"], "Error: --from: unknown revision 'nope'"),
        (["--to", "-9"], f"Error: --to -9: fewer than 9 revisions below {head_revision()}"),
        (
            ["--from", "current", "--to", "base", "--offline"],
            "Error: --from current needs a connection",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("downgrade-plan", *args, env=OFFLINE)
    assert assert_usage_error(result, message).startswith(message)
    assert list(tmp_path.iterdir()) == []
