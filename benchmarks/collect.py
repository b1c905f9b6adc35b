"""Benchmark: `dbtools collect` beside PoWA's `powa_take_snapshot()`, one run, PostgreSQL 15.

One throwaway Debian PostgreSQL 15 server (the sandbox) with `pg_stat_statements` and `powa`
preloaded, the `powa` repository database (pg_stat_statements, btree_gist, powa; PoWA's own
background worker off: `powa.frequency = -1`), and databases of 100 tables `t0..t99` with
columns `c0..c49`: 5,000 distinct statements `SELECT cJ FROM tI WHERE id = $1` each. A *move*
re-runs a random 10% (500) of a database's statements. Measured side by side:

1. **one database**: per sample, after a move, the ms and bytes of a dbtools sample (the
   collector's per-target library call, state in memory, as `dbtools collect` runs it; then a
   few `dbtools collect --once` processes, which also start Python and load the state from the
   store) and of `powa_take_snapshot()` (local mode, which reads the one database's entries);
   rows stored per sample; WAL. Both repositories are VACUUMed (not timed) before each sample,
   so that bytes are growth with dead space reclaimed. PoWA's aggregation (`powa.coalesce`)
   runs at the last round, so its amortised long-run bytes are measured too;
2. **the old full-copy storage** (revision 0004, the commit before revision 0005, extracted
   with `git archive` and run in a child process): bytes and ms per `snapshot()` of the same
   workload in its own database;
3. **a fleet of 20 databases** on the server: `Collector` rounds over 20 targets (the
   default concurrency) in a child process: a round's wall time, the CPU seconds the process
   spent in it, the monitored server's CPU, the collector's RSS (memory per target: its growth
   from 20 to 50 targets), bytes per round and per day at a 60 s interval; beside it
   `powa_take_snapshot()` covering the same 100,000 statements. The samples go to a central
   `--store` on a second sandbox server (`--fleet-store server`, the default: the monitored
   server's CPU is what reading it costs), or to each target's own `perf_monitoring` on the
   monitored server (`--fleet-store target`: its CPU then counts the samples' writes too).

PoWA comes from Debian: `apt-get update && apt-get install -y postgresql-15-powa` (it pulls
btree_gist and pg_stat_statements with postgresql-15; see /work/notes/powa.md).

    .venv/bin/python -m benchmarks.collect [--rounds 40] [--fleet-rounds 8] [--output FILE]

Medians over the rounds; results written to benchmarks/RESULTS-collect.md by default.
`--fleet-only` runs the fleet's collectors alone at `--fleet-sizes` (no PoWA, no results
file: a table on stdout), e.g. a check at a tiny size, or memory with `--tracemalloc`:

    .venv/bin/python -m benchmarks.collect --fleet-only --tables 4 --fleet-sizes 2,3 \
        --fleet-rounds 1 --one-rounds 1 --before HEAD
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from benchmarks.history import earlier_runs
from benchmarks.machine import machine_lines
from dbtools.schema.revisions import upgrade
from dbtools.store.collector import Collector, Target

if TYPE_CHECKING:  # a fleet child runs this file on older trees, whose sandbox lived elsewhere
    from dbtools.db.sandbox import Sandbox

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PG15 = "/usr/lib/postgresql/15/bin"
TABLES, COLUMNS = 100, 50  # 5,000 distinct statements per database
STATEMENTS = TABLES * COLUMNS
MOVED = STATEMENTS // 10
FLEET = 20
BIG_FLEET = 50
STORE_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB"}
# The commit the fleet is compared with: main before one scan per server (issue 25 point 4).
BEFORE = "8a9594a"
INTERVAL_S = 60
# The commit before revision 0005: its head is revision 0004 (every sample a full copy).
OLD_STORAGE = "d94c174^"

SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements,powa'",
    "pg_stat_statements.max": "300000",  # 50 x 5,000 and the repositories' own statements
    "pg_stat_statements.track": "top",
    "powa.frequency": "-1",  # no background snapshots: only the benchmark takes them
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
}
# --fleet-only needs no PoWA (nor its package installed).
FLEET_ONLY_SETTINGS = {
    **{name: value for name, value in SETTINGS.items() if not name.startswith("powa.")},
    "shared_preload_libraries": "'pg_stat_statements'",
}
# The harness's own statements (sizes, VACUUM) are not counted by pg_stat_statements.
QUIET = "SET pg_stat_statements.track = 'none'"

POWA_TABLES_SQL = """
SELECT c.oid::regclass::text FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'r'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'powa')
"""
MONITORING_TABLES_SQL = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'perf_monitoring' AND c.relkind = 'r'
"""


def statement(number: int) -> str:
    return f"SELECT c{number % COLUMNS} FROM t{number // COLUMNS} WHERE id = %s"


def build_template(dsn: str) -> None:
    """The tables every workload database copies."""
    columns = ", ".join(f"c{j} int" for j in range(COLUMNS))
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TABLES):
            conn.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, {columns})")
            conn.execute(f"INSERT INTO t{i} SELECT g FROM generate_series(1, 100) g")
        conn.execute("VACUUM ANALYZE")


def run_statements(dsn: str, numbers: Sequence[int]) -> None:
    """Run the statements *numbers* once each (server-side binding: texts hold ``$1``)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.pipeline():
        for number in numbers:
            conn.execute(statement(number), (number % 100 + 1,))


def move(dsn: str, rng: random.Random) -> None:
    run_statements(dsn, rng.sample(range(STATEMENTS), MOVED))


@contextmanager
def quiet(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(QUIET)
        yield conn


def table_bytes(conn: psycopg.Connection[Any], tables_sql: str, vacuum: bool = False) -> int:
    """The tables' size with indexes and TOAST (after a VACUUM of each when *vacuum*)."""
    tables = [row[0] for row in conn.execute(tables_sql)]
    if vacuum:
        for table in tables:
            conn.execute(f"VACUUM {table}")
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(t::regclass)), 0)::bigint "
        "FROM unnest(%s::text[]) t",
        (tables,),
    ).fetchone()
    return int(row[0]) if row else 0


