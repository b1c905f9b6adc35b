"""Benchmark (not a test): how long what a newcomer runs first takes, for the times the docs quote.

Measures, as a reader runs them from the repository root (the environment already installed):

1. ``make demo``: the whole rollout on an embedded PostgreSQL 18;
2. ``make test-fast``: the tests that need no server;
3. ``dbtools workload seed`` on a migrated sandbox (the reference data, 20,000 trips), then again
   with ``--replace``;
4. with ``--runbook``: the test that runs the runbook of docs/rollout.md on a server of its own
   (``tests/test_readme.py``; once, minutes).

The first two are interleaved, round by round, so that the machine's load weighs on both alike;
each group's wall times (median, min-max) are written with the load average before and after it
(a shared machine). README.md and docs/ quote these figures.

Run: ``.venv/bin/python -m benchmarks.newcomer [--rounds N] [--runbook]`` (writes
benchmarks/RESULTS-newcomer.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.machine import load_table, machine_lines, under_load

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS-newcomer.md")
BIN = Path(sys.executable).parent  # the environment `make` created
RUNBOOK_TEST = "tests/test_readme.py::test_the_rollout_and_the_rollback_run_as_the_readme_says"


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of *command* run from the repository root; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}"
                         f"{done.stderr[-3000:]}")  # fmt: skip
    return elapsed


def seed_times(rounds: int) -> list[float]:
    """``dbtools workload seed`` on a fresh migrated sandbox, then ``--replace`` each round after."""
    dbtools, directory = str(BIN / "dbtools"), tempfile.mkdtemp(prefix="dbtools-newcomer-")
    started = subprocess.run([dbtools, "sandbox", "start", "--dir", directory],
                             capture_output=True, text=True, check=True)  # fmt: skip
    url = shlex.split(started.stdout)[1].removeprefix("DATABASE_URL=")
    env = {"DATABASE_URL": url}
    try:
        timed([str(BIN / "alembic"), "upgrade", "head"], env)
        times = [timed([dbtools, "workload", "seed"], env)]
        times += [timed([dbtools, "workload", "seed", "--replace"], env) for _ in range(rounds - 1)]
        return times
    finally:
        subprocess.run([dbtools, "sandbox", "stop", "--dir", directory], capture_output=True)


def seconds(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} s (one run)"
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def measure(
    rounds: int, runbook: bool
) -> tuple[list[tuple[str, str, list[float]]], dict[str, tuple[str, str]]]:
    loads: dict[str, tuple[str, str]] = {}
    demo: list[float] = []
    fast: list[float] = []
    for round_number in range(1, rounds + 1):
        demo.append(under_load(loads, f"`make demo`, round {round_number}",
                               lambda: timed(["make", "demo"])))  # fmt: skip
        fast.append(under_load(loads, f"`make test-fast`, round {round_number}",
                               lambda: timed(["make", "test-fast"])))  # fmt: skip
    seed = under_load(loads, "`dbtools workload seed`", lambda: seed_times(rounds))
    rows = [
        ("`make demo`", "the whole rollout on an embedded PostgreSQL 18 (README)", demo),
        ("`make test-fast`", "the tests that need no server (README, docs/development.md)", fast),
        ("`dbtools workload seed`", "the reference data on a migrated sandbox, first then "
         "`--replace` (docs/workload.md)", seed),
    ]  # fmt: skip
    if runbook:
        test: Callable[[], float] = lambda: timed(  # noqa: E731
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", RUNBOOK_TEST]
        )
        rows.append(("the runbook's test", f"`pytest {RUNBOOK_TEST}`: every block of "
                     "docs/rollout.md on a server of its own, PostgreSQL 18",
                     [under_load(loads, "the runbook's test", test)]))  # fmt: skip
    return rows, loads


def report(rows: list[tuple[str, str, list[float]]], loads: dict[str, tuple[str, str]],
           rounds: int, runbook: bool) -> str:  # fmt: skip
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# What a newcomer runs first: how long it takes",
        "",
        f"- date: {now}",
        *(f"- {line}" for line in machine_lines()),
        f"- command: `.venv/bin/python -m benchmarks.newcomer --rounds {rounds}"
        f"{' --runbook' if runbook else ''}` "
        "(wall times as a reader sees them, the environment already installed; "
        "`make demo` and `make test-fast` interleaved round by round)",
        "",
        "| what | measures | wall time: median (min-max) | runs |",
        "|---|---|---:|---:|",
        *(
            f"| {what} | {note} | {seconds(values)} | {len(values)} |"
            for what, note, values in rows
        ),
        "",
        "The load average (1/5/15 min) before and after each measured group:",
        "",
        *load_table(loads),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--runbook", action="store_true", help="time tests/test_readme.py too")
    args = parser.parse_args()
    rows, loads = measure(args.rounds, args.runbook)
    text = report(rows, loads, args.rounds, args.runbook)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
