"""``dbtools rollout``: the rollout guide's five phases for the database half, as one call.

**Preflight** first: nothing moves until every precondition holds (``Rollout.preflight``); any
failure is one ``UsageError`` line naming it (exit 2), and nothing is run, stored or written.
A dry run checks the same, minus the connections it promises not to make.

1. **migrate**: ``alembic upgrade head`` (as ``--migrate-dsn``), then ``doctor`` as the
   monitoring role; a dry run renders the offline SQL, lints it and plans the downgrade instead.
2. **deploy**: the application's deploy command, then its traffic command with the percentage.
3. **load-test**: the application's load-test command (optional; ``--skip-tests``; ``--force``
   goes on when it fails).
4. **monitor**: ``LABEL:start``, then a sample every interval through collect's sampler (one
   session, reused) until ``LABEL:end``. At every sample the guide's rollback triggers are judged
   on the candidate variant's requests since the last judged sample, once they number
   ``min_requests`` (fewer: "too few requests to judge", carried into the next sample); a
   trigger crossed on ``failure_threshold`` judged samples in a row rolls back, as Flagger's
   failure threshold does, so that one noisy sample does not roll back a good release.
5. **complete**: ``verify --canary`` on the monitoring window (traffic below 100%), else
   ``verify`` of the baseline window against it; a rollback threshold runs the rollback command.

Outcomes (``Outcome``) and exit codes: complete 0, planned 0 (a dry run), held 1 (a phase or a
check failed; the traffic stays where it is), rolled back 3 (the rollback command routed the
traffic back), rollback failed 4 (its command exited non-zero or could not start: route back
by hand), interrupted 130.

**Interrupted means routed back.** Ctrl-C or SIGTERM during deploy, load test, monitor or
complete runs the rollback command (``on_interrupt="hold"`` keeps the traffic where it is); a
second one during that rollback stops waiting for it (left running) and the record says
"rollback interrupted". The ``LABEL:start`` of an unfinished window is removed, or kept and
named with the command that removes it. Re-running refuses, before anything moves, while
something an interrupted run left is in the way (its kept ``:start``, the label); it never
resumes half-way: a re-run starts from the beginning.

The application's parts are commands from ``[tool.dbtools.rollout]``: argument lists run without
a shell, ``{traffic}`` and ``{environment}`` substituted inside arguments, output logged. Every
secret is masked (``redaction``) before anything is logged or written. Every phase is written
to a rollout record (Markdown and JSON, in ``reports/``), also when a phase fails or a signal
stops it: the record says where and what happened to the traffic.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from dbtools.config import layered_table, max_duration, parse_duration
from dbtools.db.connection import session
from dbtools.db.errors import translated_errors
from dbtools.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_ROLLBACK,
    EXIT_ROLLBACK_FAILED,
    ConfigError,
    DbtoolsError,
    UsageError,
)
from dbtools.figures.measures import request_figures
from dbtools.figures.requests import VariantTotals
from dbtools.figures.windows import validate_label, window_labels
from dbtools.findings import FAILING, Finding
from dbtools.output import (
    Destination,
    dump_json,
    markdown_cell,
    number,
    percent,
    to_jsonable,
    write_output,
)
from dbtools.redaction import redact, redact_argv
from dbtools.store import Store, snapshots
from dbtools.store.collector import Target, TargetSampler
from dbtools.verify.rules import judge_app_cache_hit_ratio, judge_error_rate, judge_p95_latency
from dbtools.verify.thresholds import Thresholds

log = logging.getLogger(__name__)

PHASES = ("migrate", "deploy", "load-test", "monitor", "complete")
ENVIRONMENTS = ("staging", "production")
RECORD_STEM = "rollout"  # reports/rollout-<environment>-<traffic>-<UTC time>.{md,json}
OUTPUT_TAIL = 4000  # characters of a command's output kept in the record
STOP_GRACE_S = 5.0  # an interrupted command gets SIGTERM, then SIGKILL after this long

Outcome = Literal["complete", "planned", "held", "rolled back", "rollback failed", "interrupted"]
OnInterrupt = Literal["rollback", "hold"]
PhaseStatus = Literal["ok", "failed", "skipped", "interrupted", "rolled back"]
EXIT_OF_OUTCOME: dict[str, int] = {
    "complete": EXIT_OK,
    "planned": EXIT_OK,
    "held": EXIT_PROBLEMS,
    "rolled back": EXIT_ROLLBACK,
    "rollback failed": EXIT_ROLLBACK_FAILED,
    "interrupted": EXIT_INTERRUPTED,
}
_PHASE_STATUS: dict[str, PhaseStatus] = {"rolled back": "rolled back", "interrupted": "interrupted"}
# The phases during which the traffic may be on the new path: a signal there routes it back.
ROUTED_PHASES = ("deploy", "load-test", "monitor", "complete")


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutConfig:
    """``[tool.dbtools.rollout]``: the application's commands and how the rollout is judged."""

    deploy: tuple[str, ...] = ()
    traffic: tuple[str, ...] = ()
    rollback: tuple[str, ...] = ()
    load_test: tuple[str, ...] = ()
    interval_seconds: int = 60  # between two samples of the monitoring phase
    baseline_variant: str = "per-request"
    candidate_variant: str = "batched"
    attribute: Literal["role", "app"] = "app"
    variant_roles: Mapping[str, str] = field(default_factory=dict)
    baseline: str | None = None  # the window a 100% rollout is compared with
    # a sample's triggers are judged on at least this many requests of the candidate variant
    min_requests: int = 50
    # judged samples in a row that cross a trigger before it rolls back (Flagger's threshold)
    failure_threshold: int = 2


