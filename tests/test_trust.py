"""No false pass: verify says "untrusted" (exit 1), never pass, when what it counts could not be
counted, refuses comparisons that mean nothing (exit 2), and shows what a headline hides."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from dbtools import Collector, verify_candidate
from dbtools.figures.sums import Scope
from dbtools.figures.windows import window_labels
from dbtools.store.collector import Target
from dbtools.verify import VerifyResult
from dbtools.verify.render import render_table
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, run_cli
from tests.snapshot_helpers import (
    record_metrics,
    run_requests,
    stored_measures,
    stored_windows,
    take,
)

RELAXED = Thresholds(critical_query_rate=1e9)
PROBE = "SELECT %s::int + 1 AS reset_probe"


def _window(db: Database, label: str, requests: int, *, during: Callable[[], object] = lambda: None,
            before_end: Callable[[], object] = lambda: None, **kwargs: object) -> None:  # fmt: skip
    """LABEL:start, *during*, *requests* requests (``run_requests``), *before_end*, LABEL:end."""
    start, end = window_labels(label)
    take(db, start)
    during()
    run_requests(db, requests, **kwargs)  # type: ignore[arg-type]
    before_end()
    take(db, end, requests)
    record_metrics(db, label, requests=requests)


def _verify(db: Database, **kwargs: object) -> VerifyResult:
    kwargs.setdefault("thresholds", RELAXED)
    return verify_candidate(db.dsn, "before", "after", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def app_role(migrated_database: Database) -> Iterator[str]:
    """A login role for the application, with the grants the test workload needs."""
    db = migrated_database
    role = f"{db.name}_app"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        yield role
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


# -- pg_stat_statements was not counting -------------------------------------------------------


def test_statements_of_an_untracked_role_are_untrusted(
    migrated_database: Database, app_role: str
) -> None:
    db = migrated_database
    db.execute(f"ALTER ROLE {app_role} IN DATABASE {db.name} SET pg_stat_statements.track = none")
    _window(db, "before", 10, user=app_role)
    _window(db, "after", 10, batch=10, user=app_role)
    result = _verify(db)
    expected = (f"pg_stat_statements.track = none for role {app_role} in database {db.name}: "
                "its statements are not counted")  # fmt: skip
    assert expected in result.baseline.problems and expected in result.candidate.problems
    assert result.verdict == "fail"
    # Another role's statements are counted: narrowed to it, the windows can be trusted.
    other = _verify(db, scope=Scope(roles=frozenset({"postgres"})))
    assert other.baseline.trusted and other.candidate.trusted, other.baseline.problems


def test_settings_changed_inside_a_window_are_untrusted(migrated_database: Database) -> None:
    db = migrated_database
    _window(db, "before", 10)
    change = f"ALTER DATABASE {db.name} SET pg_stat_statements.track_utility = off"
    _window(db, "after", 10, batch=10, during=lambda: db.execute(change))
    result = _verify(db)
    assert result.baseline.trusted
    assert result.candidate.problems == (
        "pg_stat_statements settings changed inside the window: "
        f"database {db.name}: pg_stat_statements.track_utility = off (was not set)",
    )
    assert result.verdict == "fail"


def test_tracking_switched_off_and_on_inside_a_window_is_seen(migrated_database: Database) -> None:
    """The settings are the same at both ends; the transaction counters show what was missed."""
    db = migrated_database
    _window(db, "before", 100)
    off = f"ALTER DATABASE {db.name} SET pg_stat_statements.track = none"
    on = f"ALTER DATABASE {db.name} RESET pg_stat_statements.track"
    _window(db, "after", 100, during=lambda: db.execute(off), before_end=lambda: db.execute(on))
    result = _verify(db)
    assert result.baseline.trusted, result.baseline.problems
    # 300 statements ran; the one counted is the ALTER DATABASE that switched tracking off
    assert result.candidate.counts.queries == 1
    (problem,) = result.candidate.problems
    assert problem.startswith("statements missing: ") and "transactions committed" in problem
    assert result.verdict == "fail"


# -- a single-entry reset ---------------------------------------------------------------------


def _probe(db: Database, calls: int, seconds: float = 0.0) -> None:
    with db.connect() as conn:
        for _ in range(calls):
            conn.execute("SELECT pg_sleep(%s) AS reset_probe", (seconds,))


def _committed(db: Database) -> int:
    ((count,),) = db.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(count)


def _wait_until_committed(db: Database, at_least: int) -> None:
    """Until the database's committed transactions reach *at_least*: a closed session's counts
    reach pg_stat_database when its backend exits, after the client has moved on."""
    deadline = time.monotonic() + 10
    while _committed(db) < at_least:
        assert time.monotonic() < deadline, f"committed transactions never reached {at_least}"
        time.sleep(0.05)


def _reset_probe(db: Database) -> None:
    db.execute(
        "SELECT pg_stat_statements_reset(s.userid, s.dbid, s.queryid) FROM pg_stat_statements s "
        "WHERE s.query LIKE '%%reset_probe%%' AND s.query NOT LIKE '%%pg_stat_statements_reset%%'"
    )


def test_single_entry_reset_seen_by_its_max_time(
    migrated_database: Database, pg_server: PgServer
) -> None:
    """Extension 1.10 (PostgreSQL 15; on 18 created at that version) has no stats_since: after
    the reset every counter is higher than at the start, only the entry's max time fell."""
    db = migrated_database
    db.execute("DROP EXTENSION pg_stat_statements")
    db.execute("CREATE EXTENSION pg_stat_statements VERSION '1.10'")
    _window(db, "before", 10)
    _probe(db, 5, 0.02)  # before the window: max >= 20 ms, 100 ms in all
    start, end = window_labels("after")
    take(db, start)
    _reset_probe(db)
    _probe(db, 50, 0.005)  # after the reset: 50 calls, >= 250 ms in all, max ~5 ms
    run_requests(db, 10, batch=10)
    take(db, end, 10)
    record_metrics(db, "after", requests=10)
    result = _verify(db)
    assert result.baseline.trusted, result.baseline.problems
    assert result.candidate.problems == (
        "1 statement entries were reset or evicted inside the window",
    )
    assert result.verdict == "fail"


