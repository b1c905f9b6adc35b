"""Continuous collection (``dbtools collect``): a sample of every target each interval.

A *target* is a monitored database with a name (``NAME=DSN``, or a TOML file of them). Each
round reads the targets concurrently (at most ``concurrency`` at once, a session each) and
stores a sample per target (``compact``: only the entries that moved), in the target's
own ``perf_monitoring`` or, with a central *store*, in that repository keyed by target. A
round reads each server's ``pg_stat_statements`` once: targets whose DSNs differ only in
the database (the same server, reached as the same role) share one scan per round
(``ServerScan``), split by database. A round never waits for a slow target: a target still busy from the previous round is skipped
(``busy``), one that is down or refusing is logged and retried next round, and the others keep
their interval.

One collector per target: the store session holds a session-level advisory lock keyed by the
target for the collector's life (``locks``, polled, never blocking); a second collector is
refused with the holder's name. ``stop`` (SIGTERM, Ctrl-C) abandons the round in progress:
a target whose sample is not yet being written stores nothing, its queries are cancelled, and a
write in progress is one transaction (stored whole or rolled back).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from dbtools.config import read_toml
from dbtools.db import locks
from dbtools.db.connection import (
    APPLICATION_NAME,
    connect,
    describe,
    error_reason,
    normalise_dsn,
)
from dbtools.db.errors import refusal_message
from dbtools.errors import ConfigError, DbtoolsError, UsageError
from dbtools.reading import live
from dbtools.store import compact, metrics_copy
from dbtools.store.layout import Layout, read_layout
from dbtools.store.snapshots import SAMPLE_LOCK_TIMEOUT
from dbtools.store.store import Store, place

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0
DEFAULT_CONCURRENCY = 4
# Samples older than --rollup-after are kept one per hour (the rows in between folded).
ROLLUP_PERIOD_S = 3600.0
# A sample's statements give up well inside a minute's interval.
SAMPLE_STATEMENT_TIMEOUT = "20s"
# A sample that stores more statements or texts than this (a target's first: every one) is
# written through a session of its own, closed after: libpq keeps a session's output buffer
# at the size of the largest message it ever sent (a first sample of 5,000 statements: 8 MiB
# for the collector's life, per target).
LARGE_WRITE_ENTRIES = 1000


@dataclass(frozen=True)
class Target:
    """A monitored database: its name in the repository (None: the database's own name, read
    at the first connection) and how to reach it."""

    name: str | None
    dsn: str

    def __str__(self) -> str:
        return self.name or describe(self.dsn).database


def server_of(dsn: str) -> tuple[tuple[str, str], ...]:
    """What says which server and role a DSN reaches: its parameters but the database."""
    return tuple(sorted((k, str(v)) for k, v in conninfo_to_dict(dsn).items() if k != "dbname"))


def validate_target_name(name: str) -> str:
    """Return *name* if it can name a target, else raise ``UsageError``."""
    if not name or name != name.strip() or not name.isprintable() or len(name) > 200:
        raise UsageError(f"invalid target name {name!r}: empty, padded, too long or unprintable")
    return name


def parse_target(text: str) -> Target:
    """``NAME=DSN`` (``--target-dsn``); raises ``UsageError`` for anything else."""
    name, separator, dsn = text.partition("=")
    if not separator or not dsn.strip() or " " in name:
        raise UsageError(f"invalid --target-dsn {text.split('=')[0]!r}...: expected NAME=DSN")
    return Target(validate_target_name(name), normalise_dsn(dsn.strip()))


def read_targets(path: Path) -> list[Target]:
    """The targets of a TOML file: ``[[target]]`` tables, each with a ``name`` and either a
    ``dsn`` or a libpq ``service`` name. Raises ``ConfigError`` for anything else."""
    document = read_toml(path)
    entries = document.get("target")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected [[target]] tables with a name and a dsn or service")
    found: list[Target] = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) - {"name", "dsn", "service"}:
            raise ConfigError(f"{path}: target {number}: only name, dsn and service are known")
        name, dsn, service = entry.get("name"), entry.get("dsn"), entry.get("service")
        if not isinstance(name, str) or (dsn is None) == (service is None):
            raise ConfigError(f"{path}: target {number}: a name and either a dsn or a service")
        text = dsn if dsn is not None else f"service={service}"
        if not isinstance(text, str):
            raise ConfigError(f"{path}: target {number}: the dsn must be a string")
        try:
            found.append(Target(validate_target_name(name), normalise_dsn(text)))
        except UsageError as err:
            raise ConfigError(f"{path}: target {number}: {err}") from err
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: a target name is given twice")
    return found


def dsn_of_target(path: Path, name: str) -> str | None:
    """The DSN of the target *name* in the targets file *path* (``read_targets``), or None."""
    return next((t.dsn for t in read_targets(path) if t.name == name), None)


class Abandoned(DbtoolsError):
    """The collector was asked to stop before this sample was written."""


@dataclass(frozen=True)
class Outcome:
    """What a round did for one target: its sample, or why there is none."""

    target: str
    sample: compact.SampleSummary | None = None
    error: str | None = None
    busy: bool = False  # still reading from the previous round
    abandoned: bool = False
    purged: compact.Purged = field(default_factory=compact.Purged)

    def describe(self) -> str:
        if self.sample is not None:
            moved = f"{self.sample.rows_stored} rows of {self.sample.statements} statements"
            restart = ", server restarted: step not comparable" if self.sample.restarted else ""
            purged = f", {self.purged.samples} old samples purged" if self.purged.samples else ""
            return f"{self.target}: sample {self.sample.id} ({moved}{restart}{purged})"
        if self.busy:
            return f"{self.target}: still busy with the previous round, skipped"
        if self.abandoned:
            return f"{self.target}: abandoned, nothing stored"
        return f"{self.target}: no sample ({self.error})"


@dataclass(frozen=True)
class Round:
    """One round: when it started, how long it took, and what it did per target."""

    number: int
    started_at: datetime
    seconds: float
    outcomes: tuple[Outcome, ...]

    @property
    def stored(self) -> int:
        return sum(1 for o in self.outcomes if o.sample is not None)

    def line(self) -> str:
        """The one progress line ``-v`` prints."""
        rows = sum(o.sample.rows_stored for o in self.outcomes if o.sample is not None)
        return (
            f"round {self.number} at {self.started_at:%H:%M:%S}: {self.stored}/"
            f"{len(self.outcomes)} targets sampled in {self.seconds:.2f} s, {rows} rows stored; "
            + "; ".join(o.describe() for o in self.outcomes)
        )


@dataclass
class Summary:
    """What a collector did in its life (printed on exit)."""

    rounds: int = 0
    samples: int = 0
    rows: int = 0
    failures: int = 0
    purged: int = 0
    abandoned: bool = False

    def add(self, done: Round) -> None:
        self.rounds += 1
        for outcome in done.outcomes:
            if outcome.sample is not None:
                self.samples += 1
                self.rows += outcome.sample.rows_stored
            elif outcome.error is not None:
                self.failures += 1
            self.purged += outcome.purged.samples
            self.abandoned = self.abandoned or outcome.abandoned

    def line(self) -> str:
        stopped = ", the last round abandoned (nothing half stored)" if self.abandoned else ""
        return (
            f"collected {self.samples} samples ({self.rows} rows) in {self.rounds} rounds, "
            f"{self.failures} failed target reads, {self.purged} old samples purged{stopped}"
        )


class TargetSampler:
    """One target's sessions, kept open from one sample to the next, and what is known of it
    between them (the state at its latest sample): a sample is read from the target and written
    to the repository (its own, or *store*) as a collector's round does, labelled or not.

    ``dbtools collect`` runs one per target; ``rollout`` samples its monitoring window through
    one. ``stop`` (from a signal handler) cancels the statements running on its sessions.
    """

    def __init__(
        self,
        target: Target,
        *,
        store: str | None = None,
        application_name: str = APPLICATION_NAME,
        interval_s: float | None = None,
        purpose: str = "dbtools collect",
        metrics_grace_s: float = metrics_copy.DEFAULT_GRACE_S,
    ) -> None:
        self.target = target
        self.metrics_grace_s = metrics_grace_s
        self.purpose = purpose
        self.name = target.name
        self.store_dsn = store
        self.application_name = application_name
        self.interval_s = interval_s
        self.store: psycopg.Connection[Any] | None = None  # where samples are written
        self.source: psycopg.Connection[Any] | None = None  # a central store's target (else: store)
        self.prepared: tuple[Any, Any] | None = None
        self.dbid: int | None = None  # the target database's OID, read when opened
        self.state: compact.TargetState | None = None
        self.by_day = True  # the store keeps samples by day (revision 0008 on), read when opened
        self.days_added: date | None = None  # the UTC day the partitions ahead were made on
        # with a central store: the target's and the store's layouts, to copy the metrics
        self.layouts: tuple[Layout, Layout] | None = None
        self.connections: list[psycopg.Connection[Any]] = []

    def __str__(self) -> str:
        return str(self.name or self.target)

    def _connect(self, dsn: str, *, read_only: bool) -> psycopg.Connection[Any]:
        conn = connect(
            dsn,
            read_only=read_only,
            autocommit=True,
            statement_timeout=SAMPLE_STATEMENT_TIMEOUT,
            lock_timeout=SAMPLE_LOCK_TIMEOUT,
            application_name=self.application_name,
        )
        # replaced whole: ``stop`` may read it from a signal handler at any moment
        self.connections = [c for c in self.connections if not c.closed] + [conn]
        return conn

    @property
    def is_open(self) -> bool:
        return self.store is not None and not self.store.closed

    def open(self) -> psycopg.Connection[Any]:
        """Open the sessions unless they are; returns the repository's session. Raises
        ``ConnectionFailed``, ``PrerequisiteMissing`` (no samples at the repository's revision,
        no pg_stat_statements)."""
        if self.store is not None and not self.store.closed:
            return self.store
        self.close()
        if self.store_dsn is None:
            self.store = self._connect(self.target.dsn, read_only=False)
        else:
            self.source = self._connect(self.target.dsn, read_only=True)
            self.store = self._connect(self.store_dsn, read_only=False)
        where = "the database" if self.store_dsn is None else place(self.store_dsn)
        checked = Store.checked(self.store, where)
        checked.require_samples(self.purpose)
        self.by_day = checked.by_day
        self.prepared = live.prepare(self.source or self.store)
        self.dbid = live.database_oid(self.source or self.store)
        if self.source is not None:
            self.layouts = (read_layout(self.source), read_layout(self.store))
        if self.name is None:
            self.name = self.prepared[0].database
        return self.store

    def sample(
        self,
        label: str | None = None,
        *,
        stopping: Callable[[], bool] = lambda: False,
        after: Callable[[psycopg.Connection[Any], TargetSampler], compact.Purged] | None = None,
        scan: ServerScan | None = None,
    ) -> tuple[compact.SampleSummary, compact.Purged]:
        """Read the target and store its sample (labelled *label*) under the target's write
        lock; with a central store the target's application metrics are copied into it
        (``metrics_copy``) under the same lock, and *after* (purge, roll-up) runs under it
        too; *scan*: the round's one scan of the target's server. Raises ``Abandoned`` when
        *stopping* says so before the write, ``UsageError`` for a label the target has."""
        store = self.open()
        assert self.prepared is not None and self.name is not None
        info, columns = self.prepared
        source = self.source or store
        with compact.write_lock(store, self.name):
            state = compact.current_state(store, self.name, self.state, by_day=self.by_day)
            counters = scan.take(source, columns, self) if scan is not None else None
            if counters is None or not self._compared_with(counters, state):
                counters = self.scan(source, columns, [self], {self.dbid: state})
            read = live.read_sample(source, info, columns, state.texts, state.own, counters)
            if stopping():
                raise Abandoned("stopping")
            with self._writer(store, read) as writer:
                summary, self.state = compact.write_sample(
                    writer, self.name, read, state, label=label,
                    interval_seconds=self.interval_s, by_day=self.by_day,
                )  # fmt: skip
            if self.source is not None and self.layouts is not None:
                self._copy_metrics(store)
            purged = after(store, self) if after is not None else compact.Purged()
        return summary, purged

    @contextmanager
    def _writer(
        self, store: psycopg.Connection[Any], read: live.SampleRead
    ) -> Iterator[psycopg.Connection[Any]]:
        """The session that writes *read*: *store*, or for a large write a session of its own
        (``LARGE_WRITE_ENTRIES``)."""
        if max(len(read.statements), len(read.texts)) <= LARGE_WRITE_ENTRIES:
            yield store
            return
        writer = self._connect(self.store_dsn or self.target.dsn, read_only=False)
        try:
            yield writer
        finally:
            writer.close()

    @staticmethod
    def scan(
        conn: psycopg.Connection[Any],
        columns: Any,
        samplers: Sequence[TargetSampler],
        states: dict[int | None, compact.TargetState | None],
    ) -> live.Counters:
        """One streamed scan of the server's entries of *samplers*' databases, each compared
        as it arrives with its target's state in *states* (by database): only the entries that
        moved are kept."""
        dbids = [s.dbid for s in samplers if s.dbid is not None]
        unmoved = {dbid: compact.Unmoved(state) for dbid in dbids
                   if (state := states.get(dbid)) is not None}  # fmt: skip
        return live.scan_counters(conn, columns, dbids, unmoved)

    def _compared_with(self, counters: live.Counters, state: compact.TargetState) -> bool:
        """Whether *counters* read this target's entries for a sample after *state*: kept
        whole, or compared with *state* itself (not a state another writer replaced since)."""
        entries = counters.by_database.get(self.dbid) if self.dbid is not None else None
        if entries is None:
            return False
        summary = entries.summary
        return summary is None or (isinstance(summary, compact.Unmoved) and summary.state is state)

    def _copy_metrics(self, store: psycopg.Connection[Any]) -> None:
        """Copy the target's application metrics into the store (``metrics_copy``); a refusal
        is logged, not the sample's failure (the sample is stored; the next one tries again)."""
        assert self.source is not None and self.layouts is not None and self.name is not None
        try:
            metrics_copy.copy_metrics(self.source, self.layouts[0], store, self.layouts[1],
                                      self.name, self.metrics_grace_s)  # fmt: skip
        except psycopg.Error as err:
            log.warning("target %s: request and app metrics not copied to the store: %s",
                        self.name, _reason(err))  # fmt: skip

    def stop(self) -> None:
        """Cancel the statements running on the sessions (safe from a signal handler)."""
        for conn in [c for c in list(self.connections) if not c.closed]:
            try:
                conn.cancel_safe(timeout=2)
            except (psycopg.Error, OSError) as err:  # the round's end is what matters
                log.debug("cancel failed: %s", err)

    def close(self) -> None:
        for conn in (self.source, self.store):
            if conn is not None and not conn.closed:
                conn.close()
        self.store = self.source = None
        self.prepared = self.layouts = None


