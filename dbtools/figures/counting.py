"""Whether pg_stat_statements counted every statement of a window.

Counters cannot say what they did not count. Each snapshot records what decides it (revision
0004): ``pg_stat_statements.track`` and ``track_utility`` with the source of their value, the
per-role and per-database ``pg_stat_statements.*`` settings (``pg_db_role_setting``), and every
top-level call counted in the database. From two of them, a window is untrusted when:

* the settings were not recorded (a snapshot taken below revision 0004, or one whose record a
  downgrade below 0004 dropped), or could not be read
  (``pg_db_role_setting`` revoked; the server-wide value hidden behind a per-role setting of the
  snapshotting role);
* they changed between the two snapshots;
* ``track`` is ``none`` for a role whose statements count (``--role``; without it, any role):
  its statements run and are not counted;
* a sample inside the window (``dbtools collect``'s, or any other snapshot between its ends)
  recorded settings that left statements uncounted, or settings that changed from one sample
  to the next: a setting switched off and on again between the ends is caught at every sample;
* the database committed clearly more transactions than the top-level statements
  pg_stat_statements counted can explain: statements were run and not counted (an entry reset
  on its own, tracking switched off and on again inside the window). With ``track_utility`` on
  every statement is counted, BEGIN and COMMIT included, and a transaction commits only when it
  ran something: a statement, a session's start-up, autovacuum's work, or a driver preparing a
  statement in a round trip of its own (psycopg after five executions, asyncpg always: one
  transaction, at most one per statement it then executes). Per role: one that opens
  transaction blocks (BEGIN or START TRANSACTION counted) explains one transaction per BEGIN
  (its statements run inside them; a COMMIT without a counted BEGIN, one more), and as many
  more as ``LATE_REPORT_SECONDS`` of them (an idle session's transactions from before the window
  may be reported inside it); one that does not, two per top-level statement (each its own transaction, and a prepare round trip before
  it). dbtools' own statements (every top-level call counted in the database minus the
  applications' stored ones) are autocommit: two each. So at most ``sessions + autovacuum +
  those`` transactions commit; more means statements went uncounted. Rolled-back transactions
  are not compared: a failed statement rolls back without being counted, so they prove
  nothing; a block that rolls back only loosens the comparison.

Pure: no database access. docs/postgresql.md ("What is counted") gives the facts this rests on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dbtools.reading.rows import SnapshotHeader

TRACK = "pg_stat_statements.track"
TRACK_UTILITY = "pg_stat_statements.track_utility"
AUTOVACUUM_NAPTIME = "autovacuum_naptime"
PGSS_SETTINGS = (TRACK, TRACK_UTILITY)
# Where a value comes from when it is the server's own, not a role's, a database's or a session's.
SERVER_SOURCES = frozenset(
    {"default", "configuration file", "command line", "environment variable", "override"}
)
# Transactions committed without a statement pg_stat_statements counts: one per session opened
# (its start-up), and autovacuum's: a few per visit to the database (one visit per naptime) and
# about two per table it vacuums or analyzes (measured on 15 and 18: docs/postgresql.md).
TRANSACTIONS_PER_AUTOVACUUM_VISIT = 5
TRANSACTIONS_PER_MAINTENANCE_RUN = 2
# An idle session reports its committed transactions up to this late (PGSTAT_IDLE_INTERVAL,
# docs/postgresql.md): a window may receive that much of its roles' earlier transactions.
LATE_REPORT_SECONDS = 10.0


@dataclass(frozen=True)
class Override:
    """A per-role and/or per-database setting (``ALTER ROLE … IN DATABASE … SET``); role or
    database None: every role, every database."""

    role: str | None
    database: str | None
    setting: str
    value: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Its place in a stable order: server-wide scopes (None) first."""
        return (self.role or "", self.database or "", self.setting)

    @property
    def scope(self) -> str:
        if self.role is not None and self.database is not None:
            return f"role {self.role} in database {self.database}"
        return f"role {self.role}" if self.role is not None else f"database {self.database}"

    def __str__(self) -> str:
        return f"{self.scope}: {self.setting} = {self.value}"


def overrides(header: SnapshotHeader) -> tuple[Override, ...] | None:
    """The snapshot's per-role and per-database pg_stat_statements settings (None: unknown)."""
    if header.counting_overrides is None:
        return None
    found = (
        Override(o.get("role"), o.get("database"), str(o["setting"]), str(o["value"]))
        for o in header.counting_overrides
    )
    return tuple(sorted(found, key=lambda o: o.key))


def setting(header: SnapshotHeader, name: str) -> tuple[str, str] | None:
    """(value, source) of *name* in the snapshotting session; None when not recorded."""
    found: dict[str, Any] | None = (header.counting_settings or {}).get(name)
    return (str(found["value"]), str(found["source"])) if found else None


