"""A collector over a fleet: two databases on two servers feeding one central repository, one
of them restarted (the other keeps its interval; the restarted one's step is marked and a window
spanning it is untrusted), and a target that never answers (never holds the others up)."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from datetime import datetime

import pytest

from dbtools import Collector
from dbtools.db.connection import SQL_MARKER, connect
from dbtools.db.sandbox import Sandbox
from dbtools.store.collector import Round, Target
from tests.conftest import Database
from tests.snapshot_helpers import stored_measures

INTERVAL_S = 1.0


def _taken(store: Database, target: str) -> list[datetime]:
    rows = store.execute(
        f"SELECT {SQL_MARKER} taken_at FROM perf_monitoring.snapshots WHERE target = %s "
        "ORDER BY id",
        (target,),
    )
    return [taken_at for (taken_at,) in rows]


def _gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def test_a_restart_of_one_target_marks_its_step_and_holds_up_no_other(
    database: Database, migrated_database: Database, second_server: Sandbox
) -> None:
    store = migrated_database
    rounds: list[Round] = []
    restarted = threading.Event()

    def restart() -> None:
        second_server.stop()
        time.sleep(2 * INTERVAL_S)
        # the same directory and port: the target's DSN stays valid
        Sandbox(second_server.directory, port=second_server.port,
                pg_bin=second_server.pg_bin).start()  # fmt: skip
        restarted.set()

    def after(done: Round) -> None:
        rounds.append(done)
        if done.number == 2:
            threading.Thread(target=restart).start()

    targets = [Target("steady", database.dsn), Target("restarted", second_server.dsn())]
    with Collector(targets, store=store.dsn, interval_s=INTERVAL_S) as collector:
        assert collector.open_all() == []
        collector.run(rounds=12, on_round=after)
    assert restarted.is_set()
    outcomes = {name: [o for r in rounds for o in r.outcomes if o.target == name]
                for name in ("steady", "restarted")}  # fmt: skip
    # The steady target got a sample every round, a round's interval apart.
    assert all(o.sample is not None for o in outcomes["steady"])
    steady = _taken(store, "steady")
    assert len(steady) == 12
    assert all(gap < 2 * INTERVAL_S for gap in _gaps(steady)), _gaps(steady)
    # The restarted one failed while it was down, and its first sample after is marked.
    assert any(o.error for o in outcomes["restarted"])
    flags = [o.sample.restarted for o in outcomes["restarted"] if o.sample is not None]
    assert flags.count(True) == 1 and flags.index(True) >= 2 and flags[-1] is False, flags
    assert sum("server restarted: step not comparable" in r.line() for r in rounds) == 1
    # A window over the restart is untrusted; one after it is not.
    taken = _taken(store, "restarted")
    with connect(store.dsn, autocommit=True) as conn:
        across, after_it = stored_measures(
            conn,
            f"{taken[0].isoformat()}..{taken[-1].isoformat()}",
            f"{taken[-2].isoformat()}..{taken[-1].isoformat()}",
            target="restarted",
        )
    assert "the server restarted inside the window (statistics start again)" in across.problems
    assert not any("restarted" in p for p in after_it.problems)


def test_a_target_that_never_answers_holds_up_no_other(
    database: Database, migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts the connection and never says a word (a hung host): its reads
    stay busy until the connect timeout; the other target is sampled every interval."""
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        targets = [
            Target("alive", database.dsn),
            Target("silent", f"postgresql://nobody@127.0.0.1:{port}/nothing"),
        ]
        rounds: list[Round] = []
        with Collector(targets, store=migrated_database.dsn, interval_s=INTERVAL_S) as collector:
            assert collector.open_all() == ["silent"]
            collector.run(rounds=6, on_round=rounds.append)
    alive = _taken(migrated_database, "alive")
    assert len(alive) == 6
    assert all(gap < 2 * INTERVAL_S for gap in _gaps(alive))
    assert all(r.seconds < 1.5 * INTERVAL_S for r in rounds)
    silent_outcomes = [o for r in rounds for o in r.outcomes if o.target == "silent"]
    assert len(silent_outcomes) == 6 and not any(o.sample for o in silent_outcomes)
    assert silent_outcomes[0].error == "no answer within 1 s"
    assert silent_outcomes[1].busy  # still connecting: skipped, not queued
    assert _taken(migrated_database, "silent") == []
