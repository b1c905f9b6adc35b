"""Storage that ages: bytes per snapshot of one target kept, rolled up, and rolled up then
rewritten (revision 0008's day partitions), beside revision 0007's unpartitioned tables and
against PoWA after its aggregation.

Two databases of 5,000 statements each (``benchmarks.collect``'s workload, the same 500
moving a round in both), one at head (0008), one downgraded to 0007, are sampled ``--rounds``
times by one ``dbtools collect`` collector, then in each:

* kept: every sample, the monitoring tables' bytes after a VACUUM (all of them, and the
  statement and database rows alone: PoWA's history holds statements);
* rolled up: the samples folded to the last one (``compact.fold``, as a roll-up of one period
  does), marked rolled up, then VACUUM: in day partitions the space stays with the day;
* rewritten (0008): the day's partitions rewritten (``compact.rewrite_day``: CLUSTER).

PoWA's figure is the one ``benchmarks/collect.py`` recorded in RESULTS-collect.md (its
aggregation over the same span, ``powa.coalesce`` = 42; PoWA is not installed here).

Run: ``python -m benchmarks.storage_ages`` (PostgreSQL 15 from Debian, a few minutes).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.collect import (
    INTERVAL_S,
    MONITORING_TABLES_SQL,
    MOVED,
    PG15,
    SETTINGS,
    STATEMENTS,
    quiet,
    run_statements,
    table_bytes,
    workload_databases,
)
from benchmarks.machine import machine_lines
from dbtools.db.connection import connect
from dbtools.db.sandbox import Sandbox
from dbtools.schema.revisions import downgrade
from dbtools.store import compact
from dbtools.store.collector import Collector, Target

HERE = Path(__file__).parent
# benchmarks/collect.py's server settings, without PoWA (its figure is the one recorded)
SERVER_SETTINGS = {
    name: value for name, value in SETTINGS.items() if not name.startswith("powa.")
} | {"shared_preload_libraries": "'pg_stat_statements'"}
POWA = re.compile(r"\*\*([\d,]+) B per snapshot\*\* in the long run")


def powa_recorded() -> int:
    """PoWA's bytes per snapshot after its aggregation, the latest RESULTS-collect.md holds."""
    found = POWA.findall((HERE / "RESULTS-collect.md").read_text())
    return int(found[0].replace(",", ""))  # the newest run is the file's first


# The statement and database rows (PoWA's history holds statements only), day partitions included.
ROWS_SQL = MONITORING_TABLES_SQL + "  AND c.relname ~ '^(statement|database)_stats(_p[0-9]{8})?$'\n"
LAYOUTS = {"bench_01": "0008 (by day)", "bench_02": "0007 (unpartitioned)"}


def sizes(dsn: str) -> tuple[int, int]:
    """The monitoring tables' bytes, and their statement and database rows' (after VACUUM)."""
    with quiet(dsn) as conn:
        return (table_bytes(conn, MONITORING_TABLES_SQL, vacuum=True),
                table_bytes(conn, ROWS_SQL))  # fmt: skip


def load_ms(dsn: str, name: str, by_day: bool) -> float:
    """The median ms of 5 loads of the target's latest state (``current_state``'s read: the
    entries tables when *by_day*, else every entry's latest row in the row tables)."""
    with connect(dsn, autocommit=True, statement_timeout="0") as conn:
        latest = compact.latest_header(conn, name)
        assert latest is not None and latest.id is not None
        times = []
        for _ in range(5):
            clock = time.perf_counter()
            if by_day:
                compact.load_latest(conn, name, latest)
            else:
                compact.load_states(conn, name, [latest])
            times.append((time.perf_counter() - clock) * 1000)
    return statistics.median(times)


