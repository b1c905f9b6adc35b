"""Benchmark (not a test): ``dbtools report`` over 5,000 distinct statements.

Measures, side by side in one run:

0. the goals of issue 14, before (main at ``--before``, pure sqlglot, one core) and now: building
   a report over 5,000 distinct statements (each build in a fresh process: pure sqlglot, the
   compiled build, both cores, the parse cache warm), its peak RSS, and a ``--live`` report end
   to end (the ``dbtools report`` process, cache cold and warm), each as a ratio to its goal;
1. statements classified per second (scrub, parse, fingerprint) with and without the
   in-memory cache, over two periods holding the same 5,000 statements (a before/after report);
2. building and rendering a before/after report from constructed rows (no database): time per
   format and the peak of Python allocations (tracemalloc);
3. an end-to-end ``--live`` report on a sandbox PostgreSQL whose pg_stat_statements holds
   5,000 distinct statements: time and the process's peak RSS;
4. the same report with every section read from the database (activity, space, settings,
   plans, index advice, schema health), with none of them, and with each one alone.

Each goal is one row: before, now, the goal, now/goal and met or not; each measured group's load
average before and after it is written beside the figures (a shared machine). The goals of the
run the file held are kept under "Earlier runs" (``benchmarks.history``).

Run: ``.venv/bin/python -m benchmarks.report`` (writes benchmarks/RESULTS-report.md).
``--before DIR``: a checkout of the code to compare with (default: main's commit 4615b43,
extracted with ``git archive`` into a temporary directory).

``--issue-28`` measures only issue 28's goals (shapes from PostgreSQL's parser): the build over
5,000 and over 20,000 statements on one core with the parse cache cold, before (commit
d7df6b8, or ``--before``) and now, interleaved fresh processes, CPU seconds, wall time and peak
RSS, with the load average before and after each group; it writes them at the head of
RESULTS-report.md (replacing its previous ones) and leaves the rest of the file as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from benchmarks.history import earlier_runs
from benchmarks.machine import load_average, load_table, machine_lines, under_load
from dbtools.db.sandbox import temporary_sandbox
from dbtools.report import ReportOptions, make_report, render
from dbtools.report.inspection import inspect
from dbtools.report.model import Report, ReportInput, build_report
from dbtools.report.subjects import InspectionOptions, skippable
from dbtools.sqltext.families import Classifier, compiled_sqlglot
from tests.helpers import PURE_SQLGLOT
from tests.report_fixture import grown, report_input, statement

SECTIONS = skippable()  # each subject a report can go without, timed alone
STATEMENTS = 5_000
RUNS = 3
RESULTS = Path(__file__).with_name("RESULTS-report.md")
GOALS_HEADING = "## Issue 14's goals, before and now"
REPO = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "4615b43"  # main before issue 14: pure sqlglot, parses cached by queryid only
# Issue 14's goals for the report.
GOAL_BUILD_SECONDS = 2.0
GOAL_PEAK_MIB = 200.0
GOAL_LIVE_SECONDS = 3.0
GOAL_RUNS = 5  # rounds of the goals' measurements (each way once per round, interleaved)

TEMPLATES = (
    "SELECT c{a}, c{b} FROM public.t{t} WHERE c{c} = $1",
    "SELECT * FROM public.t{t} WHERE c{a} IN ($1,$2,$3) ORDER BY c{b} LIMIT $4",
    "INSERT INTO public.t{t} (c{a}, c{b}) VALUES ($1, $2) "
    "ON CONFLICT (c{a}) DO UPDATE SET c{b} = excluded.c{b}",
    "UPDATE public.t{t} SET c{a} = $1 WHERE c{b} = $2 AND c{c} > now() - $3::interval",
    "WITH x AS (SELECT c{a} FROM public.t{t} WHERE c{b} > $1) "
    "SELECT count(*) FROM x JOIN public.t{u} AS y ON y.c{c} = x.c{a}",
    "DELETE FROM public.t{t} WHERE c{a} < $1 RETURNING c{b}",
    "VACUUM (ANALYZE) public.t{t}",
)


def distinct_texts(count: int, seed: int = 5) -> list[str]:
    """*count* distinct statement texts of varied shapes (deterministic)."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        template = rng.choice(TEMPLATES)
        values = {k: rng.randrange(40) for k in ("a", "b", "c")}
        texts[template.format(t=rng.randrange(60), u=rng.randrange(60), **values)] = None
    return list(texts)


