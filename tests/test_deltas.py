"""Window deltas and a window's figures without a database (``dbtools.figures.deltas`` and
``dbtools.figures.measures``), from in-memory snapshots (``tests.factories``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dbtools.figures.deltas import delta_rows, statement_deltas, statement_key
from dbtools.figures.measures import measure_window, query_reduction
from dbtools.figures.sums import Scope, count_statements
from dbtools.figures.windows import Window
from dbtools.sqltext.parse import TableRef
from tests.factories import (
    T0,
    database,
    index,
    simple_window,
    snapshot,
    statement,
    totals,
    window,
)

LATER = T0 + timedelta(seconds=10)


def test_counters_are_subtracted_and_the_rest_taken_from_the_end() -> None:
    start = statement(1, 10, rows=100, shared_blks_hit=50, total_exec_time=2.5)
    end = statement(1, 25, rows=130, shared_blks_hit=80, total_exec_time=4.0,
                    query="SELECT the end's text")  # fmt: skip
    deltas = delta_rows([start], [end], statement_key)
    (row,) = deltas.rows
    assert (row.calls, row.rows, row.shared_blks_hit, row.total_exec_time) == (15, 30, 30, 1.5)
    assert row.query == "SELECT the end's text"
    assert deltas.reset == deltas.vanished == ()


def test_a_new_entry_keeps_its_counts_and_a_missing_one_vanished() -> None:
    gone, new = statement(1, 10), statement(2, 7)
    deltas = delta_rows([gone], [new], statement_key)
    assert [(r.queryid, r.calls) for r in deltas.rows] == [(2, 7)]
    assert deltas.vanished == (gone,) and deltas.reset == ()


def test_a_counter_that_went_down_is_a_reset_counted_from_zero() -> None:
    deltas = delta_rows([statement(1, 50)], [statement(1, 8)], statement_key)
    assert [r.calls for r in deltas.rows] == [8]
    assert [r.calls for r in deltas.reset] == [8]


def test_index_counters() -> None:
    deltas = delta_rows([index("ix", 5, idx_blks_hit=10)], [index("ix", 12, idx_blks_hit=25)],
                        lambda row: row.indexrelid)  # fmt: skip
    assert [(r.idx_scan, r.idx_blks_hit) for r in deltas.rows] == [(7, 15)]


@pytest.mark.parametrize(
    ("start_since", "end_since", "new", "reset"),
    [
        (T0, T0, False, False),  # the same entry, counting since before the window
        (T0 - timedelta(hours=1), T0 + timedelta(seconds=5), False, True),  # restarted
        (None, LATER, True, False),  # new inside the window
        (None, T0 - timedelta(seconds=1), True, True),  # new to us, but counting from before
    ],
)
def test_stats_since_reveals_resets_on_1_11(
    start_since: object, end_since: object, new: bool, reset: bool
) -> None:
    start = snapshot(T0, () if new else (statement(1, 10, stats_since=start_since),))
    end = snapshot(LATER, (statement(1, 15, stats_since=end_since),))
    deltas = statement_deltas(start, end)
    assert bool(deltas.reset) is reset


APP, TX, NESTED = (
    statement(1, 40, "SELECT * FROM trip_requests WHERE id = $1"),
    statement(2, 9, "COMMIT"),
    statement(3, 5, "SELECT * FROM flight_offers WHERE id = $1", toplevel=False),
)
OTHER_ROLE = statement(4, 3, "SELECT * FROM flight_offers WHERE id = $1", rolname="batch",
                       userid=1)  # fmt: skip
IDLE = statement(5, 0, "SELECT 1")


def test_statements_split_into_queries_transaction_control_and_nested() -> None:
    counts = count_statements([APP, TX, NESTED, OTHER_ROLE, IDLE], Scope())
    assert (counts.queries, counts.statements) == (43, 2)
    assert (counts.transaction_calls, counts.nested_calls) == (9, 5)


@pytest.mark.parametrize(
    ("scope", "queries"),
    [
        (Scope(roles=frozenset({"batch"})), 3),
        (Scope(tables=frozenset({TableRef.parse("trip_requests")})), 40),
        (Scope(roles=frozenset({"app"}), tables=frozenset({TableRef.parse("flight_offers")})), 0),
    ],
)
def test_scope_narrows_what_counts(scope: Scope, queries: int) -> None:
    assert count_statements([APP, TX, NESTED, OTHER_ROLE], scope).queries == queries


def _measured(w: Window) -> dict[str, object]:
    m = measure_window(w)
    return {"requests": m.requests, "source": m.requests_source, "qpr": m.queries_per_request,
            "rate": m.query_rate, "problems": m.problems}  # fmt: skip


def test_requests_come_from_the_load_tool_first_then_the_metrics() -> None:
    from_metrics = simple_window(queries=300, requests=100, seconds=10)
    assert _measured(from_metrics) == {"requests": 100, "source": "request_metrics", "qpr": 3.0,
                                       "rate": 30.0, "problems": ()}  # fmt: skip
    given = simple_window(queries=300, requests=100, seconds=10, end_overrides={"requests": 150})
    assert _measured(given)["requests"] == 150 and _measured(given)["source"] == "--requests-served"
    assert _measured(given)["qpr"] == 2.0


def test_no_requests_is_no_data_and_untrusted() -> None:
    none = simple_window(queries=300, requests=0)
    measured = _measured(none)
    assert (measured["requests"], measured["source"], measured["qpr"]) == (None, "none", None)
    assert measured["problems"] == (
        "zero requests in the window (no --requests-served and no request_metrics buckets inside it)",
    )
    zero = simple_window(queries=300, requests=0, metrics=totals(0, buckets=2))
    assert _measured(zero)["problems"] == ("zero requests in the window",)


def test_hit_ratios_come_from_the_deltas_and_leave_the_monitoring_schema_out() -> None:
    """The buffer cache hit ratio is the application's statements' (pg_stat_statements), not
    the database's (its counters include dbtools' own snapshots); nested statements' blocks are
    in their top-level statement's already."""
    nested: dict[str, Any] = {"toplevel": False}
    start = snapshot(T0, (statement(1, 0), statement(2, 0, **nested)),
                     db=database(blks_hit=1000, blks_read=500),
                     indexes=(index("ix_app", 0, idx_blks_hit=100, idx_blks_read=100),
                              index("ix_mon", 0, "perf_monitoring", idx_blks_hit=0)))  # fmt: skip
    end = snapshot(LATER, (statement(1, 30, shared_blks_hit=900, shared_blks_read=100),
                           statement(2, 30, shared_blks_hit=0, shared_blks_read=500, **nested)),
                   db=database(blks_hit=1100, blks_read=600),
                   indexes=(index("ix_app", 4, idx_blks_hit=175, idx_blks_read=125),
                            index("ix_mon", 9, "perf_monitoring", idx_blks_hit=5000)))  # fmt: skip
    measured = measure_window(window(start, end, totals(10)))
    assert measured.buffer_cache_hit_ratio == pytest.approx(900 / 1000)
    assert measured.index_hit_ratio == pytest.approx(75 / 100)
    assert measured.index_scans == {"public.ix_app": 4, "perf_monitoring.ix_mon": 9}