def wal_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0


@dataclass
class Series:
    """One measured quantity per round."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **values: float) -> None:
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def low_high(self, name: str) -> tuple[float, float]:
        return min(self.values[name]), max(self.values[name])


# -- 1. one database ------------------------------------------------------------------------


def powa_snapshot(conn: psycopg.Connection[Any]) -> tuple[float, int]:
    """``powa_take_snapshot()``: its ms and the history rows it added (none at aggregation)."""
    before = conn.execute("SELECT count(*) FROM powa_statements_history_current").fetchone()
    start = time.perf_counter()
    failed = conn.execute("SELECT powa_take_snapshot()").fetchone()
    ms = (time.perf_counter() - start) * 1000
    assert failed == (0,), f"powa_take_snapshot() failed in {failed} modules"
    after = conn.execute("SELECT count(*) FROM powa_statements_history_current").fetchone()
    assert before is not None and after is not None
    return ms, after[0] - before[0]


def powa_logical_bytes(conn: psycopg.Connection[Any]) -> int:
    """The size of the rows of the latest snapshot in ``powa_statements_history_current``."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_column_size(h.*)), 0) FROM powa_statements_history_current h "
        "WHERE (h.record).ts = (SELECT max((record).ts) FROM powa_statements_history_current)"
    ).fetchone()
    return int(row[0]) if row else 0


def dbtools_logical_bytes(conn: psycopg.Connection[Any], sample_id: int) -> tuple[int, int]:
    """The size of one sample's rows (header and every row table) and its statement rows."""
    row = conn.execute(
        """SELECT (SELECT sum(pg_column_size(s.*)) FROM perf_monitoring.snapshots s WHERE id = %(id)s)
           + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM perf_monitoring.statement_stats r
              WHERE snapshot_id = %(id)s)
           + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM perf_monitoring.table_stats r
              WHERE snapshot_id = %(id)s)
           + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM perf_monitoring.index_stats r
              WHERE snapshot_id = %(id)s)
           + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM perf_monitoring.database_stats r
              WHERE snapshot_id = %(id)s),
           (SELECT count(*) FROM perf_monitoring.statement_stats WHERE snapshot_id = %(id)s)""",
        {"id": sample_id},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def one_database(
    sandbox: Sandbox, rounds: int, cli_rounds: int, rng: random.Random
) -> dict[str, Any]:
    dsn, powa = sandbox.dsn("bench_01"), sandbox.dsn("powa")
    with quiet(powa) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    run_statements(dsn, range(STATEMENTS))
    result: dict[str, Any] = {}
    dbtools, powa_series, cli = Series(), Series(), Series()
    with quiet(dsn) as mon, quiet(powa) as repo:
        # PoWA aggregates at the snapshot whose sequence (the first is 2) is a multiple of
        # powa.coalesce: the last round's.
        repo.execute(f"SET powa.coalesce = {rounds + 2}")
        with Collector([Target("bench_01", dsn)], interval_s=INTERVAL_S) as collector:
            collector.open_all()
            for number in range(rounds + 1):
                if number:
                    move(dsn, rng)
                # dbtools
                before = table_bytes(mon, MONITORING_TABLES_SQL, vacuum=True)
                wal = wal_lsn(mon)
                cpu = time.process_time()
                done = collector.run_round(number)
                cpu = time.process_time() - cpu
                wal_d = wal_lsn(mon) - wal
                (outcome,) = done.outcomes
                assert outcome.sample is not None, outcome.describe()
                grown = table_bytes(mon, MONITORING_TABLES_SQL) - before
                logical, statement_rows = dbtools_logical_bytes(mon, outcome.sample.id)
                # PoWA
                before_p = table_bytes(repo, POWA_TABLES_SQL, vacuum=True)
                wal = wal_lsn(repo)
                ms, rows = powa_snapshot(repo)
                wal_p = wal_lsn(repo) - wal
                grown_p = table_bytes(repo, POWA_TABLES_SQL) - before_p
                if number == 0:
                    result["first"] = {
                        "dbtools_ms": done.seconds * 1000,
                        "dbtools_bytes": grown,
                        "dbtools_rows": outcome.sample.rows_stored,
                        "powa_ms": ms,
                        "powa_bytes": grown_p,
                        "powa_rows": rows,
                    }
                    continue
                if number == rounds:  # PoWA's aggregation
                    history = repo.execute(
                        "SELECT pg_total_relation_size('powa_statements_history'), "
                        "(SELECT sum(cardinality(records)) FROM powa_statements_history)"
                    ).fetchone()
                    assert history is not None
                    result["coalesce"] = {
                        "ms": ms,
                        "history_bytes": int(history[0]),
                        "records": int(history[1]),
                        "snapshots": rounds,
                        "wal": wal_p,
                    }
                    continue
                dbtools.add(
                    ms=done.seconds * 1000,
                    cpu_ms=cpu * 1000,
                    bytes=grown,
                    logical=logical,
                    rows=outcome.sample.rows_stored,
                    statement_rows=statement_rows,
                    wal=wal_d,
                )
                powa_series.add(ms=ms, bytes=grown_p, logical=powa_logical_bytes(repo),
                                rows=rows, wal=wal_p)  # fmt: skip
        # `dbtools collect --once`, a process per sample (state loaded from the store)
        for _ in range(cli_rounds):
            move(dsn, rng)
            before = table_bytes(mon, MONITORING_TABLES_SQL, vacuum=True)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "dbtools", "collect", "--once", "--target-dsn",
                 f"bench_01={dsn}"],
                check=True, cwd=REPO, capture_output=True,
            )  # fmt: skip
            cli.add(
                ms=(time.perf_counter() - start) * 1000,
                bytes=table_bytes(mon, MONITORING_TABLES_SQL) - before,
            )
    result["dbtools"], result["powa"], result["cli"] = dbtools, powa_series, cli
    return result