@dataclass(frozen=True)
class Tracking:
    """The ``track`` value that applies to a role's sessions in the snapshot's database, and
    the override that decides it (None: the server's own value)."""

    value: str | None  # None: cannot be told
    decided_by: Override | None = None


def tracking(header: SnapshotHeader, role: str | None) -> Tracking:
    """What ``pg_stat_statements.track`` is for *role*'s sessions in the snapshot's database
    (*role* None: a role without settings of its own). PostgreSQL's order: the role in this
    database, the role, this database, the server."""
    found = overrides(header)
    if found is None:
        return Tracking(None)
    database = header.database_name
    levels = [(role, database), (role, None)] if role is not None else []
    by_level = {(o.role, o.database): o for o in found if o.setting == TRACK}
    for level in (*levels, (None, database)):
        if level in by_level:
            return Tracking(by_level[level].value, by_level[level])
    server = setting(header, TRACK)
    if server is None or server[1] not in SERVER_SOURCES:
        return Tracking(None)
    return Tracking(server[0])


def _roles_to_check(header: SnapshotHeader, roles: Iterable[str]) -> list[str | None]:
    """The roles whose statements count: *roles*, or every role (those with settings of their
    own, and None for all the others)."""
    chosen = sorted(set(roles))
    if chosen:
        return list(chosen)
    own = sorted({o.role for o in overrides(header) or () if o.role is not None})
    return [None, *own]


def tracks_nested(start: SnapshotHeader, end: SnapshotHeader, roles: Iterable[str] = ()) -> bool:
    """Whether statements run inside functions were counted for every role that counts
    (``track = all`` at both ends)."""
    roles = list(roles)
    return all(
        tracking(header, role).value == "all"
        for header in (start, end)
        for role in _roles_to_check(header, roles)
    )


def settings_problems(
    start: SnapshotHeader, end: SnapshotHeader, roles: Iterable[str] = ()
) -> list[str]:
    """Why the window's statements may not all have been counted, from the recorded settings."""
    unrecorded = [h for h in (start, end) if h.counting_settings is None]
    if unrecorded:
        # Revision 0004 added the columns; a snapshot taken below it has none, and a downgrade
        # below it drops those of snapshots taken above: the revision each was taken at tells.
        taken = ", ".join(sorted({h.alembic_revision or "base" for h in unrecorded}))
        return [
            f"pg_stat_statements settings are not stored with this window's snapshots (taken "
            f"at revision {taken}; they are stored from revision 0004 on, and a downgrade below "
            "0004 drops them): whether every statement was counted is unknown"
        ]
    problems = []
    changes = _changes(start, end)
    if changes:
        problems.append(
            f"pg_stat_statements settings changed inside the window: {'; '.join(changes)}"
        )
    if overrides(start) is None or overrides(end) is None:
        return [
            *problems,
            "per-role and per-database settings cannot be read (no SELECT on "
            "pg_catalog.pg_db_role_setting): whether the statements were counted is unknown",
        ]
    roles = list(roles)
    seen: set[str] = set()
    for header in (start, end):
        for role in _roles_to_check(header, roles):
            found = tracking(header, role)
            if found.value is None:
                source = (setting(header, TRACK) or ("", "unknown"))[1]
                problem = (
                    f"the server-wide {TRACK} cannot be read: the snapshotting session's value "
                    f"comes from a setting of source '{source}' (remove the per-role setting "
                    "of the monitoring role: dbtools leaves its own statements out anyway)"
                )
            elif found.value == "none":
                problem = (
                    f"{TRACK} = none for {found.decided_by.scope}: its statements are not counted"
                    if found.decided_by
                    else f"{TRACK} = none server-wide: statements are not counted"
                )
            else:
                continue
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems


def _changes(start: SnapshotHeader, end: SnapshotHeader) -> list[str]:
    changes = []
    for name in PGSS_SETTINGS:
        # A session's value that comes from a per-role or per-database setting changes with
        # it: that change is named below, as the setting's.
        before, after = setting(start, name), setting(end, name)
        if before is None or after is None or not {before[1], after[1]} <= SERVER_SOURCES:
            continue
        if before[0] != after[0]:
            changes.append(f"{name} = {after[0]} (was {before[0]})")
    old = {o.key: o for o in overrides(start) or ()}
    new = {o.key: o for o in overrides(end) or ()}
    for key in sorted(set(old) | set(new)):
        was, now = old.get(key), new.get(key)
        if now is not None and was is None:
            changes.append(f"{now} (was not set)")
        elif now is not None and was is not None and now.value != was.value:
            changes.append(f"{now} (was {was.value})")
        elif was is not None and now is None:
            changes.append(f"{was.scope}: {was.setting} no longer set (was {was.value})")
    return changes


