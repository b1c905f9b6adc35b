"""Benchmark: `dbtools rehearse --keep-going` over a long generated history.

Generates a project (a stock env.py that reads only sqlalchemy.url, as other teams ship it) with
--revisions revisions in a temporary directory: tables, columns, indexes and their undoing, a
branch and its merge every 30 revisions, and every 24th revision's downgrade broken on purpose
(it forgets an index), so that the rehearsal fails there, recreates its database and goes on.
It rehearses the whole history in a sandbox and writes, to benchmarks/RESULTS-rehearse.md, the
total time, the time per revision (median, 95th percentile, slowest) for passing and failing
revisions, and the machine and date.

    .venv/bin/python -m benchmarks.rehearse_history [--revisions 120] [--pg-bin DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.machine import describe_machine
from dbtools.safety.rehearse import Rehearsal, rehearse

RESULTS = Path(__file__).with_name("RESULTS-rehearse.md")
BROKEN_EVERY = 24
MERGE_EVERY = 30

ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"""

REVISION = """
from alembic import op

revision = {revision!r}
down_revision = {down!r}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
"""


def _body(step: int) -> tuple[list[str], list[str]]:
    """The upgrade and downgrade statements of the *step*-th revision of the main line: a cycle
    of four (create a table, add a column, index it, comment on it)."""
    table = f"t{step // 4 * 4:04d}"
    kind = step % 4
    if kind == 0:
        return (
            [f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL)"],
            [f"DROP TABLE {table}"],
        )
    if kind == 1:
        return (
            [f"ALTER TABLE {table} ADD COLUMN note text"],
            [f"ALTER TABLE {table} DROP COLUMN note"],
        )
    if kind == 2:
        index = f"ix_{table}_name"
        broken = step % BROKEN_EVERY == 2  # its downgrade forgets the index
        return [f"CREATE INDEX {index} ON {table} (name)"], [] if broken else [
            f"DROP INDEX {index}"
        ]
    return (
        [f"COMMENT ON TABLE {table} IS 'revision {step}'"],
        [f"COMMENT ON TABLE {table} IS NULL"],
    )


def generate(directory: Path, count: int) -> Path:
    """Write a project of *count* revisions under *directory*; return its alembic.ini."""
    versions = directory / "migrations" / "versions"
    versions.mkdir(parents=True)
    (directory / "migrations" / "env.py").write_text(ENV_PY)
    ini = directory / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = migrations\nsqlalchemy.url = driver://placeholder\n"
    )
    previous: str | tuple[str, ...] | None = None
    number = step = 0
    while number < count:
        if number and number % MERGE_EVERY == 0 and number + 3 <= count:
            # a branch point: one revision on each branch, then their merge
            heads = []
            for side in ("a", "b"):
                table = f"branch_{number:04d}_{side}"
                heads.append(f"r{number:04d}{side}")
                _write(versions, heads[-1], previous, [f"CREATE TABLE {table} (id int)"],
                       [f"DROP TABLE {table}"])  # fmt: skip
                number += 1
            previous = f"r{number:04d}"
            _write(versions, previous, tuple(heads), [], [])
            number += 1
            continue
        name = f"r{number:04d}"
        _write(versions, name, previous, *_body(step))
        previous = name
        number += 1
        step += 1
    return ini


def _write(
    versions: Path,
    name: str,
    down: str | tuple[str, ...] | None,
    upgrade: list[str],
    downgrade: list[str],
) -> None:
    def body(statements: list[str]) -> str:
        lines = [f"op.execute({statement!r})" for statement in statements] or ["pass"]
        return textwrap.indent("\n".join(lines), "    ")

    (versions / f"{name}.py").write_text(
        REVISION.format(revision=name, down=down, upgrade=body(upgrade), downgrade=body(downgrade))
    )


def _seconds(values: list[float]) -> str:
    if not values:
        return "–"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.2f} / {p95:.2f} / {ordered[-1]:.2f}"


def report(result: Rehearsal, count: int, elapsed: float, command: str) -> str:
    passed = [s.seconds for s in result.steps if s.passed]
    failed = [s.seconds for s in result.steps if not s.passed]
    return "\n".join(
        [
            "# `dbtools rehearse --keep-going` over a long history",
            "",
            describe_machine(),
            f"{result.where}; a generated project of {count} revisions (stock env.py reading "
            f"sqlalchemy.url; a branch and its merge every {MERGE_EVERY} revisions; every "
            f"{BROKEN_EVERY}th revision's downgrade broken on purpose: it forgets an index).",
            "",
            f"Command: `{command}`",
            "",
            "| what | figure |",
            "|---|---:|",
            f"| revisions rehearsed (not run) | {len(result.steps)} ({len(result.not_run)}) |",
            f"| passed / failed (each failure followed by a recreated database) | "
            f"{len(passed)} / {len(failed)} |",
            f"| failed (exactly the broken ones) | {', '.join(s.revision for s in result.failures)} |",
            f"| total, sandbox start and recreations included | {elapsed:.1f} s |",
            f"| per revision (that total / revisions) | {elapsed / max(1, len(result.steps)):.2f} s |",
            f"| per passing revision: median / p95 / slowest | {_seconds(passed)} s |",
            f"| per failing revision (without the recreation): median / p95 / slowest | "
            f"{_seconds(failed)} s |",
            "",
            "A passing revision is three Alembic runs (upgrade, downgrade, upgrade: each runs the "
            "project's env.py), four `pg_dump --schema-only` and a version-table check after "
            "each run; the dumps dominate. After a failure the database is dropped, created and "
            "upgraded to where the history was, in one Alembic run per head.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=120)
    parser.add_argument("--pg-bin", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbtools-history-") as scratch:
        ini = generate(Path(scratch), args.revisions)
        sources = {
            p.stem: p.read_text() for p in (ini.parent / "migrations" / "versions").glob("*.py")
        }
        started = time.monotonic()
        result = rehearse(ini=ini, pg_bin=args.pg_bin, keep_going=True)
        elapsed = time.monotonic() - started
    broken = {
        name for name, text in sources.items() if "DROP INDEX" not in text and "INDEX" in text
    }
    failed = {step.revision for step in result.failures}
    if failed != broken or result.not_run:
        raise SystemExit(f"expected exactly {sorted(broken)} to fail, got {sorted(failed)}")
    command = "python -m benchmarks.rehearse_history --revisions " + str(args.revisions)
    if args.pg_bin:
        command += f" --pg-bin {args.pg_bin}"
    text = report(result, args.revisions, elapsed, command)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
