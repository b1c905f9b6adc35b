"""Benchmark: `dbtools snapshot` and `dbtools verify` against `psql` running the same reads.

With 5,000 distinct statements in pg_stat_statements and 2,000 indexes, on a throwaway embedded
PostgreSQL (or --pg-bin), every statement run once inside each window (every entry moves: the
most a window's sums can cost), measured side by side in one run (the actions interleaved,
round after round, medians of --runs rounds, the load average before and after):

* wall time of `dbtools snapshot` (a new process, as a deploy script runs it) and of the same
  snapshot called in-process (no interpreter start-up), and of the first snapshot, which reads,
  scrubs and stores every statement's text (later ones only the texts of new statements);
* wall time of `psql` copying the same views (pg_stat_statements, _info, pg_stat_database,
  pg_stat_user_tables/_indexes, pg_statio_user_tables/_indexes, pg_index, pg_class.reloptions,
  alembic_version) to /dev/null: the floor any collector pays to read them;
* wall time of `verify()` in-process and of `dbtools verify` over two windows, against `psql`
  running exactly the statements verify sends (recorded as it runs, parameters inlined): issue
  14's goals are verify() within 1.5x that, and the command within 2x that plus the
  interpreter's start-up (`python -c pass`);
* the bytes one snapshot adds to the monitoring schema (its tables, indexes and TOAST), over
  --runs snapshots of an unchanged workload;
* the statements dbtools itself sends, counted in pg_stat_statements (their text carries the
  marker comment).

    .venv/bin/python -m benchmarks.snapshot_verify [--runs 9] [--pg-bin DIR] [--output FILE]

Results written to benchmarks/RESULTS-snapshot-verify.md by default.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.machine import machine_lines
from dbtools.db.connection import SQL_MARKER, split_password
from dbtools.sandbox import Sandbox, client_binary
from dbtools.schema.revisions import upgrade
from dbtools.store import snapshots, window_sums
from dbtools.verify import verify

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLES = 400  # x (primary key + 4 secondary indexes) = 2,000 indexes
STATEMENTS = 5000
LONG_SAMPLES = 40  # x 5,000 statements moving: 200,000 rows inside the window
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
        for text in shapes():
            conn.execute(text)
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%%FROM bench_%%'"
        ).fetchone()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_stat_user_indexes WHERE relname LIKE 'bench_%%'"
        ).fetchone()
    assert count == (STATEMENTS,), count
    assert indexes == (TABLES * 5,), indexes


def shapes() -> list[str]:
    """The 5,000 distinct statements (as ``build`` runs them)."""
    subsets = [c for n in range(1, len(COLUMNS) + 1) for c in itertools.combinations(COLUMNS, n)]
    return [
        f"SELECT {', '.join(columns)} FROM bench_{i} WHERE id = 1"
        for i, columns in itertools.islice(itertools.product(range(TABLES), subsets), STATEMENTS)
    ]


def run_every_statement(dsn: str) -> None:
    """Every one of the 5,000 statements once (one psql process: every entry moves)."""
    psql = str(client_binary("psql"))
    conninfo, env = split_password(dsn)
    script = ";\n".join(shapes()) + ";\n"
    subprocess.run([psql, "-X", "-q", "-d", conninfo, "-o", "/dev/null"], input=script,
                   text=True, env=env, check=True, capture_output=True)  # fmt: skip


def interleaved(actions: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall times of each action, the actions run in turn, *runs* rounds (side by side: a
    burst of load on the shared machine falls on all of them)."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
    return times


def from_rows(action: Callable[[], object]) -> None:
    """*action* with every window summed from its rows, however many (``window_sums``' other way)."""
    by_entry = window_sums.ROWS_BY_ENTRY
    window_sums.ROWS_BY_ENTRY = 1 << 62
    try:
        action()
    finally:
        window_sums.ROWS_BY_ENTRY = by_entry


@contextmanager
def recorded_sql() -> Iterator[list[str]]:
    """Every statement psycopg executes inside, as the literal SQL (parameters inlined) that
    psql can run."""
    sent: list[str] = []
    original = psycopg.Cursor.execute

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append(psycopg.ClientCursor(self.connection).mogrify(query, params))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


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
        # and a later candidate: verify refuses one window compared with itself), every
        # statement run once inside each.
        started = time.perf_counter()
        snapshots.snapshot(dsn, "first")  # reads, scrubs and stores every text
        first_snapshot = time.perf_counter() - started
        before = marked_calls(dsn)
        snapshots.snapshot(dsn, "count:start")
        per_snapshot = marked_calls(dsn) - before
        run_every_statement(dsn)
        snapshots.snapshot(dsn, "count:end", requests=1)
        snapshots.snapshot(dsn, "later:start")
        run_every_statement(dsn)
        snapshots.snapshot(dsn, "later:end", requests=1)
        before = marked_calls(dsn)
        with recorded_sql() as sent:
            verify(dsn, "count", "later")
        per_verify = marked_calls(dsn) - before
        verify_sql = directory / "verify.sql"
        verify_sql.write_text("".join(f"{statement};\n" for statement in sent))
        # A long window: LONG_SAMPLES samples, every statement moving between each two.
        snapshots.snapshot(dsn, "long:start")
        for i in range(LONG_SAMPLES):
            run_every_statement(dsn)
            snapshots.snapshot(dsn, "long:end" if i == LONG_SAMPLES - 1 else f"long-{i}",
                               requests=1)  # fmt: skip
        # Bytes per snapshot: the monitoring tables' growth over --runs snapshots.
        bytes_before = monitoring_bytes(dsn)
        for _ in range(args.runs):
            snapshots.snapshot(dsn, next(labels))
        bytes_per_snapshot = (monitoring_bytes(dsn) - bytes_before) / args.runs

        psql = str(client_binary("psql"))
        conninfo, env = split_password(dsn)

        def run_psql(*arguments: str, script: str | None = None) -> None:
            subprocess.run([psql, "-X", "-q", "-d", conninfo, "-o", "/dev/null", *arguments],
                           input=script, text=True, env=env, check=True,
                           capture_output=True)  # fmt: skip

        runs = args.runs
        verify_cli = [sys.executable, "-m", "dbtools", "verify", "--dsn", dsn,
                      "--baseline", "count", "--candidate", "later", "--format", "json"]  # fmt: skip
        load_before = os.getloadavg()
        results = interleaved(
            {
                "dbtools snapshot (CLI process)": lambda: dbtools_cli(
                    "snapshot", "--dsn", dsn, "--label", next(labels)
                ),
                "snapshots.snapshot() in-process": lambda: snapshots.snapshot(dsn, next(labels)),
                "psql dump of the same views": lambda: run_psql(script=PSQL_DUMP),
                "dbtools verify (CLI process)": lambda: subprocess.run(
                    verify_cli, cwd=REPO, capture_output=True, check=False
                ),
                "verify() in-process": lambda: verify(dsn, "count", "later"),
                f"verify() in-process, a candidate of {LONG_SAMPLES} samples (summed by entry)": (
                    lambda: verify(dsn, "count", "long")
                ),
                f"verify() in-process, a candidate of {LONG_SAMPLES} samples, from its rows": (
                    lambda: from_rows(lambda: verify(dsn, "count", "long"))
                ),
                "psql running verify's statements": lambda: run_psql("-f", str(verify_sql)),
                "python -m dbtools --version (start-up)": lambda: dbtools_cli("--version"),
                "python -c pass (the interpreter's start-up)": lambda: subprocess.run(
                    [sys.executable, "-c", "pass"], check=True
                ),
            },
            runs,
        )
        load_after = os.getloadavg()
        with psycopg.connect(dsn, autocommit=True) as conn:
            stored = conn.execute(
                "SELECT count(*) FROM perf_monitoring.statement_stats r "
                "JOIN perf_monitoring.snapshots s ON s.id = r.snapshot_id "
                "WHERE s.label = 'later:end'"
            ).fetchone()
    finally:
        sandbox.destroy()

    median = {name: statistics.median(times) for name, times in results.items()}
    psql_median = median["psql dump of the same views"]
    rows = [
        f"| {name} | {median[name] * 1000:.0f} | {min(times) * 1000:.0f} | "
        f"{max(times) * 1000:.0f} | {median[name] / psql_median:.1f}x |"
        for name, times in results.items()
    ]
    same_sql = median["psql running verify's statements"]
    in_process = median["verify() in-process"] / same_sql
    command = median["dbtools verify (CLI process)"]
    interpreter = median["python -c pass (the interpreter's start-up)"]
    command_goal = 2 * same_sql + interpreter

    def met(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    load = "; ".join(
        f"{when} {', '.join(f'{x:.2f}' for x in values)}"
        for when, values in (("before", load_before), ("after", load_after))
    )
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# Benchmark: snapshot and verify",
        "",
        f"Measured {today} by `python -m benchmarks.snapshot_verify --runs {runs}` on PostgreSQL "
        f"{version[0] if version else '?'} (sandbox), one run, the actions interleaved round "
        "after round (medians).",
        "",
        *(f"- {line}" for line in machine()),
        f"- load average (1/5/15 min) around the timed rounds: {load}",
        "",
        f"Database: {STATEMENTS:,} distinct statements in pg_stat_statements, every one run "
        f"once inside each window ({stored[0] if stored else '?'} statement rows stored by the "
        f"candidate's end sample), {TABLES} tables, {TABLES * 5:,} indexes, at alembic head.",
        "",
        "Issue 14's goals for verify, from the medians above:",
        "",
        f"- `verify()` in-process / `psql` running the same statements: "
        f"{median['verify() in-process'] * 1000:.0f} / {same_sql * 1000:.0f} ms = "
        f"{in_process:.2f}x (goal 1.5x: {met(in_process <= 1.5)});",
        f"- `dbtools verify` / (2 x that `psql` + the interpreter's start-up): "
        f"{command * 1000:.0f} / ({2 * same_sql * 1000:.0f} + {interpreter * 1000:.0f}) ms = "
        f"{command / command_goal:.2f}x (goal 1x: {met(command <= command_goal)}).",
        "",
        "| what | median ms | min ms | max ms | vs psql dump |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Bytes one snapshot adds to the monitoring tables (with indexes and TOAST, over "
        f"{runs} snapshots of an unchanged workload): {bytes_per_snapshot:,.0f}.",
        "",
        f"The first snapshot, which reads, scrubs and stores the {STATEMENTS:,} statements' texts "
        f"(once; later snapshots read only the texts of new statements): "
        f"{first_snapshot * 1000:.0f} ms in-process.",
        "",
        "Statements dbtools sent (counted in pg_stat_statements by their marker comment):",
        "",
        f"- one snapshot: {per_snapshot} statements;",
        f"- one verify of two windows: {per_verify} statements ({len(sent)} executed by psycopg, "
        "`SET`s included: what `psql` runs above).",
        "",
        "verify sums the windows in the database (`dbtools.store.window_sums`: one statement per "
        "kind of row for both windows) and receives a few rows. The CLI figures include the "
        "interpreter's start-up and dbtools' imports (`benchmarks/RESULTS-startup.md`).",
        "",
        f"A candidate of {LONG_SAMPLES} samples with every statement moving between each two "
        f"holds {LONG_SAMPLES * STATEMENTS:,} statement rows: past `ROWS_BY_ENTRY` "
        f"({window_sums.ROWS_BY_ENTRY:,}) verify sums it entry by entry (two probes per entry, "
        "whatever the window's length); the row above it sums the same window from its rows.",
        "",
    ])  # fmt: skip
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
