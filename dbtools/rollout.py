"""``dbtools rollout``: the rollout guide's five phases for the database half, as one call.

1. **migrate**: ``alembic upgrade head`` (as ``--migrate-dsn``), then ``doctor`` as the
   monitoring role; a dry run renders the offline SQL, lints it and plans the downgrade instead.
2. **deploy**: the application's deploy command, then its traffic command with the percentage.
3. **load-test**: the application's load-test command (optional; ``--skip-tests``; ``--force``
   goes on when it fails).
4. **monitor**: a labelled snapshot, then one every interval until the period ends; at every
   sample the guide's rollback triggers are judged on the candidate variant's request metrics
   since the previous sample, and the first one crossed rolls back at once.
5. **complete**: ``verify --canary`` on the monitoring window (traffic below 100%), else
   ``verify`` of a baseline window against it; a rollback threshold runs the rollback command.

The application's parts are commands from ``[tool.dbtools.rollout]``: argument lists run without
a shell, ``{traffic}`` and ``{environment}`` substituted inside arguments, output logged
(redacted). Every phase is written to a rollout record (Markdown and JSON, in ``reports/``),
also when a phase fails or Ctrl-C stops it: the record says where.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from dbtools.config import layered_table, max_duration, parse_duration
from dbtools.db.connection import session, translated_errors
from dbtools.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_ROLLBACK,
    EXIT_USAGE,
    ConfigError,
    DbtoolsError,
    UsageError,
)
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
from dbtools.redaction import redact
from dbtools.stats import snapshots, windows
from dbtools.stats.legacy import read_layout
from dbtools.verify.rules import judge_app_cache_hit_ratio, judge_error_rate, judge_p95_latency
from dbtools.verify.thresholds import Thresholds

log = logging.getLogger(__name__)

PHASES = ("migrate", "deploy", "load-test", "monitor", "complete")
ENVIRONMENTS = ("staging", "production")
PLACEHOLDERS = ("{traffic}", "{environment}")
RECORD_STEM = "rollout"  # reports/rollout-<environment>-<traffic>-<UTC time>.{md,json}
OUTPUT_TAIL = 4000  # characters of a command's output kept in the record

PhaseStatus = Literal["ok", "failed", "skipped", "interrupted", "rolled back"]
Outcome = Literal["complete", "failed", "rolled back", "interrupted", "dry run", "error"]
EXIT_OF_OUTCOME: dict[str, int] = {
    "complete": EXIT_OK,
    "dry run": EXIT_OK,
    "failed": EXIT_PROBLEMS,
    "rolled back": EXIT_ROLLBACK,
    "error": EXIT_USAGE,
    "interrupted": EXIT_INTERRUPTED,
}


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


_COMMAND_KEYS = ("deploy", "traffic", "rollback", "load_test")


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
    traffic: int
    monitor_seconds: int = 600
    dry_run: bool = False
    skip_tests: bool = False
    force: bool = False
    baseline: str | None = None  # overrides the configuration's
    label: str | None = None  # of the monitoring window (default: the record's name)

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise UsageError(f"--environment is staging or production, not {self.environment!r}")
        if not 1 <= self.traffic <= 100:
            raise UsageError(f"--traffic is a percentage from 1 to 100, not {self.traffic}")
        if self.monitor_seconds <= 0:
            raise UsageError("--monitor must be positive")
        if self.label is not None:
            windows.validate_label(self.label)


def check_ready(options: RolloutOptions, config: RolloutConfig) -> None:
    """Refuse (``UsageError``) what would stop the rollout half-way for want of configuration."""
    if options.dry_run:
        return
    missing = [k for k in ("deploy", "traffic", "rollback") if not getattr(config, k)]
    if missing:
        raise UsageError(f"[tool.dbtools.rollout] has no {missing[0]} command: the rollout "
                         "needs deploy, traffic and rollback commands")  # fmt: skip
    if options.traffic == 100 and not (options.baseline or config.baseline):
        raise UsageError("--traffic 100 compares with a baseline window: give --baseline W "
                         "(or baseline in [tool.dbtools.rollout])")  # fmt: skip


# -- the record -------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CommandRun:
    """One application command: its arguments (redacted), exit code and output's end."""

    argv: list[str]
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    output: str = ""


