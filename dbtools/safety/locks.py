"""PostgreSQL's table lock modes, and what each one blocks for an application's traffic.

Applications read with ACCESS SHARE (``SELECT``) and write with ROW EXCLUSIVE (``INSERT``,
``UPDATE``, ``DELETE``); a lock blocks reads if it conflicts with the first, writes if it conflicts
with the second (the conflict table of the PostgreSQL manual, "Explicit Locking").
"""

from __future__ import annotations

import enum


class Blocking(enum.Enum):
    """What an application's queries on a locked relation must wait for."""

    NEITHER = "neither"
    WRITES = "writes"
    READS_AND_WRITES = "reads and writes"

    @property
    def rank(self) -> int:
        return list(Blocking).index(self)


class LockLevel(enum.Enum):
    """A table lock mode, weakest first."""

    ACCESS_SHARE = "ACCESS SHARE"
    ROW_SHARE = "ROW SHARE"
    ROW_EXCLUSIVE = "ROW EXCLUSIVE"
    SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
    SHARE = "SHARE"
    SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
    EXCLUSIVE = "EXCLUSIVE"
    ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"

    @property
    def rank(self) -> int:
        return list(LockLevel).index(self)

    @property
    def blocks(self) -> Blocking:
        if self is LockLevel.ACCESS_EXCLUSIVE:
            return Blocking.READS_AND_WRITES
        if self.rank >= LockLevel.SHARE.rank:
            return Blocking.WRITES
        return Blocking.NEITHER

    @classmethod
    def parse(cls, text: str) -> LockLevel:
        """``"share row exclusive"`` (as in ``LOCK TABLE … IN … MODE``) → the member."""
        return cls(" ".join(text.upper().split()))


def strongest(levels: list[LockLevel]) -> LockLevel | None:
    return max(levels, key=lambda level: level.rank) if levels else None


# Storage parameters whose change takes more than SHARE UPDATE EXCLUSIVE (PostgreSQL's
# reloptions.c gives every other table parameter ShareUpdateExclusiveLock).
ACCESS_EXCLUSIVE_PARAMETERS = frozenset(
    {"user_catalog_table", "check_option", "security_barrier", "security_invoker"}
)


def storage_parameter_lock(keys: list[str]) -> LockLevel:
    """The lock ``ALTER TABLE … SET/RESET (keys)`` takes."""
    if any(key.lower() in ACCESS_EXCLUSIVE_PARAMETERS for key in keys):
        return LockLevel.ACCESS_EXCLUSIVE
    return LockLevel.SHARE_UPDATE_EXCLUSIVE
