"""Benchmark: `dbtools snapshot` and `dbtools verify` against a plain `psql` dump of the same views.

With 5,000 distinct statements in pg_stat_statements and 2,000 indexes, on a throwaway embedded
PostgreSQL (or --pg-bin), measured side by side in one run:

* wall time of `dbtools snapshot` (a new process, as a deploy script runs it) and of the same
  snapshot called in-process (no interpreter start-up), and of the first snapshot, which reads,
  scrubs and stores every statement's text (later ones only the texts of new statements);
* wall time of `psql` copying the same views (pg_stat_statements, _info, pg_stat_database,
  pg_stat_user_tables/_indexes, pg_statio_user_tables/_indexes, pg_index, pg_class.reloptions,
  alembic_version) to /dev/null: the floor any collector pays to read them;
* wall time of `dbtools verify` over two windows (four such snapshots);
* the bytes one snapshot adds to the monitoring schema (its tables, indexes and TOAST), over
  --runs snapshots of an unchanged workload;
* the statements dbtools itself sends, counted in pg_stat_statements (their text carries the
  marker comment).

    .venv/bin/python -m benchmarks.snapshot_verify [--runs 7] [--pg-bin DIR] [--output FILE]

Medians of --runs runs; results written to benchmarks/RESULTS-snapshot-verify.md by default.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks.machine import machine_lines
from dbtools.db.connection import SQL_MARKER, split_password
from dbtools.sandbox import Sandbox, client_binary
from dbtools.schema.revisions import upgrade
from dbtools.stats import snapshots
from dbtools.verify import verify

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLES = 400  # x (primary key + 4 secondary indexes) = 2,000 indexes
STATEMENTS = 5000
COLUMNS = ("v1", "v2", "v3", "v4")

PSQL_DUMP = """
\\copy (SELECT * FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())) TO '/dev/null'
\\copy (SELECT * FROM pg_stat_statements_info) TO '/dev/null'
\\copy (SELECT * FROM pg_stat_database WHERE datname = current_database()) TO '/dev/null'
\\copy (SELECT * FROM pg_stat_user_tables JOIN pg_statio_user_tables USING (relid) JOIN pg_class c ON c.oid = relid) TO '/dev/null'
\\copy (SELECT * FROM pg_stat_user_indexes JOIN pg_statio_user_indexes USING (indexrelid) JOIN pg_index i USING (indexrelid)) TO '/dev/null'
\\copy (SELECT * FROM alembic_version) TO '/dev/null'
"""


def build(dsn: str) -> None:
    """Migrate, then add the tables, indexes and distinct statements."""
    upgrade(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TABLES):
            conn.execute(
                f"CREATE TABLE bench_{i} (id int PRIMARY KEY, v1 int, v2 int, v3 int, v4 int)"
            )
            for column in COLUMNS:
                conn.execute(f"CREATE INDEX ON bench_{i} ({column})")
        subsets = [
            c for n in range(1, len(COLUMNS) + 1) for c in itertools.combinations(COLUMNS, n)
        ]
        shapes = itertools.product(range(TABLES), subsets)
        for i, columns in itertools.islice(shapes, STATEMENTS):
            conn.execute(f"SELECT {', '.join(columns)} FROM bench_{i} WHERE id = %s", (1,))
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%%FROM bench_%%'"
        ).fetchone()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_stat_user_indexes WHERE relname LIKE 'bench_%%'"
        ).fetchone()
    assert count == (STATEMENTS,), count
    assert indexes == (TABLES * 5,), indexes


def timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def dbtools_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dbtools", *args], check=True, cwd=REPO,
                   capture_output=True)  # fmt: skip


def marked_calls(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
            "WHERE strpos(query, %s) > 0 AND toplevel",
            (SQL_MARKER,),
        ).fetchone()
    return int(row[0]) if row else 0


MONITORING_BYTES_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'perf_monitoring' AND c.relkind = 'r'
"""