def test_no_block_traffic_is_no_data_never_zero_or_one() -> None:
    measured = measure_window(simple_window(queries=3, requests=1))
    assert measured.buffer_cache_hit_ratio is None and measured.index_hit_ratio is None


def test_request_metrics_give_the_cache_ratio_p95_and_error_rate() -> None:
    w = simple_window(queries=3, requests=1,
                      metrics=totals(200, errors=3, cache_hits=70, cache_misses=30, p95_ms=42.5))  # fmt: skip
    m = measure_window(w)
    assert (m.app_cache_hit_ratio, m.p95_ms, m.error_rate) == (0.7, 42.5, 0.015)


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        ({}, {"server_started_at": LATER}, "the server restarted inside the window"),
        ({}, {"pgss_stats_reset": LATER}, "pg_stat_statements was reset inside the window"),
        ({"pgss_dealloc": 1}, {"pgss_dealloc": 4}, "evicted entries 3 time(s)"),
        ({}, {"database_oid": 9, "database_name": "b"}, "snapshots from different databases"),
        ({"hidden_calls": 2}, {"hidden_calls": 5}, "3 calls came from statements this role"),
    ],
)
def test_why_a_window_cannot_be_trusted(
    start: dict[str, object], end: dict[str, object], problem: str
) -> None:
    w = simple_window(queries=3, requests=1, start_overrides=start, end_overrides=end)
    problems = measure_window(w).problems
    assert len(problems) == 1 and problem in problems[0]


def test_resets_of_statements_tables_and_the_database_are_problems() -> None:
    start = snapshot(T0, (statement(1, 50),), db=database(stats_reset=T0),
                     indexes=(index("ix", 9),))  # fmt: skip
    end = snapshot(LATER, (statement(1, 5),), db=database(stats_reset=LATER),
                   indexes=(index("ix", 2),))  # fmt: skip
    assert measure_window(window(start, end, totals(10))).problems == (
        "1 statement entries were reset or evicted inside the window",
        "database statistics were reset inside the window (pg_stat_reset)",
        "table or index statistics were reset inside the window",
    )


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [((300, 100), (30, 100), 0.9), ((0, 100), (30, 100), None), ((300, 0), (30, 100), None),
     ((300, 100), (30, 0), None), ((300, 100), (600, 100), -1.0)],
)  # fmt: skip
def test_query_reduction(
    before: tuple[int, int], after: tuple[int, int], expected: float | None
) -> None:
    b = measure_window(simple_window("b", queries=before[0], requests=before[1]))
    c = measure_window(simple_window("c", queries=after[0], requests=after[1]))
    assert query_reduction(b, c) == (pytest.approx(expected) if expected is not None else None)
