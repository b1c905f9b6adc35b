"""``dbtools rollout``: the guide's five phases, with an application of its own
(``tests/rollout_app.py``: its deploy, traffic, load-test and rollback commands drive the
reference workload in the background and write the traffic file). Monitoring periods are
shortened with ``DBTOOLS_MAX_DURATION``."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbtools import redaction
from dbtools.commands.rollout import (
    PHASES,
    CommandRun,
    Triggers,
    _rollback_failure,
    command_argv,
    executable_problem,
    judge_triggers,
    rollout_config_from,
    run_command,
)
from dbtools.errors import ConfigError
from dbtools.figures.requests import VariantTotals
from dbtools.schema.latency import Percentile
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import REPO, interruptible_child, run_cli
from tests.readme_runner import RUNBOOK

APP = Path(__file__).resolve().parent / "rollout_app.py"
INTERVAL_S = 2


# -- no server ------------------------------------------------------------------------------------


def test_the_percentage_is_one_argument_whatever_it_holds() -> None:
    argv = command_argv(["route", "--pct={traffic}", "{environment}"],
                        {"traffic": "10; rm -rf /", "environment": "staging"})  # fmt: skip
    assert argv == ["route", "--pct=10; rm -rf /", "staging"]


def test_commands_run_without_a_shell_and_secrets_are_masked(tmp_path: Path) -> None:
    redaction.forget_secrets()
    run = run_command(
        [sys.executable, "-c", "import sys; print(sys.argv[1:]); print('$HOME')",
         "postgresql://deploy:s3cret@db/app", "--password", "Pw-arg-1", "{traffic}"],
        {"traffic": "$(id)"}, cwd=tmp_path,
    )  # fmt: skip
    assert run.exit_code == 0
    # the password found in the arguments is known from then on: the output masks it too
    assert run.output == "['postgresql://deploy:***@db/app', '--password', '***', '$(id)']\n$HOME\n"
    assert "s3cret" not in " ".join(run.argv) and run.argv[-3:] == ["--password", "***", "$(id)"]
    missing = run_command(["/nonexistent/deploy"], {}, cwd=tmp_path)
    assert missing.exit_code == 127 and "cannot run /nonexistent/deploy" in missing.output
    assert _rollback_failure(missing).startswith(
        "the rollback command could not start (cannot run /nonexistent/deploy"
    )
    assert _rollback_failure(CommandRun([], run.started_at, exit_code=2)) == (
        "the rollback command exited with 2"
    )
    redaction.forget_secrets()


def test_a_command_must_resolve_to_an_executable_file(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    plain = tmp_path / "scripts" / "plain.sh"
    plain.write_text("echo hi\n")
    runnable = tmp_path / "scripts" / "run.sh"
    runnable.write_text("#!/bin/sh\necho hi\n")
    runnable.chmod(0o755)
    assert executable_problem(["scripts/run.sh"], tmp_path) is None
    assert executable_problem([str(runnable)]) is None
    assert executable_problem(["sh", "-c", "true"]) is None  # on PATH
    assert (
        executable_problem(["scripts/plain.sh"], tmp_path) == "scripts/plain.sh is not executable"
    )
    assert executable_problem(["scripts/gone.sh"], tmp_path) == "scripts/gone.sh does not exist"
    assert executable_problem(["scripts"], tmp_path.parent / tmp_path.name) == (
        "scripts is not found on PATH"
    )
    assert executable_problem(["./scripts"], tmp_path) == "./scripts is not a file"


def test_the_configuration_is_checked() -> None:
    config = rollout_config_from({"deploy": "scripts/deploy.sh {environment}",
                                  "traffic": ["route", "{traffic}"], "interval": "30s",
                                  "min_requests": 20, "failure_threshold": 3})  # fmt: skip
    assert (config.deploy, config.traffic, config.interval_seconds) == (
        ("scripts/deploy.sh", "{environment}"),
        ("route", "{traffic}"),
        30,
    )
    assert (config.min_requests, config.failure_threshold) == (20, 3)
    assert (rollout_config_from({}).min_requests, rollout_config_from({}).failure_threshold) == (
        50, 2)  # fmt: skip
    for bad, message in (({"deplyo": ["x"]}, "unknown rollout setting(s) deplyo"),
                         ({"traffic": []}, "traffic must be a command"),
                         ({"interval": "soon"}, "rollout interval"),
                         ({"min_requests": 0}, "min_requests must be a whole number from 1"),
                         ({"failure_threshold": 1.5}, "failure_threshold must be a whole"),
                         ({"attribute": "guess"}, "attribute is role or app")):  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(message)):
            rollout_config_from(bad)


def totals(requests: int, errors: int, p95: float, hits: int, misses: int) -> VariantTotals:
    return VariantTotals(1, requests, errors, hits, misses, p95, "batched", p95=Percentile(p95))


def test_the_guides_rollback_triggers_on_one_variant() -> None:
    crossed, figures = judge_triggers(totals(100, 6, 200.0, 50, 50), Thresholds())
    assert [f.check for f in crossed] == ["error_rate"] and figures["error_rate"] == 0.06
    crossed, _ = judge_triggers(totals(100, 5, 1000.0, 20, 80), Thresholds())
    assert crossed == []  # 5% and 1000 ms are the limits, not beyond; 20% hits is not below
    crossed, _ = judge_triggers(totals(100, 0, 1000.5, 19, 81), Thresholds())
    assert [f.check for f in crossed] == ["p95_latency", "app_cache_hit_ratio"]
    assert judge_triggers(None, Thresholds())[0] == []  # no requests: nothing to judge


def test_a_sample_is_judged_on_at_least_min_requests() -> None:
    """28 requests at a 25% cache hit ratio (and 49 at 0%) are too few to judge; 50 at 0% are
    judged. Every figure is still recorded."""
    triggers = Triggers(Thresholds(), min_requests=50, failure_threshold=1)
    status, crossed, figures = triggers.judge(totals(28, 0, 100.0, 7, 21))
    assert (status, crossed, figures["cache_hit_ratio"]) == (
        "too few requests to judge (28 of 50)", [], 0.25)  # fmt: skip
    status, crossed, _ = triggers.judge(totals(49, 49, 5000.0, 0, 49))
    assert (status, crossed) == ("too few requests to judge (49 of 50)", [])
    status, crossed, _ = triggers.judge(totals(50, 0, 100.0, 0, 50))
    assert status == "rollback"
    assert crossed == ["application cache hit ratio: 0.0% (rollback below 20.0%)"]


def test_a_trigger_rolls_back_after_failure_threshold_judged_samples_in_a_row() -> None:
    """One noisy sample does not roll back a good release: with a failure threshold of 3, two
    crossed samples then a passing one start again; samples with too few requests neither
    count nor start again; the third crossed in a row rolls back."""
    bad, good, few = (
        totals(60, 6, 100.0, 30, 30),
        totals(60, 0, 100.0, 30, 30),
        totals(10, 5, 1, 0, 10),
    )
    triggers = Triggers(Thresholds(), min_requests=50, failure_threshold=3)
    seen = [triggers.judge(t)[0] for t in (bad, bad, good, bad, few, bad, bad)]
    assert seen == [
        "trigger crossed (1 of 3)", "trigger crossed (2 of 3)", "pass",
        "trigger crossed (1 of 3)", "too few requests to judge (10 of 50)",
        "trigger crossed (2 of 3)", "rollback",
    ]  # fmt: skip


# -- with a server and the application ------------------------------------------------------------


class Application:
    """``tests/rollout_app.py`` copied into a directory of its own, with its settings."""

    def __init__(
        self, directory: Path, dsn: str, roles: dict[str, str], *, deploy_args: str = "",
        **settings: Any,
    ) -> None:  # fmt: skip
        directory.mkdir()
        self.directory = directory
        self.script = directory / APP.name
        shutil.copy(APP, self.script)
        (directory / "app.json").write_text(json.dumps({"dsn": dsn, "roles": roles, **settings}))
        self.config = directory / "rollout.toml"
        py, app = json.dumps(sys.executable), json.dumps(str(self.script))
        self.config.write_text(
            "[rollout]\n"
            f"deploy = [{py}, {app}, 'deploy', '{{environment}}'{deploy_args}]\n"
            f"traffic = [{py}, {app}, 'route', '{{traffic}}']\n"
            f"rollback = [{py}, {app}, 'rollback']\n"
            f"load_test = [{py}, {app}, 'loadtest', '{{traffic}}']\n"
            f"interval = '{INTERVAL_S}s'\n"
            "min_requests = 1\n"
            "failure_threshold = 1\n"
            "attribute = 'role'\n"
            f"variant_roles = {{ per-request = '{roles['per-request']}', "
            f"batched = '{roles['batched']}' }}\n"
            "[verify]\n"
            "critical_query_rate = 1e9  # a test database's rate is not under test\n"
            "request_edge_tolerance = 0.5  # seconds-long windows: their edge buckets weigh\n"
            "# the requests' latency on a loaded test machine is not under test (p95 362 ms seen)\n"
            "max_p95_ms = 5000\ncritical_p95_ms = 5000\nrollback_p95_ms = 10000\n"
        )

    def setting(self, **settings: Any) -> None:
        path = self.directory / "app.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))

    @property
    def calls(self) -> list[str]:
        log = self.directory / "calls.log"
        return [c.split()[0] if c.startswith("deploy") else c
                for c in (log.read_text().splitlines() if log.exists() else [])]  # fmt: skip

    @property
    def traffic(self) -> str | None:
        """The traffic file: the percentage routed to the new path (None: never routed)."""
        path = self.directory / "traffic"
        return path.read_text() if path.exists() else None

    def wait_for(self, marker: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.directory / marker).exists():
            assert time.monotonic() < deadline, f"{marker} never appeared"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the background traffic (the workload this application started), by its id."""
        pidfile = self.directory / "serve.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            pidfile.unlink()