@dataclass
class Sample:
    """One sample of the monitoring phase: the candidate variant since the previous one."""

    number: int
    label: str
    taken_at: datetime
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    cache_hit_ratio: float | None
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
    traffic: int
    dry_run: bool
    skip_tests: bool
    force: bool
    monitor_seconds: int
    interval_seconds: int
    started_at: datetime
    window: str | None = None
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    stopped_in: str | None = None  # the phase that failed, rolled back or was interrupted
    reason: str = ""
    phases: list[PhaseRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    verdict: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OF_OUTCOME[self.outcome or "error"]

    def phase(self, name: str) -> PhaseRecord | None:
        return next((p for p in self.phases if p.name == name), None)


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
    lines += [
        f"- Started {when(record.started_at)}, ended {when(record.ended_at)}",
        f"- Monitoring: {record.monitor_seconds} s, a sample every {record.interval_seconds} s"
        + (f", window `{record.window}`" if record.window else ""),
        "",
        "| phase | status | started | ended | detail |",
        "|---|---|---|---|---|",
    ]
    for phase in record.phases:
        lines.append(f"| {phase.name} | {phase.status or 'running'} | {when(phase.started_at)} | "
                     f"{when(phase.ended_at)} | {markdown_cell(phase.detail)} |")  # fmt: skip
    if record.samples:
        lines += ["", "## Samples (the candidate variant since the previous sample)", "",
                  "| # | taken | requests | error rate | p95 | cache hit | rollback trigger |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for s in record.samples:
            lines.append(
                f"| {s.number} | {when(s.taken_at)} | {s.requests} | {percent(s.error_rate)} | "
                f"{number(s.p95_ms, 0, unit=' ms')} | {percent(s.cache_hit_ratio)} | "
                f"{markdown_cell('; '.join(s.crossed)) or 'none'} |"
            )
    commands = [(p.name, c) for p in record.phases for c in p.commands]
    if commands:
        lines += ["", "## Commands"]
        for name, run in commands:
            lines += ["", f"### {name}: `{shlex.join(run.argv)}` (exit {run.exit_code})", "",
                      "```", run.output.rstrip() or "(no output)", "```"]  # fmt: skip
    return "\n".join(lines) + "\n"


def record_json(record: RolloutRecord) -> str:
    payload = to_jsonable(record)
    payload["exit_code"] = record.exit_code
    return dump_json("rollout", payload)


def write_record(record: RolloutRecord, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write the record's Markdown and JSON under *stem* in *directory* (atomically)."""
    destination = Destination(None, directory)
    md = write_output(record_markdown(record), dataclasses.replace(
        destination, path=str(directory / f"{stem}.md")), stem, "md")  # fmt: skip
    js = write_output(record_json(record), dataclasses.replace(
        destination, path=str(directory / f"{stem}.json")), stem, "json")  # fmt: skip
    return md, js


# -- the application's commands ---------------------------------------------------------------------


class CommandFailed(DbtoolsError):
    """An application command exited with a code other than 0."""

    exit_code = EXIT_PROBLEMS


def command_argv(command: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """*command* with ``{traffic}`` and ``{environment}`` replaced inside each argument: the
    values stay one argument each, whatever they hold (no shell reads them)."""
    argv = []
    for argument in command:
        for name, value in values.items():
            argument = argument.replace("{" + name + "}", value)
        argv.append(argument)
    return argv


def run_command(
    command: Sequence[str], values: Mapping[str, str], *, cwd: Path | None = None
) -> CommandRun:
    """Run *command* (no shell) with the rollout's values in its environment, log its output
    (redacted) line by line, and return what happened; an unstartable program is exit 127."""
    argv = command_argv(command, values)
    shown = [redact(a) for a in argv]
    run = CommandRun(shown, _now())
    env = {**os.environ, **{f"DBTOOLS_ROLLOUT_{k.upper()}": v for k, v in values.items()}}
    log.info("running %s", shlex.join(shown))
    # Output goes to a file, not a pipe: a command that leaves a process running in the
    # background (the traffic it starts) would hold a pipe open, and the rollout would wait.
    with tempfile.TemporaryFile() as captured:
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=captured, stderr=subprocess.STDOUT, check=False)  # fmt: skip
            captured.seek(0)
            run.exit_code = done.returncode
            output = captured.read().decode("utf-8", errors="replace")
        except OSError as err:
            run.exit_code, output = 127, f"cannot run {shown[0]}: {err.strerror or err}\n"
    run.ended_at = _now()
    run.output = redact(output)[-OUTPUT_TAIL:]
    for line in run.output.splitlines():
        log.info("  %s: %s", Path(shown[0]).name, line)
    return run


# -- sampling (a later dbtools collect replaces SnapshotSampler) ------------------------------------


class Sampler(Protocol):
    """Takes a labelled sample of the database's statistics and says when."""

    def sample(self, label: str) -> datetime: ...


@dataclass(frozen=True)
class SnapshotSampler:
    """Samples as ``dbtools snapshot`` does: one stored snapshot per sample."""

    dsn: str

    def sample(self, label: str) -> datetime:
        return snapshots.snapshot(self.dsn, label).taken_at


def judge_triggers(
    totals: windows.VariantTotals | None, thresholds: Thresholds
) -> tuple[list[Finding], dict[str, Any]]:
    """The guide's automatic rollback triggers (error rate, p95, cache hit ratio) on one
    variant's request metrics: the findings whose status is ``rollback``, and the figures."""
    requests = totals.whole_requests if totals else 0  # of the buckets its errors come from
    errors = totals.errors if totals else 0
    looked_up = (totals.cache_hits + totals.cache_misses) if totals else 0
    figures = {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p95_ms": totals.p95_ms if totals else None,
        "cache_hit_ratio": totals.cache_hits / looked_up if totals and looked_up else None,
    }
    missing = "no requests of the candidate variant since the previous sample"
    findings = [
        *judge_error_rate(figures["error_rate"], thresholds, missing=missing),
        *judge_p95_latency(figures["p95_ms"], thresholds, missing=missing),
        *judge_app_cache_hit_ratio(figures["cache_hit_ratio"], thresholds, missing=missing),
    ]
    return [f for f in findings if f.status == "rollback"], figures


def candidate_totals(
    dsn: str, start: datetime, end: datetime, variant: str
) -> windows.VariantTotals | None:
    """The request metrics of *variant* in the buckets inside [*start*, *end*]."""
    with session(dsn, autocommit=True) as conn, translated_errors("reading the request metrics"):
        layout = read_layout(conn)
        return windows.load_variant_totals(conn, start, end, layout=layout).get(variant)


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
    sampler: Sampler | None = None
    wait: Callable[[float], None] = time.sleep
    on_phase: Callable[[PhaseRecord], None] = lambda phase: None
    record: RolloutRecord = field(init=False)
    stem: str = field(init=False)
    paths: tuple[Path, Path] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        check_ready(self.options, self.config)
        o = self.options
        seconds = o.monitor_seconds
        limit = max_duration()
        if limit is not None and seconds > limit:
            log.warning("DBTOOLS_MAX_DURATION shortens the monitoring from %d s to %d s",
                        seconds, limit)  # fmt: skip
            seconds = limit
        self.record = RolloutRecord(
            o.environment, o.traffic, o.dry_run, o.skip_tests, o.force, seconds,
            min(self.config.interval_seconds, seconds), _now(),
        )  # fmt: skip
        moment = self.record.started_at
        self.stem = f"{RECORD_STEM}-{o.environment}-{o.traffic}-{moment:%Y%m%dT%H%M%S}Z"
        self.values = {"traffic": str(o.traffic), "environment": o.environment}

    # phases

    def run(self) -> RolloutRecord:
        """Run every phase; the record is written after each. Ctrl-C (KeyboardInterrupt) and
        errors from below are recorded, then go on."""
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
            self._finish("dry run" if self.options.dry_run else "complete", "")
        except _Stop as stop:
            self._finish(stop.outcome, stop.reason)
        return self.record

    @contextmanager
    def _phase(self, name: str) -> Iterator[PhaseRecord]:
        phase = PhaseRecord(name, _now())
        self.record.phases.append(phase)
        self._write()
        log.info("phase %s started", name)
        try:
            yield phase
        except _Stop as stop:
            phase.status = "rolled back" if stop.outcome == "rolled back" else "failed"
            phase.detail = phase.detail or stop.reason
            self.record.stopped_in = name
            raise
        except KeyboardInterrupt:
            phase.status, phase.detail = "interrupted", phase.detail or "interrupted (Ctrl-C)"
            self.record.stopped_in = name
            self._finish("interrupted", f"interrupted during the {name} phase")
            raise
        except DbtoolsError as err:
            phase.status, phase.detail = "failed", redact(str(err))
            self.record.stopped_in = name
            self._finish("error", f"{name}: {redact(str(err))}")
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
        self.record.outcome, self.record.reason = outcome, reason
        self.record.ended_at = _now()
        self._write()

    def _write(self) -> None:
        self.paths = write_record(self.record, self.output_dir, self.stem)

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
            raise _Stop("failed", f"lint: {len(lint.violations)} violations (dbtools lint)")

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
            raise _Stop("failed", f"doctor: {failing[0].check}: {failing[0].message}")

    def _command(self, phase: PhaseRecord, key: str) -> CommandRun:
        run = run_command(getattr(self.config, key), self.values, cwd=self.cwd)
        phase.commands.append(run)
        self._write()
        return run

    def _deploy(self, phase: PhaseRecord) -> None:
        for key in ("deploy", "traffic"):
            run = self._command(phase, key)
            if run.exit_code != 0:
                raise _Stop("failed", f"the {key} command exited with {run.exit_code}: "
                                      f"{shlex.join(run.argv)}")  # fmt: skip
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
            raise _Stop("failed", f"the load test exited with {run.exit_code} (--force goes on)")

    def _rollback(self, phase: PhaseRecord, reason: str) -> None:
        run = self._command(phase, "rollback")
        if run.exit_code != 0:
            reason += f"; the rollback command exited with {run.exit_code}: route back by hand"
        raise _Stop("rolled back", reason)

    def _monitor(self, phase: PhaseRecord) -> None:
        sampler = self.sampler or SnapshotSampler(self.dsn)
        label = self.options.label or self.stem
        start_label, end_label = windows.window_labels(label)
        started = previous = sampler.sample(start_label)
        self.record.window = f"{start_label}..{end_label}"
        seconds, interval = self.record.monitor_seconds, self.record.interval_seconds
        deadline = time.monotonic() + seconds
        number = 0
        while True:
            left = deadline - time.monotonic()
            if left > 0:
                self.wait(min(interval, left))
            number += 1
            last = deadline - time.monotonic() <= 0
            sample_label = end_label if last else f"{label}:sample-{number}"
            taken = sampler.sample(sample_label)
            totals = candidate_totals(self.dsn, previous, taken, self.config.candidate_variant)
            crossed, figures = judge_triggers(totals, self.thresholds)
            sample = Sample(number, sample_label, taken, figures["requests"], figures["errors"],
                            figures["error_rate"], figures["p95_ms"], figures["cache_hit_ratio"],
                            [f"{f.subject}: {f.message}" for f in crossed])  # fmt: skip
            self.record.samples.append(sample)
            self._write()
            if crossed:
                reason = (f"rollback trigger at sample {number} "
                          f"({(taken - started).total_seconds():.0f} s into monitoring): "
                          f"{sample.crossed[0]}")  # fmt: skip
                phase.detail = reason
                if not last:  # the window ends here, so that verify can read it later
                    sampler.sample(end_label)
                self._rollback(phase, reason)
            if last:
                break
            previous = taken
        phase.detail = f"{number} samples, no rollback trigger crossed"

    def _complete(self, phase: PhaseRecord) -> None:
        from dbtools.verify import verify
        from dbtools.verify.canary import CanarySpec, verify_canary

        assert self.record.window is not None
        result: Any
        if self.options.traffic < 100:
            spec = CanarySpec(self.config.baseline_variant, self.config.candidate_variant,
                              self.config.attribute, self.config.variant_roles,
                              traffic=self.options.traffic)  # fmt: skip
            result = verify_canary(self.dsn, self.record.window, spec, thresholds=self.thresholds)
            how = f"verify --canary {self.record.window}"
        else:
            baseline = self.options.baseline or self.config.baseline
            assert baseline is not None
            result = verify(self.dsn, baseline, self.record.window, thresholds=self.thresholds)
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
            raise _Stop("failed", f"{how}: {result.verdict}, the rollout is held ({summary})")