class ServerScan:
    """One round's scan of a server's ``pg_stat_statements``, shared by the targets on it:
    the first of them to sample streams the entries of every one with a state, each
    database's compared with its target's state as they arrive (``TargetSampler.scan``), and
    each target takes its database's entries (the round holds only what moved, and lets go of
    a database's once taken). A failed scan is tried again by the next target."""

    def __init__(self, samplers: Sequence[TargetSampler]) -> None:
        self._samplers = samplers
        self._lock = threading.Lock()
        self._counters: live.Counters | None = None

    def take(
        self, conn: psycopg.Connection[Any], columns: Any, sampler: TargetSampler
    ) -> live.Counters | None:
        """*sampler*'s database's entries (None: taken already, or not scanned)."""
        with self._lock:
            # a target with no state yet (its first sample in this process) reads its own
            # database: with nothing to compare its entries with, the round would hold them all
            if self._counters is None and sampler.state is not None:
                known = [s for s in self._samplers if s.state is not None]
                states = {s.dbid: s.state for s in known}
                self._counters = TargetSampler.scan(conn, columns, known, states)
            if self._counters is None:
                return None
            dbid = sampler.dbid
            entries = self._counters.by_database.pop(dbid, None) if dbid is not None else None
            if dbid is None or entries is None:
                return None
            return live.Counters(self._counters.taken_at, {dbid: entries})