# -- 2. the old full-copy storage (revision 0004) ----------------------------------------------

OLD_CHILD = """
import sys, time
import dbtools
from dbtools.stats import snapshots  # the package's name then
assert dbtools.__file__.startswith(sys.argv[2]), dbtools.__file__
from dbtools.schema.revisions import upgrade
upgrade(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    snapshots.snapshot(sys.argv[1], line.strip())
    print((time.perf_counter() - start) * 1000, flush=True)
"""


def old_storage(sandbox: Sandbox, rounds: int, rng: random.Random) -> Series:
    """Bytes and ms per ``snapshot()`` at revision 0004, in database ``bench_full``."""
    dsn = sandbox.dsn("bench_full")
    series = Series()
    with tempfile.TemporaryDirectory(prefix="dbtools-0004-") as tree:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", OLD_STORAGE], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        child = subprocess.Popen(
            [sys.executable, "-c", OLD_CHILD, dsn, tree],
            cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": tree},
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            run_statements(dsn, range(STATEMENTS))
            with quiet(dsn) as mon:
                for number in range(rounds + 1):
                    if number:
                        move(dsn, rng)
                    before = table_bytes(mon, MONITORING_TABLES_SQL, vacuum=True)
                    child.stdin.write(f"s{number}\n")
                    child.stdin.flush()
                    ms = float(child.stdout.readline())
                    grown = table_bytes(mon, MONITORING_TABLES_SQL) - before
                    if number:  # the first also stores every text
                        series.add(ms=ms, bytes=grown)
        finally:
            child.stdin.close()
            child.wait(timeout=60)
    return series


# -- 3. the fleet --------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FIRST_ROUND_WAIT_S = 900


def server_cpu(postmaster: int) -> float:
    """CPU seconds the server spent so far: the postmaster's own and its exited children's
    (reaped), and every live child's (the backends, background processes). Only the
    benchmark's sandbox: *postmaster* is its pid."""

    def times(pid: int, reaped: bool) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0  # exited in between (then counted in the postmaster's reaped time)
        # utime, stime, cutime, cstime: fields 14-17 of stat (11-14 after the command)
        return sum(int(f) for f in fields[11 : 15 if reaped else 13])

    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    ticks = times(postmaster, True) + sum(times(int(pid), False) for pid in children)
    return ticks / CLOCK_TICKS