def test_single_entry_reset_seen_by_the_transaction_counters(migrated_database: Database) -> None:
    """Its counters grew past the start and its times may not tell: the database's committed
    transactions outnumber the statements counted."""
    db = migrated_database
    _window(db, "before", 10)
    _probe(db, 200)
    start, end = window_labels("after")
    take(db, start)
    committed = _committed(db)
    # 3,000 calls the window never counts, then 500 (past the 200 at the start): whether its
    # sums see the reset (stats_since, on 18: 500 calls) or not (300), a counted call explains
    # at most two transactions, far fewer than the 3,500 committed
    _probe(db, 3000)
    _reset_probe(db)
    _probe(db, 500)
    _wait_until_committed(db, committed + 3501)  # the probes and the reset
    take(db, end, 10)
    record_metrics(db, "after", requests=10)
    result = _verify(db)
    assert result.baseline.trusted, result.baseline.problems
    missing = [p for p in result.candidate.problems if p.startswith("statements missing: ")]
    assert len(missing) == 1, result.candidate.problems
    assert result.verdict == "fail"


# -- comparisons that mean nothing ------------------------------------------------------------


def test_same_or_overlapping_windows_are_refused(migrated_database: Database) -> None:
    db = migrated_database
    for label in ("s1", "s2", "s3", "s4"):
        take(db, label, 1)
    same = run_cli("verify", "--dsn", db.dsn, "--baseline", "s1..s2", "--candidate", "s1..s2")
    assert_usage_error(same, "the baseline and the candidate are the same window (s1..s2)")
    overlapping = run_cli(
        "verify", "--dsn", db.dsn, "--baseline", "s1..s3", "--candidate", "s2..s4"
    )
    assert_usage_error(overlapping, "the baseline s1..s3 and the candidate s2..s4 overlap")
    adjacent = run_cli("verify", "--dsn", db.dsn, "--baseline", "s1..s2", "--candidate", "s2..s3")
    assert adjacent.exit_code == 1, adjacent.output  # compared (no requests: untrusted)


def test_an_unknown_role_is_a_usage_error(migrated_database: Database) -> None:
    db = migrated_database
    _window(db, "before", 3)
    _window(db, "after", 3, batch=3)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after",
                     "--role", "postgres", "--role", "no_such_role")  # fmt: skip
    assert_usage_error(result, "unknown role 'no_such_role'")


# -- what the headline hides ------------------------------------------------------------------

THIRTY_LOOKUPS = """
CREATE FUNCTION thirty_lookups(first bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0..29 LOOP
        PERFORM id FROM trip_requests WHERE id = first + i;
    END LOOP;
END $$"""


def test_work_moved_into_a_function_is_shown_and_warned(migrated_database: Database) -> None:
    """Thirty lookups per request, then the same thirty inside one PL/pgSQL function: the
    headline falls by 97%, the statements per request do not."""
    db = migrated_database
    db.execute(THIRTY_LOOKUPS)
    lookup = tuple(f"SELECT id FROM trip_requests WHERE id = %(ids)s[1] + {i}" for i in range(30))
    _window(db, "before", 10, statements=lookup)
    _window(db, "after", 10, statements=("SELECT thirty_lookups(%(ids)s[1])",))
    result = _verify(db)
    before, after = result.baseline, result.candidate
    assert (before.queries_per_request, after.queries_per_request) == (30, 1)
    assert (before.nested_per_request, after.nested_per_request) == (0, 30)
    assert before.exec_time_per_request_ms is not None and after.exec_time_per_request_ms
    assert before.trusted and after.trusted, (before.problems, after.problems)
    (finding,) = [f for f in result.findings if f.check == "work_per_request"]
    assert finding.status == "warning"
    assert finding.message.startswith(
        "queries per request fell (30.00 -> 1.00) but statements per request, nested ones "
        "included, did not (30.00 -> 31.00): work moved into functions"
    )
    table = render_table(result)
    assert "nested statements per request" in table and "database time per request" in table


