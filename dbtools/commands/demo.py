"""The main job, end to end, on a throwaway PostgreSQL (or a given empty database).

It walks the rollout guide's phases with the reference workload:

1. migrate: ``alembic upgrade head`` (batch indexes, monitoring tables, autovacuum settings);
2. seed the flight-search tables;
3. measure a baseline window on the per-request path (three statements per request);
4. measure a candidate window on the batched path (three statements per batch);
5. verify: queries per request, reduction, thresholds, the migration's objects;
6. report (HTML and Markdown) and a downgrade plan, written to ``reports/``;
7. a canary window: 10% of the requests on the batched path, the rest on the per-request path,
   judged whole (against the baseline window, as two-window ``verify`` would) and per variant
   (``verify --canary --attribute app``), side by side: the whole database shows a small cut,
   the batched path its own; its report (the baseline window against it) beside the others.

Defaults follow the guide's cache table and alert thresholds: medium duplication (a 50% app
cache hit ratio), 20 concurrent requests per wave (so a batch replaces up to 20 requests' worth
of queries), and waves every 100 ms so that the candidate's query rate stays under 50/s.

``summary_text`` is what ``dbtools demo`` prints. It gives the p95 figures for each window named
apart: verify's (``measures.P95_NAME``, from the request-metrics buckets' merged latency
histograms, what the thresholds judge; and the worst second's, ``WORST_SECOND_NAME``) and the
application's own over every request of the run (``APP_P95_NAME``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tabulate import tabulate

from dbtools.db.connection import describe, session
from dbtools.db.sandbox import temporary_sandbox
from dbtools.figures.measures import P95_NAME, reduction
from dbtools.figures.windows import window_labels
from dbtools.output import (
    DEFAULT_DIRECTORY,
    Destination,
    dump_json,
    number,
    percent,
    write_output,
)
from dbtools.report import Report, make_report, write_report
from dbtools.report.options import load_report_options
from dbtools.safety.live import refuse_data
from dbtools.safety.plan import build_plan
from dbtools.safety.render import plan_markdown
from dbtools.schema import latency, revisions
from dbtools.store.request_metrics import EDGE_SLACK_SECONDS
from dbtools.store.snapshots import snapshot
from dbtools.verify import VerifyResult, verify
from dbtools.verify.canary import CanaryResult, CanarySpec, verify_canary
from dbtools.verify.render import render_table
from dbtools.verify.thresholds import Thresholds, load_thresholds
from dbtools.workload import (
    DataPath,
    Dataset,
    Duplication,
    WorkloadConfig,
    WorkloadResult,
    run_workload,
    seed_database,
)

# Request-metrics buckets of one second: the window's end snapshot waits for the last one to
# close, so every request of a window is counted in it (verify counts whole buckets only).
BUCKET_SECONDS = 1
# The application's own p95: every request's latency, timed in-process over the whole run.
APP_P95_NAME = "request p95, whole run, timed by the application"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; the defaults finish in well under two minutes on 2 cores."""

    requests: int = 2_000
    concurrency: int = 20
    canary_traffic: float = 10.0  # percent of the canary window's requests on the batched path
    duplication: str = "medium"
    wave_interval_ms: float = 100.0
    seed: int = 1
    dataset: Dataset = field(default_factory=Dataset)
    output_dir: Path = DEFAULT_DIRECTORY
    pg_bin: str | Path | None = None

    def workload(self, path: str, traffic: float = 100.0) -> WorkloadConfig:
        return WorkloadConfig(
            path=DataPath.parse(path),
            traffic=traffic,
            requests=self.requests,
            concurrency=self.concurrency,
            pool_size=min(self.concurrency, 20),
            duplication=Duplication.parse(self.duplication),
            wave_interval_ms=self.wave_interval_ms,
            seed=self.seed,
            dataset=self.dataset,
            bucket_seconds=BUCKET_SECONDS,
        )


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and wrote."""

    target: str
    server_version: str
    baseline: WorkloadResult
    candidate: WorkloadResult
    verification: VerifyResult
    report: Report
    report_paths: tuple[Path, ...]
    plan_path: Path
    canary: WorkloadResult
    canary_whole: VerifyResult  # the baseline window against the canary window, whole
    canary_variants: CanaryResult  # the canary window per variant
    elapsed_s: float


# (step name) -> None, and (label) -> a progress callback (done, total) for a workload run.
StepCallback = Callable[[str], None]
ProgressFactory = Callable[
    [str, int], contextlib.AbstractContextManager[Callable[[int, int], None]]
]


@contextlib.contextmanager
def _no_progress(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    yield lambda done, total: None


def run_demo(
    config: DemoConfig = DemoConfig(),
    *,
    dsn: str | None = None,
    on_step: StepCallback = lambda step: None,
    progress: ProgressFactory = _no_progress,
    thresholds: Thresholds | None = None,
) -> DemoResult:
    """Run the whole rollout on a temporary sandbox (always stopped), or on *dsn*.

    *dsn* must name an empty database (no table holding rows): the demo migrates and seeds it.
    Raises ``UsageError`` for a database that holds data; errors of the steps pass through.
    """
    started = time.monotonic()
    if dsn is not None:
        refuse_data(
            dsn,
            refusing="run the demo",
            because="the demo migrates and seeds its database, so give it an empty one",
        )
        return _run(dsn, config, on_step, progress, thresholds, started, label_prefix=_run_id())
    on_step("starting an embedded PostgreSQL with pg_stat_statements")
    with temporary_sandbox(pg_bin=config.pg_bin) as sandbox:
        return _run(sandbox.dsn(), config, on_step, progress, thresholds, started, label_prefix="")


def _run(
    dsn: str,
    config: DemoConfig,
    on_step: StepCallback,
    progress: ProgressFactory,
    thresholds: Thresholds | None,
    started: float,
    *,
    label_prefix: str,
) -> DemoResult:
    with session(dsn) as conn:
        server_version = conn.info.parameter_status("server_version") or "unknown"
    on_step("alembic upgrade head")
    revisions.upgrade(dsn, "head")
    on_step("seeding the flight-search tables")
    seed_database(dsn, config.dataset)

    windows = {}
    for name, path in (("baseline", "per-request"), ("candidate", "batched")):
        label = f"{label_prefix}{name}"
        on_step(f"{name} window on the {path} path ({config.requests} requests)")
        windows[name] = _measure_window(dsn, label, config.workload(path), progress)

    baseline, candidate = (f"{label_prefix}baseline", f"{label_prefix}candidate")
    thresholds = thresholds if thresholds else load_thresholds(None)
    on_step("dbtools verify")
    verification = verify(dsn, baseline, candidate, thresholds=thresholds)
    on_step("dbtools report (html, md)")
    options = dataclasses.replace(load_report_options(None), thresholds=thresholds)
    report = make_report(dsn, baseline=baseline, candidate=candidate, options=options)
    report_paths = tuple(write_report(report, fmt, config.output_dir) for fmt in ("html", "md"))
    on_step("dbtools downgrade-plan --to base")
    plan = build_plan("base", dsn=dsn)
    plan_path = write_output(
        plan_markdown(plan),
        Destination(directory=config.output_dir),
        "downgrade-plan-head-to-base",
        "md",
    )
    canary = f"{label_prefix}canary"
    traffic = f"{config.canary_traffic:g}%"
    on_step(f"canary window: {traffic} of {config.requests} requests on the batched path")
    canary_run = _measure_window(
        dsn, canary, config.workload("batched", config.canary_traffic), progress
    )
    on_step(f"dbtools verify --canary {canary} --attribute app")
    canary_whole = verify(dsn, baseline, canary, thresholds=thresholds)
    spec = CanarySpec(DataPath.PER_REQUEST.value, DataPath.BATCHED.value, "app",
                      traffic=config.canary_traffic)  # fmt: skip
    canary_variants = verify_canary(dsn, canary, spec, thresholds=thresholds)
    on_step("dbtools report of the canary window (html, md)")
    canary_report = make_report(dsn, baseline=baseline, candidate=canary, options=options)
    report_paths += tuple(write_report(canary_report, fmt, config.output_dir)
                          for fmt in ("html", "md"))  # fmt: skip
    return DemoResult(
        target=str(describe(dsn)),
        server_version=server_version,
        baseline=windows["baseline"],
        candidate=windows["candidate"],
        verification=verification,
        report=report,
        report_paths=report_paths,
        plan_path=plan_path,
        canary=canary_run,
        canary_whole=canary_whole,
        canary_variants=canary_variants,
        elapsed_s=time.monotonic() - started,
    )


def summary_text(result: DemoResult) -> str:
    """What ``dbtools demo`` prints: verify's table, the application's own counts and p95 (named
    apart from verify's), the report's opening, and the files written."""
    baseline, candidate = result.baseline, result.candidate
    before, after = baseline.latency_ms(0.95), candidate.latency_ms(0.95)
    lines = [
        f"PostgreSQL {result.server_version} at {result.target}",
        "",
        render_table(result.verification),
        "",
        f"as the application counted: per request {baseline.statements_sent} statements for "
        f"{baseline.requests} requests; batched {candidate.statements_sent} statements in "
        f"{candidate.batches} batches of up to {candidate.batch_size_max} requests",
        f"{APP_P95_NAME}: {before or 0:.1f} ms -> {after or 0:.1f} ms (every request's "
        f"latency; verify's {P95_NAME} merges the window's {BUCKET_SECONDS}-second "
        f"request-metrics buckets' latency histograms: at most {latency.RELATIVE_WIDTH:.1%} "
        "above it)",
        "",
        "the report opens: " + " ".join(result.report.story),
        "",
        *canary_text(result),
        "",
        *(f"written: {path}" for path in (*result.report_paths, result.plan_path)),
        f"done in {result.elapsed_s:.0f} s",
    ]
    return "\n".join(lines)


def summary_json(result: DemoResult) -> str:
    """What ``dbtools demo --format json`` prints: verify's documents (the two windows, the
    canary window whole and per variant) and the files written."""
    return dump_json("demo", {
        "server_version": result.server_version,
        "target": result.target,
        "verify": result.verification.as_dict(),
        "canary_whole": result.canary_whole.as_dict(),
        "canary_variants": result.canary_variants.as_dict(),
        "files": [str(path) for path in (*result.report_paths, result.plan_path)],
        "elapsed_s": round(result.elapsed_s, 1),
    })  # fmt: skip


def canary_text(result: DemoResult) -> list[str]:
    """The canary window, whole and per variant, side by side (what ``summary_text`` shows)."""
    whole, per_variant = result.canary_whole, result.canary_variants
    base, cand = per_variant.baseline, per_variant.candidate
    before = whole.baseline.queries_per_request  # the baseline window: every request per request

    def fewer(value: float | None) -> str:
        return percent(reduction(before, value), missing="-")

    rows = [
        ["requests", f"{whole.candidate.requests or 0:,}", f"{base.requests:,}",
         f"{cand.requests:,}"],
        ["queries", f"{whole.candidate.counts.queries:,}",
         _count(base.queries), _count(cand.queries)],
        ["queries per request", number(whole.candidate.queries_per_request, 2),
         number(base.queries_per_request, 2), number(cand.queries_per_request, 2)],
        [f"fewer than the baseline window's {number(before, 2)}",
         fewer(whole.candidate.queries_per_request), fewer(base.queries_per_request),
         fewer(cand.queries_per_request)],
    ]  # fmt: skip
    reconciled = per_variant.reconciliation
    return [
        f"canary window: {percent(cand.share)} of {whole.candidate.requests or 0:,} requests on "
        f"the {cand.variant} path, the rest on the {base.variant} path, at the same time",
        f"attribution: {per_variant.attribution_text}"
        + (f" ({reconciled.application:,} counted, {reconciled.database:,} in pg_stat_statements)"
           if reconciled and reconciled.application is not None else ""),
        "",
        tabulate(rows, headers=["canary", "whole database", f"{base.variant} path",
                                f"{cand.variant} path"]),
        "",
        f"whole database: {percent(whole.reduction)} fewer queries per request than the baseline "
        f"window; the {cand.variant} path itself: {percent(per_variant.reduction)} fewer than the "
        f"{base.variant} path beside it",
        f"(its batches held {number(_mean_batch(result.canary), 1)} requests on average with "
        f"{percent(cand.share)} of the traffic; at 100% they held "
        f"{number(_mean_batch(result.candidate), 1)}: {percent(result.verification.reduction)} "
        "fewer)",
        f"canary verdict (verify --canary): {per_variant.verdict.upper()} "
        f"(exit code {per_variant.exit_code})",
        *(f"  {f.status.upper()} {f.subject}: {f.message}" for f in per_variant.findings
          if f.status not in ("pass", "skipped")),
    ]  # fmt: skip


def _count(value: int | None) -> str:
    return "not counted" if value is None else f"{value:,}"


def _mean_batch(run: WorkloadResult) -> float | None:
    """Requests per batch on the batched path (the misses it answered)."""
    batched = run.path(DataPath.BATCHED)
    return batched.cache_misses / batched.batches if batched.batches else None


def _measure_window(
    dsn: str, label: str, workload: WorkloadConfig, progress: ProgressFactory
) -> WorkloadResult:
    """``label:start``, the workload, a wait for its last metrics bucket to close, ``label:end``."""
    start, end = window_labels(label)
    snapshot(dsn, start)
    # The workload's first request-metrics bucket starts when the workload does: past the slack
    # a bucket's start is known to, or the window's start would cut it (and with few, fast
    # requests, hold most of them: untrusted).
    time.sleep(2 * EDGE_SLACK_SECONDS)
    with progress(label, workload.requests) as advance:
        result = run_workload(dsn, workload, progress=advance)
    time.sleep(workload.bucket_seconds + 2 * EDGE_SLACK_SECONDS)
    snapshot(dsn, end)
    return result


def _run_id() -> str:
    """A label prefix unique to this run, so demos on one database never reuse a label."""
    return f"demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-"