@dataclass
class _Sessions:
    """A target's sampler in a collector, and the round it is busy with."""

    sampler: TargetSampler
    running: concurrent.futures.Future[Outcome] | None = None

    @property
    def target(self) -> Target:
        return self.sampler.target


def collect_lock_key(name: str) -> int:
    return locks.lock_key("collect", name)


class Collector:
    """Samples *targets* every *interval_s* seconds into their own repositories or *store*;
    *retention_s*, *rollup_after_s*: purge and roll up after each round; *metrics_grace_s*:
    how late a target's metrics row may come and still be copied to *store*; *once*: one round,
    whose failures are in its outcomes (logged at INFO, not as warnings).

    Use as a context manager (its sessions, and the locks they hold, close on exit).
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        store: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        retention_s: float | None = None,
        rollup_after_s: float | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        once: bool = False,
        metrics_grace_s: float = metrics_copy.DEFAULT_GRACE_S,
    ) -> None:
        if not targets:
            raise UsageError("no target to collect from: give --dsn, --target-dsn or --targets")
        if interval_s <= 0 or concurrency <= 0:
            raise UsageError("the interval and the concurrency must be positive")
        names = [t.name for t in targets]
        if len(targets) > 1 and (None in names or len(set(names)) != len(names)):
            raise UsageError("several targets need distinct names (--target-dsn NAME=DSN)")
        self.store = store
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.rollup_after_s = rollup_after_s
        self.once = once
        self.application_name = f"{APPLICATION_NAME} collect (pid {os.getpid()})"
        self._targets = [
            _Sessions(TargetSampler(t, store=store, application_name=self.application_name,
                                    interval_s=interval_s, metrics_grace_s=metrics_grace_s))
            for t in targets
        ]  # fmt: skip
        servers: dict[tuple[tuple[str, str], ...], list[TargetSampler]] = {}
        for sessions in self._targets:
            servers.setdefault(server_of(sessions.target.dsn), []).append(sessions.sampler)
        # the targets that share a server, read with one scan a round
        self._shared = [samplers for samplers in servers.values() if len(samplers) > 1]
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="dbtools-collect"
        )
        self._stop = threading.Event()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Abandon the round in progress (safe from a signal handler): cancel the targets'
        running statements; a sample not yet being written is not stored."""
        self._stop.set()
        # No lock taken: a signal handler runs in the main thread, which may hold it.
        for sessions in self._targets:
            sessions.sampler.stop()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for sessions in self._targets:
            sessions.sampler.close()

    # -- sessions and the lock ----------------------------------------------------------------

    def _open(self, sessions: _Sessions) -> None:
        """Open the target's sessions if they are not, and take its collect lock."""
        sampler = sessions.sampler
        if sampler.is_open:
            return
        store = sampler.open()
        assert sampler.name is not None
        key = collect_lock_key(sampler.name)
        if not locks.try_lock(store, key):
            holder = locks.holder(store, key)
            sampler.close()
            raise compact.TargetBusy(
                f"another collector holds target {sampler.name!r}: "
                f"{holder or 'a session that has since gone'}"
            )

    def open_all(self) -> list[str]:
        """Open every target's sessions and lock it before the first round; returns the
        targets that could not be reached (retried each round). Raises ``TargetBusy`` when
        another collector holds one of them. Concurrently: a target that never answers delays
        the start by one connect timeout, not one per such target."""
        unreachable = []
        opening = [(s, self._pool.submit(self._open, s)) for s in self._targets]
        for sessions, future in opening:
            try:
                future.result()
            except compact.TargetBusy:
                self.close()
                raise
            except (DbtoolsError, psycopg.Error) as err:
                log.info("target %s: %s; tried again each round", sessions.target, _reason(err))
                unreachable.append(str(sessions.target))
                sessions.sampler.close()
        return unreachable

    # -- one sample ---------------------------------------------------------------------------

    def _sample(self, sessions: _Sessions, scan: ServerScan | None) -> Outcome:
        sampler = sessions.sampler
        name = str(sampler)
        try:
            if self._stop.is_set():
                raise Abandoned("stopping")
            self._open(sessions)
            name = str(sampler)
            summary, purged = sampler.sample(
                stopping=self._stop.is_set, after=self._tidy, scan=scan
            )
            return Outcome(name, summary, purged=purged)
        except (DbtoolsError, psycopg.Error) as err:
            if self._stop.is_set():
                return Outcome(name, abandoned=True)
            # one round (--once) reports its failures in its outcome; a collector that goes on
            # warns at once, so that a daemon's log shows a target that is down
            report = log.info if self.once else log.warning
            if isinstance(err, compact.TargetBusy):
                report("target %s: %s", name, err)
            else:
                report("target %s: %s; retried next round", name, _reason(err))
            sampler.close()
            return Outcome(name, error=_reason(err))

    def _tidy(self, store: psycopg.Connection[Any], sampler: TargetSampler) -> compact.Purged:
        """After a sample, under its write lock: the day partitions ahead (once a day),
        retention and roll-up."""
        name = sampler.name
        assert name is not None
        today = datetime.now(timezone.utc).date()
        if sampler.by_day and sampler.days_added != today:
            compact.add_days_ahead(store)
            sampler.days_added = today
        purged = compact.Purged()
        if self.retention_s is not None and not self._stop.is_set():
            purged = compact.purge(store, name, self.retention_s, by_day=sampler.by_day)
        if self.rollup_after_s is not None and not self._stop.is_set():
            purged += compact.roll_up(
                store, name, self.rollup_after_s, ROLLUP_PERIOD_S, by_day=sampler.by_day
            )
        return purged

    # -- rounds -------------------------------------------------------------------------------

    def run_round(self, number: int) -> Round:
        """Start a sample of every target not still busy, and wait for them for at most one
        interval (a target that takes longer finishes in the background and is skipped next
        round)."""
        started_at = datetime.now().astimezone()
        clock = time.monotonic()
        waiting: dict[str, concurrent.futures.Future[Outcome]] = {}
        outcomes: dict[str, Outcome] = {}
        scans: dict[int, ServerScan] = {}  # by id() of a sampler
        for shared in self._shared:
            one = ServerScan(shared)
            scans |= {id(sampler): one for sampler in shared}
        for sessions in self._targets:
            key = str(sessions.target)
            if sessions.running is not None and not sessions.running.done():
                outcomes[key] = Outcome(str(sessions.sampler.name or key), busy=True)
                continue
            scan = scans.get(id(sessions.sampler))
            sessions.running = self._pool.submit(self._sample, sessions, scan)
            waiting[key] = sessions.running
        concurrent.futures.wait(waiting.values(), timeout=self.interval_s)
        for key, future in waiting.items():
            if future.done():
                outcomes[key] = future.result()
            else:
                outcomes[key] = Outcome(key, error=f"no answer within {self.interval_s:g} s")
        ordered = tuple(outcomes[str(s.target)] for s in self._targets)
        return Round(number, started_at, time.monotonic() - clock, ordered)

    def run(
        self,
        *,
        rounds: int | None = None,
        on_round: Callable[[Round], None] = lambda done: None,
    ) -> Summary:
        """Run rounds every interval (*rounds* of them; None: until ``stop``), calling
        *on_round* after each; returns the summary."""
        summary = Summary()
        number = 0
        next_start = time.monotonic()
        while not self._stop.is_set() and (rounds is None or number < rounds):
            number += 1
            done = self.run_round(number)
            summary.add(done)
            on_round(done)
            if rounds is not None and number >= rounds:
                break
            next_start += self.interval_s
            # a round that overran its interval is followed at once (no catching up in bursts)
            next_start = max(next_start, time.monotonic())
            self._stop.wait(next_start - time.monotonic())
        return summary


def _reason(err: BaseException) -> str:
    if isinstance(err, psycopg.errors.InsufficientPrivilege):
        return refusal_message(err)
    if isinstance(err, psycopg.Error):
        return error_reason(err)
    return str(err)


def targets_from(dsn: str | None, given: Iterable[str], targets_file: Path | None) -> list[Target]:
    """The targets of the command line: ``--target-dsn NAME=DSN``s, a ``--targets`` file, or the
    one ``--dsn`` (named after its database)."""
    found = [parse_target(text) for text in given]
    if targets_file is not None:
        found += read_targets(targets_file)
    if not found and dsn is not None:
        found.append(Target(None, dsn))
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        raise UsageError("a target name is given twice")
    return found
