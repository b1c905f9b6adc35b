"""Whether pg_stat_statements counted everything, without a database: the recorded settings,
their precedence, and the transaction cross-check (``dbtools.figures.counting``); a reset seen by
an entry's min and max times (``dbtools.figures.deltas``)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from dbtools.figures import counting
from dbtools.figures.deltas import statement_deltas
from dbtools.reading.rows import SnapshotHeader
from tests.factories import COUNTING_SETTINGS, T0, header, snapshot, statement

TRACK = "pg_stat_statements.track"


def _with(
    settings: dict[str, Any] | None = None, overrides: Any = (), **fields: Any
) -> SnapshotHeader:
    values = {**COUNTING_SETTINGS, **(settings or {})}
    return header(counting_settings=values,
                  counting_overrides=None if overrides is None else list(overrides), **fields)  # fmt: skip


def _override(
    role: str | None, database: str | None, value: str, name: str = TRACK
) -> dict[str, Any]:
    return {"role": role, "database": database, "setting": name, "value": value}


@pytest.mark.parametrize(
    ("overrides", "role", "expected"),
    [
        ([], None, "all"),  # the server's own value
        ([_override(None, "app", "top")], "alice", "top"),  # the database's
        ([_override(None, "app", "top"), _override("alice", None, "none")], "alice", "none"),
        ([_override("alice", None, "none"), _override("alice", "app", "all")], "alice", "all"),
        ([_override("alice", "other", "none")], "alice", "all"),  # another database: filtered
        ([_override("bob", None, "none")], "alice", "all"),
        ([_override("bob", None, "none")], None, "all"),  # a role without settings of its own
    ],
)  # fmt: skip
def test_which_track_applies_follows_postgresqls_precedence(
    overrides: list[dict[str, Any]], role: str | None, expected: str
) -> None:
    # pg_db_role_setting rows of other databases are never read (the snapshot filters them);
    # one that slips through must not count for this database either.
    assert counting.tracking(_with(overrides=overrides), role).value == expected


def test_a_hidden_server_value_cannot_be_told() -> None:
    """The snapshotting role's own setting hides the server's value from its session."""
    hidden = _with({TRACK: {"value": "none", "source": "user"}})
    assert counting.tracking(hidden, None).value is None
    # ... unless a database-wide setting decides for every role without its own.
    decided = _with({TRACK: {"value": "none", "source": "user"}},
                    [_override(None, "app", "top")])  # fmt: skip
    assert counting.tracking(decided, None).value == "top"
    (problem,) = counting.settings_problems(hidden, hidden)
    assert problem.startswith(f"the server-wide {TRACK} cannot be read")


def test_untracked_roles_and_unknowns_are_problems() -> None:
    untracked = _with(overrides=[_override("bob", "app", "none")])
    assert counting.settings_problems(untracked, untracked) == [
        f"{TRACK} = none for role bob in database app: its statements are not counted"
    ]
    assert counting.settings_problems(untracked, untracked, roles=["alice"]) == []
    off = _with({TRACK: {"value": "none", "source": "configuration file"}})
    assert counting.settings_problems(off, off) == [
        f"{TRACK} = none server-wide: statements are not counted"
    ]
    unreadable = _with(overrides=None)
    assert counting.settings_problems(unreadable, unreadable)[0].startswith(
        "per-role and per-database settings cannot be read"
    )
    old = dataclasses.replace(header(counting_settings=None, counting_overrides=None),
                              alembic_revision="0003")  # fmt: skip
    assert counting.settings_problems(old, untracked) == [
        "pg_stat_statements settings are not stored with this window's snapshots (taken at "
        "revision 0003; they are stored from revision 0004 on, and a downgrade below 0004 drops "
        "them): whether every statement was counted is unknown"
    ]


def test_changed_settings_are_named() -> None:
    start = _with(overrides=[_override("bob", None, "all")])
    end = _with({"pg_stat_statements.track_utility": {"value": "off", "source": "command line"}},
                [_override(None, "app", "top")])  # fmt: skip
    (problem,) = counting.settings_problems(start, end)
    assert problem == (
        "pg_stat_statements settings changed inside the window: "
        "pg_stat_statements.track_utility = off (was on); "
        f"database app: {TRACK} = top (was not set); "
        f"role bob: {TRACK} no longer set (was all)"
    )


def _count(committed: int, counted: int, sessions: int = 0, **start: Any) -> int | None:
    first = _with(**{"toplevel_calls": 1_000, **start})
    last = _with(toplevel_calls=1_000 + counted)
    found = counting.transaction_count(first, last, committed=committed, sessions=sessions,
                                       maintenance_runs=1, seconds=150)  # fmt: skip
    return None if found is None else found.unexplained


def test_transactions_the_counted_statements_cannot_explain() -> None:
    # allowance: 3 sessions + 5 per autovacuum visit (3 visits in 150 s at 60 s) + 2 per run
    assert _count(committed=220, counted=100, sessions=3) == 220 - (3 + 15 + 2 + 200)
    assert _count(committed=221, counted=100, sessions=3) == 1  # one too many: untrusted
    # Nothing to compare where it cannot expose anything.
    assert _count(100, 0, toplevel_calls=None) is None  # not recorded
    utility_off = {"pg_stat_statements.track_utility": {"value": "off", "source": "default"}}
    assert _count(100, 0, settings=utility_off) is None
    assert _count(100, 0, overrides=[_override("bob", None, "none")]) is None
    first, last = _with(toplevel_calls=0), _with(toplevel_calls=0)
    assert counting.transaction_count(first, last, committed=9, sessions=None,
                                      maintenance_runs=0, seconds=1) is None  # fmt: skip


def _per_role(committed: int, by_role: dict[str, counting.RoleCalls], own: int = 0,
              seconds: float = 600) -> int:  # fmt: skip
    """Unexplained transactions of a window whose stored calls are *by_role*, *own* of
    dbtools' besides (no sessions; 10 autovacuum visits in 600 s, one run)."""
    counted = sum(r.calls for r in by_role.values()) + own
    found = counting.transaction_count(
        _with(toplevel_calls=0), _with(toplevel_calls=counted), committed=committed,
        sessions=0, maintenance_runs=1, seconds=seconds, by_role=by_role,
    )  # fmt: skip
    assert found is not None
    return found.unexplained


