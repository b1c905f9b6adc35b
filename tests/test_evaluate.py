"""``verify.evaluate()`` without a database: every threshold of the rollout guide on both sides of
its boundary, untrusted windows and missing data, built from in-memory windows
(``tests.factories``). The real-database tests (``test_verify.py``) prove the windows' figures;
these prove what verify decides from them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from dbtools.errors import ConfigError
from dbtools.figures.requests import RequestTotals
from dbtools.figures.windows import Window
from dbtools.verify import VerifyResult
from dbtools.verify.live import IndexState
from dbtools.verify.thresholds import Thresholds
from tests.factories import (
    SERVER_STARTED,
    T0,
    healthy_live_state,
    judge_windows,
    simple_window,
    totals,
    with_index_scans,
)
from tests.helpers import check_golden

# The baseline: 3 queries per request (300 queries, 100 requests), as on the per-request path.
BASELINE = simple_window("baseline", queries=300, requests=100)
# The candidate's defaults pass every check: 0.3 queries per request (90% fewer), 50% cache
# hits, p95 100 ms, no errors, 5 queries/s.
REQUESTS = 1000


def candidate(
    queries: int = 300,
    seconds: float = 60.0,
    metrics: RequestTotals | None = None,
    **window: Any,
) -> Window:
    metrics = metrics or totals(REQUESTS, cache_hits=500, cache_misses=500, p95_ms=100.0)
    made = simple_window("candidate", queries=queries, requests=REQUESTS, seconds=seconds,
                         metrics=metrics, **window)  # fmt: skip
    return with_index_scans(made)


def judge(baseline: Window = BASELINE, cand: Window | None = None, **kwargs: Any) -> VerifyResult:
    live = kwargs.pop("live", healthy_live_state())
    return judge_windows(baseline, cand or candidate(), live, **kwargs)


def statuses(result: VerifyResult) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in result.findings:
        found.setdefault(finding.check, set()).add(finding.status)
    return found


def not_passing(result: VerifyResult) -> dict[str, set[str]]:
    return {check: s for check, s in statuses(result).items() if s != {"pass"}}


def test_the_guide_scenario_passes_every_check() -> None:
    result = judge()
    assert not_passing(result) == {}
    assert result.reduction == pytest.approx(0.9)
    assert (result.verdict, result.exit_code) == ("pass", 0)
    assert {f.check for f in result.findings} == {
        "window", "query_reduction", "work_per_request", "app_cache_hit_ratio", "p95_latency",
        "error_rate",
        "query_rate", "schema_at_head", "batch_indexes", "autovacuum_settings",
        "monitoring_tables",
    }  # fmt: skip


def _metrics(**given: Any) -> RequestTotals:
    values: dict[str, Any] = {"cache_hits": 500, "cache_misses": 500, "p95_ms": 100.0}
    return totals(REQUESTS, **{**values, **given})


# (candidate, the one check that is not a pass (None: none), its status, exit code, message part)
BOUNDARIES: dict[str, tuple[Window, str | None, str, int, str]] = {
    # query reduction >= 85%: 3 -> 0.45 queries per request is exactly 85%
    "reduction 85% passes": (candidate(queries=450), None, "pass", 0, ""),
    "reduction 84.97% fails": (candidate(queries=451), "query_reduction", "fail", 1,
                               "3.00 -> 0.45 queries per request: 84.97% fewer"),
    # app cache hit ratio: >= 40% passes, below 30% the warning alert, below 20% rollback
    "cache 40% passes": (candidate(metrics=_metrics(cache_hits=400, cache_misses=600)),
                         None, "pass", 0, ""),
    "cache 39.9% fails": (candidate(metrics=_metrics(cache_hits=399, cache_misses=601)),
                          "app_cache_hit_ratio", "fail", 1, "39.9% (>= 40.0%)"),
    "cache 30% fails": (candidate(metrics=_metrics(cache_hits=300, cache_misses=700)),
                        "app_cache_hit_ratio", "fail", 1, "30.0% (>= 40.0%)"),
    "cache 29.9% warns": (candidate(metrics=_metrics(cache_hits=299, cache_misses=701)),
                          "app_cache_hit_ratio", "fail", 1, "warning alert below 30.0%"),
    "cache 20% warns": (candidate(metrics=_metrics(cache_hits=200, cache_misses=800)),
                        "app_cache_hit_ratio", "fail", 1, "20.0% (warning alert below 30.0%)"),
    "cache 19.9% rolls back": (candidate(metrics=_metrics(cache_hits=199, cache_misses=801)),
                               "app_cache_hit_ratio", "rollback", 3, "rollback below 20.0%"),
    # p95: < 300 ms passes, above 500 ms critical, above 1000 ms rollback
    "p95 299.9 ms passes": (candidate(metrics=_metrics(p95_ms=299.9)), None, "pass", 0, ""),
    "p95 300 ms fails": (candidate(metrics=_metrics(p95_ms=300.0)),
                         "p95_latency", "fail", 1, "300.0 ms (< 300 ms)"),
    "p95 500 ms fails": (candidate(metrics=_metrics(p95_ms=500.0)),
                         "p95_latency", "fail", 1, "500.0 ms (< 300 ms)"),
    "p95 500.1 ms is critical": (candidate(metrics=_metrics(p95_ms=500.1)),
                                 "p95_latency", "critical", 1, "critical above 500 ms"),
    "p95 1000 ms is critical": (candidate(metrics=_metrics(p95_ms=1000.0)),
                                "p95_latency", "critical", 1, "critical above 500 ms"),
    "p95 1000.1 ms rolls back": (candidate(metrics=_metrics(p95_ms=1000.1)),
                                 "p95_latency", "rollback", 3, "rollback above 1000 ms"),
    # error rate: < 1% passes, above 5% critical and rollback
    "errors 0.9% pass": (candidate(metrics=_metrics(errors=9)), None, "pass", 0, ""),
    "errors 1% fail": (candidate(metrics=_metrics(errors=10)),
                       "error_rate", "fail", 1, "1.0% (< 1.0%)"),
    "errors 5% fail": (candidate(metrics=_metrics(errors=50)),
                       "error_rate", "fail", 1, "5.0% (< 1.0%)"),
    "errors 5.1% roll back": (candidate(metrics=_metrics(errors=51)),
                              "error_rate", "rollback", 3, "rollback above 5.0%"),
    # query rate: 50/s passes, above it critical
    "50 queries/s pass": (candidate(seconds=6.0), None, "pass", 0, ""),
    "50.1 queries/s are critical": (candidate(seconds=5.99), "query_rate", "critical", 1,
                                    "50.1/s (critical above 50/s)"),
}  # fmt: skip


@pytest.mark.parametrize("case", BOUNDARIES)
def test_threshold_boundaries(case: str) -> None:
    window, check, status, exit_code, message = BOUNDARIES[case]
    result = judge(cand=window)
    assert not_passing(result) == ({check: {status}} if check else {})
    assert result.exit_code == exit_code
    if check:
        finding = next(f for f in result.findings if f.check == check)
        assert message in finding.message


def test_the_guide_figures_are_the_default_thresholds() -> None:
    t = Thresholds()
    assert (t.min_query_reduction, t.min_cache_hit_ratio, t.warning_cache_hit_ratio,
            t.rollback_cache_hit_ratio) == (0.85, 0.40, 0.30, 0.20)  # fmt: skip
    assert (t.max_p95_ms, t.critical_p95_ms, t.rollback_p95_ms) == (300, 500, 1000)
    assert (t.max_error_rate, t.critical_error_rate, t.rollback_error_rate) == (0.01, 0.05, 0.05)
    assert t.critical_query_rate == 50


UNTRUSTED = {
    "statistics reset": ({"pgss_stats_reset": T0}, "pg_stat_statements was reset"),
    "server restart": ({"server_started_at": T0}, "the server restarted inside the window"),
    "evictions": ({"pgss_dealloc": 2}, "evicted entries 2 time(s)"),
    "hidden calls": ({"hidden_calls": 7}, "7 calls came from statements this role cannot see"),
}


@pytest.mark.parametrize("case", UNTRUSTED)
def test_an_untrusted_candidate_never_passes(case: str) -> None:
    end, problem = UNTRUSTED[case]
    result = judge(cand=candidate(end_overrides=end))
    window = next(f for f in result.findings if f.check == "window" and f.subject == "candidate")
    assert window.status == "untrusted" and problem in window.message
    assert not_passing(result) == {
        "window": {"pass", "untrusted"},  # the baseline is fine
        "query_reduction": {"untrusted"},
        "work_per_request": {"untrusted"},
        "query_rate": {"untrusted"},
        "batch_indexes": {"untrusted"},
    }
    assert (result.verdict, result.exit_code) == ("fail", 1)


def test_an_untrusted_baseline_makes_the_reduction_untrusted() -> None:
    baseline = simple_window("baseline", queries=300, requests=100,
                             end_overrides={"pgss_stats_reset": T0 + timedelta(seconds=1)})  # fmt: skip
    result = judge(baseline=baseline)
    assert not_passing(result) == {"window": {"untrusted", "pass"},
                                   "query_reduction": {"untrusted"},
                                   "work_per_request": {"untrusted"}}  # fmt: skip
    assert result.exit_code == 1


def test_windows_of_different_databases_are_not_compared() -> None:
    other = candidate(start_overrides={"database_oid": 99, "database_name": "other"},
                      end_overrides={"database_oid": 99, "database_name": "other"})  # fmt: skip
    result = judge(cand=other)
    comparison = [f for f in result.findings if f.subject == "comparison"]
    assert [(f.status, f.message) for f in comparison] == [
        ("untrusted", "baseline and candidate come from different databases (app, other)")
    ]
    assert result.exit_code == 1


NO_DATA = {
    # no request metrics at all: no requests (untrusted window) and no figures to judge
    "no request metrics": (
        totals(0),
        {"window": {"pass", "untrusted"}, "query_reduction": {"untrusted"},
         "work_per_request": {"untrusted"}, "app_cache_hit_ratio": {"no data"}, "p95_latency": {"no data"},
         "error_rate": {"no data"}, "query_rate": {"untrusted"}, "batch_indexes": {"untrusted"}},
    ),
    "no cache hits or misses": (
        totals(REQUESTS, p95_ms=100.0), {"app_cache_hit_ratio": {"no data"}},
    ),
    "no latency": (
        totals(REQUESTS, cache_hits=500, cache_misses=500), {"p95_latency": {"no data"}},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", NO_DATA)
def test_missing_data_is_no_data_and_fails(case: str) -> None:
    metrics, expected = NO_DATA[case]
    result = judge(cand=candidate(metrics=metrics))
    assert not_passing(result) == expected
    assert (result.verdict, result.exit_code) == ("fail", 1)


def test_a_baseline_without_queries_gives_no_reduction() -> None:
    result = judge(baseline=simple_window("baseline", queries=0, requests=100))
    assert result.reduction is None
    assert not_passing(result) == {"query_reduction": {"no data"}}
    assert result.exit_code == 1


LIVE: dict[str, tuple[dict[str, Any], str, str]] = {
    "behind head": ({"alembic_revision": "0002"}, "schema_at_head", "at 0002, head is 0003"),
    "never migrated": ({"alembic_revision": None}, "schema_at_head", "never migrated"),
    "index invalid": (
        {"indexes": {**healthy_live_state().indexes,
                     "public.ix_flight_offers_trip_expiry": IndexState(False, True)}},
        "batch_indexes", "invalid: rebuild with REINDEX INDEX CONCURRENTLY",
    ),
    "index missing": (
        {"indexes": {name: state for name, state in healthy_live_state().indexes.items()
                     if name != "public.ix_flight_offers_trip_expiry"}},
        "batch_indexes", "missing",
    ),
    "setting reset": (
        {"table_options": {**healthy_live_state().table_options, "public.flight_offers": {}}},
        "autovacuum_settings", "(unset), expected",
    ),
    "monitoring table gone": (
        {"monitoring_tables": healthy_live_state().monitoring_tables - {"app_metrics"}},
        "monitoring_tables", "missing: app_metrics",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", LIVE)
def test_live_state_breakages_fail_by_name(case: str) -> None:
    overrides, check, message = LIVE[case]
    result = judge(live=healthy_live_state(**overrides))
    assert not_passing(result) == {check: {"pass", "fail"} if check in (
        "batch_indexes", "autovacuum_settings") else {"fail"}}  # fmt: skip
    assert any(message in f.message for f in result.findings if f.status == "fail")
    assert result.exit_code == 1


def test_an_unused_batch_index_fails() -> None:
    unused = simple_window("candidate", queries=300, requests=REQUESTS,
                           metrics=_metrics())  # fmt: skip
    result = judge(cand=with_index_scans(unused, scans=0))
    assert not_passing(result) == {"batch_indexes": {"fail"}}
    assert {f.message for f in result.findings if f.check == "batch_indexes"} == {
        "valid but unused: 0 scans in the candidate window"
    }


def test_skipped_checks_are_skipped_never_passed() -> None:
    result = judge(cand=candidate(metrics=_metrics(p95_ms=2000.0)),
                   thresholds=Thresholds(skip=("p95_latency",)))  # fmt: skip
    assert not_passing(result) == {"p95_latency": {"skipped"}}
    assert result.exit_code == 0


def test_skipping_an_unknown_check_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="skip names unknown check"):
        judge(thresholds=Thresholds(skip=("p99",)))


def test_configured_thresholds_move_the_boundaries() -> None:
    strict = Thresholds(min_query_reduction=0.95, max_p95_ms=50.0, critical_p95_ms=80.0)
    result = judge(thresholds=strict)
    assert not_passing(result) == {"query_reduction": {"fail"}, "p95_latency": {"critical"}}


def test_start_and_end_share_the_server_start() -> None:
    """The factory's windows are trustworthy unless a test breaks them (guards the factory)."""
    w = candidate()
    assert w.start.server_started_at == w.end.server_started_at == SERVER_STARTED
    assert w.seconds == 60.0


def test_the_renderings_golden() -> None:
    """verify's table for people and its JSON document, for a rollout that must roll back."""
    from dbtools.verify.render import render_table

    result = judge(cand=candidate(queries=451, metrics=_metrics(errors=51, p95_ms=120.5)))
    check_golden("verify_table.txt", render_table(result) + "\n")
    check_golden("verify.json", json.dumps(result.as_dict(), indent=2) + "\n")