# -- the buffer cache hit ratio is the application's ---------------------------------------------

_PROBE_BLOCKS = """
SELECT coalesce(sum(shared_blks_hit), 0), coalesce(sum(shared_blks_read), 0)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel
  AND query LIKE 'SELECT count(*) FROM probe_blocks%%'
"""


def test_buffer_cache_hit_ratio_counts_the_applications_statements(
    migrated_database: Database,
) -> None:
    db = migrated_database
    db.execute("CREATE TABLE probe_blocks AS "
               "SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 5000) i")  # fmt: skip
    _window(db, "before", 3)
    hit0, read0 = db.execute(_PROBE_BLOCKS)[0]
    start, end = window_labels("after")
    take(db, start)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for _ in range(20):
            conn.execute("SELECT count(*) FROM probe_blocks WHERE i > 0")
    take(db, end, 20)
    record_metrics(db, "after", requests=20)
    hit1, read1 = db.execute(_PROBE_BLOCKS)[0]
    result = _verify(db)
    assert hit1 - hit0 >= 20 * 100  # the table's ~150 pages, twenty times
    assert result.candidate.buffer_cache_hit_ratio == pytest.approx(
        (hit1 - hit0) / ((hit1 - hit0) + (read1 - read0))
    )
    document = json.loads(run_cli("verify", "--dsn", db.dsn, "--baseline", "before",
                                  "--candidate", "after", "--format", "json").stdout)  # fmt: skip
    assert "pg_stat_statements" in document["definitions"]["buffer_cache_hit_ratio"]


def test_an_idle_window_has_no_buffer_cache_hit_ratio(migrated_database: Database) -> None:
    """dbtools' own snapshot work read 100% before: nothing of the application ran."""
    db = migrated_database
    for label in ("before", "after"):
        start, end = window_labels(label)
        take(db, start)
        take(db, end, 1)
    result = _verify(db)
    assert result.baseline.buffer_cache_hit_ratio is None
    assert result.candidate.buffer_cache_hit_ratio is None
    assert "buffer cache hit ratio (app statements)" in render_table(result)


# -- tracking switched off for most of a window, with the server's setting (issue 22) ----------

THIRTY = tuple(f"SELECT id FROM trip_requests WHERE id = %(ids)s[1] + {i}" for i in range(30))


def _track(db: Database, value: str | None) -> None:
    """``ALTER SYSTEM SET pg_stat_statements.track`` (None: RESET), reloaded, and waited for
    until a new session sees it."""
    statement = ("ALTER SYSTEM RESET pg_stat_statements.track" if value is None
                 else f"ALTER SYSTEM SET pg_stat_statements.track = '{value}'")  # fmt: skip
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(statement)
        conn.execute("SELECT pg_reload_conf()")
    expected = value or "all"
    for _ in range(100):
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            row = conn.execute("SHOW pg_stat_statements.track").fetchone()
        if row and row[0] == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"pg_stat_statements.track is not {expected}")


@pytest.fixture
def server_track(migrated_database: Database) -> Iterator[Callable[[str | None], None]]:
    """Switch the server's pg_stat_statements.track; RESET again afterwards, whatever happens."""
    try:
        yield lambda value: _track(migrated_database, value)
    finally:
        _track(migrated_database, None)


def _mostly_untracked(db: Database, label: str, track: Callable[[str | None], None], *,
                      transactions: bool, sample: Callable[[], object] = lambda: None) -> None:  # fmt: skip
    """LABEL: 100 requests of 30 statements each, the first 90 with tracking off server-wide
    (ALTER SYSTEM + pg_reload_conf), back on before the end snapshot."""
    start, end = window_labels(label)
    take(db, start)
    track("none")
    run_requests(db, 90, statements=THIRTY, transactions=transactions)
    sample()
    track(None)
    run_requests(db, 10, statements=THIRTY, transactions=transactions)
    take(db, end, 100)


MISSING = re.compile(
    r"statements missing: ([\d,]+) transactions committed in the database, but "
    r"pg_stat_statements saw the applications run ([\d,]+) \(([^;]*); dbtools' own ([\d,]+)\), "
    r"which explain at most ([\d,]+) "
)