def test_a_role_that_opens_blocks_explains_one_transaction_per_begin() -> None:
    # 100 blocks of BEGIN, 30 statements, COMMIT; 10 min: 10 s of late reports allowed (1/60).
    blocks = counting.RoleCalls(begins=100, ends=100, others=3000)
    assert blocks.transactions() == 100 and blocks.transactions(1 / 60) == 102
    allowance = 5 * 11 + 2  # autovacuum visits (1 + 600 // 60) and one run
    assert _per_role(100 + 2 + allowance, {"app": blocks}) == 0
    assert _per_role(100 + 2 + allowance + 1, {"app": blocks}) == 1  # one too many
    # The case: 1,031 commits, 100 BEGINs seen (with 3,000 statements inside them).
    assert _per_role(1031, {"app": blocks}) > 0
    # Without blocks every call may be a transaction and a prepare: 2 x 3,200.
    autocommit = counting.RoleCalls(others=3200)
    assert autocommit.transactions(1.0) == 6400
    assert _per_role(6400 + allowance, {"app": autocommit}) == 0
    # A COMMIT without a counted BEGIN ends a block begun earlier: one more; dbtools' own: two.
    assert counting.RoleCalls(begins=10, ends=12).transactions() == 12
    late = 1  # ceil(10 / 60)
    assert _per_role(10 + late + 2 + 2 * 7 + allowance, {"app": counting.RoleCalls(10, 12)},
                     own=7) == 0  # fmt: skip
    # A short window: as many again of a blocks role's transactions may be reported late.
    assert _per_role(200 + 5 + 2, {"app": counting.RoleCalls(100, 100)}, seconds=5) == 0


@pytest.mark.parametrize(
    ("before", "after", "reset"),
    [
        ({"calls": 5, "total_exec_time": 100.0, "min_exec_time": 20.0, "max_exec_time": 20.0},
         {"calls": 55, "total_exec_time": 350.0, "min_exec_time": 5.0, "max_exec_time": 20.0},
         False),  # 50 calls of 5 ms: min fell, max stayed, mean in range
        ({"calls": 5, "total_exec_time": 100.0, "min_exec_time": 20.0, "max_exec_time": 20.0},
         {"calls": 50, "total_exec_time": 250.0, "min_exec_time": 5.0, "max_exec_time": 5.0},
         True),  # every counter grew, but the max fell: the entry started again
        ({"calls": 5, "total_exec_time": 10.0, "min_exec_time": 1.0, "max_exec_time": 3.0},
         {"calls": 9, "total_exec_time": 30.0, "min_exec_time": 2.0, "max_exec_time": 9.0},
         True),  # the min rose
        ({"calls": 5, "total_exec_time": 10.0, "min_exec_time": 1.0, "max_exec_time": 3.0},
         {"calls": 10, "total_exec_time": 100.0, "min_exec_time": 1.0, "max_exec_time": 3.0},
         True),  # 5 calls took 90 ms: a mean of 18 ms outside [1, 3]
        ({"calls": 5, "total_exec_time": 10.0, "min_exec_time": None, "max_exec_time": None},
         {"calls": 10, "total_exec_time": 100.0, "min_exec_time": 1.0, "max_exec_time": 3.0},
         False),  # the start was taken before revision 0004: nothing to compare
    ],
)  # fmt: skip
def test_a_reset_shows_in_an_entrys_min_and_max_times(
    before: dict[str, Any], after: dict[str, Any], reset: bool
) -> None:
    start = snapshot(T0, (statement(1, **before),))
    end = snapshot(T0 + timedelta(minutes=1), (statement(1, **after),))
    assert bool(statement_deltas(start, end).reset) is reset