_COMMAND_KEYS = ("deploy", "traffic", "rollback", "load_test")
_COUNT_KEYS = ("min_requests", "failure_threshold")


def _command(value: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(
        value, str
    ):  # "scripts/route.sh {traffic}": split as a shell would, never run by one
        value = shlex.split(value)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: rollout {key} must be a command: a list of arguments")
    return tuple(value)


def rollout_config_from(
    values: Mapping[str, Any], *, source: str = "configuration"
) -> RolloutConfig:
    """``RolloutConfig`` from ``[tool.dbtools.rollout]``, validated (raises ``ConfigError``)."""
    known = {f.name for f in dataclasses.fields(RolloutConfig)} - {"interval_seconds"} | {
        "interval"
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown rollout setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")  # fmt: skip
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in _COMMAND_KEYS:
            checked[key] = _command(value, key, source)
        elif key == "interval":
            try:
                checked["interval_seconds"] = parse_duration(str(value))
            except UsageError as err:
                raise ConfigError(f"{source}: rollout interval: {err}") from err
        elif key in _COUNT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{source}: rollout {key} must be a whole number from 1")
            checked[key] = value
        elif key == "attribute":
            if value not in ("role", "app"):
                raise ConfigError(f"{source}: rollout attribute is role or app, not {value!r}")
            checked[key] = value
        elif key == "variant_roles":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{source}: rollout variant_roles maps variants to roles")
            checked[key] = dict(value)
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: rollout {key} must be a non-empty string")
        else:
            checked[key] = value
    return RolloutConfig(**checked)


def load_rollout_config(
    config_file: Path | None = None, *, project_dir: Path | None = None
) -> RolloutConfig:
    """The rollout settings: ``[tool.dbtools.rollout]`` of ``./pyproject.toml``, then
    *config_file* (``[rollout]`` or ``[tool.dbtools.rollout]``). Raises ``ConfigError``."""
    values, source = layered_table("rollout", config_file, project_dir=project_dir)
    return rollout_config_from(values, source=source)


@dataclass(frozen=True)
class RolloutOptions:
    """What the deploy script asked for."""

    environment: str
    traffic: float  # percent, above 0 (a whole number as an int: 10, not 10.0, in names)
    monitor_seconds: int = 600
    dry_run: bool = False
    skip_tests: bool = False
    force: bool = False
    baseline: str | None = None  # overrides the configuration's
    label: str | None = None  # of the monitoring window (default: the record's name)
    on_interrupt: OnInterrupt = "rollback"

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise UsageError(f"--environment is staging or production, not {self.environment!r}")
        if not 0 < self.traffic <= 100:
            raise UsageError(f"--traffic is a percentage above 0 to 100, not {self.traffic}")
        if self.monitor_seconds <= 0:
            raise UsageError("--monitor must be positive")
        if self.on_interrupt not in ("rollback", "hold"):
            raise UsageError(f"--on-interrupt is rollback or hold, not {self.on_interrupt!r}")
        if self.label is not None:
            validate_label(self.label)


# -- the record -------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CommandRun:
    """One application command: its arguments (secrets masked), exit code (None: it never
    ended while dbtools waited), output's end, and what a signal did to it."""

    argv: list[str]
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    output: str = ""
    interrupted: str = ""  # "stopped (SIGTERM, then SIGKILL …)" or "left running (pid N)"


@dataclass
class Sample:
    """One sample of the monitoring phase: the candidate variant's requests since *since* (the
    last judged sample), and what the triggers made of them."""

    number: int
    label: str | None
    taken_at: datetime
    since: datetime
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    cache_hit_ratio: float | None
    status: str  # pass, too few requests to judge, trigger crossed (N of M), rollback
    crossed: list[str] = field(default_factory=list)  # the rollback triggers' messages


@dataclass
class PhaseRecord:
    name: str
    started_at: datetime
    ended_at: datetime | None = None
    status: PhaseStatus | None = None
    detail: str = ""
    commands: list[CommandRun] = field(default_factory=list)


@dataclass
class RolloutRecord:
    """Everything the rollout did, phase by phase; written whole after every phase."""

    environment: str
    traffic: float
    dry_run: bool
    skip_tests: bool
    force: bool
    on_interrupt: OnInterrupt
    monitor_seconds: int
    interval_seconds: int
    min_requests: int
    failure_threshold: int
    started_at: datetime
    target: str | None = None  # whose samples the monitoring window is
    window: str | None = None
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    stopped_in: str | None = None  # the phase that failed, rolled back or was interrupted
    reason: str = ""
    traffic_state: str = "not routed"  # where the traffic is as far as dbtools knows
    interrupted_by: str | None = None  # SIGINT (Ctrl-C) or SIGTERM
    kept_start: str | None = None  # an unfinished window's start that could not be removed
    preflight: list[str] = field(default_factory=list)
    phases: list[PhaseRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    verdict: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OF_OUTCOME[self.outcome] if self.outcome else EXIT_PROBLEMS

    def phase(self, name: str) -> PhaseRecord | None:
        return next((p for p in self.phases if p.name == name), None)

    def summary(self) -> str:
        """The one final line: the outcome, where, and why."""
        where = f" in {self.stopped_in}" if self.stopped_in else ""
        return f"rollout {self.outcome or 'running'}{where}" + (
            f": {self.reason}" if self.reason else ""
        )


def record_markdown(record: RolloutRecord) -> str:
    """The record for people: the outcome, then each phase with its times and commands."""

    def when(moment: datetime | None) -> str:
        return "–" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"

    lines = [
        f"# Rollout: {record.environment}, {record.traffic}% of traffic"
        + (" (dry run)" if record.dry_run else ""),
        "",
        f"- Outcome: **{record.outcome or 'running'}** (exit code {record.exit_code})",
    ]
    if record.stopped_in:
        lines.append(f"- Stopped in phase: **{record.stopped_in}**")
    if record.reason:
        lines.append(f"- Reason: {record.reason}")
    if record.interrupted_by:
        lines.append(f"- Interrupted by {record.interrupted_by}; on interrupt: "
                     f"{record.on_interrupt}")  # fmt: skip
    lines += [
        f"- Traffic: {record.traffic_state}",
        f"- Started {when(record.started_at)}, ended {when(record.ended_at)}",
        f"- Monitoring: {record.monitor_seconds} s, a sample every {record.interval_seconds} s"
        + (f", window `{record.window}`" if record.window else "")
        + f"; triggers judged on at least {record.min_requests} requests, rolling back after "
        f"{record.failure_threshold} crossed in a row",
    ]
    if record.kept_start:
        lines.append(
            f"- Kept: `{record.kept_start}` ({_delete_hint(record.kept_start, record.target)})"
        )
    if record.preflight:
        lines += ["", "## Preflight", "", *(f"- {check}" for check in record.preflight)]
    lines += ["", "## Phases", "", "| phase | status | started | ended | detail |",
              "|---|---|---|---|---|"]  # fmt: skip
    for phase in record.phases:
        lines.append(f"| {phase.name} | {phase.status or 'running'} | {when(phase.started_at)} | "
                     f"{when(phase.ended_at)} | {markdown_cell(phase.detail)} |")  # fmt: skip
    if record.samples:
        lines += ["", "## Samples (the candidate variant since the last judged sample)", "",
                  "| # | taken | since | requests | error rate | p95 | cache hit | judged |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for s in record.samples:
            judged = "; ".join([s.status, *s.crossed])
            lines.append(
                f"| {s.number} | {when(s.taken_at)} | {when(s.since)} | {s.requests} | "
                f"{percent(s.error_rate)} | {number(s.p95_ms, 0, unit=' ms')} | "
                f"{percent(s.cache_hit_ratio)} | {markdown_cell(judged)} |"
            )
    commands = [(p.name, c) for p in record.phases for c in p.commands]
    if commands:
        lines += ["", "## Commands"]
        for name, run in commands:
            ended = f"exit {run.exit_code}" if run.exit_code is not None else "did not end"
            lines += ["", f"### {name}: `{shlex.join(run.argv)}` ({ended})"]
            if run.interrupted:
                lines += ["", f"Interrupted: {run.interrupted}"]
            lines += ["", "```", run.output.rstrip() or "(no output)", "```"]
    return redact("\n".join(lines) + "\n")


def _masked(value: Any) -> Any:
    """Every string in JSON-ready *value* redacted (its structure left whole)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def record_json(record: RolloutRecord) -> str:
    payload = _masked(to_jsonable(record))
    payload["exit_code"] = record.exit_code
    return dump_json("rollout", payload)


def write_record(record: RolloutRecord, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write the record's Markdown and JSON under *stem* in *directory* (atomically; the
    directory made, one level, when missing)."""
    directory.mkdir(exist_ok=True)
    destination = Destination(None, directory)
    md = write_output(record_markdown(record), dataclasses.replace(
        destination, path=str(directory / f"{stem}.md")), stem, "md")  # fmt: skip
    js = write_output(record_json(record), dataclasses.replace(
        destination, path=str(directory / f"{stem}.json")), stem, "json")  # fmt: skip
    return md, js


def _delete_hint(label: str, target: str | None) -> str:
    where = f" --target {shlex.quote(target)}" if target else ""
    return f"remove it with `dbtools snapshot --delete --label {shlex.quote(label)}{where}`"


# -- signals ----------------------------------------------------------------------------------------


def signal_name(interrupt: BaseException) -> str:
    """Which signal a ``KeyboardInterrupt`` stands for (``cli.signals`` names SIGTERM)."""
    return str(interrupt.args[0]) if interrupt.args else "SIGINT"


@contextmanager
def signals_deferred(*, raise_after: bool = True) -> Iterator[None]:
    """Within the block SIGINT and SIGTERM wait (a record is written whole, a command stopped
    cleanly); one that came is raised as ``KeyboardInterrupt`` after it (*raise_after*), or
    dropped. Outside the main thread signals cannot arrive: nothing to do."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def hold(signum: int, frame: object) -> None:
        came.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if came and raise_after:
        raise KeyboardInterrupt(signal.Signals(came[0]).name)


# -- the application's commands ---------------------------------------------------------------------


def command_argv(command: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """*command* with ``{traffic}`` and ``{environment}`` replaced inside each argument: the
    values stay one argument each, whatever they hold (no shell reads them)."""
    argv = []
    for argument in command:
        for name, value in values.items():
            argument = argument.replace("{" + name + "}", value)
        argv.append(argument)
    return argv


def executable_problem(command: Sequence[str], cwd: Path | None = None) -> str | None:
    """Why *command*'s program cannot be run (None: it resolves to an executable file): a
    path is taken from *cwd* (default: the current directory), a bare name from ``PATH``."""
    program = command[0]
    if os.sep not in program:
        return None if shutil.which(program) else f"{program} is not found on PATH"
    path = Path(program) if os.path.isabs(program) else (cwd or Path.cwd()) / program
    if not path.is_file():
        return f"{program} does not exist" if not path.exists() else f"{program} is not a file"
    return None if os.access(path, os.X_OK) else f"{program} is not executable"


def run_command(
    command: Sequence[str],
    values: Mapping[str, str],
    *,
    cwd: Path | None = None,
    started: Callable[[CommandRun], None] = lambda run: None,
    leave_running: bool = False,
) -> CommandRun:
    """Run *command* (no shell, in a session of its own: a terminal's Ctrl-C reaches dbtools,
    which decides) with the rollout's values in its environment; log its output (secrets
    masked) and return what happened. An unstartable program is exit 127.

    *started* gets the run before dbtools waits for it (the record shows a command in flight).
    A signal while waiting stops the command (SIGTERM to its process group, SIGKILL after
    ``STOP_GRACE_S``), or with *leave_running* leaves it running; either way the run says so
    and the ``KeyboardInterrupt`` goes on."""
    argv = command_argv(command, values)
    shown = redact_argv(argv)  # its secrets are known from here on: its output masks them
    run = CommandRun(shown, _now())
    env = {**os.environ, **{f"DBTOOLS_ROLLOUT_{k.upper()}": v for k, v in values.items()}}
    log.info("running %s", shlex.join(shown))
    # Output goes to a file, not a pipe: a command that leaves a process running in the
    # background (the traffic it starts) would hold a pipe open, and the rollout would wait.
    with tempfile.TemporaryFile() as captured:
        try:
            child = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=captured, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        except OSError as err:
            run.exit_code, run.ended_at = 127, _now()
            run.output = f"cannot run {shown[0]}: {err.strerror or err}\n"
            started(run)
            log.info("  %s", run.output.strip())
            return run
        try:
            started(run)  # writes the record: a signal held meanwhile comes here
            run.exit_code = child.wait()
        except KeyboardInterrupt as interrupt:
            if leave_running:
                run.interrupted = f"{signal_name(interrupt)}: left running (pid {child.pid})"
            else:
                with signals_deferred(raise_after=False):
                    run.interrupted = f"{signal_name(interrupt)}: {_stop(child)}"
                    run.exit_code = child.returncode
            raise
        finally:
            run.ended_at = _now()
            captured.seek(0)
            run.output = redact(captured.read().decode("utf-8", errors="replace"))[-OUTPUT_TAIL:]
            for line in run.output.splitlines():
                log.info("  %s: %s", Path(shown[0]).name, line)
    return run


def _stop(child: subprocess.Popen[bytes]) -> str:
    """Stop *child*'s process group: SIGTERM, then SIGKILL after ``STOP_GRACE_S``."""
    with suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(STOP_GRACE_S)
        return "stopped (SIGTERM)"
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return f"stopped (SIGKILL after {STOP_GRACE_S:g} s)"


# -- the rollback triggers -------------------------------------------------------------------------


def judge_triggers(
    totals: VariantTotals | None, thresholds: Thresholds, *, min_requests: int = 1
) -> tuple[list[Finding], dict[str, Any]]:
    """The guide's automatic rollback triggers (error rate, p95, cache hit ratio) on one
    variant's request metrics: the findings whose status is ``rollback``, and the figures.
    Fewer than *min_requests* requests are judged by none (too few to judge)."""
    measured = request_figures(totals)  # requests: of the buckets its errors come from
    figures = {
        "requests": measured.requests,
        "errors": totals.errors if totals else 0,
        "error_rate": measured.error_rate,
        "p95_ms": measured.p95_ms,
        "cache_hit_ratio": measured.app_cache_hit_ratio,
    }
    if measured.requests < min_requests:
        return [], figures
    missing = "no requests of the candidate variant since the last judged sample"
    findings = [
        *judge_error_rate(figures["error_rate"], thresholds, missing=missing),
        *judge_p95_latency(figures["p95_ms"], thresholds, missing=missing),
        *judge_app_cache_hit_ratio(figures["cache_hit_ratio"], thresholds, missing=missing),
    ]
    return [f for f in findings if f.status == "rollback"], figures


@dataclass
class Triggers:
    """The triggers over the monitoring phase: each sample judged on the requests since the
    last judged one once they number ``min_requests``; a rollback after ``failure_threshold``
    judged samples in a row crossed one (a judged sample that crosses none starts again)."""

    thresholds: Thresholds
    min_requests: int
    failure_threshold: int
    failing: int = 0  # judged samples in a row that crossed a trigger

    def judge(self, totals: VariantTotals | None) -> tuple[str, list[str], dict[str, Any]]:
        """(status, the crossed triggers' messages, the figures) of the next sample; status is
        ``pass``, ``too few requests to judge (N of M)``, ``trigger crossed (N of M)`` or
        ``rollback``."""
        crossed, figures = judge_triggers(totals, self.thresholds, min_requests=self.min_requests)
        messages = [f"{f.subject}: {f.message}" for f in crossed]
        if figures["requests"] < self.min_requests:
            return (f"too few requests to judge ({figures['requests']} of "
                    f"{self.min_requests})"), [], figures  # fmt: skip
        self.failing = self.failing + 1 if crossed else 0
        if not crossed:
            return "pass", [], figures
        if self.failing >= self.failure_threshold:
            return "rollback", messages, figures
        return f"trigger crossed ({self.failing} of {self.failure_threshold})", messages, figures


# -- the rollout ------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends the rollout early with an outcome (internal)."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


@dataclass
class Rollout:
    """One rollout: its inputs, its record and where the record is written."""

    dsn: str
    options: RolloutOptions
    config: RolloutConfig
    thresholds: Thresholds
    output_dir: Path
    migrate_dsn: str | None = None
    config_file: Path | None = None
    cwd: Path | None = None
    wait: Callable[[float], None] = time.sleep
    on_phase: Callable[[PhaseRecord], None] = lambda phase: None
    record: RolloutRecord = field(init=False)
    stem: str = field(init=False)
    paths: tuple[Path, Path] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        o, c = self.options, self.config
        seconds = o.monitor_seconds
        limit = max_duration()
        self._shortened = limit is not None and seconds > limit  # said after the preflight
        if limit is not None and seconds > limit:
            seconds = limit
        self.record = RolloutRecord(
            o.environment, o.traffic, o.dry_run, o.skip_tests, o.force, o.on_interrupt, seconds,
            min(c.interval_seconds, seconds), c.min_requests, c.failure_threshold, _now(),
        )  # fmt: skip
        moment = self.record.started_at
        self.stem = f"{RECORD_STEM}-{o.environment}-{o.traffic}-{moment:%Y%m%dT%H%M%S}Z"
        self.label = o.label or self.stem
        self.values = {"traffic": str(o.traffic), "environment": o.environment}
        self.sampler = TargetSampler(Target(None, self.dsn), interval_s=self.record.interval_seconds,
                                     application_name="dbtools rollout", purpose="dbtools rollout")  # fmt: skip
        self._open_start: str | None = None  # LABEL:start stored, LABEL:end not yet

    # -- preflight ---------------------------------------------------------------------------

    def _commands(self) -> list[str]:
        keys = ["deploy", "traffic", "rollback"]
        if self.config.load_test and not self.options.skip_tests:
            keys.append("load_test")
        return keys

    def preflight(self) -> list[str]:
        """Check every precondition before any phase acts; the checks that passed, in order.

        Raises ``UsageError`` (exit 2) naming the first that does not hold: the configuration
        is incomplete, an application command does not resolve to an executable file, the
        migrate DSN does not connect, the repository of samples cannot be reached, the
        monitoring role fails doctor's checks for the monitoring phase (capture) or verify,
        the monitoring label is taken (a stray ``:start`` from an interrupted run is named with
        the command that removes it, as is one an earlier record kept), or the baseline window
        of a 100% rollout is missing or untrusted. A dry run checks the same, minus the
        connections it promises not to make.
        """
        passed = []
        missing = [k for k in ("deploy", "traffic", "rollback") if not getattr(self.config, k)]
        if missing:
            raise UsageError(f"preflight: [tool.dbtools.rollout] has no {missing[0]} command: "
                             "the rollout needs deploy, traffic and rollback commands")  # fmt: skip
        baseline = self.options.baseline or self.config.baseline
        if self.options.traffic == 100 and not baseline:
            raise UsageError("preflight: --traffic 100 compares with a baseline window: give "
                             "--baseline W (or baseline in [tool.dbtools.rollout])")  # fmt: skip
        passed.append("configuration complete")
        for key in self._commands():
            argv = command_argv(getattr(self.config, key), self.values)
            problem = executable_problem(argv, self.cwd)
            if problem:
                raise UsageError(f"preflight: the {key.replace('_', ' ')} command cannot run: "
                                 f"{redact(problem)}")  # fmt: skip
        passed.append(f"{', '.join(k.replace('_', ' ') for k in self._commands())} commands "
                      "resolve to executable files")  # fmt: skip
        if self.options.dry_run:
            return passed
        try:
            with session(self.migrate_dsn or self.dsn, autocommit=True) as conn:
                conn.execute("SELECT /* dbtools */ 1")
        except DbtoolsError as err:
            raise UsageError(f"preflight: the migrate DSN does not connect: {err}") from err
        passed.append("the migrate DSN connects")
        try:
            with session(self.dsn, autocommit=True) as store:
                row = store.execute("SELECT /* dbtools */ current_database()").fetchone()
        except DbtoolsError as err:
            raise UsageError(
                f"preflight: the repository of samples cannot be reached: {err}"
            ) from err
        assert row is not None
        self.record.target = self.sampler.name = str(row[0])
        passed.append(f"the repository of samples is reachable (target {row[0]})")
        passed += self._doctor_preflight()
        with session(self.dsn, autocommit=True) as store:
            passed += self._labels_preflight(store)
        if self.options.traffic == 100:
            assert baseline is not None
            passed.append(self._baseline_preflight(baseline))
        return passed

    def _doctor_preflight(self) -> list[str]:
        from dbtools.doctor import CAPTURE, MEASURING, VERIFY, run_doctor
        from dbtools.schema.manifest import head_revision

        result = run_doctor(self.dsn)
        at_head = any(c.check == "database revision" and c.message.startswith("at head")
                      for c in result.checks)  # fmt: skip
        failing = [c for c in result.checks
                   if c.status in FAILING and {CAPTURE, VERIFY} & set(c.commands)]  # fmt: skip
        # Below head the migration still has to create or change the monitoring tables (and
        # their grants come after it): those checks are judged once it ran, in the migrate
        # phase; the server's and the role's are judged now.
        deferred = [] if at_head else [c for c in failing if not set(c.commands) <= set(MEASURING)]
        blocking = [c for c in failing if c not in deferred]
        if blocking:
            first = blocking[0]
            fix = f" (fix: {first.fix.splitlines()[0]})" if first.fix else ""
            raise UsageError(f"preflight: the monitoring role fails doctor's check "
                             f"{first.check!r} for the monitoring phase and verify: "
                             f"{first.message}{fix}")  # fmt: skip
        if deferred:
            return [f"the monitoring role passes doctor's server checks; the schema's are "
                    f"judged after the migration to {head_revision()}"]  # fmt: skip
        return ["the monitoring role passes doctor's checks for the monitoring phase and verify"]

    def _labels_preflight(self, store: Any) -> list[str]:
        start, end = window_labels(self.label)
        name = self.sampler.name
        with translated_errors("preflight: the monitoring label"):
            stored = Store.of(store)
            # Not migrated yet, below the samples of 0005, or none stored: no label is taken.
            if not stored.targets():
                return [f"the monitoring label {self.label!r} is free (no samples stored yet)"]
            taken = stored.headers([start, end], target=name)
            kept = self._kept_starts(stored)
        if start in taken and end not in taken:
            raise UsageError(f"preflight: a stray {start!r} of target {name!r} from an "
                             f"interrupted run: {_delete_hint(start, name)}, or give another "
                             "--label")  # fmt: skip
        if taken:
            raise UsageError(f"preflight: the monitoring label {self.label!r} is taken "
                             f"({', '.join(sorted(taken))} stored for target {name!r}): give "
                             "another --label")  # fmt: skip
        if kept:
            label, record = kept[0]
            raise UsageError(f"preflight: a stray {label!r} of target {name!r}, kept by the "
                             f"interrupted rollout of {record}: {_delete_hint(label, name)}")  # fmt: skip
        return [f"the monitoring label {self.label!r} is free; no stray start is kept"]

    def _kept_starts(self, store: Store) -> list[tuple[str, str]]:
        """The ``:start`` labels earlier records in the output directory kept (their removal
        failed), and still stored, with the record that names each."""
        kept = []
        for path in sorted(self.output_dir.glob(f"{RECORD_STEM}-*.json")):
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            label = document.get("kept_start") if isinstance(document, dict) else None
            if not isinstance(label, str) or document.get("target") != self.sampler.name:
                continue
            if store.headers([label], target=self.sampler.name):
                kept.append((label, str(path)))
        return kept

    def _baseline_preflight(self, baseline: str) -> str:
        from dbtools.verify import window_measures

        try:
            measures = window_measures(self.dsn, baseline, target=self.sampler.name,
                                        thresholds=self.thresholds)  # fmt: skip
        except DbtoolsError as err:
            raise UsageError(f"preflight: the baseline window {baseline}: {err}") from err
        if not measures.trusted:
            raise UsageError(f"preflight: the baseline window {baseline} cannot be trusted: "
                             f"{'; '.join(measures.problems)}")  # fmt: skip
        return f"the baseline window {baseline} exists and is trusted"

    # -- phases ------------------------------------------------------------------------------

    def run(self) -> RolloutRecord:
        """Check the preconditions (``preflight``: raises ``UsageError``, nothing done), then
        run every phase; the record is written after each. A signal (``KeyboardInterrupt``)
        routes the traffic back or holds it (``on_interrupt``), and is recorded, not raised."""
        try:
            self.record.preflight = self.preflight()
        except BaseException:
            self.sampler.close()
            raise
        if self._shortened and not self.options.dry_run:
            log.warning("DBTOOLS_MAX_DURATION shortens the monitoring from %d s to %d s",
                        self.options.monitor_seconds, self.record.monitor_seconds)  # fmt: skip
        steps = (
            ("migrate", self._dry_run if self.options.dry_run else self._migrate),
            ("deploy", self._deploy),
            ("load-test", self._load_test),
            ("monitor", self._monitor),
            ("complete", self._complete),
        )
        try:
            for name, step in steps:
                if self.options.dry_run and name != "migrate":
                    self._skip(name, "dry run: nothing deployed")
                    continue
                with self._phase(name) as phase:
                    step(phase)
            self._finish("planned" if self.options.dry_run else "complete", self._completed())
        except _Stop as stop:
            with signals_deferred(raise_after=False):
                self._finish(stop.outcome, stop.reason)
        except KeyboardInterrupt as interrupt:
            self._interrupted(interrupt)
        finally:
            self.sampler.close()
        return self.record

    def _completed(self) -> str:
        if self.options.dry_run:
            return self.record.phases[0].detail
        return f"{self.record.traffic_state}; {self.record.phases[-1].detail}"

    @contextmanager
    def _phase(self, name: str) -> Iterator[PhaseRecord]:
        phase = PhaseRecord(name, _now())
        self.record.phases.append(phase)
        self._write()
        log.info("phase %s started", name)
        try:
            yield phase
        except _Stop as stop:
            phase.status = _PHASE_STATUS.get(stop.outcome, "failed")
            phase.detail = phase.detail or stop.reason
            self.record.stopped_in = name
            raise
        except KeyboardInterrupt as interrupt:
            phase.status = "interrupted"
            phase.detail = phase.detail or f"interrupted ({signal_name(interrupt)})"
            self.record.stopped_in = name
            raise
        except DbtoolsError as err:
            phase.status, phase.detail = "failed", redact(str(err))
            self.record.stopped_in = name
            if name != "monitor":
                raise _Stop("held", f"{name}: {phase.detail}") from err
            try:  # the new path cannot be watched: route it back
                self._rollback(phase, f"monitoring failed: {phase.detail}")
            except _Stop as stop:
                phase.status = _PHASE_STATUS.get(stop.outcome, "failed")
                raise
        else:
            phase.status = phase.status or "ok"
        finally:
            phase.ended_at = _now()
            self.on_phase(phase)
            self._write()

    def _skip(self, name: str, because: str) -> None:
        moment = _now()
        self.record.phases.append(PhaseRecord(name, moment, moment, "skipped", because))

    def _finish(self, outcome: Outcome, reason: str) -> None:
        """End the record with *outcome*; an unfinished window's start is removed first (or
        kept, and named in the reason)."""
        if self._open_start is not None:
            self.sampler.close()  # its session may be where a signal came: start afresh
            reason += self._remove_open_start()
        self.record.outcome, self.record.reason = outcome, redact(reason)
        self.record.ended_at = _now()
        self._write()

    def _write(self) -> None:
        with signals_deferred():
            self.paths = write_record(self.record, self.output_dir, self.stem)

    # -- interruption --------------------------------------------------------------------------

    def _interrupted(self, interrupt: KeyboardInterrupt) -> None:
        """Route back (or hold), remove an unfinished window's start, and record which."""
        name = signal_name(interrupt)
        self.record.interrupted_by = name
        where = self.record.stopped_in or "preflight"
        outcome: Outcome = "interrupted"
        try:
            if where not in ROUTED_PHASES:
                happened = "nothing deployed, the traffic not routed"
            elif self.options.on_interrupt == "hold":
                happened = f"the traffic held where it is: {self.record.traffic_state}"
                self.record.traffic_state += " (held: --on-interrupt hold)"
            else:
                run = self._command(self.record.phases[-1], "rollback", leave_running=True)
                if run.exit_code == 0:
                    self.record.traffic_state = "routed back"
                    happened = "the rollback command ran: traffic routed back"
                else:
                    outcome = "rollback failed"
                    self.record.traffic_state = "unknown: the rollback failed"
                    happened = f"{_rollback_failure(run)}: route back by hand"
        except KeyboardInterrupt:  # a second signal: stop waiting, say so
            self.record.traffic_state = "unknown: the rollback command was left running"
            happened = ("rollback interrupted: the rollback command was left running; check "
                        "the traffic, route back by hand if need be")  # fmt: skip
        with signals_deferred(raise_after=False):
            self._finish(outcome, f"interrupted ({name}) during {where}: {happened}")

    def _remove_open_start(self) -> str:
        """Remove the unfinished window's ``:start`` (or keep it, named); what was done."""
        label = self._open_start
        if label is None:
            return ""
        self._open_start = None
        try:
            with snapshots.writer(self.dsn) as conn:
                snapshots.delete_snapshot(conn, label, self.sampler.name)
            return f"; the unfinished window's {label!r} removed"
        except DbtoolsError as err:
            self.record.kept_start = label
            return (f"; the unfinished window's {label!r} kept ({err}): "
                    f"{_delete_hint(label, self.sampler.name)}")  # fmt: skip

    # -- the phases' steps ---------------------------------------------------------------------

    def _dry_run(self, phase: PhaseRecord) -> None:
        from dbtools.safety.lint import lint_revisions
        from dbtools.safety.plan import build_plan
        from dbtools.schema.revisions import offline_sql

        sql = offline_sql("base:head")
        statements = sum(line.rstrip().endswith(";") for line in sql.splitlines())
        lint = lint_revisions(config_file=self.config_file)
        plan = build_plan("-1", "head")
        phase.detail = (
            f"offline SQL base:head: {statements} statements; lint: {len(lint.violations)} "
            f"violations in {len(lint.revisions)} revisions; downgrade plan {plan.from_revision} "
            f"→ {plan.to_revision}: {len(plan.steps)} steps, {len(plan.warnings)} warnings; "
            "nothing touched"
        )
        if lint.violations:
            raise _Stop("held", f"lint: {len(lint.violations)} violations (dbtools lint)")

    def _migrate(self, phase: PhaseRecord) -> None:
        from dbtools.doctor import run_doctor
        from dbtools.schema.manifest import head_revision
        from dbtools.schema.revisions import upgrade

        upgrade(self.migrate_dsn or self.dsn, "head")
        result = run_doctor(self.dsn)
        failing = [c for c in result.checks if c.status in FAILING]
        phase.detail = (f"alembic upgrade head: at {head_revision()}; doctor: "
                        f"{len(result.checks) - len(failing)} of {len(result.checks)} checks pass")  # fmt: skip
        if failing:
            raise _Stop("held", f"doctor: {failing[0].check}: {failing[0].message}")

    def _command(self, phase: PhaseRecord, key: str, *, leave_running: bool = False) -> CommandRun:
        def started(run: CommandRun) -> None:
            phase.commands.append(run)
            self._write()

        try:
            return run_command(getattr(self.config, key), self.values, cwd=self.cwd,
                               started=started, leave_running=leave_running)  # fmt: skip
        finally:
            self._write()

    def _deploy(self, phase: PhaseRecord) -> None:
        for key in ("deploy", "traffic"):
            if key == "traffic":
                self.record.traffic_state = "unknown: the traffic command did not finish"
            run = self._command(phase, key)
            if run.exit_code != 0:
                raise _Stop("held", f"the {key} command exited with {run.exit_code}: "
                                    f"{shlex.join(run.argv)}")  # fmt: skip
        self.record.traffic_state = f"{self.options.traffic}% on the new path"
        phase.detail = f"deployed; {self.options.traffic}% of traffic routed to the new path"

    def _load_test(self, phase: PhaseRecord) -> None:
        if self.options.skip_tests or not self.config.load_test:
            phase.status = "skipped"
            phase.detail = "--skip-tests" if self.options.skip_tests else "no load_test command"
            return
        run = self._command(phase, "load_test")
        if run.exit_code == 0:
            phase.detail = "load test passed"
        elif self.options.force:
            phase.detail = f"load test failed (exit {run.exit_code}); --force: going on"
        else:
            raise _Stop("held", f"the load test exited with {run.exit_code} (--force goes on)")

    def _rollback(self, phase: PhaseRecord, reason: str) -> None:
        """Run the rollback command; raises ``_Stop``: rolled back, rollback failed, or
        interrupted (a signal while it ran: it is left running, never stopped half-way)."""
        try:
            run = self._command(phase, "rollback", leave_running=True)
        except KeyboardInterrupt as interrupt:
            self.record.interrupted_by = signal_name(interrupt)
            self.record.traffic_state = "unknown: the rollback command was left running"
            raise _Stop("interrupted", f"{reason}; rollback interrupted ({signal_name(interrupt)}): "
                        "the rollback command was left running; check the traffic, route back "
                        "by hand if need be") from None  # fmt: skip
        if run.exit_code == 0:
            self.record.traffic_state = "routed back"
            raise _Stop("rolled back", f"{reason}; the rollback command routed the traffic back")
        self.record.traffic_state = "unknown: the rollback failed"
        raise _Stop("rollback failed", f"{reason}; {_rollback_failure(run)}: route back by hand")

    def _sample(self, label: str | None) -> datetime:
        summary, _ = self.sampler.sample(label)
        return summary.taken_at

    def candidate_totals(self, start: datetime, end: datetime) -> VariantTotals | None:
        """The candidate variant's request metrics in the buckets inside [*start*, *end*], read
        on the sampler's session (the one place a trigger's figures come from)."""
        with translated_errors("reading the request metrics"):
            found = Store.of(self.sampler.open()).variant_totals(start, end,
                                                                 target=self.sampler.name)  # fmt: skip
        return found.get(self.config.candidate_variant)

    def _monitor(self, phase: PhaseRecord) -> None:
        start_label, end_label = window_labels(self.label)
        self.record.target = self.sampler.name
        self._open_start = start_label  # from before it is stored: a signal may come while it is
        started = judged_from = self._sample(start_label)
        self.record.window = f"{start_label}..{end_label}"
        triggers = Triggers(self.thresholds, self.config.min_requests,
                            self.config.failure_threshold)  # fmt: skip
        seconds, interval = self.record.monitor_seconds, self.record.interval_seconds
        deadline = time.monotonic() + seconds
        count = 0
        while True:
            left = deadline - time.monotonic()
            if left > 0:
                self.wait(min(interval, left))
            count += 1
            last = deadline - time.monotonic() <= 0
            taken = self._sample(end_label if last else None)
            if last:
                self._open_start = None
            status, crossed, figures = triggers.judge(self.candidate_totals(judged_from, taken))
            sample = Sample(count, end_label if last else None, taken, judged_from,
                            figures["requests"], figures["errors"], figures["error_rate"],
                            figures["p95_ms"], figures["cache_hit_ratio"], status, crossed)  # fmt: skip
            self.record.samples.append(sample)
            self._write()
            if not status.startswith("too few"):
                judged_from = taken
            if status == "rollback":
                reason = (f"rollback trigger at sample {count} "
                          f"({(taken - started).total_seconds():.0f} s into monitoring, "
                          f"{self.config.failure_threshold} judged samples in a row): "
                          f"{crossed[0]}")  # fmt: skip
                phase.detail = reason
                if not last:  # the window ends here, so that verify and report can read it
                    self._sample(end_label)
                    self._open_start = None
                self._rollback(phase, reason)
            if last:
                break
        judged = sum(not s.status.startswith("too few") for s in self.record.samples)
        phase.detail = (f"{count} samples ({judged} judged on at least "
                        f"{self.config.min_requests} requests), no rollback trigger crossed "
                        f"{self.config.failure_threshold} times in a row")  # fmt: skip

    def _complete(self, phase: PhaseRecord) -> None:
        from dbtools.verify import verify
        from dbtools.verify.canary import CanarySpec, verify_canary

        assert self.record.window is not None
        result: Any
        if self.options.traffic < 100:
            spec = CanarySpec(self.config.baseline_variant, self.config.candidate_variant,
                              self.config.attribute, self.config.variant_roles,
                              traffic=self.options.traffic)  # fmt: skip
            result = verify_canary(self.dsn, self.record.window, spec, thresholds=self.thresholds,
                                   target=self.sampler.name)  # fmt: skip
            how = f"verify --canary {self.record.window}"
        else:
            baseline = self.options.baseline or self.config.baseline
            assert baseline is not None
            result = verify(self.dsn, baseline, self.record.window, thresholds=self.thresholds,
                            target=self.sampler.name)  # fmt: skip
            how = f"verify --baseline {baseline} --candidate {self.record.window}"
        failing = [f for f in result.findings if f.status in FAILING or f.status == "rollback"]
        self.record.verdict = {
            "command": how,
            "verdict": str(result.verdict),
            "exit_code": result.exit_code,
            "findings": [f.as_dict() for f in result.findings],
        }
        summary = "; ".join(f"{f.check} {f.status}: {f.message}" for f in failing) or (
            "every check passes"
        )
        phase.detail = f"{how}: {result.verdict} ({summary})"
        if result.exit_code == EXIT_ROLLBACK:
            self._rollback(phase, f"{how}: a rollback threshold was crossed ({summary})")
        if result.exit_code != EXIT_OK:
            raise _Stop("held", f"{how}: {result.verdict}, the traffic stays at "
                                f"{self.options.traffic}% ({summary})")  # fmt: skip


def _rollback_failure(run: CommandRun) -> str:
    if run.exit_code == 127 and run.output.startswith("cannot run"):
        return f"the rollback command could not start ({run.output.strip()})"
    return f"the rollback command exited with {run.exit_code}"
