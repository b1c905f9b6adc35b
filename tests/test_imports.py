"""Commands import what their work needs: SQLAlchemy, Alembic, matplotlib and sqlglot only when
it uses them. Each case runs ``dbtools`` in a child process and reads the modules it had loaded
when it exited (what ``python -X importtime`` would list)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dbtools.cli import COMMAND_MODULES, cli
from dbtools.schema import frozen
from dbtools.schema.manifest import head_revision, manifest_at
from tests.conftest import Database
from tests.helpers import REPO
from tests.snapshot_helpers import record_metrics, window

HEAVY = ("sqlalchemy", "alembic", "matplotlib", "sqlglot")
# Also reported: the driver, and PostgreSQL's scanner (loaded only to scrub a text with a literal
# or a comment).
REPORTED = {*HEAVY, "psycopg", "pglast"}

# Runs dbtools as `python -m dbtools` does, and writes the names of the loaded modules on exit.
WITH_MODULE_DUMP = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "dbtools"
from dbtools.cli import main
main()
"""


def loaded(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Run ``dbtools ARGS``; its exit code and the packages of ``REPORTED`` it loaded."""
    dump = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", WITH_MODULE_DUMP, str(dump), *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    names = {name.partition(".")[0] for name in json.loads(dump.read_text())}
    return done.returncode, names & REPORTED


def test_every_command_module_holds_the_commands_the_cli_maps_to_it() -> None:
    declared = {}
    for module in set(COMMAND_MODULES.values()):
        for command in __import__(module, fromlist=["COMMANDS"]).COMMANDS:
            declared[command.name] = module
    assert declared == COMMAND_MODULES


# What each command's help may load beyond click; a command not named here loads none of them.
HELP_LOADS: dict[str, set[str]] = {
    "": {"psycopg"},  # dbtools --help lists every command: their modules name psycopg's types
    "verify": set(),  # a deploy script's first call: not even the driver
}


@pytest.mark.parametrize("command", ["", *sorted(COMMAND_MODULES)], ids=lambda c: c or "dbtools")
def test_help_loads_none_of_the_heavy_libraries(tmp_path: Path, command: str) -> None:
    code, heavy = loaded(tmp_path, *([command] if command else []), "--help")
    assert code == 0
    assert heavy - {"psycopg"} == set()
    if command in HELP_LOADS:
        assert heavy == HELP_LOADS[command]


def test_the_cli_lists_every_mapped_command() -> None:
    assert set(COMMAND_MODULES) <= set(cli.list_commands(click.Context(cli)))


def test_verify_snapshot_and_doctor_load_only_what_their_work_needs(
    migrated_database: Database, tmp_path: Path
) -> None:
    db = migrated_database
    window(db, "before", 10)
    window(db, "after", 10, batch=10, pause=0.3)  # 3 queries in >= 0.3 s: under 50/s
    for label in ("before", "after"):
        record_metrics(db, label, requests=10, p95_ms=180, cache_hits=60, cache_misses=40)
    dsn = ("--dsn", db.dsn)
    windows = ("--baseline", "before", "--candidate", "after")
    assert loaded(tmp_path, "verify", *dsn, *windows) == (0, {"psycopg"})
    # --table names tables to parse each statement for: that work needs sqlglot.
    scoped = loaded(tmp_path, "verify", *dsn, *windows, "--table", "flight_offers")
    assert scoped == (0, {"psycopg", "sqlglot"})
    # A snapshot scrubs the texts new since the last (the metrics' rows), but pg_stat_statements
    # normalised them already: no literal, no comment, nothing the scanner is needed for.
    assert loaded(tmp_path, "snapshot", *dsn, "--label", "later") == (0, {"psycopg"})
    assert loaded(tmp_path, "doctor", *dsn) == (0, {"psycopg"})
    assert loaded(tmp_path, "collect", *dsn, "--once") == (0, {"psycopg"})


def test_the_record_of_dbtools_revisions_is_what_the_revision_files_say() -> None:
    from dbtools.schema.manifest import revision_record

    assert json.loads(frozen.RECORD.read_text()) == json.loads(json.dumps(revision_record())), (
        "the revisions changed: run .venv/bin/python -m dbtools.schema.manifest"
    )


def test_the_record_gives_what_alembic_gives() -> None:
    from dbtools.schema.manifest import _manifest_through_alembic
    from dbtools.schema.revisions import Migrations

    recorded = frozen.recorded_revisions()
    assert recorded is not None
    (head,) = Migrations().heads()
    assert head_revision() == head == recorded[-1].revision
    for entry in recorded:
        assert manifest_at(entry.revision) == _manifest_through_alembic(entry.revision, None)
    assert manifest_at("head") == _manifest_through_alembic("head", None)


def test_a_revision_changed_since_the_record_is_read_through_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for path in frozen.OWN_VERSIONS.glob("*.py"):
        (versions / path.name).write_text(path.read_text())
    (tmp_path / "alembic.ini").write_text(frozen.OWN_INI.read_text())
    monkeypatch.setattr(frozen, "OWN_INI", tmp_path / "alembic.ini")
    monkeypatch.setattr(frozen, "OWN_VERSIONS", versions)
    monkeypatch.chdir(tmp_path)
    assert frozen.recorded_revisions() is not None  # the same files: the record holds
    last = sorted(versions.glob("*.py"))[-1]
    last.write_text(last.read_text() + "\n# edited\n")
    assert frozen.recorded_revisions() is None
    assert frozen.recorded_revisions(REPO / "alembic.ini") is None  # another project's ini