@pytest.fixture
def app(
    seeded_database: Database, variant_roles: dict[str, str], tmp_path: Path
) -> Iterator[Application]:
    application = Application(tmp_path / "app", seeded_database.dsn, variant_roles)
    yield application
    application.stop()


def rollout(db: Database, app: Application, out: Path, *args: str, limit: str = "6s") -> Any:
    return run_cli(
        "rollout", "--dsn", db.dsn, "--config", str(app.config), "--output-dir", str(out),
        "--environment", "production", *args, env={"DBTOOLS_MAX_DURATION": limit},
    )  # fmt: skip


def rollout_child(db: Database, app: Application, out: Path, *args: str,
                  limit: str = "60s") -> subprocess.Popen[str]:  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "dbtools", "rollout", "--dsn", db.dsn, "--config", str(app.config),
         "--output-dir", str(out), "--environment", "production", *args],
        cwd=REPO, env={**os.environ, "DBTOOLS_MAX_DURATION": limit},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible_child,
    )  # fmt: skip


def finished(child: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, stdout, stderr


def records(directory: Path) -> list[dict[str, Any]]:
    """Every rollout record in *directory*, oldest first (each with its Markdown beside it)."""
    found = []
    for path in sorted(directory.glob("rollout-*.json")):
        assert path.with_suffix(".md").exists()
        document: dict[str, Any] = json.loads(path.read_text())
        assert (document["kind"], document["schema_version"]) == ("rollout", 1)
        found.append(document)
    return found


def record_of(directory: Path) -> dict[str, Any]:
    (document,) = records(directory)
    return document


def phases(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["name"], p["status"]) for p in record["phases"]]


