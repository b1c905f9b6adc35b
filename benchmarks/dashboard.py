"""Benchmark: the Grafana dashboard's panels over 14 days of samples of 20 targets.

On a throwaway PostgreSQL (the embedded 18, or --pg-bin) at alembic head: one real sample, then
its header copied as a sample a minute for 14 days for each of 20 targets (403,200 samples, as
`dbtools collect --retention 14d` keeps them), ANALYZEd. Each panel drawn from samples, and the
target variable's query, run as Grafana sends them: one target over the last 6 hours, a day and
14 days, and every target over a day. Wall time of each query (client side) and whether its plan
reads the samples through an index.

    .venv/bin/python -m benchmarks.dashboard [--runs 7] [--pg-bin DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.machine import machine_lines
from dbtools.report.dashboard import TARGETS_SQL, panels
from dbtools.sandbox import Sandbox
from dbtools.schema.revisions import upgrade
from dbtools.store import snapshots

HERE = Path(__file__).resolve().parent
TARGETS = 20
DAYS = 14
STEP_PANELS = (
    "Database query rate", "Queries per request", "Index hit ratio", "Buffer cache hit ratio",
)  # fmt: skip
RANGES = {"6 hours": "6 hours", "1 day": "1 day", "14 days": "14 days"}


def fill(conn: psycopg.Connection[Any]) -> int:
    """A sample a minute for DAYS days per target, copied from the real sample ``seed``."""
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "'perf_monitoring' AND table_name = 'snapshots' AND column_name NOT IN ('id', 'label') "
            "ORDER BY ordinal_position"
        )
    ]
    known = {
        "target": "'target_' || lpad(t::text, 2, '0')",
        "taken_at": "now() - g * interval '1 minute'",
        "interval_seconds": "60",
        "queries": f"({DAYS * 1440} - g) * 120",
        "shared_blks_hit": f"({DAYS * 1440} - g) * 900",
        "shared_blks_read": f"({DAYS * 1440} - g) * 100",
        "idx_blks_hit": f"({DAYS * 1440} - g) * 300",
        "idx_blks_read": f"({DAYS * 1440} - g) * 100",
        "requests": "60",
    }
    values = ", ".join(known.get(name, f"s.{name}") for name in columns)
    conn.execute(
        f"INSERT INTO perf_monitoring.snapshots ({', '.join(columns)}) SELECT {values} "
        f"FROM perf_monitoring.snapshots s, generate_series(1, {TARGETS}) t, "
        f"generate_series(0, {DAYS * 1440 - 1}) g WHERE s.label = 'seed'"
    )
    conn.execute("ANALYZE perf_monitoring.snapshots")
    row = conn.execute("SELECT count(*) FROM perf_monitoring.snapshots").fetchone()
    return int(row[0]) if row else 0


def as_sent(sql: str, targets: list[str], span: str) -> str:
    quoted = ", ".join(f"'{t}'" for t in targets)
    ranged = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        rf"\1 BETWEEN now() - interval '{span}' AND now()",
        sql,
    )
    return ranged.replace("$target", quoted)


def uses_index(conn: psycopg.Connection[Any], sql: str) -> bool:
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()
    assert plan is not None
    return "Seq Scan" not in json.dumps(plan[0])


def timed(conn: psycopg.Connection[Any], sql: str, runs: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = len(conn.execute(sql).fetchall())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pg-bin", default=os.environ.get("DBTOOLS_PG_BIN"))
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-dashboard.md")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    directory = Path(tempfile.mkdtemp(prefix="dbtools-bench-dashboard-"))
    with Sandbox(directory, pg_bin=args.pg_bin) as sandbox:
        dsn = sandbox.dsn()
        upgrade(dsn)
        snapshots.snapshot(dsn, "seed")
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            samples = fill(conn)
            found = {p.title: p for p in panels()}
            lines = [
                "# Benchmark: the dashboard over 14 days of samples",
                "",
                f"Measured {started:%Y-%m-%d %H:%M} UTC by `python -m benchmarks.dashboard "
                f"--runs {args.runs}` on PostgreSQL {version} (sandbox): {samples:,} samples "
                f"({TARGETS} targets x a sample a minute for {DAYS} days, and one real sample). "
                "Median ms of each query as Grafana sends it; *index*: its plan reads the "
                "samples through an index (no sequential scan).",
                "",
                *(f"- {line}" for line in machine_lines()),
                "",
                "| query | targets | range | points | median ms | index |",
                "|---|---|---|---:|---:|---|",
            ]
            ms, rows = timed(conn, TARGETS_SQL, args.runs)
            lines.append(
                f"| target variable | all | - | {rows} | {ms:.1f} | "
                f"{'yes' if uses_index(conn, TARGETS_SQL) else 'no'} |"
            )
            cases = [(["target_07"], span) for span in RANGES.values()]
            cases.append(([f"target_{i:02d}" for i in range(1, TARGETS + 1)], "1 day"))
            for title in STEP_PANELS:
                for targets, span in cases:
                    sql = as_sent(found[title].sql, targets, span)
                    ms, rows = timed(conn, sql, args.runs)
                    which = targets[0] if len(targets) == 1 else f"all {len(targets)}"
                    lines.append(
                        f"| {title} | {which} | {span} | {rows:,} | {ms:.1f} | "
                        f"{'yes' if uses_index(conn, sql) else 'no'} |"
                    )
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