def monitoring_bytes(dsn: str) -> int:
    """The size of the monitoring tables, with their indexes and TOAST."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute(MONITORING_BYTES_SQL).fetchone()
    return int(row[0]) if row else 0


def machine() -> list[str]:
    return machine_lines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pg-bin", default=os.environ.get("DBTOOLS_PG_BIN"))
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-snapshot-verify.md")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="dbtools-bench-"))
    sandbox = Sandbox(directory, pg_bin=args.pg_bin)
    try:
        sandbox.start()
        admin = sandbox.dsn()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = sandbox.dsn("bench")
        print("building 5,000 statements and 2,000 indexes…", file=sys.stderr)
        build(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        labels = (f"run{i}" for i in itertools.count())

        # Statements dbtools sends: one snapshot, then one verify of two windows (a baseline
        # and a later candidate: verify refuses one window compared with itself).
        started = time.perf_counter()
        snapshots.snapshot(dsn, "first")  # reads, scrubs and stores every text
        first_snapshot = time.perf_counter() - started
        before = marked_calls(dsn)
        snapshots.snapshot(dsn, "count:start")
        per_snapshot = marked_calls(dsn) - before
        snapshots.snapshot(dsn, "count:end", requests=1)
        snapshots.snapshot(dsn, "later:start")
        snapshots.snapshot(dsn, "later:end", requests=1)
        before = marked_calls(dsn)
        verify(dsn, "count", "later")
        per_verify = marked_calls(dsn) - before
        # Bytes per snapshot: the monitoring tables' growth over --runs snapshots.
        bytes_before = monitoring_bytes(dsn)
        for _ in range(args.runs):
            snapshots.snapshot(dsn, next(labels))
        bytes_per_snapshot = (monitoring_bytes(dsn) - bytes_before) / args.runs

        psql = str(client_binary("psql"))
        conninfo, env = split_password(dsn)
        runs = args.runs
        results = {
            "dbtools snapshot (CLI process)": timed(
                lambda: dbtools_cli("snapshot", "--dsn", dsn, "--label", next(labels)), runs
            ),
            "snapshots.snapshot() in-process": timed(
                lambda: snapshots.snapshot(dsn, next(labels)), runs
            ),
            "psql dump of the same views": timed(
                lambda: subprocess.run(
                    [psql, "-X", "-q", "-d", conninfo],
                    input=PSQL_DUMP,
                    text=True,
                    env=env,
                    check=True,
                    capture_output=True,
                ),
                runs,
            ),
            "dbtools verify (CLI process)": timed(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "dbtools",
                        "verify",
                        "--dsn",
                        dsn,
                        "--baseline",
                        "count",
                        "--candidate",
                        "later",
                        "--format",
                        "json",
                    ],
                    cwd=REPO,
                    capture_output=True,
                    check=False,
                ),
                runs,
            ),
            "verify() in-process": timed(lambda: verify(dsn, "count", "later"), runs),
            "python -m dbtools --version (start-up)": timed(lambda: dbtools_cli("--version"), runs),
        }
        with psycopg.connect(dsn, autocommit=True) as conn:
            stored = conn.execute(
                "SELECT statements FROM (SELECT snapshot_id, count(*) AS statements FROM "
                "perf_monitoring.statement_stats GROUP BY 1) s ORDER BY snapshot_id DESC LIMIT 1"
            ).fetchone()
    finally:
        sandbox.destroy()

    psql_median = statistics.median(results["psql dump of the same views"])
    rows = [
        f"| {name} | {statistics.median(times) * 1000:.0f} | {min(times) * 1000:.0f} | "
        f"{max(times) * 1000:.0f} | {statistics.median(times) / psql_median:.1f}x |"
        for name, times in results.items()
    ]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# Benchmark: snapshot and verify",
        "",
        f"Measured {today} by `python -m benchmarks.snapshot_verify --runs {runs}` on PostgreSQL "
        f"{version[0] if version else '?'} (sandbox), one run, side by side.",
        "",
        *(f"- {line}" for line in machine()),
        "",
        f"Database: {STATEMENTS:,} distinct statements in pg_stat_statements "
        f"({stored[0] if stored else '?'} rows stored per snapshot), {TABLES} tables, "
        f"{TABLES * 5:,} indexes, at alembic head.",
        "",
        "| what | median ms | min ms | max ms | vs psql |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Bytes one snapshot adds to the monitoring tables (with indexes and TOAST, over "
        f"{runs} snapshots): {bytes_per_snapshot:,.0f}.",
        "",
        f"The first snapshot, which reads, scrubs and stores the {STATEMENTS:,} statements' texts "
        f"(once; later snapshots read only the texts of new statements): "
        f"{first_snapshot * 1000:.0f} ms in-process.",
        "",
        "Statements dbtools sent (counted in pg_stat_statements by their marker comment):",
        "",
        f"- one snapshot: {per_snapshot} statements (server facts, alembic revision, the texts "
        "not stored yet, and one INSERT … SELECT that reads and stores everything else);",
        f"- one verify of two windows: {per_verify} statements.",
        "",
        "The CLI figures include the Python interpreter start-up (last row) and importing "
        "SQLAlchemy and Alembic when the command runs (the revisions, for the head revision and "
        "verify's manifest). A snapshot also writes what it reads (one row per statement, "
        "table and index, with their foreign-key checks) where psql only reads. verify's "
        "in-process time is mostly loading four snapshots' rows and computing deltas in Python.",
        "",
    ])  # fmt: skip
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