@dataclass(frozen=True)
class RoleCalls:
    """One role's top-level calls in a window, by what they do to a transaction block
    (``sqltext.parse.transaction_role``)."""

    begins: int = 0  # BEGIN, START TRANSACTION
    ends: int = 0  # COMMIT, END, ROLLBACK (not ROLLBACK TO), ABORT, PREPARE TRANSACTION
    others: int = 0  # every other top-level call

    @property
    def calls(self) -> int:
        return self.begins + self.ends + self.others

    def transactions(self, late_share: float = 0.0) -> int:
        """The most transactions these calls can explain: the blocks opened (and a block's end
        without a counted BEGIN), and *late_share* of them more (reported late from before the
        window), when the role opens blocks; else two per call (each its own transaction, and a
        prepare round trip)."""
        if self.begins:
            return math.ceil(self.begins * (1 + late_share)) + max(0, self.ends - self.begins)
        return 2 * self.calls

    def add(self, kind: str, calls: int) -> RoleCalls:
        """These calls and *calls* more of *kind* (``begin``, ``end``, ``other``)."""
        return RoleCalls(self.begins + calls * (kind == "begin"),
                         self.ends + calls * (kind == "end"),
                         self.others + calls * (kind == "other"))  # fmt: skip


@dataclass(frozen=True)
class TransactionCount:
    """A window's committed transactions against what the top-level statements counted can
    explain (``by_role``: the applications' stored calls; the rest of ``counted`` is dbtools'
    own)."""

    committed: int
    counted: int  # every top-level call counted in the database
    allowance: int  # transactions without a statement: sessions' start-up, autovacuum
    by_role: Mapping[str, RoleCalls] = field(default_factory=dict)
    late_share: float = 0.0  # of a window, what idle sessions' late reports may add

    @property
    def own(self) -> int:
        """dbtools' own top-level calls (autocommit, never stored)."""
        return max(0, self.counted - sum(r.calls for r in self.by_role.values()))

    @property
    def explained(self) -> int:
        """The most transactions the counted statements can explain."""
        return (
            self.allowance
            + 2 * self.own
            + sum(r.transactions(self.late_share) for r in self.by_role.values())
        )

    @property
    def unexplained(self) -> int:
        return self.committed - self.explained

    @property
    def seen(self) -> int:
        """The transactions pg_stat_statements saw the applications run: BEGINs of the roles
        that open blocks, top-level calls of the others (what a message shows)."""
        return sum(r.begins or r.calls for r in self.by_role.values())


def transaction_count(
    start: SnapshotHeader,
    end: SnapshotHeader,
    *,
    committed: int,
    sessions: int | None,
    maintenance_runs: int,
    seconds: float,
    by_role: Mapping[str, RoleCalls] | None = None,
) -> TransactionCount | None:
    """The cross-check of *committed* transactions (``pg_stat_database.xact_commit``) with the
    top-level statements counted (*by_role*: the applications' stored calls per role; None:
    every call explains two transactions); None where it cannot expose anything: settings or
    the count not recorded, no ``sessions`` counter (before PostgreSQL 14), ``track_utility``
    off (BEGIN, COMMIT and DDL are then not counted), or a setting that leaves statements out on
    purpose."""
    if start.toplevel_calls is None or end.toplevel_calls is None or sessions is None:
        return None
    for header in (start, end):
        if (setting(header, TRACK_UTILITY) or ("off", ""))[0] != "on":
            return None
        known = overrides(header)
        if known is None or any(o.setting == TRACK and o.value == "none" for o in known):
            return None
    naptime = float((setting(end, AUTOVACUUM_NAPTIME) or ("60", ""))[0]) or 60.0
    visits = 1 + int(seconds // naptime)
    allowance = (
        sessions
        + TRANSACTIONS_PER_AUTOVACUUM_VISIT * visits
        + TRANSACTIONS_PER_MAINTENANCE_RUN * maintenance_runs
    )
    return TransactionCount(
        committed, end.toplevel_calls - start.toplevel_calls, allowance, dict(by_role or {}),
        min(1.0, LATE_REPORT_SECONDS / seconds) if seconds > 0 else 1.0,
    )  # fmt: skip


def settings_problems_across(
    headers: Sequence[SnapshotHeader], roles: Iterable[str] = ()
) -> list[str]:
    """``settings_problems`` at every sample of a window (*headers*: its start, the samples
    inside it in time order, its end), between each sample and the next: a setting switched
    off and back on between the window's ends is seen at the samples taken meanwhile."""
    roles = list(roles)
    found: list[str] = []
    pairs = list(itertools.pairwise(headers))
    for first, second in pairs:
        where = (
            f" (between the samples at {_clock(first.taken_at)} and {_clock(second.taken_at)} UTC)"
            if len(pairs) > 1
            else ""
        )
        for problem in settings_problems(first, second, roles):
            seen = [p for p in found if p.startswith(problem)]
            if not seen:
                found.append(problem + where)
    return found


def _clock(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc):%H:%M:%S}"
