"""Benchmark: the throughputs behind `dbtools downgrade-plan`'s duration estimates.

On flight offers seeded like benchmarks/index_build.py, it times what a plan step does to a table:
an export (`COPY (SELECT * …) TO STDOUT CSV`, the `\\copy` of an export step), a full scan, an
index build (plain and CONCURRENTLY), and a rewrite (`VACUUM FULL`). Each rate is the table's
total size (`pg_total_relation_size`, what the plan multiplies by) divided by the time. Medians of
the rounds go to benchmarks/RESULTS-downgrade-rates.md next to the rates the plan assumes
(`dbtools.safety.plan.Rates`).

    .venv/bin/python -m benchmarks.downgrade_rates [--offers 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.index_build import SEED_SQL
from benchmarks.machine import describe_machine
from dbtools.db.sandbox import temporary_sandbox
from dbtools.safety.plan import MiB, Rates
from dbtools.schema.revisions import upgrade

RESULTS = Path(__file__).with_name("RESULTS-downgrade-rates.md")
TABLE = "public.flight_offers"


def _export(conn: psycopg.Connection[Any]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY (SELECT * FROM {TABLE}) TO STDOUT (FORMAT csv, HEADER)") as copy,
    ):
        for _ in copy:
            pass


def _scan(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"SELECT count(*) FROM {TABLE} WHERE price_total < 0")


def _index(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"CREATE INDEX bench_ix ON {TABLE} (trip_request_id, expires_at)")
    conn.execute("DROP INDEX bench_ix")


def _index_concurrently(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"CREATE INDEX CONCURRENTLY bench_ix ON {TABLE} (trip_request_id, expires_at)")
    conn.execute("DROP INDEX bench_ix")


def _rewrite(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"VACUUM FULL {TABLE}")


WORK: dict[str, tuple[Callable[[psycopg.Connection[Any]], None], float]] = {
    "export": (_export, Rates().export),
    "scan": (_scan, Rates().scan),
    "index build": (_index, Rates().index_build),
    "index build (CONCURRENTLY)": (_index_concurrently, Rates().index_build / 2),
    "rewrite": (_rewrite, Rates().rewrite),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with temporary_sandbox() as sandbox:
        dsn = sandbox.dsn()
        upgrade(dsn, "head")
        sizes = {"offers": args.offers, "trips": max(1, args.offers // 10), "cache": 1}
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in SEED_SQL:
                conn.execute(statement, sizes)
            conn.execute(f"VACUUM ANALYZE {TABLE}")
            seconds: dict[str, list[float]] = {name: [] for name in WORK}
            for _ in range(args.rounds):
                for name, (work, _assumed) in WORK.items():
                    started = time.perf_counter()
                    work(conn)
                    seconds[name].append(time.perf_counter() - started)
            row = conn.execute(f"SELECT pg_total_relation_size('{TABLE}')").fetchone()
            assert row is not None
            size = int(row[0])
        write_results(seconds, size, args, sandbox.major)


def write_results(
    seconds: dict[str, list[float]], size: int, args: argparse.Namespace, major: int
) -> None:
    lines = [
        "# Throughputs behind downgrade-plan's estimates",
        "",
        describe_machine(),
        f"PostgreSQL {major} (sandbox, fsync off), {TABLE} with {args.offers:,} rows, "
        f"{size / MiB:.0f} MiB with its indexes and TOAST; {args.rounds} rounds, medians shown. "
        "Rate = that size / the time taken.",
        "",
        f"Command: `.venv/bin/python -m benchmarks.downgrade_rates --offers {args.offers} "
        f"--rounds {args.rounds}`",
        "",
        "| work | median (s) | measured (MiB/s) | plan assumes (MiB/s) | assumed / measured |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (_work, assumed) in WORK.items():
        median = statistics.median(seconds[name])
        measured = size / median / MiB
        lines.append(
            f"| {name} | {median:.2f} | {measured:.0f} | {assumed / MiB:.0f} | "
            f"{assumed / MiB / measured:.2f} |"
        )
    lines += [
        "",
        "The plan assumes a quarter of these idle-machine figures (`dbtools.safety.plan.Rates`): "
        "a production server is busy, an export crosses a network, and a rewrite or "
        "index build competes with the application for I/O.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