def current_rss() -> int:
    """The process's resident memory now (bytes)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def fleet_child(
    dsns: Sequence[str], rounds: int, seed: int, postmaster: int, store: str | None, trace: bool
) -> None:
    """In its own process (RSS is the collector's; run from another tree, the collector of
    another commit): a first round, then *rounds* rounds after a move in every database, the
    samples in *store* (None: each target's own repository); prints one JSON line per round
    (*trace*: with tracemalloc's peak of Python allocations during the round: slower)."""
    rng = random.Random(seed)
    targets = [Target(f"bench_{i:02d}", dsn) for i, dsn in enumerate(dsns, 1)]
    repositories = [store] if store is not None else dsns
    # a round waits for every target however long it takes (a first round of 50 reads every
    # text: longer than a 60 s interval on a loaded machine)
    with Collector(targets, store=store, interval_s=FIRST_ROUND_WAIT_S) as collector:
        collector.open_all()
        for number in range(rounds + 1):
            if number:
                for dsn in dsns:
                    move(dsn, rng)
            before = sum(bytes_of(dsn) for dsn in repositories)
            time.sleep(0.2)  # the movers' backends have exited and been reaped
            if trace:
                tracemalloc.start()
            cpu, server = time.process_time(), server_cpu(postmaster)
            done = collector.run_round(number)
            cpu, server = time.process_time() - cpu, server_cpu(postmaster) - server
            traced = tracemalloc.get_traced_memory()[1] if trace else None
            tracemalloc.stop()
            assert done.stored == len(dsns), done.line()
            grown = sum(bytes_of(dsn) for dsn in repositories) - before
            rows = sum(o.sample.rows_stored for o in done.outcomes if o.sample is not None)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(json.dumps({"round": number, "seconds": done.seconds, "cpu": cpu,
                              "server_cpu": server, "bytes": grown, "rows": rows,
                              "peak_rss": peak, "rss": current_rss(), "traced": traced}),
                  flush=True)  # fmt: skip


def bytes_of(dsn: str) -> int:
    with quiet(dsn) as conn:
        return table_bytes(conn, MONITORING_TABLES_SQL)


@contextmanager
def tree_of(commit: str | None) -> Iterator[Path]:
    """The repository's tree at *commit* (None: this one)."""
    if commit is None:
        yield REPO
        return
    with tempfile.TemporaryDirectory(prefix=f"dbtools-{commit}-") as tree:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        yield Path(tree)


_STORES = iter(range(1, 1 << 30))


def newest_revision(tree: Path) -> str:
    """The newest revision *tree*'s migrations hold (an older commit's collector refuses a store
    at a revision it does not know)."""
    return max(path.name[:4] for path in (tree / "migrations" / "versions").glob("[0-9]*_*.py"))


def fresh_store(store_server: Sandbox, revision: str) -> str:
    """A new central store on *store_server* migrated to *revision* (each collector run starts
    empty)."""
    name, template = f"store_{next(_STORES):02d}", f"store_{revision}"
    with quiet(store_server.dsn()) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone():
            conn.execute(f"CREATE DATABASE {template}")
            upgrade(store_server.dsn(template), revision)
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return store_server.dsn(name)


def run_fleet(
    sandbox: Sandbox,
    size: int,
    rounds: int,
    rng: random.Random,
    commit: str | None = None,
    store_server: Sandbox | None = None,
    trace: bool = False,
) -> dict[str, Any]:
    """*rounds* collector rounds over databases bench_01.. (*size* of them) by the collector
    of *commit* (None: this tree), in a child process; the samples in a fresh store on
    *store_server* (None: each target's own repository)."""
    dsns = [sandbox.dsn(f"bench_{i:02d}") for i in range(1, size + 1)]
    postmaster = int((sandbox.data_dir / "postmaster.pid").read_text().split()[0])
    with tree_of(commit) as tree:
        store = (
            ["--store", fresh_store(store_server, newest_revision(tree))]
            if store_server is not None
            else []
        )
        child = subprocess.run(
            [sys.executable, str(HERE / "collect.py"), "--fleet-child", str(rounds),
             "--seed", str(rng.randrange(1 << 30)), "--postmaster", str(postmaster),
             "--tables", str(TABLES), *store, *(["--tracemalloc"] if trace else []), *dsns],
            check=False, cwd=tree, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(tree)},
        )  # fmt: skip
    if child.returncode:
        raise RuntimeError(f"the fleet child of {size} failed:\n{child.stderr[-3000:]}")
    lines = child.stdout.splitlines()
    measured = [json.loads(line) for line in lines]
    series = Series()
    for entry in measured[1:]:
        series.add(**{k: entry[k] for k in ("seconds", "cpu", "server_cpu", "bytes", "rows")})
    return {
        "size": size,
        "commit": commit,
        "series": series,
        "first": measured[0],
        "peak_rss": max(e["peak_rss"] for e in measured),
        "rss": measured[-1]["rss"],
        "traced": measured[-1].get("traced"),
        "store": store_server is not None,
    }


def powa_fleet(sandbox: Sandbox, size: int, rounds: int, rng: random.Random) -> Series:
    """``powa_take_snapshot()`` covering the databases bench_01.. (*size*), after a move in
    each: ms, server CPU, bytes, rows."""
    dsns = [sandbox.dsn(f"bench_{i:02d}") for i in range(1, size + 1)]
    postmaster = int((sandbox.data_dir / "postmaster.pid").read_text().split()[0])
    powa = Series()
    with quiet(sandbox.dsn("powa")) as repo:
        repo.execute("SET powa.coalesce = 1000")  # no aggregation in these rounds
        for _ in range(rounds):
            for dsn in dsns:
                move(dsn, rng)
            before = table_bytes(repo, POWA_TABLES_SQL, vacuum=True)
            time.sleep(0.2)
            server = server_cpu(postmaster)
            ms, rows = powa_snapshot(repo)
            server = server_cpu(postmaster) - server
            powa.add(ms=ms, server_cpu=server, rows=rows,
                     bytes=table_bytes(repo, POWA_TABLES_SQL) - before)  # fmt: skip
    return powa


def fleet(
    sandbox: Sandbox,
    rounds: int,
    powa_rounds: int,
    one_rounds: int,
    rng: random.Random,
    store_server: Sandbox | None,
    before: str = BEFORE,
    powa: bool = True,
    trace: bool = False,
) -> dict[str, Any]:
    """One database, ``FLEET`` and ``BIG_FLEET``: the collector of this tree and of *before*
    side by side, and PoWA (unless not *powa*); the samples on *store_server* (None: each
    target's own repository)."""
    result: dict[str, Any] = {"before_commit": before}

    def run(size: int, rounds: int, commit: str | None = None) -> dict[str, Any]:
        return run_fleet(sandbox, size, rounds, rng, commit, store_server, trace)

    print("fleet: one database (before, after)…", file=sys.stderr)
    result["one_before"] = run(1, one_rounds, before)
    result["one_after"] = run(1, one_rounds)
    # the server holds the entries of the databases measured, no more
    for i in range(2, FLEET + 1):
        run_statements(sandbox.dsn(f"bench_{i:02d}"), range(STATEMENTS))
    print(f"fleet: {FLEET} databases (before, after{', PoWA' * powa})…", file=sys.stderr)
    result["before"] = run(FLEET, rounds, before)
    result["after"] = run(FLEET, rounds)
    if powa:
        result["powa"] = powa_fleet(sandbox, FLEET, powa_rounds, rng)
    # what is measured so far, should the large fleet fail
    (sandbox.directory.parent / f"{sandbox.directory.name}-fleet.pickle").write_bytes(
        pickle.dumps(result)
    )
    for i in range(FLEET + 1, BIG_FLEET + 1):
        run_statements(sandbox.dsn(f"bench_{i:02d}"), range(STATEMENTS))
    print(f"fleet: {BIG_FLEET} databases ({'after, PoWA' if powa else 'before, after'})…",
          file=sys.stderr)  # fmt: skip
    if not powa:  # a fleet alone: the memory per target of both collectors
        result["big_before"] = run(BIG_FLEET, rounds, before)
    result["big"] = run(BIG_FLEET, rounds)
    if powa:
        result["big_powa"] = powa_fleet(sandbox, BIG_FLEET, powa_rounds, rng)
    return result


def fleet_table(result: dict[str, Any]) -> str:
    """The collectors alone (``--fleet-only``): medians per round, side by side."""
    mib = 2**20
    lines = [
        f"| per round, median ({TABLES * COLUMNS:,} statements a database) | size | wall s | "
        "collector CPU s | server CPU s | rows | repository bytes | RSS MiB | traced peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, who in (("one_before", "before"), ("one_after", "after"), ("before", "before"),
                     ("after", "after"), ("big_before", "before"), ("big", "after")):  # fmt: skip
        run = result[key]
        series = run["series"]
        traced = "-" if run["traced"] is None else f"{run['traced'] / mib:.1f}"
        lines.append(
            f"| {who} ({result['before_commit'] if who == 'before' else 'this tree'}) | "
            f"{run['size']} | {series.median('seconds'):.2f} | {series.median('cpu'):.3f} | "
            f"{series.median('server_cpu'):.2f} | {n(series.median('rows'))} | "
            f"{n(series.median('bytes'))} | {run['rss'] / mib:.1f} | {traced} |"
        )
    cpu = {key: result[key]["series"].median("cpu") for key in ("one_before", "one_after",
                                                                "before", "after")}  # fmt: skip
    lines.append(
        f"\nCollector CPU per sample, after/before: one database {cpu['one_after'] * 1000:.0f} "
        f"vs {cpu['one_before'] * 1000:.0f} ms (**{cpu['one_after'] / cpu['one_before']:.2f}x**); "
        f"per target in a round of {FLEET} {cpu['after'] / FLEET * 1000:.0f} vs "
        f"{cpu['before'] / FLEET * 1000:.0f} ms (**{cpu['after'] / cpu['before']:.2f}x**)."
    )
    for before_or_after, small, big in (("before", "before", "big_before"),
                                        ("after", "after", "big")):  # fmt: skip
        grown = (result[big]["rss"] - result[small]["rss"]) / (BIG_FLEET - FLEET) / mib
        lines.append(f"\nMemory per target ({before_or_after}): RSS growth per added target "
                     f"from {FLEET} to {BIG_FLEET}: **{grown:.2f} MiB**.")  # fmt: skip
    return "\n".join(lines)


# -- the results file --------------------------------------------------------------------------


def n(value: float) -> str:
    return f"{value:,.0f}"


def report(
    args: argparse.Namespace,
    version: str,
    single: dict[str, Any],
    old: Series,
    fleet_result: dict[str, Any],
    started: datetime.datetime,
    elapsed: float,
    earlier: list[str],
) -> str:
    d, p, c = single["dbtools"], single["powa"], single["cli"]
    coalesce = single["coalesce"]
    amortised = coalesce["history_bytes"] / coalesce["snapshots"]
    first = single["first"]
    lines = [
        "# Benchmark: dbtools collect beside PoWA",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC by `python -m benchmarks.collect --rounds "
        f"{args.rounds} --fleet-rounds {args.fleet_rounds}` on PostgreSQL {version} (sandbox, "
        f"Debian binaries, PoWA {args.powa_version}), one run of {elapsed / 60:.0f} min, side "
        "by side.",
        "",
        *(f"- {line}" for line in machine_lines()),
        "",
        f"Workload: databases of {TABLES} tables x {COLUMNS} columns, {STATEMENTS:,} distinct "
        f"statements each; before each sample a random {MOVED} of them (10%) run again. "
        "Bytes: growth of the repository's tables with indexes and TOAST (dbtools: the "
        "`perf_monitoring` tables; PoWA: the tables of the `powa` extension), both VACUUMed "
        "before each sample (not timed). Logical bytes: `pg_column_size` of the rows the "
        "sample added. Milliseconds: wall time of the call (client side).",
        "",
        *goal_lines(fleet_result, d, p),
        "## One database, 5,000 statements, 10% moving",
        "",
        f"Medians of {len(d.values['ms'])} samples.",
        "",
        "| per sample | dbtools (collector, in-process) | PoWA `powa_take_snapshot()` |",
        "|---|---:|---:|",
        f"| rows stored | {n(d.median('rows'))} (statements: {n(d.median('statement_rows'))}) "
        f"| {n(p.median('rows'))} |",
        f"| on-disk bytes | **{n(d.median('bytes'))}** | **{n(p.median('bytes'))}** |",
        f"| logical bytes | {n(d.median('logical'))} | {n(p.median('logical'))} |",
        f"| WAL bytes | {n(d.median('wal'))} | {n(p.median('wal'))} |",
        f"| ms, median (min-max) | {d.median('ms'):.0f} ({d.low_high('ms')[0]:.0f}-"
        f"{d.low_high('ms')[1]:.0f}) | {p.median('ms'):.0f} ({p.low_high('ms')[0]:.0f}-"
        f"{p.low_high('ms')[1]:.0f}) |",
        f"| first sample (every text): ms, bytes, rows | {first['dbtools_ms']:.0f} ms, "
        f"{n(first['dbtools_bytes'])} B, {n(first['dbtools_rows'])} | {first['powa_ms']:.0f} ms,"
        f" {n(first['powa_bytes'])} B, {n(first['powa_rows'])} |",
        "",
        f"Statement rows stored per dbtools sample: min {n(d.low_high('statement_rows')[0])}, "
        f"max {n(d.low_high('statement_rows')[1])}: exactly the {MOVED} statements that moved "
        "(an entry that did not move stores nothing). The other rows are the tables and "
        "indexes the moved statements read (and the monitoring tables the previous sample "
        "wrote), and the database row. PoWA stores a row for every entry at every snapshot.",
        "",
        f"`dbtools collect --once` (a process per sample: Python start-up, connecting, loading "
        f"the target's state from the store), median of {len(c.values['ms'])}: "
        f"{c.median('ms'):.0f} ms, {n(c.median('bytes'))} B.",
        "",
        f"PoWA's aggregation (`powa.coalesce` = {coalesce['snapshots'] + 2}, at the last round) "
        f"took {coalesce['ms']:.0f} ms and {n(coalesce['wal'])} B of WAL; "
        f"`powa_statements_history` then held {n(coalesce['history_bytes'])} B for "
        f"{coalesce['snapshots']} snapshots ({n(coalesce['records'])} records): "
        f"**{n(amortised)} B per snapshot** in the long run, against "
        f"{n(p.median('bytes'))} B per snapshot until the aggregation. dbtools has no such "
        "step: its samples stay at their size (its roll-ups keep one sample an hour).",
        "",
        "## The old full-copy storage (revision 0004)",
        "",
        f"`snapshots.snapshot()` of the commit before revision 0005 (`{OLD_STORAGE}`), run from "
        f"its own tree on the same workload in database `bench_full`, median of "
        f"{len(old.values['ms'])}: **{n(old.median('bytes'))} B** per snapshot, "
        f"{old.median('ms'):.0f} ms. Per sample, dbtools now stores "
        f"{old.median('bytes') / d.median('bytes'):.1f}x less than before.",
        "",
        *fleet_lines(fleet_result, d, p),
        *earlier,
    ]
    return "\n".join(lines)


GOALS = "## Goals (issue 25 points 4-5)"


def goal_lines(result: dict[str, Any], one: Series, powa_one: Series) -> list[str]:
    """The goals of issue 25 points 4-5 against this run's figures."""
    before, after = result["before"]["series"], result["after"]["series"]
    ob, oa = result["one_before"]["series"], result["one_after"]["series"]
    per_target = (result["big"]["rss"] - result["after"]["rss"]) / (BIG_FLEET - FLEET)
    serves = INTERVAL_S / (after.median("cpu") / FLEET)

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    server, server_before = after.median("server_cpu"), before.median("server_cpu")
    cpu_one, cpu_one_before = oa.median("cpu"), ob.median("cpu")
    cpu_fleet, cpu_fleet_before = after.median("cpu") / FLEET, before.median("cpu") / FLEET
    return [
        GOALS,
        "",
        "| goal | before | after | |",
        "|---|---:|---:|---|",
        f"| server CPU per round, {FLEET} databases x {STATEMENTS:,}: <= 1 s | "
        f"{server_before:.2f} s | **{server:.2f} s** ({server / server_before:.2f}x) | "
        f"{met(server <= 1)} |",
        f"| the same, {BIG_FLEET} databases (figure asked) | - | "
        f"{result['big']['series'].median('server_cpu'):.2f} s | |",
        f"| per-sample wall time <= PoWA's (one database, same run: PoWA "
        f"{powa_one.median('ms'):.0f} ms) | {ob.median('seconds') * 1000:.0f} ms | "
        f"**{one.median('ms'):.0f} ms** in-process ({oa.median('seconds') * 1000:.0f} ms in "
        f"the child) | {met(one.median('ms') <= powa_one.median('ms'))} |",
        f"| collector CPU per sample halved (one database) | {cpu_one_before * 1000:.0f} ms | "
        f"**{cpu_one * 1000:.0f} ms** ({cpu_one / cpu_one_before:.2f}x) | "
        f"{met(cpu_one <= cpu_one_before / 2)} |",
        f"| the same, per target in a round of {FLEET} | {cpu_fleet_before * 1000:.0f} ms | "
        f"**{cpu_fleet * 1000:.0f} ms** ({cpu_fleet / cpu_fleet_before:.2f}x) | "
        f"{met(cpu_fleet <= cpu_fleet_before / 2)} |",
        f"| memory per target <= 2 MiB | - | **{per_target / 2**20:.2f} MiB** | "
        f"{met(per_target <= 2 * 2**20)} |",
        f"| targets one collector serves at {INTERVAL_S} s: 1,000 | "
        f"{INTERVAL_S / cpu_fleet_before:,.0f} | **{serves:,.0f}** | {met(serves >= 1000)} |",
        "",
    ]


def fleet_lines(result: dict[str, Any], one: Series, powa_one: Series) -> list[str]:
    """The fleet's sections: this tree's collector beside ``BEFORE``'s and PoWA's."""
    day = 86400 // INTERVAL_S
    ob, oa = result["one_before"]["series"], result["one_after"]["series"]
    b, a, big = result["before"]["series"], result["after"]["series"], result["big"]["series"]
    pw, bpw = result["powa"], result["big_powa"]
    # memory per target: the collector's RSS growth from 20 to 50 targets (same code)
    per_target = (result["big"]["rss"] - result["after"]["rss"]) / (BIG_FLEET - FLEET)
    per_target_before = (result["before"]["rss"] - result["one_before"]["rss"]) / (FLEET - 1)
    per_target_after = (result["after"]["rss"] - result["one_after"]["rss"]) / (FLEET - 1)
    sample_cpu = a.median("cpu") / FLEET
    serves = INTERVAL_S / sample_cpu

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y else "-"

    before = result.get("before_commit", BEFORE)
    described = (
        " (main before one scan per server: a scan of the server's pg_stat_statements per "
        "target, a second for the header's `toplevel_calls`, a row object per entry)"
        if before == BEFORE
        else ""
    )
    placement = (
        "in a central `--store` on a second sandbox server"
        if result["after"].get("store")
        else "in each target's own `perf_monitoring`, on the monitored server"
    )

    return [
        "## The collector before and after one scan per server (issue 25 points 4-5)",
        "",
        f"Each line: a `Collector` in its own process (the default concurrency of 4, the "
        f"samples {placement}), a first round then {len(a.values['seconds'])} "
        f"measured rounds, each after a 10% move in every database. *Before*: the collector "
        f"of commit `{before}`{described}, run from its own tree; *after*: this tree. Server "
        "CPU: the monitored sandbox server's processes' CPU time during the round "
        "(`/proc/<pid>/stat` of its "
        "postmaster, reaped children included, and of every live child: backends and "
        "background processes). Collector CPU: the collector process's (all threads). "
        "Medians; ratios after/before.",
        "",
        f"| per round, median | 1 database: before | after | after/before | {FLEET} "
        f"databases: before | after | after/before | {BIG_FLEET} databases: after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| server CPU s | {ob.median('server_cpu'):.3f} | {oa.median('server_cpu'):.3f} | "
        f"{ratio(oa.median('server_cpu'), ob.median('server_cpu'))} | "
        f"{b.median('server_cpu'):.2f} | **{a.median('server_cpu'):.2f}** | "
        f"{ratio(a.median('server_cpu'), b.median('server_cpu'))} | "
        f"**{big.median('server_cpu'):.2f}** |",
        f"| wall s | {ob.median('seconds'):.3f} | {oa.median('seconds'):.3f} | "
        f"{ratio(oa.median('seconds'), ob.median('seconds'))} | {b.median('seconds'):.2f} | "
        f"**{a.median('seconds'):.2f}** | {ratio(a.median('seconds'), b.median('seconds'))} | "
        f"**{big.median('seconds'):.2f}** |",
        f"| collector CPU s | {ob.median('cpu'):.3f} | {oa.median('cpu'):.3f} | "
        f"{ratio(oa.median('cpu'), ob.median('cpu'))} | {b.median('cpu'):.2f} | "
        f"{a.median('cpu'):.2f} | {ratio(a.median('cpu'), b.median('cpu'))} | "
        f"{big.median('cpu'):.2f} |",
        f"| rows stored | {n(ob.median('rows'))} | {n(oa.median('rows'))} | | "
        f"{n(b.median('rows'))} | {n(a.median('rows'))} | | {n(big.median('rows'))} |",
        f"| on-disk bytes | {n(ob.median('bytes'))} | {n(oa.median('bytes'))} | | "
        f"{n(b.median('bytes'))} | {n(a.median('bytes'))} | | {n(big.median('bytes'))} |",
        f"| collector RSS after the rounds, MiB | {result['one_before']['rss'] / 2**20:.1f} | "
        f"{result['one_after']['rss'] / 2**20:.1f} | | {result['before']['rss'] / 2**20:.1f} | "
        f"{result['after']['rss'] / 2**20:.1f} | | {result['big']['rss'] / 2**20:.1f} |",
        "",
        f"PoWA beside it, `powa_take_snapshot()` (one call covers the server), medians of "
        f"{len(pw.values['ms'])}: {FLEET} databases: **{pw.median('ms') / 1000:.2f} s** wall, "
        f"**{pw.median('server_cpu'):.2f} s** server CPU, {n(pw.median('rows'))} rows, "
        f"{n(pw.median('bytes'))} B; {BIG_FLEET} databases: {bpw.median('ms') / 1000:.2f} s "
        f"wall, {bpw.median('server_cpu'):.2f} s server CPU, {n(bpw.median('rows'))} rows, "
        f"{n(bpw.median('bytes'))} B.",
        "",
        "Per sample (one database of 5,000 statements, the in-process collector of the first "
        f"section beside PoWA in the same run): {one.median('ms'):.0f} ms wall and "
        f"{one.median('cpu_ms'):.0f} ms collector CPU against PoWA's "
        f"{powa_one.median('ms'):.0f} ms ({ratio(one.median('ms'), powa_one.median('ms'))} "
        "of PoWA's time).",
        "",
        "Memory per target (the collector's RSS growth per added target): "
        f"**{per_target / 2**20:.2f} MiB** from {FLEET} to {BIG_FLEET} targets (after); from 1 "
        f"to {FLEET}: {per_target_before / 2**20:.2f} MiB before, "
        f"{per_target_after / 2**20:.2f} MiB after.",
        "",
        f"Targets one collector serves at a {INTERVAL_S} s interval, from its CPU (one core, "
        f"Python's lock held while it computes): {INTERVAL_S} s / "
        f"{sample_cpu * 1000:.0f} ms per target = **{serves:,.0f}**; from memory at "
        f"{per_target / 2**20:.2f} MiB per target, 1,000 targets take "
        f"{per_target * 1000 / 2**30:.1f} GiB. Per day at a 60 s interval: "
        f"{a.median('bytes') / FLEET * day / 1e6:.0f} MB per target "
        f"({a.median('bytes') * day / 1e9:.2f} GB for {FLEET}).",
        "",
        f"The first round (every text): {FLEET} databases {result['after']['first']['seconds']:.1f}"
        f" s after, {result['before']['first']['seconds']:.1f} s before (the state loaded "
        f"from the store); {BIG_FLEET} databases {result['big']['first']['seconds']:.1f} s.",
        "",
    ]


def configure(tables: int, sizes: str) -> None:
    """The workload's size: *tables* per database, the fleet's two *sizes* ("20,50")."""
    global TABLES, STATEMENTS, MOVED, FLEET, BIG_FLEET  # the workload size the run asked for
    TABLES = tables
    STATEMENTS = TABLES * COLUMNS
    MOVED = STATEMENTS // 10
    FLEET, BIG_FLEET = (int(size) for size in sizes.split(","))
    if not 1 < FLEET < BIG_FLEET or TABLES < 1:
        sys.exit("Error: --fleet-sizes takes two sizes, 1 < SMALL < BIG; --tables at least 1")


@contextmanager
def store_server_of(args: argparse.Namespace, directory: Path) -> Iterator[Sandbox | None]:
    """The fleet's store server (``--fleet-store server``), or None (each target's own)."""
    if args.fleet_store != "server":
        yield None
        return
    from dbtools.db.sandbox import Sandbox

    with Sandbox(directory / "store", pg_bin=args.pg_bin, settings=STORE_SETTINGS) as server:
        yield server


def workload_databases(sandbox: Sandbox) -> str:
    """The template bench_tables, bench_head (migrated) and bench_01.. (``BIG_FLEET``) on
    *sandbox*; returns the server's version."""
    with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
        conn.execute(QUIET)
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        conn.execute("CREATE DATABASE bench_tables")
    build_template(sandbox.dsn("bench_tables"))
    with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_head TEMPLATE bench_tables")
    upgrade(sandbox.dsn("bench_head"))
    with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
        for i in range(1, BIG_FLEET + 1):
            conn.execute(f"CREATE DATABASE bench_{i:02d} TEMPLATE bench_head")
    return version


def fleet_only(args: argparse.Namespace) -> None:
    """``--fleet-only``: the fleet's collectors, before and after, at the sizes asked; a
    table on stdout."""
    from dbtools.db.sandbox import Sandbox

    rng = random.Random(args.seed)
    directory = Path(tempfile.mkdtemp(prefix="dbtools-bench-fleet-"))
    with Sandbox(directory, pg_bin=args.pg_bin, settings=FLEET_ONLY_SETTINGS) as sandbox, \
            store_server_of(args, directory) as store_server:  # fmt: skip
        version = workload_databases(sandbox)
        run_statements(sandbox.dsn("bench_01"), range(STATEMENTS))
        result = fleet(sandbox, args.fleet_rounds, 0, args.one_rounds, rng, store_server,
                       args.before, powa=False, trace=args.tracemalloc)  # fmt: skip
    where = "a second server" if store_server is not None else "each target's own repository"
    print(f"PostgreSQL {version}, {STATEMENTS:,} statements a database, {MOVED} moving; "
          f"samples in {where}; {args.fleet_rounds} measured rounds"
          f"{' (traced)' if args.tracemalloc else ''}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")  # fmt: skip
    print(fleet_table(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--cli-rounds", type=int, default=5)
    parser.add_argument("--old-rounds", type=int, default=7)
    parser.add_argument("--fleet-rounds", type=int, default=8)
    parser.add_argument("--powa-fleet-rounds", type=int, default=5)
    parser.add_argument("--one-rounds", type=int, default=10)
    parser.add_argument("--postmaster", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg-bin", default=PG15)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-collect.md")
    parser.add_argument("--fleet-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("dsns", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)  # the fleet child's central store
    parser.add_argument("--tables", type=int, default=TABLES,
                        help=f"tables per database ({COLUMNS} statements each)")  # fmt: skip
    parser.add_argument("--fleet-sizes", default=f"{FLEET},{BIG_FLEET}",
                        help="the fleet's two sizes (databases on the server)")  # fmt: skip
    parser.add_argument("--fleet-store", choices=("server", "target"), default="server",
                        help="the samples on a second server (default) or in each target")  # fmt: skip
    parser.add_argument("--fleet-only", action="store_true",
                        help="the fleet's collectors alone, before and after (no PoWA)")  # fmt: skip
    parser.add_argument("--before", default=BEFORE, help="the commit compared with")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="the fleet's rounds traced (Python allocations' peak; slower)")  # fmt: skip
    args = parser.parse_args()
    configure(args.tables, args.fleet_sizes)
    if args.replay is not None:  # run with the results file the run replaced in place
        options, version, single, old, fleet_result, started, elapsed = pickle.loads(
            args.replay.read_bytes()
        )[:7]
        earlier = earlier_runs(args.output, GOALS)
        text = report(options, version, single, old, fleet_result, started, elapsed, earlier)
        args.output.write_text(text)
        print(text)
        return
    if args.fleet_child is not None:
        import dbtools  # the collector measured is the tree's the child runs in

        assert Path(dbtools.__file__).is_relative_to(Path.cwd()), dbtools.__file__
        fleet_child(args.dsns, args.fleet_child, args.seed, args.postmaster, args.store,
                    args.tracemalloc)  # fmt: skip
        return
    if args.fleet_only:
        fleet_only(args)
        return
    from dbtools.db.sandbox import Sandbox

    powa_library = Path(args.pg_bin).parent / "lib" / "powa.so"
    if not powa_library.exists():
        sys.exit(f"Error: {powa_library} is missing: apt-get install -y postgresql-15-powa")
    args.powa_version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "postgresql-15-powa"],
        capture_output=True, text=True,
    ).stdout or "?"  # fmt: skip
    rng = random.Random(args.seed)
    earlier = earlier_runs(args.output, GOALS)
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="dbtools-bench-collect-"))
    with Sandbox(directory, pg_bin=args.pg_bin, settings=SETTINGS) as sandbox, \
            store_server_of(args, directory) as store_server:  # fmt: skip
        version = workload_databases(sandbox)
        with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE powa")
            conn.execute("CREATE DATABASE bench_full TEMPLATE bench_tables")
        with psycopg.connect(sandbox.dsn("powa"), autocommit=True) as conn:
            for extension in ("btree_gist", "powa"):
                conn.execute(f"CREATE EXTENSION {extension}")
        print("old storage (0004)…", file=sys.stderr)
        with quiet(sandbox.dsn()) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        old = old_storage(sandbox, args.old_rounds, rng)
        print("one database…", file=sys.stderr)
        single = one_database(sandbox, args.rounds, args.cli_rounds, rng)
        print("fleet…", file=sys.stderr)
        fleet_result = fleet(
            sandbox, args.fleet_rounds, args.powa_fleet_rounds, args.one_rounds, rng,
            store_server, args.before,
        )  # fmt: skip
    measured = (
        args,
        version,
        single,
        old,
        fleet_result,
        started,
        time.monotonic() - clock,
        earlier,
    )
    # kept, so that the results file can be written again from them (--replay)
    (directory.parent / f"{directory.name}.pickle").write_bytes(pickle.dumps(measured))
    text = report(*measured)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