@pytest.mark.parametrize("transactions", [True, False], ids=["explicit", "autocommit"])
def test_tracking_off_for_90_percent_of_a_window_is_untrusted_with_both_figures(
    migrated_database: Database, server_track: Callable[[str | None], None], transactions: bool
) -> None:
    """The issue's case: 30 queries per request throughout; the candidate's counters read 3
    (a "90% reduction") because tracking was off for 90 of its 100 requests. The settings are
    the same at both ends; the database committed ten times the transactions
    pg_stat_statements saw begin (or, autocommit, ten times its statements)."""
    db = migrated_database
    _window(db, "before", 100, statements=THIRTY, transactions=transactions)
    _mostly_untracked(db, "after", server_track, transactions=transactions)
    result = _verify(db)
    assert result.baseline.trusted, result.baseline.problems  # honest explicit transactions
    assert result.candidate.queries_per_request == pytest.approx(3.0, abs=0.05)
    (problem,) = [p for p in result.candidate.problems if p.startswith("statements missing")]
    match = MISSING.match(problem)
    assert match, problem
    committed, seen = (int(match.group(i).replace(",", "")) for i in (1, 2))
    assert committed >= 100 * (1 if transactions else 30)
    if transactions:
        assert seen == 10 and match.group(3).endswith(" 10 BEGIN")
    else:
        # its 300 statements, and the test's few (ALTER SYSTEM, pg_reload_conf(), SHOW)
        assert 10 * 30 <= seen <= 10 * 30 + 10
    assert result.verdict == "fail"
    assert {f.status for f in result.findings if f.check == "query_reduction"} == {"untrusted"}


def test_tracking_off_at_a_collected_sample_inside_a_window_is_untrusted(
    migrated_database: Database, server_track: Callable[[str | None], None]
) -> None:
    """With ``dbtools collect`` running, the sample taken while tracking was off shows it: the
    window across it is untrusted by its settings, naming the samples."""
    db = migrated_database
    with Collector([Target(db.name, db.dsn)], interval_s=60) as collector:
        collector.open_all()
        _mostly_untracked(db, "after", server_track, transactions=True,
                          sample=lambda: collector.run(rounds=1))  # fmt: skip
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        (window,) = stored_windows(conn, "after")
        (measured,) = stored_measures(conn, "after")
    assert len(window.inside) == 1
    settings = [p for p in measured.problems if "pg_stat_statements.track" in p]
    assert settings[0].startswith(
        "pg_stat_statements settings changed inside the window: pg_stat_statements.track = "
        "none (was all) (between the samples at "
    )
    assert any(p.startswith("pg_stat_statements.track = none server-wide: statements are not "
                            "counted (between the samples at ") for p in settings)  # fmt: skip


def test_a_transient_per_role_setting_at_a_sample_is_untrusted(
    migrated_database: Database, app_role: str
) -> None:
    """ALTER ROLE … SET pg_stat_statements.track = none, then RESET, inside the window: the
    collected sample between records it."""
    db = migrated_database
    start, end = window_labels("after")
    take(db, start)
    db.execute(f"ALTER ROLE {app_role} IN DATABASE {db.name} SET pg_stat_statements.track = none")
    run_requests(db, 20, user=app_role)
    with Collector([Target(db.name, db.dsn)], interval_s=60) as collector:
        collector.open_all()
        collector.run(rounds=1)
    db.execute(f"ALTER ROLE {app_role} IN DATABASE {db.name} RESET pg_stat_statements.track")
    run_requests(db, 5, user=app_role)
    take(db, end, 25)
    _window(db, "before", 25)
    result = verify_candidate(db.dsn, "before", "after", thresholds=RELAXED)
    expected = (f"pg_stat_statements.track = none for role {app_role} in database {db.name}: "
                "its statements are not counted (between the samples at ")  # fmt: skip
    assert any(p.startswith(expected) for p in result.baseline.problems) is False
    assert any(p.startswith(expected) for p in result.candidate.problems), result.candidate.problems


# -- what happened, never a negative count (issue 22, point 9) ----------------------------------

NEGATIVE = re.compile(r"(?<![\w.])[-−]\d")


def test_a_reset_inside_a_window_says_so_without_negative_counts(
    migrated_database: Database,
) -> None:
    db = migrated_database
    _window(db, "before", 10)
    _probe(db, 500)  # counters to lose
    _window(db, "after", 10, batch=10,
            during=lambda: db.execute("SELECT pg_stat_statements_reset()"))  # fmt: skip
    result = _verify(db)
    problems = result.candidate.problems
    assert "pg_stat_statements was reset inside the window (stats_reset changed)" in problems
    assert not [p for p in problems if NEGATIVE.search(p)], problems
    assert not any(p.startswith("statements missing") for p in problems), problems
    assert result.verdict == "fail"
    for text in (render_table(result), json.dumps(result.as_dict())):
        assert not NEGATIVE.search(text.replace("-> ", "")), text