def median_seconds(action: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- 0. the goals, before and now, each in fresh processes -------------------------------------

# The peak RSS of the largest process: this one (VmHWM: its own memory's high-water mark; its
# ru_maxrss would start at its parent's size, inherited at exec) and its workers (forked, not
# exec'd: their ru_maxrss is their own, the pages they share with it included).
PEAK_RSS = """
def peak_mib():
    import resource
    with open("/proc/self/status") as status:
        own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
"""

# Builds the report of big_input() once and prints its seconds and the process's peak RSS.
BUILD_ONCE = (
    """
import json, resource, sys, time
from datetime import datetime, timezone
from pathlib import Path
mode = json.loads(sys.argv[1])
from benchmarks.report import big_input, distinct_texts
from dbtools.report.model import build_report
kwargs = {}
if not mode["before"]:  # the code of issue 14 (workers None: the idle cores)
    from dbtools.sqltext.families import Classifier, cache_namespace
    from dbtools.sqltext.parse_cache import ParseCache
    store = mode["store"] and ParseCache(Path(mode["store"]), namespace=cache_namespace())
    kwargs["classifier"] = Classifier(store=store or None, workers=mode["workers"])
data = big_input(distinct_texts(mode["statements"]))
def cpu():  # this process's and its reaped workers' CPU seconds
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )
cpu_started, started = cpu(), time.perf_counter()
build_report(data, generated_at=datetime(2026, 1, 2, tzinfo=timezone.utc), **kwargs)
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
workers = kwargs["classifier"].workers_used if kwargs else 1
"""
    + PEAK_RSS
    + """
print(json.dumps(
    {"seconds": seconds, "peak_mib": peak_mib(), "workers": workers, "cpu": cpu_seconds}
))
"""
)

RUN_DBTOOLS = "import runpy; runpy.run_module('dbtools', run_name='__main__')"
# The same, writing the process's peak RSS (MiB) to the file $BENCH_PEAK_FILE names on exit.
RUN_DBTOOLS_WITH_PEAK = (
    PEAK_RSS
    + """
import atexit, os
atexit.register(lambda: open(os.environ["BENCH_PEAK_FILE"], "w").write(str(peak_mib())))
"""
    + RUN_DBTOOLS
)


@dataclasses.dataclass(frozen=True)
class Measured:
    """Medians over fresh processes: seconds, and the peak RSS of the largest process (MiB)."""

    seconds: float
    peak_mib: float
    workers: float = 1  # parse workers (a report's default: the cores idle at the time)
    cpu: float = 0  # CPU seconds of the process and its workers


def extract_before(commit: str) -> Path:
    """The code at *commit*, extracted (``git archive``) into a temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="dbtools-before-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def child_env(code: Path, cache: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    if cache is not None:
        env["DBTOOLS_CACHE_DIR"] = str(cache)
    return env


@dataclasses.dataclass(frozen=True)
class Build:
    """One way of building the report: which code, which sqlglot, how many parse workers
    (None: the default, the idle cores), which parse cache."""

    code: Path
    pure: bool
    workers: int | None
    store: Path | None = None
    before: bool = False
    statements: int = STATEMENTS


def build_once(build: Build) -> dict[str, float]:
    """Build the report once in a fresh process: seconds, peak_mib, workers, cpu."""
    mode = {
        "before": build.before,
        "workers": build.workers,
        "store": str(build.store) if build.store else None,
        "statements": build.statements,
    }
    program = (PURE_SQLGLOT if build.pure else "") + BUILD_ONCE
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(mode)],
        capture_output=True, text=True, check=True, cwd=build.code, env=child_env(build.code),
    )  # fmt: skip
    return dict(json.loads(done.stdout.splitlines()[-1]))


def interleaved(builds: dict[str, Build], rounds: int) -> dict[str, Measured]:
    """Medians of *rounds* rounds, each building once every way in turn: on a shared machine the
    load drifts, and interleaving spreads it over every way alike."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for _ in range(rounds):
        for name, build in builds.items():
            runs[name].append(build_once(build))
    return {
        name: Measured(
            statistics.median(r["seconds"] for r in found),
            statistics.median(r["peak_mib"] for r in found),
            statistics.median(r["workers"] for r in found),
            statistics.median(r["cpu"] for r in found),
        )
        for name, found in runs.items()
    }


def live_once(code: Path, dsn: str, *, pure: bool, cache: Path | None) -> tuple[float, float]:
    """One ``dbtools report --live`` process running *code* with the parse cache in *cache*:
    its wall time and peak RSS (MiB)."""
    peak_file = Path(tempfile.mkdtemp(prefix="dbtools-bench-peak-")) / "peak"
    env = {**child_env(code, cache), "BENCH_PEAK_FILE": str(peak_file)}
    command = [sys.executable, "-c", (PURE_SQLGLOT if pure else "") + RUN_DBTOOLS_WITH_PEAK]
    args = ["report", "--live", "--dsn", dsn, "--format", "md", "--output", "-"]
    started = time.perf_counter()
    subprocess.run(
        [*command, *args], cwd=code, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=True,
    )  # fmt: skip
    return time.perf_counter() - started, float(peak_file.read_text())


def live_commands(before_code: Path, dsn: str, scratch: Path) -> dict[str, Measured]:
    """Before, now with a cold cache (a fresh directory each time) and now warm (one directory,
    filled first): GOAL_RUNS rounds, one of each per round."""
    live_once(REPO, dsn, pure=False, cache=scratch / "live")  # fills the warm cache
    runs: dict[str, list[tuple[float, float]]] = {"before": [], "cold": [], "warm": []}
    for round_ in range(GOAL_RUNS):
        runs["before"].append(live_once(before_code, dsn, pure=True, cache=None))
        runs["cold"].append(live_once(REPO, dsn, pure=False, cache=scratch / f"cold-{round_}"))
        runs["warm"].append(live_once(REPO, dsn, pure=False, cache=scratch / "live"))
    return {
        name: Measured(
            statistics.median(r[0] for r in found), statistics.median(r[1] for r in found)
        )
        for name, found in runs.items()
    }


def sqlglot_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("sqlglot")


def goal_row(what: str, before: float | None, now: float, goal: float, unit: str) -> str:
    """One Markdown row: the figure before and now, the goal, now/goal and whether it is met."""
    shown = "" if before is None else f"{before:,.2f}"
    verdict = "met" if now < goal else "**not met**"
    return f"| {what} | {shown} | {now:,.2f} | < {goal:g} {unit} | {now / goal:.2f} | {verdict} |"


# -- issue 28's goals: the build on PostgreSQL's parser, before and now ---------------------------

ISSUE_28_HEADING = "## Issue 28's goals, before and now"
ISSUE_28_BEFORE = "d7df6b8"  # main before issue 28: shapes from sqlglot's parse
ISSUE_28_RUNS = 3
# Issue 28's goals, on one core with the parse cache cold.
GOAL_28 = ((5_000, 1.0, None), (20_000, 3.0, 150.0))  # statements, CPU seconds, peak MiB


def issue_28_goals(before_code: Path, loads: dict[str, tuple[str, str]]) -> list[str]:
    """Issue 28's rows: the build over 5,000 and 20,000 statements, one core, cache cold,
    before and now, medians of ``ISSUE_28_RUNS`` interleaved fresh processes."""
    lines = [
        ISSUE_28_HEADING,
        "",
        f"Before: commit {ISSUE_28_BEFORE} (shapes from sqlglot's parse). Now: this checkout "
        "(shapes from PostgreSQL's parser through pglast, sqlglot renders only the SQL shown, "
        "the input frozen out of garbage collection). Both with the compiled sqlglot, one "
        f"worker, no parse cache; each figure the median of {ISSUE_28_RUNS} fresh processes, "
        "before and now interleaved. CPU seconds are the build's (the load inflates wall time "
        "more than CPU time); the peak RSS is the whole process's (interpreter, imports and the "
        "input rows included).",
        "",
        "| goal | before | now | goal | ratio | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    detail = []
    for statements, cpu_goal, peak_goal in GOAL_28:
        ways = {
            "before": Build(before_code, pure=False, workers=1, statements=statements),
            "now": Build(REPO, pure=False, workers=1, statements=statements),
        }
        found = under_load(
            loads,
            f"issue 28: the build over {statements:,} statements, 2 ways x {ISSUE_28_RUNS}",
            lambda ways=ways: interleaved(ways, ISSUE_28_RUNS),  # type: ignore[misc]
        )
        before, now = found["before"], found["now"]
        lines.append(
            goal_row(f"build over {statements:,} statements, one core, cache cold (CPU s)",
                     before.cpu, now.cpu, cpu_goal, "s")
        )  # fmt: skip
        if statements == 20_000:
            lines.append(
                goal_row("the same, wall time (s)", before.seconds, now.seconds, cpu_goal, "s")
            )
        if peak_goal is not None:
            lines.append(
                goal_row("peak RSS of that build (MiB)", before.peak_mib, now.peak_mib,
                         peak_goal, "MiB")
            )  # fmt: skip
        detail += [
            f"| {statements:,} | {name} | {m.cpu:.2f} | {m.seconds:.2f} | {m.peak_mib:.0f} |"
            for name, m in found.items()
        ]
    return [
        *lines,
        "",
        "| statements | code | CPU s | wall s | peak RSS MiB |",
        "|---:|---|---:|---:|---:|",
        *detail,
        "",
        "The load average (1/5/15 min) before and after each measured group:",
        "",
        *load_table(loads),
        "",
    ]


def write_issue_28(lines: list[str]) -> None:
    """Put issue 28's rows at the head of RESULTS (replacing the previous ones)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Report benchmark\n"
    if ISSUE_28_HEADING in text:
        start = text.index(ISSUE_28_HEADING)
        end = text.find("\n## ", start + len(ISSUE_28_HEADING))
        text = text[:start] + text[end + 1 :] if end >= 0 else text[:start]
    head, _, rest = text.partition("\n## ")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"Run {when}; machine: {machine()}; load average at the end: {load_average()}.", ""]
    RESULTS.write_text(head.rstrip() + "\n\n" + "\n".join([*lines[:2], *block, *lines[2:]])
                       + ("\n## " + rest if rest else ""))  # fmt: skip


# -- 1. classification rate ---------------------------------------------------------------------


def classify_all(texts: list[str], *, cache: bool, periods: int = 2) -> Classifier:
    classifier = Classifier(cache=cache, workers=1)
    for _ in range(periods):
        for queryid, text in enumerate(texts, 1):
            classifier.shape(queryid, text)
    return classifier


# -- 2. build and render from constructed rows --------------------------------------------------


def big_input(texts: list[str]):  # type: ignore[no-untyped-def]
    """The fixture's windows with 5,000 more statements in both periods."""
    data = report_input()
    extra = [statement(10_000 + i, text, 50, 5.0, 50, 100, 1) for i, text in enumerate(texts)]
    periods = []
    for step, period in enumerate(data.periods, 1):
        rows = tuple(grown(row, calls=step, total_exec_time=0.1 * step) for row in extra)
        periods.append(dataclasses.replace(period, statements=period.statements + rows))
    return dataclasses.replace(data, periods=tuple(periods))


def build(data: ReportInput) -> Report:
    return build_report(data, generated_at=datetime(2026, 1, 2, tzinfo=timezone.utc))


# -- 3. end to end on a server ------------------------------------------------------------------


def fill_pg_stat_statements(dsn: str, count: int) -> None:
    """*count* distinct statements in pg_stat_statements: c_i by c_j lookups on a wide table."""
    columns = ", ".join(f"c{i} int" for i in range(100))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE wide ({columns})")
        conn.execute("INSERT INTO wide (c0) SELECT g FROM generate_series(1, 100) g")
        sent = 0
        for i in range(100):
            for j in range(100):
                if sent == count:
                    return
                conn.execute(f"SELECT c{i} FROM wide WHERE c{j} = %s", (sent,))
                sent += 1


def live_report_seconds(dsn: str, fmt: str, sections: tuple[str, ...] = SECTIONS) -> float:
    options = ReportOptions(inspection=InspectionOptions(sections=frozenset(sections)))
    return median_seconds(lambda: render(make_report(dsn, live=True, options=options), fmt))


INSPECT_RUNS = 9


def inspection_seconds(dsn: str) -> dict[str, float]:
    """Seconds ``inspect`` takes for each section alone, and for all of them."""
    from dbtools.db.connection import session
    from dbtools.reading.live import read_live

    found = {}
    with session(dsn, autocommit=True) as conn:
        state = read_live(conn)
        for name in (*SECTIONS, "all"):
            wanted = frozenset(SECTIONS if name == "all" else (name,))
            options = InspectionOptions(sections=wanted)
            found[name] = median_seconds(
                lambda options=options: inspect(  # type: ignore[misc]
                    conn, state, state.statements, options, live=True, large_table_rows=10_000
                ),
                INSPECT_RUNS,
            )
    return found


def user_tables(dsn: str) -> int:
    """User tables in the benchmark's database."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()
    return int(row[0]) if row else 0


def machine() -> str:
    return "; ".join(machine_lines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the code to compare with")
    parser.add_argument(
        "--issue-28", action="store_true", help="only issue 28's goals (written to the head)"
    )
    args = parser.parse_args()
    if args.issue_28:
        issue_loads: dict[str, tuple[str, str]] = {}
        found = issue_28_goals(args.before or extract_before(ISSUE_28_BEFORE), issue_loads)
        write_issue_28(found)
        print("\n".join(found))
        return
    before_code = args.before or extract_before(BEFORE_COMMIT)
    scratch = Path(tempfile.mkdtemp(prefix="dbtools-bench-cache-"))
    os.environ["DBTOOLS_CACHE_DIR"] = str(scratch / "in-process")  # never the user's cache
    texts = distinct_texts(STATEMENTS)
    lookups = 2 * STATEMENTS
    loads: dict[str, tuple[str, str]] = {}

    # 0. The goals: builds in fresh processes, before and now.
    warm_store = scratch / "warm" / "parses.sqlite3"
    build_once(Build(REPO, pure=False, workers=None, store=warm_store))  # fills the store
    ways = {
        "before": Build(before_code, pure=True, workers=1, before=True),
        "pure sqlglot, one core": Build(REPO, pure=True, workers=1),
        "compiled, one core": Build(REPO, pure=False, workers=1),
        "compiled, two workers": Build(REPO, pure=False, workers=2),
        "compiled, the idle cores (the default)": Build(REPO, pure=False, workers=None),
        "compiled, cache warm": Build(REPO, pure=False, workers=None, store=warm_store),
    }
    builds = under_load(
        loads,
        f"goals: the report's build, {len(ways)} ways x {GOAL_RUNS} fresh processes",
        lambda: interleaved(ways, GOAL_RUNS),
    )
    compiled = compiled_sqlglot()
    one_core = builds["compiled, one core"]

    def classify() -> tuple[float, float, int]:
        uncached = median_seconds(lambda: classify_all(texts, cache=False))
        cached = median_seconds(lambda: classify_all(texts, cache=True))
        classifier = classify_all(texts, cache=True)
        unparsed = sum(1 for i, t in enumerate(texts, 1) if not classifier.shape(i, t).parsed)
        return uncached, cached, unparsed

    uncached, cached, unparsed = under_load(loads, "classifying, in-process", classify)

    data = big_input(texts)

    def build_and_render() -> tuple[float, dict[str, float], int]:
        build_seconds = median_seconds(lambda: build(data))
        report = build(data)
        render_seconds = {
            fmt: median_seconds(functools.partial(render, report, fmt))
            for fmt in ("md", "json", "html")
        }
        tracemalloc.start()
        render(build(data), "html")
        _, peak_traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return build_seconds, render_seconds, peak_traced

    build_seconds, render_seconds, peak_traced = under_load(
        loads, "building and rendering, in-process", build_and_render
    )

    with temporary_sandbox() as sandbox:
        dsn = sandbox.dsn()
        fill_pg_stat_statements(dsn, STATEMENTS)
        with psycopg.connect(dsn) as conn:
            in_pgss = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]  # type: ignore[index]
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        live_runs = under_load(
            loads,
            f"goals: `dbtools report --live`, 3 ways x {GOAL_RUNS} fresh processes",
            lambda: live_commands(before_code, dsn, scratch),
        )
        live = under_load(
            loads,
            "`--live` in-process, each format and none of the sections",
            lambda: {
                **{fmt: live_report_seconds(dsn, fmt) for fmt in ("md", "json", "html")},
                "none": live_report_seconds(dsn, "md", ()),
            },
        )
        without = live.pop("none")
        inspecting = under_load(loads, "reading each section", lambda: inspection_seconds(dsn))
        tables = user_tables(dsn)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    history = earlier_runs(RESULTS, GOALS_HEADING)
    lines = [
        "# Report benchmark",
        "",
        f"- date: {when}",
        f"- machine: {machine()}",
        f"- PostgreSQL {server} (sandbox, embedded); sqlglot, matplotlib as installed",
        f"- command: `.venv/bin/python -m benchmarks.report` (medians of {RUNS} runs)",
        f"- load average when the run ended: {load_average()} "
        "(the machine is shared; figures are noisy; each group's below)",
        f"- sqlglot {sqlglot_version()}, compiled build (sqlglotc) in use: {compiled}; "
        f"before: commit {BEFORE_COMMIT} (main before issue 14) with pure sqlglot",
        "",
        GOALS_HEADING,
        "",
        f"Each figure is the median of {GOAL_RUNS} fresh processes (the builds interleaved: one "
        "of each per round, and the same for `--live`); ratio = now / goal (below 1: met).",
        "",
        "| goal | before | now | goal | ratio | |",
        "|---|---:|---:|---:|---:|---|",
        goal_row(
            f"build a report over {STATEMENTS:,} distinct statements, cache cold (s)",
            builds["before"].seconds,
            builds["compiled, the idle cores (the default)"].seconds,
            GOAL_BUILD_SECONDS,
            "s",
        ),
        goal_row(
            "the same, parses kept from the previous run (s)",
            builds["before"].seconds,
            builds["compiled, cache warm"].seconds,
            GOAL_BUILD_SECONDS,
            "s",
        ),
        goal_row(
            "peak RSS of that build, cache cold (MiB; the largest process)",
            builds["before"].peak_mib,
            builds["compiled, the idle cores (the default)"].peak_mib,
            GOAL_PEAK_MIB,
            "MiB",
        ),
        goal_row(
            "`dbtools report --live` end to end, cache cold (s)",
            live_runs["before"].seconds,
            live_runs["cold"].seconds,
            GOAL_LIVE_SECONDS,
            "s",
        ),
        goal_row(
            "`dbtools report --live` end to end, cache warm (s)",
            live_runs["before"].seconds,
            live_runs["warm"].seconds,
            GOAL_LIVE_SECONDS,
            "s",
        ),
        goal_row(
            "peak RSS of `dbtools report --live`, cache cold (MiB)",
            live_runs["before"].peak_mib,
            live_runs["cold"].peak_mib,
            GOAL_PEAK_MIB,
            "MiB",
        ),
        "",
        "The load average (1/5/15 min) before and after each measured group of this run:",
        "",
        *load_table(loads),
        "",
        "What each step gives (building the report, fresh processes):",
        "",
        "| code | parse workers | seconds | CPU seconds | vs before | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {m.workers:g} | {m.seconds:.2f} | {m.cpu:.2f} | "
            f"{builds['before'].seconds / m.seconds:.1f}x | {m.peak_mib:.0f} |"
            for name, m in builds.items()
        ),
        "",
        f"CPU per statement, cache cold, compiled, one core: {one_core.cpu / STATEMENTS * 1000:.2f} "
        f"ms, so {STATEMENTS:,} statements need {one_core.cpu:.1f} s of one core: at best "
        f"{one_core.cpu / 2:.1f} s over both cores of this machine when both are free (goal "
        f"{GOAL_BUILD_SECONDS:g} s); with the parses kept, {builds['compiled, cache warm'].cpu:.2f} "
        "CPU seconds.",
        "",
        "Parse workers: the median of the most processes a build parsed on (0: nothing to parse). "
        "The default takes one, plus one for each whole core the last minute's load average "
        "leaves idle: on this shared machine the other core is often busy, and two workers then "
        "each run at half speed.",
        "",
        f"The `--live` report ran against the server of section 3 below ({STATEMENTS:,} "
        "statements in pg_stat_statements, every section read from the database).",
        "",
        f"## Classifying statements ({STATEMENTS:,} distinct texts, two periods: "
        f"{lookups:,} classifications)",
        "",
        "One core, no parse cache on disk (`Classifier(workers=1)`), this process's sqlglot:",
        "",
        "| parse cache | parses | seconds | classifications/s | parses/s |",
        "|---|---:|---:|---:|---:|",
        f"| off | {lookups:,} | {uncached:.2f} | {lookups / uncached:,.0f} | "
        f"{lookups / uncached:,.0f} |",
        f"| on (in memory, by text) | {STATEMENTS:,} | {cached:.2f} | {lookups / cached:,.0f} | "
        f"{STATEMENTS / cached:,.0f} |",
        "",
        f"The cache makes a before/after report {uncached / cached:.2f}x faster to classify "
        f"({unparsed:,} of the texts are utility statements kept unparsed).",
        "",
        f"## Building and rendering ({STATEMENTS:,} + 10 statements in each of two periods, "
        "no database)",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| build (classify, families, health) | {build_seconds:.2f} |",
        *(f"| render {fmt} | {seconds:.3f} |" for fmt, seconds in render_seconds.items()),
        "",
        f"Peak of Python allocations (tracemalloc) while building and rendering HTML: "
        f"{peak_traced / 2**20:.1f} MiB.",
        "",
        f"## End to end: `--live` report on a server with {in_pgss:,} pg_stat_statements entries",
        "",
        "Every section on (activity, space, settings, plans of the 10 costliest statements, "
        f"index advice, schema health; {tables} user tables; no hypopg in the embedded server; "
        "in-process, so the parse cache is cold for the first run only):",
        "",
        "| format | seconds (connect, collect, inspect, build, render) |",
        "|---|---:|",
        *(f"| {fmt} | {seconds:.2f} |" for fmt, seconds in live.items()),
        "",
        f"Markdown with none of them: {without:.2f} s. What reading each section costs alone "
        f"(`inspection.inspect` on an open session, median of {INSPECT_RUNS} runs; the "
        "end-to-end figures above move more than this from run to run on a shared machine):",
        "",
        "| section | milliseconds |",
        "|---|---:|",
        *(f"| {name} | {seconds * 1000:.1f} |" for name, seconds in inspecting.items()),
        "",
        f"Peak RSS of the whole benchmark process: {peak_rss_mib:.0f} MiB.",
        "",
        *history,
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