def roll_up_all(dsn: str, name: str, rounds: int) -> tuple[int, float]:
    """Every sample but the last folded (a roll-up of one period), the last marked rolled up:
    the rows deleted and the ms it took."""
    with quiet(dsn) as conn:
        # as autovacuum would have by then: a day's partition not yet analyzed gets plans that
        # probe a text's rows through the sample index (measured: 39 s, not 1 s)
        conn.execute("ANALYZE perf_monitoring.statement_stats, perf_monitoring.statement_texts")
    with connect(dsn, autocommit=True, read_only=False, statement_timeout="0") as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM perf_monitoring.snapshots ORDER BY id")]
        assert len(ids) == rounds, ids
        clock = time.perf_counter()
        rows = compact.fold(conn, name, ids[:-1])
        ms = (time.perf_counter() - clock) * 1000
        conn.execute(
            "UPDATE perf_monitoring.snapshots SET rollup_seconds = %s WHERE id = %s",
            (INTERVAL_S * rounds, ids[-1]),
        )
    return rows, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=42)
    parser.add_argument("--pg-bin", default=PG15)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-storage-ages.md")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    directory = Path(tempfile.mkdtemp(prefix="dbtools-bench-ages-"))
    started = time.perf_counter()
    found: dict[str, dict[str, Any]] = {name: {} for name in LAYOUTS}
    with Sandbox(directory, pg_bin=args.pg_bin, settings=SERVER_SETTINGS) as sandbox:
        version = workload_databases(sandbox)
        dsns = {name: sandbox.dsn(name) for name in LAYOUTS}
        downgrade(dsns["bench_02"], "0007")
        targets = [Target(name, dsn) for name, dsn in dsns.items()]
        for dsn in dsns.values():
            run_statements(dsn, range(STATEMENTS))
        with Collector(targets, interval_s=INTERVAL_S) as collector:
            collector.open_all()
            for number in range(args.rounds):
                if number:
                    moved = rng.sample(range(STATEMENTS), MOVED)
                    for dsn in dsns.values():
                        run_statements(dsn, moved)
                collector.run_round(number)
        loads = {
            "0008, from the entries tables": load_ms(dsns["bench_01"], "bench_01", True),
            "0008, from the row tables": load_ms(dsns["bench_01"], "bench_01", False),
            "0007, from the row tables": load_ms(dsns["bench_02"], "bench_02", False),
        }
        for name, dsn in dsns.items():
            found[name]["kept"] = sizes(dsn)
            found[name]["rows"], found[name]["fold_ms"] = roll_up_all(dsn, name, args.rounds)
            found[name]["rolled"] = sizes(dsn)
        with connect(
            dsns["bench_01"], autocommit=True, read_only=False, statement_timeout="0"
        ) as conn:
            clock = time.perf_counter()
            rewritten_days = compact.rewrite_day(conn, datetime.now(timezone.utc).date())
            rewrite_ms = (time.perf_counter() - clock) * 1000
        found["bench_01"]["rewritten"] = sizes(dsns["bench_01"])
    elapsed = time.perf_counter() - started
    powa = powa_recorded()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    def per(name: str, state: str) -> str:
        total, rows = found[name][state]
        return f"{total / args.rounds:,.0f} | {rows / args.rounds:,.0f}"

    lines = [
        "# Storage that ages: bytes per snapshot",
        "",
        f"`python -m benchmarks.storage_ages` on {datetime.now(timezone.utc):%Y-%m-%d}, "
        f"PostgreSQL {version}, one target of {STATEMENTS:,} statements ({MOVED} moving a "
        f"round) in each of two databases side by side, one at revision 0008 (day partitions), "
        f"one at 0007 (unpartitioned); {args.rounds} samples each, then folded to the last one "
        f"(a roll-up of one period); load average {load}; {elapsed:.0f} s.",
        "",
        *machine_lines(),
        "",
        "| bytes per snapshot | all monitoring tables | statement and database rows |",
        "|---|---:|---:|",
    ]
    for name, layout in LAYOUTS.items():
        f = found[name]
        lines += [
            f"| {layout}, every sample kept | {per(name, 'kept')} |",
            f"| {layout}, rolled up to one sample in {args.rounds} ({f['rows']:,} rows "
            f"deleted in {f['fold_ms']:,.0f} ms), then VACUUM | {per(name, 'rolled')} |",
        ]
    lines += [
        f"| 0008 (by day), rolled up, the day's partitions rewritten ({rewritten_days} "
        f"partitions, {rewrite_ms:,.0f} ms) | {per('bench_01', 'rewritten')} |",
        f"| PoWA after its aggregation, the same span (RESULTS-collect.md) | | {powa:,} |",
        "",
        f"Loading the target's latest state ({STATEMENTS:,} statements; today's and tomorrow's "
        "partitions only), median of 5:",
        "",
        "| read | ms |",
        "|---|---:|",
        *(f"| {what} | {ms:,.0f} |" for what, ms in loads.items()),
        "",
    ]
    text = "\n".join(lines)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
