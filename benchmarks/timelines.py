"""Benchmark (not a test): the report's timelines over spans of 50, 200 and 500 samples.

On the 5,000-statement, 2,000-index database of ``benchmarks.snapshot_verify`` (its ``build``),
a throwaway embedded PostgreSQL (or --pg-bin) takes --samples labelled samples ``s0``,
``s1``…, a random --moving of the 5,000 statements running again before each (so each sample
stores what moved, as ``dbtools collect`` does). Then, for the windows ``s0..s49``, ``s0..s199``
and ``s0..s499``, the wall time of ``timelines.load_timelines`` (what ``dbtools report`` calls:
steps replayed from the rows the samples stored, top statements and families, buckets,
growth), medians of --runs after one warm-up (the classifier's parses warm: the report's
families parse the same texts; their cost is ``benchmarks/report.py``'s); beside it, for the
shortest span only, the same steps from every sample's state loaded whole
(``load_snapshots``, what the timelines did before), and the rows each way reads.

Run: ``.venv/bin/python -m benchmarks.timelines`` (writes benchmarks/RESULTS-timelines.md).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks.machine import machine_lines
from benchmarks.snapshot_verify import TABLES, build, shapes
from dbtools.figures.windows import parse_window
from dbtools.report.timelines import load_timelines, step_between
from dbtools.sandbox import Sandbox
from dbtools.sqltext.families import Classifier
from dbtools.store import Store, snapshots

HERE = Path(__file__).resolve().parent
SPANS = (50, 200, 500)


def take_samples(dsn: str, count: int, moving: int, seed: int = 15) -> float:
    """*count* labelled samples, *moving* random statements run before each; seconds taken."""
    chosen = random.Random(seed)
    texts = shapes()
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in range(count):
            for text in chosen.sample(texts, moving):
                conn.execute(text)
            snapshots.snapshot(dsn, f"s{number}")
            if number % 50 == 49:
                print(f"  {number + 1} samples", file=sys.stderr)
    return time.perf_counter() - started


def timed(action: Callable[[], object], runs: int) -> list[float]:
    action()  # warm-up: the classifier's parses, the server's caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=max(SPANS))
    parser.add_argument("--moving", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg-bin", default=os.environ.get("DBTOOLS_PG_BIN"))
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-timelines.md")
    args = parser.parse_args()
    spans = [span for span in SPANS if span <= args.samples]

    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="dbtools-bench-")), pg_bin=args.pg_bin)
    results: dict[str, list[float]] = {}
    try:
        sandbox.start()
        with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = sandbox.dsn("bench")
        print("building 5,000 statements and 2,000 indexes…", file=sys.stderr)
        build(dsn)
        print(f"taking {args.samples} samples…", file=sys.stderr)
        sampling = take_samples(dsn, args.samples, args.moving)
        classifier = Classifier()
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            stored = conn.execute("SELECT count(*) FROM perf_monitoring.statement_stats").fetchone()
            store = Store.of(conn)
            for span in spans:
                (window,) = store.windows([parse_window(f"s0..s{span - 1}")])
                results[f"timelines over {span} samples (replayed)"] = timed(
                    lambda window=window: load_timelines(  # type: ignore[misc]
                        Store.of(conn), [("window", window)], classifier=classifier
                    ),
                    args.runs,
                )
                print(f"  {span} samples measured", file=sys.stderr)
            target = store.resolve_target(None)
            (window,) = store.windows([parse_window(f"s0..s{spans[0] - 1}")])
            headers = store.headers_between(window.start.taken_at, window.end.taken_at, target)

            def whole() -> None:
                states = Store.of(conn).states(headers)  # a fresh store: nothing kept
                ordered = [states[h.id] for h in headers if h.id is not None]
                for start, end in itertools.pairwise(ordered):
                    step_between(start, end)

            results[f"steps over {spans[0]} samples, every state loaded whole (before)"] = timed(
                whole, args.runs
            )
    finally:
        sandbox.destroy()

    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        f"| {name} | {statistics.median(times) * 1000:,.0f} | {min(times) * 1000:,.0f} | "
        f"{max(times) * 1000:,.0f} |"
        for name, times in results.items()
    ]
    text = "\n".join([
        "# Benchmark: the report's timelines over long spans",
        "",
        f"Measured {today} by `python -m benchmarks.timelines --samples {args.samples} "
        f"--moving {args.moving} --runs {args.runs}` on PostgreSQL "
        f"{version[0] if version else '?'} (sandbox).",
        "",
        *(f"- {line}" for line in machine_lines()),
        "",
        f"Database: 5,000 distinct statements, {TABLES} tables, {TABLES * 5:,} indexes "
        f"(`benchmarks.snapshot_verify.build`); {args.samples} labelled samples, a random "
        f"{args.moving} statements run again before each ({sampling:.0f} s to take them); "
        f"{stored[0] if stored else 0:,} statement rows stored in all.",
        "",
        f"Medians of {args.runs} runs after one warm-up, wall time in-process:",
        "",
        "| what | median ms | min ms | max ms |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ])  # fmt: skip
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
