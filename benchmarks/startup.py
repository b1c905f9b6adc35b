"""Benchmark (not a test): what a command costs before its work starts, before and now.

For ``dbtools verify --help`` (the goal of issue 14: under 150 ms of imports), ``dbtools --help``
and ``dbtools --version``: the imports' own time as ``python -X importtime`` adds it up, the
process's wall time, and which of SQLAlchemy, Alembic, matplotlib, sqlglot and psycopg it
loaded; medians of fresh processes, before (main at 4615b43, pure sqlglot) and now, in one run.
Which libraries the commands themselves load when they work is a test:
``tests/test_imports.py``.

The goal is one row (before, now, the goal, now/goal, met or not); each measured group's load
average before and after it is written beside the figures (a shared machine), and the goals of
the run the file held are kept under "Earlier runs" (``benchmarks.history``).

Run: ``.venv/bin/python -m benchmarks.startup`` (writes benchmarks/RESULTS-startup.md).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.history import earlier_runs
from benchmarks.machine import load_table, machine_lines, under_load
from benchmarks.report import BEFORE_COMMIT, REPO, RUN_DBTOOLS, extract_before, goal_row
from tests.helpers import PURE_SQLGLOT

RUNS = 9
RESULTS = Path(__file__).with_name("RESULTS-startup.md")
GOALS_HEADING = "## Issue 14's goal, before and now"
GOAL_VERIFY_HELP_IMPORTS_MS = 150.0
WATCHED = ("sqlalchemy", "alembic", "matplotlib", "sqlglot", "psycopg")
COMMANDS = (("verify", "--help"), ("--help",), ("--version",))
# What `dbtools verify` loads to do its work (its library, and what the database's revision
# expects), without a database: the same code before and now.
VERIFY_WORK = (
    "from dbtools.verify import verify; from dbtools.verify.render import render_table; "
    "from dbtools.schema.manifest import manifest_at; manifest_at('head')"
)
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)")


@dataclass(frozen=True)
class Startup:
    """Medians over fresh processes, and the watched libraries the command loaded."""

    imports_ms: float
    wall_ms: float
    loaded: tuple[str, ...]


def measure(
    code: Path, args: tuple[str, ...], *, before: bool, program: str = RUN_DBTOOLS
) -> Startup:
    """``dbtools ARGS`` (or *program*) RUNS times under ``-X importtime``, *code* first on the
    path."""
    if before or program != RUN_DBTOOLS:  # before: as main ran it, with pure sqlglot
        command = [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            (PURE_SQLGLOT if before else "") + program,
        ]
    else:  # the goal's own command line
        command = [sys.executable, "-X", "importtime", "-m", "dbtools"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    imports, walls = [], []
    loaded: set[str] = set()
    for _ in range(RUNS):
        started = time.perf_counter()
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, cwd=code, env=env, check=True
        )
        walls.append((time.perf_counter() - started) * 1000)
        own = 0
        for line in done.stderr.splitlines():
            match = _IMPORT_LINE.match(line)
            if match:
                own += int(match[1])
                loaded.add(match[3].partition(".")[0])
        imports.append(own / 1000)
    return Startup(
        statistics.median(imports),
        statistics.median(walls),
        tuple(name for name in WATCHED if name in loaded),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the code to compare with")
    args = parser.parse_args()
    before_code = args.before or extract_before(BEFORE_COMMIT)
    loads: dict[str, tuple[str, str]] = {}
    found = {
        command: under_load(
            loads,
            f"`dbtools {' '.join(command)}`, before then now",
            lambda command=command: (  # type: ignore[misc]
                measure(before_code, command, before=True),
                measure(REPO, command, before=False),
            ),
        )
        for command in COMMANDS
    }
    work = under_load(
        loads,
        "what `dbtools verify` loads to work, before then now",
        lambda: (
            measure(before_code, (), before=True, program=VERIFY_WORK),
            measure(REPO, (), before=False, program=VERIFY_WORK),
        ),
    )
    verify_help = found[("verify", "--help")]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    history = earlier_runs(RESULTS, GOALS_HEADING)
    lines = [
        "# Start-up benchmark",
        "",
        f"- date: {when}",
        *(f"- {line}" for line in machine_lines()),
        f"- command: `.venv/bin/python -m benchmarks.startup` (medians of {RUNS} fresh processes)",
        f"- before: commit {BEFORE_COMMIT} (main before issue 14), pure sqlglot",
        "",
        GOALS_HEADING,
        "",
        f"Medians of {RUNS} fresh processes; ratio = now / goal (below 1: met).",
        "",
        "| goal | before | now | goal | ratio | |",
        "|---|---:|---:|---:|---:|---|",
        goal_row(
            "imports of `python -X importtime -m dbtools verify --help` (ms)",
            verify_help[0].imports_ms,
            verify_help[1].imports_ms,
            GOAL_VERIFY_HELP_IMPORTS_MS,
            "ms",
        ),
        "",
        "The load average (1/5/15 min) before and after each measured group of this run:",
        "",
        *load_table(loads),
        "",
        "## Every command measured",
        "",
        "| command | imports ms before | imports ms now | wall ms before | wall ms now | "
        "loaded before | loaded now |",
        "|---|---:|---:|---:|---:|---|---|",
        *(
            f"| `dbtools {' '.join(command)}` | {old.imports_ms:.0f} | {new.imports_ms:.0f} | "
            f"{old.wall_ms:.0f} | {new.wall_ms:.0f} | {', '.join(old.loaded) or '-'} | "
            f"{', '.join(new.loaded) or '-'} |"
            for command, (old, new) in found.items()
        ),
        f"| what `dbtools verify` loads to work (`{VERIFY_WORK}`) | {work[0].imports_ms:.0f} | "
        f"{work[1].imports_ms:.0f} | {work[0].wall_ms:.0f} | {work[1].wall_ms:.0f} | "
        f"{', '.join(work[0].loaded) or '-'} | {', '.join(work[1].loaded) or '-'} |",
        "",
        "Imports: the sum of every module's own time as `-X importtime` prints it (the "
        "interpreter's own start-up included). Wall: the whole process. What `verify`, "
        "`snapshot` and `doctor` load when they work (a database at head, two windows): "
        "psycopg only, and sqlglot for `verify --table` (tests/test_imports.py).",
        "",
        *history,
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