def labels(db: Database) -> list[str]:
    rows = db.execute("SELECT label FROM perf_monitoring.snapshots WHERE label IS NOT NULL "
                      "ORDER BY id")  # fmt: skip
    return [label for (label,) in rows]


def batched_requests(db: Database, start: str, end: str) -> int:
    """The batched requests of the buckets overlapping [start, end] (whole: what a sample's
    error rate, p95 and cache hit ratio are computed over)."""
    (row,) = db.execute(
        "SELECT coalesce(sum(requests), 0) FROM perf_monitoring.request_metrics WHERE variant = "
        "'batched' AND bucket_start < %s AND bucket_start + bucket_seconds * interval '1 s' > %s",
        (datetime.fromisoformat(end), datetime.fromisoformat(start)),
    )
    return int(row[0])


@pytest.mark.slow
def test_a_rollout_completes_phase_by_phase(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    db = seeded_database
    result = rollout(db, app, tmp_path / "reports", "--traffic", "50", "--monitor", "10m",
                     "--label", "canary")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.startswith("rollout complete: 50% on the new path; verify --canary ")
    assert len(result.stdout.splitlines()) == 1
    record = record_of(tmp_path / "reports")
    assert phases(record) == [(name, "ok") for name in PHASES]
    assert (record["outcome"], record["exit_code"], record["stopped_in"]) == ("complete", 0, None)
    assert record["traffic_state"] == "50% on the new path" and app.traffic == "50"
    assert app.calls == ["deploy", "route 50", "loadtest 50"]  # never rolled back
    assert record["preflight"][0] == "configuration complete" and len(record["preflight"]) == 6
    # 6 s of monitoring (10m shortened), a sample every 2 s: three, the last one ends the window;
    # the ones in between are collect's unlabelled samples.
    assert record["monitor_seconds"] == 6 and [s["number"] for s in record["samples"]] == [1, 2, 3]
    assert [s["label"] for s in record["samples"]] == [None, None, "canary:end"]
    assert record["window"] == "canary:start..canary:end" and labels(db) == ["canary:start",
                                                                          "canary:end"]  # fmt: skip
    (interval,) = db.execute("SELECT DISTINCT interval_seconds FROM perf_monitoring.snapshots "
                             "WHERE taken_at >= (SELECT taken_at FROM perf_monitoring.snapshots "
                             "WHERE label = 'canary:start')")  # fmt: skip
    assert interval == (INTERVAL_S,)
    started = db.execute("SELECT taken_at FROM perf_monitoring.snapshots WHERE label = %s",
                         ("canary:start",))[0][0]  # fmt: skip
    previous = started.isoformat()
    for sample in record["samples"]:  # each sample: the batched requests since the previous one
        assert sample["since"] == datetime.fromisoformat(previous).isoformat()
        # (of the buckets written by then: the one still open at a sample is judged by the next)
        assert sample["requests"] <= batched_requests(db, previous, sample["taken_at"])
        assert sample["errors"] == 0 and sample["crossed"] == [] and sample["status"] == "pass"
        previous = sample["taken_at"]
    assert sum(s["requests"] for s in record["samples"]) > 0
    verdict = record["verdict"]
    assert verdict["command"] == f"verify --canary {record['window']}"
    assert (verdict["verdict"], verdict["exit_code"]) == ("pass", 0)
    # Every phase has its times, in order; the deploy phase kept both commands' output.
    times = [(p["started_at"], p["ended_at"]) for p in record["phases"]]
    assert all(start <= end for start, end in times)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    deploy = record["phases"][1]["commands"]
    assert [c["output"] for c in deploy] == ["deployed the batched path to production\n",
                                             "50% of traffic on the batched path\n"]  # fmt: skip
    assert record["phases"][2]["commands"][0]["output"] == "load test at 50%: ok\n"
    # The monitoring phase sampled on one session of its own, reused: one connection.
    # The report of the monitoring window names the record.
    (md,) = (tmp_path / "reports").glob("rollout-*.md")
    report = run_cli("report", "--dsn", db.dsn, "--window", record["window"], "--output-dir",
                     str(tmp_path / "reports"), "--skip", "plans", "--skip", "advice")  # fmt: skip
    assert report.exit_code == 0, report.stdout + report.stderr
    text = Path(report.stdout.strip()).read_text()
    assert (
        f"- Rollout record of the window {record['window']}: {md} (complete, exit code 0)" in text
    )


@pytest.mark.slow
def test_the_monitoring_phase_samples_on_one_session(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    """Every sample of the monitoring phase, and the request metrics its triggers read, go
    through one session (collect's sampler), never a connection per sample: the server saw one
    backend named "dbtools rollout" for the whole phase."""
    db = seeded_database
    child = rollout_child(db, app, tmp_path / "reports", "--traffic", "50", "--skip-tests",
                          limit="8s")  # fmt: skip
    pids: set[int] = set()
    try:
        app.wait_for("route.started")
        while child.poll() is None:
            pids |= {pid for (pid,) in db.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbtools rollout'")}  # fmt: skip
            time.sleep(0.1)
    finally:
        code, stdout, stderr = finished(child)
    assert code == 0, stdout + stderr
    assert len(record_of(tmp_path / "reports")["samples"]) == 4
    assert len(pids) == 1, pids


@pytest.mark.slow
def test_a_canary_routed_otherwise_than_asked_holds_the_completion(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    """The traffic command routes half of the requests whatever --traffic says: the canary
    that passes at 50% (above) measured 50% where 10% was asked, and the completion holds,
    naming the share (issue 22, point 4)."""
    db = seeded_database
    app.config.write_text(app.config.read_text().replace("'route', '{traffic}'", "'route', '50'"))
    result = rollout(db, app, tmp_path / "reports", "--traffic", "10", "--skip-tests")
    assert result.exit_code == 1, result.stdout + result.stderr
    record = record_of(tmp_path / "reports")
    assert (record["outcome"], record["stopped_in"]) == ("held", "complete")
    failing = {(f["check"], f["status"]) for f in record["verdict"]["findings"]
               if f["status"] not in ("pass", "skipped", "info", "warning")}  # fmt: skip
    assert failing == {("traffic_share", "fail")}, record["verdict"]["findings"]
    assert "traffic_share fail: batched served 50.0% of " in record["reason"]
    assert "requests; 10% was asked (rollout --traffic): outside " in record["reason"]
    assert app.calls == ["deploy", "route 50"] and app.traffic == "50"  # held: not rolled back


@pytest.mark.slow
def test_a_crossed_trigger_rolls_back_after_its_failure_threshold(
    seeded_database: Database, variant_roles: dict[str, str], tmp_path: Path
) -> None:
    """No request repeats (the application cache's hit ratio is 0%): the batched path crosses
    the guide's trigger "cache hit ratio drops below 20%" at every sample that has its
    requests; with a failure threshold of 2 the second such sample rolls back, long before the
    period ends."""
    db = seeded_database
    app = Application(tmp_path / "app", db.dsn, variant_roles, duplication="none")
    app.config.write_text(app.config.read_text().replace("failure_threshold = 1",
                                                         "failure_threshold = 2"))  # fmt: skip
    try:
        began = time.monotonic()
        result = rollout(db, app, tmp_path / "reports", "--traffic", "50", "--skip-tests",
                         "--label", "nohits", limit="60s")  # fmt: skip
        took = time.monotonic() - began
    finally:
        app.stop()
    assert result.exit_code == 3, result.stdout + result.stderr
    record = record_of(tmp_path / "reports")
    assert phases(record) == [("migrate", "ok"), ("deploy", "ok"), ("load-test", "skipped"),
                              ("monitor", "rolled back")]  # fmt: skip
    assert app.calls == ["deploy", "route 50", "rollback"] and app.traffic == "0"
    judged = [s for s in record["samples"] if s["requests"] > 0]
    assert [s["status"] for s in judged] == ["trigger crossed (1 of 2)", "rollback"]
    assert all(s["requests"] == 0 for s in record["samples"][: -len(judged)])
    crossed = judged[-1]
    assert crossed["cache_hit_ratio"] == 0.0
    assert crossed["crossed"] == ["application cache hit ratio: 0.0% (rollback below 20.0%)"]
    assert (record["stopped_in"], record["outcome"], record["traffic_state"]) == (
        "monitor", "rolled back", "routed back")  # fmt: skip
    assert f"rollback trigger at sample {crossed['number']} " in record["reason"]
    assert record["reason"].endswith("; the rollback command routed the traffic back")
    assert crossed["number"] * INTERVAL_S < 60 and took < 50  # at once, not at the period's end
    assert labels(db) == ["nohits:start", "nohits:end"]  # the window ends where it rolled back
    assert result.stdout.startswith("rollout rolled back in monitor: rollback trigger at sample")
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exits 5", "cannot start"])
def test_a_failed_rollback_is_its_own_outcome(
    seeded_database: Database, variant_roles: dict[str, str], tmp_path: Path, how: str
) -> None:
    """The rollback command exits non-zero, or cannot start (its program, there at the
    preflight, was removed by the deploy): exit 4, never "rolled back"."""
    db = seeded_database
    router = tmp_path / "router.sh"
    router.write_text("#!/bin/sh\necho routed back\n")
    router.chmod(0o755)
    app = Application(tmp_path / "app", db.dsn, variant_roles, duplication="none",
                      **({"fail_rollback": 5} if how == "exits 5" else
                         {"delete_on_deploy": [str(router)]}))  # fmt: skip
    if how == "cannot start":
        app.config.write_text(re.sub(r"rollback = .*\n", f"rollback = ['{router}']\n",
                                     app.config.read_text()))  # fmt: skip
    try:
        result = rollout(db, app, tmp_path / "reports", "--traffic", "50", "--skip-tests",
                         limit="60s")  # fmt: skip
    finally:
        app.stop()
    assert result.exit_code == 4, result.stdout + result.stderr
    assert app.traffic == "50"  # still on the new path
    record = record_of(tmp_path / "reports")
    assert (record["outcome"], record["exit_code"], record["stopped_in"]) == (
        "rollback failed", 4, "monitor")  # fmt: skip
    assert record["traffic_state"] == "unknown: the rollback failed"
    failure = ("the rollback command exited with 5" if how == "exits 5" else
               f"the rollback command could not start (cannot run {router}: No such file or "
               "directory)")  # fmt: skip
    assert record["reason"].endswith(f"; {failure}: route back by hand")
    if how == "exits 5":
        assert app.calls[-1] == "rollback"
        assert record["phases"][-1]["commands"][-1]["output"] == (
            "the router refused: traffic not routed back\n"
        )
    (line,) = result.stdout.splitlines()
    assert line.startswith("rollout rollback failed in monitor: rollback trigger at sample")
    assert line.endswith(f"; {failure}: route back by hand")
    md = next((tmp_path / "reports").glob("rollout-*.md")).read_text()
    assert "- Outcome: **rollback failed** (exit code 4)" in md


@pytest.mark.server
def test_a_dry_run_touches_nothing(database: Database, tmp_path: Path) -> None:
    app = Application(tmp_path / "app", database.dsn, {"per-request": "a", "batched": "b"})
    tables = "SELECT count(*) FROM pg_class WHERE relnamespace <> 'pg_catalog'::regnamespace " \
             "AND relnamespace <> 'information_schema'::regnamespace AND relkind = 'r'"  # fmt: skip
    before = database.execute(tables)
    result = rollout(database, app, tmp_path / "reports", "--traffic", "100", "--dry-run",
                     "--baseline", "baseline")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert database.execute(tables) == before == [(0,)]
    assert app.calls == []  # no command ran
    record = record_of(tmp_path / "reports")
    assert phases(record) == [("migrate", "ok")] + [(p, "skipped") for p in PHASES[1:]]
    detail = record["phases"][0]["detail"]
    assert "lint: 0 violations" in detail and detail.endswith("nothing touched")
    assert record["outcome"] == "planned" and record["preflight"] == [
        "configuration complete",
        "deploy, traffic, rollback, load test commands resolve to executable files",
    ]
    assert result.stdout == f"rollout planned: {detail}\n"
    # --format json: the record itself on -o (standard output), as written; a share of the
    # traffic with decimals, as every --traffic takes it
    again = rollout(database, app, tmp_path / "reports", "--traffic", "12.5", "--dry-run",
                    "--format", "json")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    document = json.loads(again.stdout)
    assert (document["kind"], document["outcome"], document["traffic"]) == ("rollout", "planned",
                                                                             12.5)  # fmt: skip
    (written,) = (tmp_path / "reports").glob("rollout-production-12.5-*.json")
    assert json.loads(written.read_text()) == document


def preflight_refused(result: Any, app: Application, out: Path, expected: str) -> str:
    """The contract of a refusal: exit 2, one ``Error: preflight: …`` line naming *expected*,
    nothing on stdout, no command run, no record written."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: preflight: "), lines
    assert expected in lines[0], lines[0]
    assert result.stdout == "" and app.calls == [] and not list(out.glob("rollout-*"))
    return str(lines[0])


@pytest.mark.server
def test_the_preflight_refuses_before_anything_moves(database: Database, tmp_path: Path) -> None:
    """Each precondition, broken alone, on a database never migrated: refused with one line
    naming it, and the database is still not migrated (nothing moved), a dry run alike when it
    needs no connection to know."""
    db, out = database, tmp_path / "reports"
    app = Application(tmp_path / "app", db.dsn, {"per-request": "a", "batched": "b"})
    good = app.config.read_text()

    def refused(config: str, expected: str, *args: str) -> str:
        app.config.write_text(config)
        line = preflight_refused(rollout(db, app, out, "--traffic", "10", *args), app, out,
                                 expected)  # fmt: skip
        assert db.execute("SELECT to_regclass('public.alembic_version')") == [(None,)]
        return line

    no_rollback = re.sub(r"rollback = .*\n", "", good)
    for dry in ((), ("--dry-run",)):
        refused(no_rollback, "has no rollback command", *dry)
        refused(
            good.replace(json.dumps(sys.executable), json.dumps("/nonexistent/python"), 1),
            "the deploy command cannot run: /nonexistent/python does not exist",
            *dry,
        )
        refused(good.replace("load_test = [", "load_test = ['no-such-load-tool', "),
                "the load test command cannot run: no-such-load-tool is not found on PATH", *dry)  # fmt: skip
    # --skip-tests: the load test is not needed
    app.config.write_text(good.replace("load_test = [", "load_test = ['no-such-load-tool', "))
    assert rollout(db, app, out, "--traffic", "10", "--dry-run", "--skip-tests").exit_code == 0
    shutil.rmtree(out)
    refused(good, "--traffic 100 compares with a baseline window", "--traffic", "100")
    # A migrate DSN that does not connect: named, its password never shown.
    line = refused(good, "the migrate DSN does not connect: cannot connect to host 127.0.0.1 "
                   "port 1", "--migrate-dsn", "postgresql://deploy:Mig-S3cret@127.0.0.1:1/app")  # fmt: skip
    assert "Mig-S3cret" not in line
    # The monitoring role fails doctor: pg_stat_statements is not created in this database.
    db.execute("DROP EXTENSION pg_stat_statements")
    line = refused(good, "fails doctor's check 'pg_stat_statements created' for the monitoring "
                   "phase and verify: ")  # fmt: skip
    assert line.endswith("(fix: CREATE EXTENSION pg_stat_statements;)")


@pytest.mark.server
def test_a_taken_label_a_stray_start_and_an_untrusted_baseline_are_refused(
    migrated_database: Database, tmp_path: Path
) -> None:
    db, out = migrated_database, tmp_path / "reports"
    app = Application(tmp_path / "app", db.dsn, {"per-request": "a", "batched": "b"})
    (name,) = db.execute("SELECT current_database()")[0]
    assert run_cli("snapshot", "--dsn", db.dsn, "--label", "canary:start").exit_code == 0
    stray = preflight_refused(rollout(db, app, out, "--traffic", "10", "--label", "canary"),
                              app, out, "a stray 'canary:start' of target")  # fmt: skip
    command = f"dbtools snapshot --delete --label canary:start --target {name}"
    assert stray.endswith(f"from an interrupted run: remove it with `{command}`, or give another "
                          "--label")  # fmt: skip
    removed = run_cli(*command.split()[1:], "--dsn", db.dsn)
    assert (removed.exit_code, removed.stdout) == (0, f"snapshot canary:start of {name} removed\n")
    assert labels(db) == []
    # A whole window under the label: taken.
    assert (
        run_cli("capture", "--dsn", db.dsn, "--label", "canary", "--duration", "1s").exit_code == 0
    )
    preflight_refused(rollout(db, app, out, "--traffic", "10", "--label", "canary"), app, out,
                      "the monitoring label 'canary' is taken (canary:end, canary:start stored")  # fmt: skip
    # A 100% rollout's baseline: missing, then present but untrusted (no requests in it).
    preflight_refused(rollout(db, app, out, "--traffic", "100", "--baseline", "base"), app, out,
                      "the baseline window base: unknown snapshot label(s): 'base:start'")  # fmt: skip
    assert run_cli("capture", "--dsn", db.dsn, "--label", "base", "--duration", "1s").exit_code == 0
    preflight_refused(rollout(db, app, out, "--traffic", "100", "--baseline", "base"), app, out,
                      "the baseline window base cannot be trusted: zero requests in the window")  # fmt: skip
    # A monitoring role without the monitoring tables' grants fails doctor at head.
    role = f"{db.name}_nogrants"
    db.execute(f"CREATE ROLE {role} LOGIN IN ROLE pg_monitor")
    try:
        as_role = run_cli(
            "rollout", "--dsn", psycopg.conninfo.make_conninfo(db.dsn, user=role),
            "--migrate-dsn", db.dsn, "--config", str(app.config), "--output-dir", str(out),
            "--environment", "production", "--traffic", "10",
        )  # fmt: skip
        line = preflight_refused(as_role, app, out, "the monitoring role fails doctor's check ")
        assert "for the monitoring phase and verify" in line and "(fix: GRANT " in line
    finally:
        db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    # A stray start an earlier record kept (its removal failed) is named too.
    assert run_cli("snapshot", "--dsn", db.dsn, "--label", "old-run:start").exit_code == 0
    out.mkdir()
    (out / "rollout-production-10-20260101T000000Z.json").write_text(
        json.dumps({"kind": "rollout", "kept_start": "old-run:start", "target": name})
    )
    line = preflight_refused(rollout(db, app, out, "--traffic", "10"), app, out / "none",
                             "a stray 'old-run:start' of target")  # fmt: skip
    assert "kept by the interrupted rollout of " in line and "--label old-run:start" in line


# -- signals: every phase, each routed back (or held), then the same command again -----------------

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
# what the test waits for before it signals: the phase's command started, or the first sample
PHASE_MARKERS = {"deploy": "deploy.started", "load-test": "loadtest.started", "monitor": None}


def wait_for_phase(app: Application, out: Path, phase: str) -> None:
    marker = PHASE_MARKERS[phase]
    if marker is not None:
        app.wait_for(marker)
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the monitoring has taken a sample
        found = list(out.glob("rollout-*.json"))
        if found and json.loads(found[0].read_text())["samples"]:
            return
        time.sleep(0.1)
    raise AssertionError("the monitoring never sampled")


def signalled_in_monitor(
    db: Database, app: Application, out: Path, signum: int, *args: str
) -> tuple[int, str, str]:
    """Run a rollout of 50% (*args* added), send *signum* once it has sampled, and wait."""
    child = rollout_child(db, app, out, "--traffic", "50", *args)
    wait_for_phase(app, out, "monitor")
    child.send_signal(signum)
    return finished(child)


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASE_MARKERS))
@pytest.mark.parametrize("name", list(SIGNALS))
def test_a_signal_routes_back_and_the_same_command_runs_again(
    seeded_database: Database, app: Application, tmp_path: Path, phase: str, name: str
) -> None:
    db, out = seeded_database, tmp_path / "reports"
    app.setting(wait_deploy=30 if phase == "deploy" else 0,
                wait_load_test=30 if phase == "load-test" else 0)  # fmt: skip
    args = ("--traffic", "50", "--label", "sig")
    child = rollout_child(db, app, out, *args)
    wait_for_phase(app, out, phase)
    child.send_signal(SIGNALS[name])
    code, stdout, stderr = finished(child)
    assert code == 130, stdout + stderr
    (record,) = records(out)
    assert phases(record)[-1] == (phase, "interrupted")
    assert (record["outcome"], record["stopped_in"], record["interrupted_by"]) == (
        "interrupted", phase, name)  # fmt: skip
    removed = "; the unfinished window's 'sig:start' removed" if phase == "monitor" else ""
    reason = (f"interrupted ({name}) during {phase}: the rollback command ran: traffic routed "
              f"back{removed}")  # fmt: skip
    assert (record["reason"], record["traffic_state"]) == (reason, "routed back")
    assert stdout == f"rollout interrupted in {phase}: {reason}\n"
    assert app.calls[-1] == "rollback" and app.traffic == "0"
    assert labels(db) == [] and record["kept_start"] is None  # nothing half done
    if phase != "monitor":  # the command in flight was stopped, and the record says so
        (stopped,) = [c for p in record["phases"] for c in p["commands"] if c["interrupted"]]
        assert stopped["interrupted"] == f"{name}: stopped (SIGTERM)"
    # The same command again starts anew (it never resumes half-way) and completes.
    app.setting(wait_deploy=0, wait_load_test=0)
    # 8 s: a shorter window's edge buckets would leave its requests too uncertain to judge
    # (request_edge_tolerance), which is not what this test is about.
    again = rollout(db, app, out, *args, limit="8s")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.stdout.startswith("rollout complete: ")
    assert app.traffic == "50" and labels(db) == ["sig:start", "sig:end"]
    assert [r["outcome"] for r in records(out)] == ["interrupted", "complete"]


@pytest.mark.slow
def test_on_interrupt_hold_keeps_the_traffic(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    db, out = seeded_database, tmp_path / "reports"
    args = ("--label", "held", "--on-interrupt", "hold")
    code, stdout, stderr = signalled_in_monitor(db, app, out, signal.SIGTERM, *args)
    assert code == 130, stdout + stderr
    record = record_of(out)
    assert record["traffic_state"] == "50% on the new path (held: --on-interrupt hold)"
    assert stdout == ("rollout interrupted in monitor: interrupted (SIGTERM) during monitor: the "
                      "traffic held where it is: 50% on the new path; the unfinished window's "
                      "'held:start' removed\n")  # fmt: skip
    assert "rollback" not in app.calls and app.traffic == "50" and labels(db) == []
    again = rollout(db, app, out, "--traffic", "50", *args, limit="8s")  # starts anew
    assert again.exit_code == 0, again.stdout + again.stderr
    assert app.traffic == "50" and labels(db) == ["held:start", "held:end"]


@pytest.mark.slow
def test_a_second_signal_during_the_rollback_stops_waiting(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    db, out = seeded_database, tmp_path / "reports"
    app.setting(wait_rollback=6)
    child = rollout_child(db, app, out, "--traffic", "50", "--label", "twice")
    wait_for_phase(app, out, "monitor")
    child.send_signal(signal.SIGINT)
    app.wait_for("rollback.started")
    began = time.monotonic()
    child.send_signal(signal.SIGINT)
    code, stdout, stderr = finished(child)
    assert code == 130 and time.monotonic() - began < 5, stdout + stderr
    record = record_of(out)
    assert record["traffic_state"] == "unknown: the rollback command was left running"
    assert stdout.startswith("rollout interrupted in monitor: interrupted (SIGINT) during monitor: "
                             "rollback interrupted: the rollback command was left running")  # fmt: skip
    (rollback,) = [c for c in record["phases"][-1]["commands"] if c["interrupted"]]
    assert rollback["exit_code"] is None
    assert re.fullmatch(r"SIGINT: left running \(pid \d+\)", rollback["interrupted"])
    assert labels(db) == []
    deadline = time.monotonic() + 30  # left running, it finishes on its own
    while app.traffic != "0":
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.slow
def test_a_signal_whose_rollback_fails_exits_4(
    seeded_database: Database, app: Application, tmp_path: Path
) -> None:
    db, out = seeded_database, tmp_path / "reports"
    app.setting(fail_rollback=3)
    code, stdout, stderr = signalled_in_monitor(db, app, out, signal.SIGINT)
    assert code == 4, stdout + stderr
    record = record_of(out)
    assert (record["outcome"], record["traffic_state"]) == (
        "rollback failed", "unknown: the rollback failed")  # fmt: skip
    assert stdout.startswith("rollout rollback failed in monitor: interrupted (SIGINT) during "
                             "monitor: the rollback command exited with 3: route back by hand")  # fmt: skip
    assert app.traffic == "50"


# -- secrets -----------------------------------------------------------------------------------------

# Seven forms of a secret nobody told dbtools: four in the deploy command's arguments, three in
# its output; and values dbtools knows, printed bare.
ARGUMENT_SECRETS = {"--password": "Arg-Pw-1", "-p": "Arg-Pw-2", "PGPASSWORD=": "Arg-Pw-3",
                    "DB_PASSWORD=": "Arg-Pw-4"}  # fmt: skip
OUTPUT_SECRET = "Out-Pw-5"
KNOWN_SECRET = "Env-Token-6"
DSN_SECRET = "Dsn-Pw-7"
PGPASS_SECRET = "Pgpass-Pw-8"


@pytest.mark.server
def test_no_secret_reaches_the_record_the_log_or_the_one_line_errors(
    migrated_database: Database, tmp_path: Path
) -> None:
    """The seven forms, in the record (Markdown and JSON), the ``-v`` log and the one line; and
    the values dbtools knows (an environment variable's, the migrate DSN's password, the
    ~/.pgpass entry for the server's host) printed bare by the command."""
    db, out = migrated_database, tmp_path / "reports"
    home = tmp_path / "home"
    home.mkdir()
    port = psycopg.conninfo.conninfo_to_dict(db.dsn).get("port") or "5432"
    (home / ".pgpass").write_text(f"localhost:{port}:*:*:{PGPASS_SECRET}\n")
    (home / ".pgpass").chmod(0o600)
    deploy_args = ", '--password', 'Arg-Pw-1', '-pArg-Pw-2', 'PGPASSWORD=Arg-Pw-3', " \
                  "'DB_PASSWORD=Arg-Pw-4', 'token=Env-Token-6'"  # fmt: skip
    known = [KNOWN_SECRET, DSN_SECRET, PGPASS_SECRET]
    app = Application(tmp_path / "app", db.dsn, {"per-request": "a", "batched": "b"},
                      deploy_args=deploy_args, fail_deploy=4, secret=OUTPUT_SECRET,
                      say=[f"bare: {value}" for value in known])  # fmt: skip
    result = run_cli(
        "-v", "rollout", "--dsn", db.dsn, "--migrate-dsn",
        psycopg.conninfo.make_conninfo(db.dsn, password=DSN_SECRET),
        "--config", str(app.config), "--output-dir", str(out), "--environment", "staging",
        "--traffic", "10",
        env={"DBTOOLS_MAX_DURATION": "4s", "DEPLOY_API_TOKEN": KNOWN_SECRET, "HOME": str(home)},
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr
    md = next(out.glob("rollout-*.md")).read_text()
    js = next(out.glob("rollout-*.json")).read_text()
    record = json.loads(js)
    secrets = [*ARGUMENT_SECRETS.values(), OUTPUT_SECRET, *known]
    for where, text in (("md", md), ("json", js), ("log", result.stderr), ("line", result.stdout)):
        assert not [s for s in secrets if s in text], where
    shown = shlex.join([sys.executable, str(app.script), "deploy", "staging", "--password", "***",
                        "-p***", "PGPASSWORD=***", "DB_PASSWORD=***", "token=***"])  # fmt: skip
    (line,) = result.stdout.splitlines()  # the one line, naming the command as run
    assert line == f"rollout held in deploy: the deploy command exited with 4: {shown}"
    output = ("password: ***\nDB_PASSWORD=***\nPGPASSWORD=***\nbare: ***\nbare: ***\nbare: ***\n"
              "deployed the batched path to staging\n")  # fmt: skip
    assert record["phases"][1]["commands"][0]["output"] == output
    assert f"running {shown}" in result.stderr and shown in md
    program = Path(sys.executable).name
    for form in output.splitlines():  # the -v log, line by line, and the Markdown
        assert f"{program}: {form}" in result.stderr and form in md
    # An Error: line: a program given as an assignment (as a shell would read it) is named,
    # its value masked.
    app.config.write_text(re.sub(r"deploy = \[[^,]*,", "deploy = ['DB_PASSWORD=Arg-Pw-4',",
                                 app.config.read_text()))  # fmt: skip
    refused = run_cli("rollout", "--dsn", db.dsn, "--config", str(app.config), "--output-dir",
                      str(tmp_path / "none"), "--environment", "staging", "--traffic", "10")  # fmt: skip
    assert refused.exit_code == 2 and refused.stderr == (
        "Error: preflight: the deploy command cannot run: DB_PASSWORD=*** is not found on PATH\n"
    )


# -- the runbook's deploy script -------------------------------------------------------------------


def readme_deploy_script() -> str:
    """The body of ``scripts/deploy-performance-optimizations.sh`` as the runbook writes it."""
    text = RUNBOOK.read_text(encoding="utf-8")
    match = re.search(r"cat > scripts/deploy-performance-optimizations\.sh <<'SH'\n(.*?)\nSH\n",
                      text, re.S)  # fmt: skip
    assert match, "the runbook's deploy script"
    return match.group(1) + "\n"


def deploy_script(project: Path, app: Application, db: Database, *args: str) -> Any:
    """Run the runbook's deploy script in *project* (the application's rollout.toml there), with
    dbtools on PATH as after ``. .venv/bin/activate``."""
    project.mkdir(exist_ok=True)
    script = project / "deploy.sh"
    script.write_text(readme_deploy_script())
    script.chmod(0o755)
    shutil.copy(app.config, project / "rollout.toml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DEPLOY_DATABASE_URL": db.dsn, "DATABASE_URL": db.dsn, "DBTOOLS_MAX_DURATION": "60s"}  # fmt: skip
    return subprocess.run([str(script), "--environment", "production", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_the_readme_deploy_script_prints_each_outcome_once(
    seeded_database: Database, variant_roles: dict[str, str], tmp_path: Path
) -> None:
    db = seeded_database
    app = Application(tmp_path / "app", db.dsn, variant_roles, duplication="none",
                      fail_rollback=5)  # fmt: skip
    project = tmp_path / "project"
    planned = deploy_script(project, app, db, "--traffic", "50", "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    (line,) = planned.stdout.splitlines()  # dbtools' line; the script adds nothing
    assert line.startswith("rollout planned: offline SQL base:head: ")
    assert app.calls == []
    try:
        failed = deploy_script(project, app, db, "--traffic", "50", "--skip-tests")
    finally:
        app.stop()
    assert failed.returncode == 4, failed.stdout + failed.stderr
    outcome, advice = failed.stdout.splitlines()
    assert outcome.startswith("rollout rollback failed in monitor: ")
    assert outcome.endswith("; the rollback command exited with 5: route back by hand")
    assert advice == "next: ROUTE THE TRAFFIC BACK BY HAND (scripts/route-traffic.sh 0) now"
    assert failed.stdout.count("rollback failed") == 1
