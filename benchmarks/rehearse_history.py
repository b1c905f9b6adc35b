"""Benchmark: `dbtools rehearse --keep-going` over a long generated history.

Generates a project (a stock env.py that reads only sqlalchemy.url, as other teams ship it) with
--revisions revisions in a temporary directory: tables, columns, indexes and their undoing, a
branch and its merge every 30 revisions, and every 24th revision's downgrade broken on purpose
(it forgets an index), so that the rehearsal fails there, recreates its database and goes on.
It rehearses the whole history in a sandbox twice, side by side: in dbtools' interpreter, and
through a runner in a project interpreter (``--python``, here the same interpreter), and writes,
to benchmarks/RESULTS-rehearse.md, the total time, the time per revision (median, 95th
percentile, slowest) for passing and failing revisions, the load average, and the machine and
date. Issue 26's bound: under 1 s per revision.

    .venv/bin/python -m benchmarks.rehearse_history [--revisions 120] [--pg-bin DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import describe_machine
from dbtools.safety.rehearse import Rehearsal, rehearse
from dbtools.schema.revisions import RunOptions

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


@dataclass(frozen=True)
class Run:
    """One rehearsal of the generated history, and how long it took."""

    label: str
    result: Rehearsal
    elapsed: float
    load: float  # the 1-minute load average when it ended


def report(runs: list[Run], count: int, command: str) -> str:
    first = runs[0].result
    rows: list[tuple[str, Callable[[Run], str]]] = [
        ("revisions rehearsed (not run)", lambda r: f"{len(r.result.steps)} ({len(r.result.not_run)})"),
        ("passed / failed (each failure followed by a recreated database)",
         lambda r: f"{sum(s.passed for s in r.result.steps)} / {len(r.result.failures)}"),
        ("failed (exactly the broken ones)", lambda r: ", ".join(s.revision for s in r.result.failures)),
        ("total, sandbox start and recreations included", lambda r: f"{r.elapsed:.1f} s"),
        ("per revision (that total / revisions)",
         lambda r: f"{r.elapsed / max(1, len(r.result.steps)):.2f} s"),
        ("per passing revision: median / p95 / slowest",
         lambda r: _seconds([s.seconds for s in r.result.steps if s.passed]) + " s"),
        ("per failing revision (without the recreation): median / p95 / slowest",
         lambda r: _seconds([s.seconds for s in r.result.steps if not s.passed]) + " s"),
        ("load average (1 min) at the end", lambda r: f"{r.load:.2f}"),
    ]  # fmt: skip
    header = "| what | " + " | ".join(run.label for run in runs) + " |"
    lines = [
        "# `dbtools rehearse --keep-going` over a long history",
        "",
        describe_machine(),
        f"{first.where}; a generated project of {count} revisions (stock env.py reading "
        f"sqlalchemy.url; a branch and its merge every {MERGE_EVERY} revisions; every "
        f"{BROKEN_EVERY}th revision's downgrade broken on purpose: it forgets an index).",
        "",
        f"Command: `{command}`",
        "",
        header,
        "|---|" + "---:|" * len(runs),
        *(
            "| " + what + " | " + " | ".join(cell(run) for run in runs) + " |"
            for what, cell in rows
        ),
    ]
    if len(runs) == 2:
        ratio = runs[1].elapsed / runs[0].elapsed
        lines += ["", f"{runs[1].label} / {runs[0].label}: {ratio:.2f}x the total time."]
    lines += [
        "",
        "A passing revision is three Alembic runs (upgrade, downgrade, upgrade: each runs the "
        "project's env.py, in a worker thread of an event loop), four `pg_dump --schema-only` "
        "and a version-table check after each run; the dumps dominate. After a failure the "
        "database is dropped, created and upgraded to where the history was, in one Alembic run "
        "per head. With `--python` every Alembic run is a JSON request to one runner process "
        "in that interpreter, started once.",
        "",
    ]
    return "\n".join(lines)


def _rehearse(ini: Path, pg_bin: str | None, label: str, run: RunOptions | None) -> Run:
    started = time.monotonic()
    result = rehearse(ini=ini, pg_bin=pg_bin, keep_going=True, run=run)
    return Run(label, result, time.monotonic() - started, os.getloadavg()[0])


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
        runs = [
            _rehearse(ini, args.pg_bin, "in dbtools' interpreter", None),
            _rehearse(ini, args.pg_bin, "--python (a runner process)",
                      RunOptions(python=sys.executable)),
        ]  # fmt: skip
    broken = {
        name for name, text in sources.items() if "DROP INDEX" not in text and "INDEX" in text
    }
    for run in runs:
        failed = {step.revision for step in run.result.failures}
        if failed != broken or run.result.not_run:
            raise SystemExit(
                f"{run.label}: expected exactly {sorted(broken)} to fail, got {sorted(failed)}"
            )
    command = "python -m benchmarks.rehearse_history --revisions " + str(args.revisions)
    if args.pg_bin:
        command += f" --pg-bin {args.pg_bin}"
    text = report(runs, args.revisions, command)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
