"""`dbtools demo`: the whole rollout on a sandbox or a given empty database, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbtools.demo import APP_P95_NAME, DemoConfig, run_demo, summary_json, summary_text
from dbtools.errors import UsageError
from dbtools.figures.measures import P95_NAME
from dbtools.workload.queries import BATCHED_STATEMENTS, PER_REQUEST_STATEMENTS
from tests.conftest import Database
from tests.helpers import (
    REPO,
    assert_usage_error,
    interruptible_child,
    postmaster_pid,
    run_dbtools,
    server_alive,
)

PG_BIN = os.environ.get("DBTOOLS_TEST_PG_BIN") or None
ENV = {"DBTOOLS_PG_BIN": PG_BIN} if PG_BIN else {}


def start_demo(*args: str, tmpdir: Path) -> tuple[subprocess.Popen[str], Iterator[str], Path, int]:
    """``dbtools demo ARGS`` in a child whose temporary directory is *tmpdir* (so its sandbox
    lives there), read until its server is up: the child, the rest of its stderr lines, the
    sandbox's data directory and its server's pid."""
    run = subprocess.Popen(
        [sys.executable, "-m", "dbtools", "demo", *args],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **ENV, "TMPDIR": str(tmpdir)}, preexec_fn=interruptible_child,
    )  # fmt: skip
    assert run.stderr is not None
    lines = iter(run.stderr)
    for line in lines:
        if line.startswith("- alembic upgrade head"):
            break
    (data_dir,) = tmpdir.glob("dbtools-*/data")
    return run, lines, data_dir, postmaster_pid(data_dir)


def test_demo_on_a_given_database_measures_exactly_what_the_workload_sent(
    database: Database, tmp_path: Path
) -> None:
    config = DemoConfig(requests=200, concurrency=20, wave_interval_ms=50, output_dir=tmp_path)
    result = run_demo(config, dsn=database.dsn)
    verification = result.verification
    assert verification.verdict == "pass", verification.as_dict()["findings"]
    # verify's counts from pg_stat_statements equal what the application sent: its three
    # statements per miss (per request) or per batch, plus its one request-metrics write.
    for window, run in (
        (verification.baseline, result.baseline),
        (verification.candidate, result.candidate),
    ):
        assert window.requests == run.requests == 200
        assert window.counts.queries == run.statements_sent
    assert result.baseline.statements_sent == 3 * result.baseline.cache_misses
    assert result.candidate.statements_sent == 3 * result.candidate.batches
    assert verification.reduction == pytest.approx(
        1 - verification.candidate.counts.queries / verification.baseline.counts.queries
    )
    assert verification.reduction is not None and verification.reduction >= 0.85
    written = sorted(path.suffix for path in (*result.report_paths, result.plan_path))
    assert written == [".html", ".html", ".md", ".md", ".md"]
    assert all(path.parent == tmp_path and path.stat().st_size > 0 for path in result.report_paths)
    # the canary window's report beside the others: the baseline window against it
    canary_reports = {p.suffix: p for p in result.report_paths
              if re.search(r"-baseline-vs-demo-\d{8}T\d{6}Z-canary-", p.name)}  # fmt: skip
    assert sorted(canary_reports) == [".html", ".md"], result.report_paths
    periods = next(
        line for line in canary_reports[".md"].read_text().splitlines() if "periods:" in line
    )
    assert re.search(
        r"baseline = (demo-\S+-baseline):start..\1:end, candidate = (demo-\S+-canary):start..\2:end$",
        periods,
    )
    document = json.loads(summary_json(result))  # what --format json prints
    assert (document["kind"], document["verify"]["verdict"]) == ("demo", "pass")
    assert document["files"] == [str(p) for p in (*result.report_paths, result.plan_path)]
    assert document["canary_variants"]["kind"] == "verify-canary"
    plan = result.plan_path.read_text()
    assert "perf_monitoring.snapshots" in plan and "DROP INDEX CONCURRENTLY" in plan
    # The report tells the rollout's story: the pairs the workload's code defines (each
    # per-request statement and its batched form), with the calls the workload sent...
    report = result.report
    # The report's texts are scrubbed, comments and all: the statements' tags are read where
    # the server keeps them, by queryid.
    tag_of = {
        queryid: tag
        for tag, queryid in database.execute(
            r"SELECT substring(query from '/\* flight_search:(\w+) \*/'), queryid "
            r"FROM pg_stat_statements WHERE query ~ '/\* flight_search:\w+ \*/' AND dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    }
    tagged = {tag_of[line.queryid]: line.fingerprint for line in report.top_statements
              if line.queryid in tag_of}  # fmt: skip
    pairs = {(change.before, change.after): change for change in report.changes}
    assert set(pairs) == {
        ((tagged[before.name],), (tagged[after.name],))
        for before, after in zip(PER_REQUEST_STATEMENTS, BATCHED_STATEMENTS, strict=True)
    }
    for change in pairs.values():
        assert change.change == ("fewer calls" if change.before == change.after else "replaced")
        assert change.figures["baseline"].calls == result.baseline.round_trips
        assert change.figures["candidate"].calls == result.candidate.round_trips
    # ...and the baseline's lookups, half of them answered by the cache (0.5 per request), are
    # batchable across requests, not N+1 suspects within one.
    assert report.n_plus_one == ()
    batchable = {lookup.fingerprint: lookup for lookup in report.batchable}
    assert set(batchable) == {tagged["load_trip"], tagged["lookup_offers"]}
    for lookup in batchable.values():
        before = lookup.figures["baseline"]
        assert before is not None and before.batchable
        assert before.calls == result.baseline.round_trips
        assert before.calls_per_request == result.baseline.round_trips / 200
        assert lookup.figures["candidate"] is None
    replaced = batchable[tagged["lookup_offers"]]
    assert replaced.batched_family is None  # its batch form is not the same text with = ANY…
    assert replaced.replaced_by == (tagged["lookup_offers_batch"],)  # …but it replaced it
    # One p95 definition: the summary names verify's and the application's own apart.
    summary = summary_text(result)
    p95_lines = [line for line in summary.splitlines() if "p95" in line]
    assert p95_lines and all(P95_NAME in line or APP_P95_NAME in line for line in p95_lines)
    (verify_row,) = [line for line in p95_lines if line.split("  ")[0] == P95_NAME]
    for measured in (verification.baseline.p95_ms, verification.candidate.p95_ms):
        assert f"{measured:.1f} ms" in verify_row
    # The canary window: 10% of the 200 requests (20) on the batched path, judged whole and per
    # variant; each variant's queries are exactly what its path sent, reconciled exactly.
    canary, whole, per_variant = result.canary, result.canary_whole, result.canary_variants
    batched, per_request = canary.path("batched"), canary.path("per-request")
    assert (per_request.requests, batched.requests) == (180, 20)
    assert (per_variant.baseline.requests, per_variant.candidate.requests) == (180, 20)
    assert (
        per_variant.baseline.queries == per_request.statements_sent == 3 * per_request.cache_misses
    )
    assert per_variant.candidate.queries == batched.statements_sent == 3 * batched.batches
    assert whole.candidate.counts.queries == canary.statements_sent == per_variant.reported_queries
    reconciliation = per_variant.reconciliation
    assert reconciliation is not None and reconciliation.difference == 0
    assert whole.reduction == pytest.approx(
        1 - canary.statements_sent / result.baseline.statements_sent
    )
    # 20 batched requests are too few to judge the batched path: never a pass.
    too_few = [f for f in per_variant.findings if f.check == "variant_requests"]
    assert [(f.subject, f.status) for f in too_few] == [
        ("per-request", "pass"),
        ("batched", "no data"),
    ]
    assert per_variant.verdict == "fail"
    canary_lines = summary.split("canary window: ")[1].splitlines()
    assert canary_lines[0] == (
        "10.0% of 200 requests on the batched path, the rest on the per-request path, at the "
        "same time"
    )
    assert (
        f"({canary.statements_sent:,} counted, {canary.statements_sent:,} in pg_stat_statements)"
        in summary
    )
    # Labels are unique to the run, so a second demo on another empty database cannot collide.
    labels = database.execute("SELECT label FROM perf_monitoring.snapshots ORDER BY id")
    found = [label for (label,) in labels]
    prefix = found[0].removesuffix("baseline:start")
    assert prefix.startswith("demo-") and found == [
        f"{prefix}{window}:{end}"
        for window in ("baseline", "candidate", "canary")
        for end in ("start", "end")
    ]


def test_demo_refuses_a_database_that_holds_data(migrated_database: Database) -> None:
    migrated_database.execute("INSERT INTO travelers (email) VALUES ('someone@example.com')")
    with pytest.raises(UsageError, match=r"holds data \(public.travelers\)"):
        run_demo(DemoConfig(requests=20), dsn=migrated_database.dsn)
    result = run_dbtools("demo", "--dsn", migrated_database.dsn)
    assert_usage_error(result, "Error: refusing to run the demo")
    assert migrated_database.execute("SELECT count(*) FROM perf_monitoring.snapshots") == [(0,)]


@pytest.mark.server  # starts a sandbox of its own
def test_demo_command_runs_on_a_sandbox_and_leaves_no_process(
    tmp_path: Path, sandbox_dir: Path
) -> None:
    run, _, data_dir, pid = start_demo("--requests", "200", "--output-dir", str(tmp_path),
                                       tmpdir=sandbox_dir)  # fmt: skip
    assert server_alive(pid, data_dir)
    out, err = run.communicate(timeout=240)
    assert run.returncode == 0, err
    assert "verdict: PASS (exit code 0)" in out
    reduction = re.search(r"^query reduction: ([\d.]+)%$", out, re.M)
    assert reduction and float(reduction.group(1)) >= 85
    written = [line.removeprefix("written: ") for line in out.splitlines()
               if line.startswith("written: ")]  # fmt: skip
    assert [Path(p).name.split("-2")[0] for p in written] == [
        "report-baseline-vs-candidate",
        "report-baseline-vs-candidate",
        "report-baseline-vs-canary",
        "report-baseline-vs-canary",
        "downgrade-plan-head-to-base",
    ]
    assert sorted(Path(p).name for p in written) == sorted(p.name for p in tmp_path.iterdir())
    assert not server_alive(pid, data_dir)
    assert list(sandbox_dir.iterdir()) == []


@pytest.mark.server  # starts a sandbox of its own
def test_interrupted_demo_stops_its_server(tmp_path: Path, sandbox_dir: Path) -> None:
    # 5,000 requests: a workload the seeded dataset can serve, still running when interrupted
    # (20,000 would need more trip requests than the dataset has: the demo would stop by
    # itself, an instant after its first snapshot, racing the signal)
    run, lines, data_dir, pid = start_demo("--requests", "5000", "--output-dir", str(tmp_path),
                                           tmpdir=sandbox_dir)  # fmt: skip
    for line in lines:
        if "baseline window" in line:
            break
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: demo interrupted: the sandbox was stopped"
    assert not server_alive(pid, data_dir)
    assert list(sandbox_dir.iterdir()) == []
    assert list(tmp_path.iterdir()) == []
