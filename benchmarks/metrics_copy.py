"""Benchmark: the copy of a target's request metrics into a central store (``collect --store``).

One throwaway sandbox server with a target and a store database, both at head. The target holds
an application's last five minutes of ``request_metrics``: 1-second buckets of 10 operations and
2 variants (20 rows a second, 6,000 rows). Measured, per grace period: the first copy (every
row), then the steady copy a sample makes (the grace period's rows re-read, none new), median
of the runs; each group with the load average before and after it.

    .venv/bin/python -m benchmarks.metrics_copy [--runs 7] [--output FILE]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.machine import load_table, machine_lines, under_load
from dbtools.db.sandbox import Sandbox
from dbtools.schema.revisions import upgrade
from dbtools.store import metrics_copy
from dbtools.store.layout import read_layout

GRACES_S = (60.0, 120.0, 300.0)
SECONDS, OPERATIONS, VARIANTS = 300, 10, ("per-request", "batched")
ROWS = SECONDS * OPERATIONS * len(VARIANTS)
FILL = """INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, operation,
    variant, requests, errors, latency_p95_ms, cache_hits, cache_misses, queries,
    latency_histogram)
SELECT now() - make_interval(secs => s), 1, 'op' || o, v, 10, 0, 80, 5, 5, 30,
       '{0,0,0,1,2,3,4}'::int[]
FROM generate_series(0, %(seconds)s - 1) s, generate_series(1, %(operations)s) o,
     unnest(%(variants)s::text[]) v"""


def measure(sandbox: Sandbox, grace_s: float, runs: int) -> tuple[float, float, int]:
    """The first copy's ms, the steady copy's median ms and the rows it re-reads."""
    name = f"store_{int(grace_s)}"
    with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    upgrade(sandbox.dsn(name))
    with psycopg.connect(sandbox.dsn("target"), autocommit=True) as source, \
            psycopg.connect(sandbox.dsn(name), autocommit=True) as store:  # fmt: skip
        layouts = read_layout(source), read_layout(store)
        start = time.perf_counter()
        metrics_copy.copy_metrics(source, layouts[0], store, layouts[1], "t", grace_s)
        first = time.perf_counter() - start
        steady = []
        for _ in range(runs):
            start = time.perf_counter()
            done = metrics_copy.copy_metrics(source, layouts[0], store, layouts[1], "t", grace_s)
            steady.append(time.perf_counter() - start)
            assert done["request_metrics"].inserted == 0
    return first * 1000, statistics.median(steady) * 1000, done["request_metrics"].read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).with_name("RESULTS-metrics-copy.md"))  # fmt: skip
    args = parser.parse_args()
    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="dbtools-bench-copy-")))
    sandbox.start()
    loads: dict[str, tuple[str, str]] = {}
    try:
        with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE target")
        upgrade(sandbox.dsn("target"))
        with psycopg.connect(sandbox.dsn("target"), autocommit=True) as conn:
            conn.execute(FILL, {"seconds": SECONDS, "operations": OPERATIONS,
                                "variants": list(VARIANTS)})  # fmt: skip
        results = {}
        for grace in GRACES_S:
            results[grace] = under_load(
                loads, f"grace {grace:g} s", functools.partial(measure, sandbox, grace, args.runs)
            )
        version = sandbox.major
    finally:
        sandbox.destroy()
    lines = [
        "# Benchmark: request metrics copied into a central store",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m "
        f"benchmarks.metrics_copy --runs {args.runs}` on PostgreSQL {version} (sandbox).",
        "",
        *(f"- {line}" for line in machine_lines()),
        "",
        f"The target: {ROWS:,} request_metrics rows in {SECONDS} s (1 s buckets, {OPERATIONS} "
        f"operations, {len(VARIANTS)} variants). Steady: the median of {args.runs} copies that "
        "find nothing new (what each sample costs once caught up).",
        "",
        "| grace | first copy (all rows) | steady copy | rows re-read |",
        "|---|---|---|---|",
        *(f"| {grace:g} s | {first:.0f} ms | {steady:.0f} ms | {read:,} |"
          for grace, (first, steady, read) in results.items()),
        "",
        *load_table(loads),
        "",
    ]  # fmt: skip
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
