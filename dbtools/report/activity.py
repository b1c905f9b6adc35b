"""Activity now (``report --live``): long-running statements, sessions idle in a transaction,
who blocks whom and on which lock, and connections against ``max_connections``.

``read_activity`` reads ``pg_stat_activity`` and the ungranted ``pg_locks`` in two queries (the
whole server: connections and locks are shared by every database); ``build_activity`` judges them
(pure). Every statement text is scrubbed (``sqltext.scrub.scrub_query``) as it is read: the
texts of ``pg_stat_activity`` carry their literals. dbtools' own session is left out. Without
``pg_read_all_stats`` (``pg_monitor``) other roles' texts read ``<insufficient privilege>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.connection import SQL_MARKER
from dbtools.output import NO_VALUE, percent
from dbtools.report.sections import CodeBlock, Section, one_line, seconds
from dbtools.report.subjects import Subject
from dbtools.sqltext.scrub import scrub_query

ACTIVITY_SQL = f"""
SELECT {SQL_MARKER} a.pid, a.datname::text AS database, a.usename::text AS role,
       a.application_name, a.backend_type, a.state, a.wait_event_type, a.wait_event,
       a.xact_start, a.query_start,
       extract(epoch FROM statement_timestamp() - a.query_start)::float8 AS query_seconds,
       extract(epoch FROM statement_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       extract(epoch FROM statement_timestamp() - a.state_change)::float8 AS state_seconds,
       pg_blocking_pids(a.pid) AS blocked_by,
       coalesce(a.query, '') AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
ORDER BY a.pid
"""

# The lock each waiting backend asks for: a relation, a transaction (a row lock held by it),
# a tuple, an advisory lock...
WAITING_LOCKS_SQL = f"""
SELECT {SQL_MARKER} l.pid, l.locktype, l.mode,
       CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END AS relation,
       l.transactionid::text AS transaction_id, l.page, l.tuple,
       l.classid::bigint AS classid, l.objid::bigint AS objid
FROM pg_catalog.pg_locks l
WHERE NOT l.granted AND l.pid <> pg_backend_pid()
ORDER BY l.pid
"""

CONNECTION_LIMITS_SQL = f"""
SELECT {SQL_MARKER} current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections
"""


@dataclass(frozen=True)
class Backend:
    """One server process as ``pg_stat_activity`` shows it (its text already scrubbed)."""

    pid: int
    database: str | None
    role: str | None
    application_name: str
    backend_type: str | None
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    xact_start: datetime | None
    query_start: datetime | None
    query_seconds: float | None
    transaction_seconds: float | None
    state_seconds: float | None
    blocked_by: list[int]
    query: str


@dataclass(frozen=True)
class WaitingLock:
    """A lock a backend asks for and has not been granted."""

    pid: int
    locktype: str
    mode: str
    relation: str | None
    transaction_id: str | None
    page: int | None
    tuple: int | None
    classid: int | None
    objid: int | None

    def describe(self) -> str:
        """``ShareLock on transaction 745``, ``AccessExclusiveLock on relation public.t``."""
        if self.locktype == "relation":
            return f"{self.mode} on relation {self.relation}"
        if self.locktype == "transactionid":
            return f"{self.mode} on transaction {self.transaction_id} (a row it changed)"
        if self.locktype == "tuple":
            return f"{self.mode} on a row of {self.relation} (page {self.page}, {self.tuple})"
        if self.locktype == "advisory":
            return f"{self.mode} on advisory lock {self.classid}/{self.objid}"
        target = f" of {self.relation}" if self.relation else ""
        return f"{self.mode} on {self.locktype}{target}"


@dataclass(frozen=True)
class ActivityFacts:
    """What ``read_activity`` read."""

    max_connections: int
    reserved_connections: int
    backends: tuple[Backend, ...]
    waiting: tuple[WaitingLock, ...]


def read_activity(conn: psycopg.Connection[Any]) -> ActivityFacts:
    """Every backend but this one, the locks being waited for, and the connection limits
    (three queries). Texts are scrubbed here, before anything keeps them."""
    with conn.cursor(row_factory=class_row(Backend)) as cur:
        backends = tuple(_scrubbed(backend) for backend in cur.execute(ACTIVITY_SQL).fetchall())
    with conn.cursor(row_factory=class_row(WaitingLock)) as cur:
        waiting = tuple(cur.execute(WAITING_LOCKS_SQL).fetchall())
    limits = conn.execute(CONNECTION_LIMITS_SQL).fetchone()
    assert limits is not None
    return ActivityFacts(limits[0], limits[1], backends, waiting)


def _scrubbed(backend: Backend) -> Backend:
    return dataclasses.replace(backend, query=scrub_query(backend.query))


# -- the section's data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivitySettings:
    """Where the activity section draws its lines."""

    long_running_seconds: float = 5.0  # an active statement running this long is listed
    idle_in_transaction_seconds: float = 0.0  # idle in a transaction this long is listed


@dataclass(frozen=True)
class SessionLine:
    """A session worth a look: running long, or idle inside a transaction."""

    pid: int
    database: str | None
    role: str | None
    application_name: str
    state: str | None
    seconds: float | None  # the statement's (running), or the state's (idle in transaction)
    transaction_seconds: float | None
    wait: str | None
    query: str


@dataclass(frozen=True)
class BlockedLine:
    """A session waiting for a lock, who holds it, and the head of its chain."""

    pid: int
    database: str | None
    role: str | None
    application_name: str
    waiting_seconds: float | None
    lock: str
    blocked_by: tuple[int, ...]
    chain: tuple[int, ...]  # this pid, then the first blocker of each, to the one not waiting
    root_pid: int
    root_state: str | None
    root_query: str
    query: str


@dataclass(frozen=True)
class ConnectionCount:
    database: str | None
    role: str | None
    application_name: str
    state: str
    connections: int


@dataclass(frozen=True)
class Activity:
    """The activity section: what is running, idle in a transaction, blocked, connected."""

    max_connections: int
    reserved_connections: int
    client_connections: int
    long_running: tuple[SessionLine, ...]
    idle_in_transaction: tuple[SessionLine, ...]
    blocked: tuple[BlockedLine, ...]
    connections: tuple[ConnectionCount, ...]
    settings: ActivitySettings

    @property
    def connection_share(self) -> float:
        return self.client_connections / self.max_connections if self.max_connections else 0.0


def _wait(backend: Backend) -> str | None:
    if backend.wait_event_type is None:
        return None
    return f"{backend.wait_event_type}: {backend.wait_event}"


def _session(backend: Backend, seconds: float | None) -> SessionLine:
    return SessionLine(
        pid=backend.pid,
        database=backend.database,
        role=backend.role,
        application_name=backend.application_name,
        state=backend.state,
        seconds=seconds,
        transaction_seconds=backend.transaction_seconds,
        wait=_wait(backend),
        query=backend.query,
    )


def blocking_chain(pid: int, blockers: Mapping[int, Sequence[int]]) -> tuple[int, ...]:
    """*pid*, the first process blocking it, the first blocking that one… up to a process that
    waits for nobody (or back to one already in the chain: a deadlock about to be broken)."""
    chain = [pid]
    while blockers.get(chain[-1]):
        following = blockers[chain[-1]][0]
        if following in chain:
            break
        chain.append(following)
    return tuple(chain)


def build_activity(facts: ActivityFacts, settings: ActivitySettings) -> Activity:
    """The activity section from what was read (pure)."""
    clients = [b for b in facts.backends if b.backend_type == "client backend"]
    by_pid = {b.pid: b for b in facts.backends}
    long_running = sorted(
        (
            _session(b, b.query_seconds)
            for b in facts.backends
            if b.state == "active"
            and b.query_seconds is not None
            and b.query_seconds >= settings.long_running_seconds
        ),
        key=lambda line: -(line.seconds or 0.0),
    )
    idle = sorted(
        (
            _session(b, b.state_seconds)
            for b in clients
            if (b.state or "").startswith("idle in transaction")
            and (b.state_seconds or 0.0) >= settings.idle_in_transaction_seconds
        ),
        key=lambda line: -(line.seconds or 0.0),
    )
    blockers = {b.pid: b.blocked_by for b in facts.backends if b.blocked_by}
    locks = {lock.pid: lock for lock in facts.waiting}
    blocked = []
    for backend in facts.backends:
        if not backend.blocked_by:
            continue
        chain = blocking_chain(backend.pid, blockers)
        root = by_pid.get(chain[-1])
        lock = locks.get(backend.pid)
        blocked.append(
            BlockedLine(
                pid=backend.pid,
                database=backend.database,
                role=backend.role,
                application_name=backend.application_name,
                waiting_seconds=backend.state_seconds,
                lock=lock.describe() if lock else (_wait(backend) or "unknown"),
                blocked_by=tuple(backend.blocked_by),
                chain=chain,
                root_pid=chain[-1],
                root_state=root.state if root else None,
                root_query=root.query if root else "",
                query=backend.query,
            )
        )
    blocked.sort(key=lambda line: (-(line.waiting_seconds or 0.0), line.pid))
    return Activity(
        max_connections=facts.max_connections,
        reserved_connections=facts.reserved_connections,
        client_connections=len(clients),
        long_running=tuple(long_running),
        idle_in_transaction=tuple(idle),
        blocked=tuple(blocked),
        connections=connection_counts(clients),
        settings=settings,
    )


def connection_counts(clients: Iterable[Backend]) -> tuple[ConnectionCount, ...]:
    """Client connections by database, role, application and state, most first."""
    counts: dict[tuple[str | None, str | None, str, str], int] = {}
    for b in clients:
        key = (b.database, b.role, b.application_name, b.state or "unknown")
        counts[key] = counts.get(key, 0) + 1
    lines = [ConnectionCount(*key, connections=n) for key, n in counts.items()]
    lines.sort(
        key=lambda c: (-c.connections, c.database or "", c.role or "", c.application_name, c.state)
    )
    return tuple(lines)


# -- its sections -------------------------------------------------------------------------------


def activity_blocked(activity: Activity) -> Section:
    rows = [
        [str(b.pid), b.database or NO_VALUE, b.role or NO_VALUE, b.application_name,
         seconds(b.waiting_seconds), b.lock, ", ".join(map(str, b.blocked_by)),
         " ← ".join(map(str, b.chain)), f"{b.root_pid} ({b.root_state or 'unknown'})",
         one_line(b.query)]
        for b in activity.blocked
    ]  # fmt: skip
    code = [
        CodeBlock(f"pid {b.pid}: chain head {b.root_pid} ({b.root_state or 'unknown'}), its "
                  "statement", b.root_query)
        for b in activity.blocked
    ]  # fmt: skip
    return Section(
        "activity-blocked",
        "Activity now: blocked sessions",
        "Sessions waiting for a lock (pg_blocking_pids): the lock they wait for, who holds it, "
        "and the chain to the session that waits for nobody (end it, or its transaction, to "
        "release the chain).",
        ["pid", "database", "role", "application", "waiting", "waits for", "blocked by",
         "chain", "chain head", "statement"],
        rows,
        code,
        empty="No session waits for a lock.",
    )  # fmt: skip


def _session_rows(lines: Sequence[SessionLine]) -> list[list[str]]:
    return [
        [str(s.pid), s.database or NO_VALUE, s.role or NO_VALUE, s.application_name,
         s.state or NO_VALUE, seconds(s.seconds), seconds(s.transaction_seconds),
         s.wait or NO_VALUE, one_line(s.query)]
        for s in lines
    ]  # fmt: skip


_SESSION_HEADERS = ["pid", "database", "role", "application", "state", "for", "transaction",
                    "wait", "statement"]  # fmt: skip


def activity_running(activity: Activity) -> Section:
    limit = activity.settings.long_running_seconds
    return Section(
        "activity-running",
        "Activity now: long-running statements",
        f"Statements active for {limit:g} s or more (texts scrubbed of literals).",
        _SESSION_HEADERS,
        _session_rows(activity.long_running),
        empty=f"No statement has run for {limit:g} s.",
    )


def activity_idle(activity: Activity) -> Section:
    return Section(
        "activity-idle",
        "Activity now: idle in transaction",
        "Sessions inside a transaction that are doing nothing: they hold their locks and keep "
        "vacuum from removing dead rows; 'for' is the time since their last statement.",
        _SESSION_HEADERS,
        _session_rows(activity.idle_in_transaction),
        empty="No session is idle in a transaction.",
    )


def activity_connections(activity: Activity) -> Section:
    rows = [
        [c.database or NO_VALUE, c.role or NO_VALUE, c.application_name, c.state,
         f"{c.connections:,}"]
        for c in activity.connections
    ]  # fmt: skip
    return Section(
        "activity-connections",
        "Activity now: connections",
        f"{activity.client_connections:,} client connections of max_connections "
        f"{activity.max_connections:,} ({percent(activity.connection_share)}; "
        f"{activity.reserved_connections} reserved for superusers), by database, role, "
        "application and state.",
        ["database", "role", "application", "state", "connections"],
        rows,
    )


# -- the subject ------------------------------------------------------------------------------------

SUBJECT = Subject(
    name="activity",
    key="activity",
    settings=ActivitySettings,
    read=lambda reading: read_activity(reading.conn),
    build=lambda facts, building: build_activity(facts, building.options.settings_of("activity")),
    sections=(activity_blocked, activity_running, activity_idle, activity_connections),
    place=10,
    live_only=True,
)
