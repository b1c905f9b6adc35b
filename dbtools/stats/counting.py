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
* the database committed more transactions than the top-level statements pg_stat_statements
  counted can explain: statements were run and not counted (an entry reset on its own,
  tracking switched off and on again inside the window). With ``track_utility`` on every
  statement is counted, BEGIN and COMMIT included, and a transaction commits only when it ran
  something: a statement, a session's start-up, autovacuum's work, or a driver preparing a
  statement in a round trip of its own (psycopg after five executions, asyncpg always: one
  transaction, at most one per statement it then executes). So at most ``sessions + autovacuum
  + 2 × statements`` transactions commit; more means statements went uncounted.

Pure: no database access. docs/postgresql.md ("What is counted") gives the facts this rests on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbtools.stats.rows import SnapshotHeader

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
class TransactionCount:
    """A window's committed transactions against the top-level statements counted."""

    committed: int
    counted: int
    allowance: int  # transactions without a statement: sessions' start-up, autovacuum

    @property
    def explained(self) -> int:
        """The most transactions the counted statements can explain: each one's own, and a
        driver's prepare round trip before it."""
        return self.allowance + 2 * self.counted

    @property
    def unexplained(self) -> int:
        return self.committed - self.explained


def transaction_count(
    start: SnapshotHeader,
    end: SnapshotHeader,
    *,
    committed: int,
    sessions: int | None,
    maintenance_runs: int,
    seconds: float,
) -> TransactionCount | None:
    """The cross-check of *committed* transactions (``pg_stat_database.xact_commit``) with the
    top-level statements counted; None where it cannot expose anything: settings or the count
    not recorded, no ``sessions`` counter (before PostgreSQL 14), ``track_utility`` off (BEGIN,
    COMMIT and DDL are then not counted), or a setting that leaves statements out on purpose."""
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
    return TransactionCount(committed, end.toplevel_calls - start.toplevel_calls, allowance)
