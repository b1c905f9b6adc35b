"""One rules vocabulary: check names come from the rule lists, one ``run_rules`` for verify,
health and lint, a rule cannot report another check's findings. Pure (no server)."""

from __future__ import annotations

import pytest

from dbtools.findings import STATUSES, Finding, Rule, check_names, rule, run_rules, worst_first
from dbtools.report import health
from dbtools.safety import lint
from dbtools.verify import rules as verify_rules


@rule("even")
def even(numbers: list[int]) -> list[Finding]:
    return [Finding("even", "pass" if n % 2 == 0 else "fail", str(n), "") for n in numbers]


@rule("positive")
def positive(numbers: list[int]) -> list[Finding]:
    return [Finding("positive", "warning", str(n), "", n, 0) for n in numbers if n <= 0]


RULES: tuple[Rule[list[int]], ...] = (even, positive)


def test_check_names_come_from_the_rule_list() -> None:
    assert check_names(RULES) == ("even", "positive")
    assert verify_rules.CHECK_NAMES == (
        "window", "query_reduction", "work_per_request", "app_cache_hit_ratio", "p95_latency",
        "error_rate",
        "query_rate", "schema_at_head", "batch_indexes", "autovacuum_settings",
        "monitoring_tables",
    )  # fmt: skip
    assert check_names(health.INDEX_RULES) == (
        "invalid_index", "unused_index", "rarely_used_index", "duplicate_index", "overlapping_index",
        "unindexed_foreign_key", "sequential_scans",
    )  # fmt: skip
    assert lint.CHECK_NAMES == (
        "table-rewrite", "destructive-statement", "timeout-ineffective",
        "autocommit-in-transaction", "blocking-ddl-in-do-block", "unclassified-statement",
    )  # fmt: skip


def test_a_rule_keeps_its_function_name_and_docstring() -> None:
    assert verify_rules.windows_trusted.check == "window"
    assert verify_rules.windows_trusted.__name__ == "windows_trusted"
    assert health.invalid_indexes.__doc__ is not None
    assert "failed concurrent build" in health.invalid_indexes.__doc__


def test_run_rules_keeps_the_rules_order_and_skips_by_check() -> None:
    found = run_rules(RULES, [2, 3, -4])
    assert [(f.check, f.status, f.subject) for f in found] == [
        ("even", "pass", "2"),
        ("even", "fail", "3"),
        ("even", "pass", "-4"),
        ("positive", "warning", "-4"),
    ]
    skipped = run_rules(RULES, [3, -1], skip={"positive"})
    assert [(f.check, f.status, f.value, f.because) for f in skipped] == [
        ("even", "fail", None, None),
        ("even", "fail", None, None),
        ("positive", "skipped", None, "named in skip"),
    ]


def test_a_rule_reporting_another_check_is_a_bug() -> None:
    @rule("mine")
    def stray(numbers: list[int]) -> list[Finding]:
        return [Finding("theirs", "pass", "x", "")]

    with pytest.raises(ValueError, match="rule mine returned findings of theirs"):
        run_rules([stray], [1])


def test_worst_first_orders_by_status_then_check_and_subject() -> None:
    shuffled = [Finding(c, s, subject, "") for s in reversed(STATUSES)
                for c, subject in (("b", "2"), ("a", "9"), ("a", "1"))]  # fmt: skip
    ordered = worst_first(shuffled)
    assert [f.status for f in ordered][::3] == list(STATUSES)
    assert [(f.check, f.subject) for f in ordered[:3]] == [("a", "1"), ("a", "9"), ("b", "2")]


def test_every_finding_has_the_same_json_keys() -> None:
    assert list(Finding("c", "pass", "s", "m").as_dict()) == [
        "check", "status", "subject", "message", "value", "threshold", "fix", "source",
        "location", "because",
    ]  # fmt: skip
