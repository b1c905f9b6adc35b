"""The report's contents: its sections in order, those with nothing to say for it left out.

The opening (verify's verdict, what replaced what, the summary) is built here from the report;
then each registered subject's sections (``report.subjects``), in the order of their ``place``:
the statistics' (statements, lookups, families, health) from the report, the timelines, the
statements' costs, then those read from the database, each from its own model when it was read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbtools.figures.measures import (
    P95_DEFINITION,
    P95_NAME,
    RATIO_DEFINITIONS,
    WORST_SECOND_DEFINITION,
    WORST_SECOND_NAME,
)
from dbtools.output import NO_VALUE, byte_size, number, percent
from dbtools.report.model import (
    PeriodSummary,
    Report,
    StatementWork,
)
from dbtools.report.sections import (
    CodeBlock,
    Section,
    before_after,
    moment,
    ms,
)
from dbtools.report.subjects import subjects


def _per_period(report: Report) -> bool:
    return len(report.periods) > 1


def _finding_status(status: str) -> str:
    return status if status == "pass" else status.upper()


def opening(report: Report) -> Section | None:
    """Verify's verdict on the two windows, the story in three sentences, the guide's headline
    figures with their thresholds and verify's status for each, then verify's other findings."""
    verification = report.verification
    if verification is None or len(report.periods) != 2:
        return None
    t = verification.thresholds
    status: dict[str, str] = {}
    for finding in verification.findings:  # the first finding of a check is its headline
        status.setdefault(finding.check, _finding_status(finding.status))
    before, after = report.periods

    def row(name: str, value: Callable[[PeriodSummary], str], threshold: str = "",
            check: str = "") -> list[str]:  # fmt: skip
        return [name, value(before), value(after), threshold, status.get(check, "")]

    rows = [
        row("queries per request", lambda p: number(p.queries_per_request)),
        ["query reduction", "", percent(report.query_reduction),
         f">= {percent(t.min_query_reduction)}", status.get("query_reduction", "")],
        row("app cache hit ratio", lambda p: percent(p.app_cache_hit_ratio),
            f">= {percent(t.min_cache_hit_ratio)} (warning < {percent(t.warning_cache_hit_ratio)}"
            f", rollback < {percent(t.rollback_cache_hit_ratio)})", "app_cache_hit_ratio"),
        row(P95_NAME, lambda p: p.p95_text,
            f"< {t.max_p95_ms:g} ms (critical > {t.critical_p95_ms:g} ms, rollback > "
            f"{t.rollback_p95_ms:g} ms)", "p95_latency"),
        row("error rate", lambda p: percent(p.error_rate),
            f"< {percent(t.max_error_rate)} (critical > {percent(t.critical_error_rate)}, "
            f"rollback > {percent(t.rollback_error_rate)})", "error_rate"),
        row("query rate", lambda p: number(p.query_rate, 1, unit="/s"),
            f"critical > {t.critical_query_rate:g}/s", "query_rate"),
        row("queries (application)", lambda p: f"{p.queries:,}"),
    ]  # fmt: skip
    headline = {"query_reduction", "app_cache_hit_ratio", "p95_latency", "error_rate",
                "query_rate"}  # fmt: skip
    bullets = [
        f"{f.check} {_finding_status(f.status)}: {f.subject}: {f.message}"
        for f in verification.findings
        if f.check not in headline and f.status not in ("pass", "info", "skipped")
    ]
    passed: dict[str, int] = {}
    for f in verification.findings:
        if f.check not in headline and f.status == "pass":
            passed[f.check] = passed.get(f.check, 0) + 1
    if passed:
        listed = ", ".join(f"{check} ({count})" if count > 1 else check
                           for check, count in passed.items())  # fmt: skip
        bullets.append(f"passed: {listed}")
    return Section(
        "opening",
        f"Verdict: {verification.verdict.upper()} (exit code {verification.exit_code})",
        " ".join(report.story),
        ["figure", before.name, after.name, "threshold", "verify"],
        rows,
        bullets=bullets,
    )


def _planning(work: StatementWork, calls: int) -> str:
    if work.plans == 0 and calls:
        return "not recorded (pg_stat_statements.track_planning is off)"
    return f"{work.plan_time_ms:,.1f} ms ({work.plans:,} plans)"


def _io_time(work: StatementWork) -> str:
    moved = work.shared_blks_read + work.shared_blks_written
    if moved and not (work.blk_read_time_ms or work.blk_write_time_ms):
        return "not recorded (track_io_timing is off)"
    return f"read {work.blk_read_time_ms:,.1f} ms, write {work.blk_write_time_ms:,.1f} ms"


def summary(report: Report) -> Section:
    def row(name: str, value: Callable[[PeriodSummary], str]) -> list[str]:
        return [name, *(value(p) for p in report.periods)]

    rows = [
        row("window", lambda p: p.label),
        row("from", lambda p: moment(p.started_at) if p.started_at else "statistics reset"),
        row("to", lambda p: moment(p.ended_at)),
        row("duration", lambda p: number(p.seconds, 1, unit=" s")),
        row("requests", lambda p: NO_VALUE if p.requests is None
            else f"{p.requests:,} ({p.requests_source})"),
        row("queries (application)", lambda p: f"{p.queries:,}"),
        row("queries per request", lambda p: number(p.queries_per_request)),
        row("query rate", lambda p: number(p.query_rate, 1, unit="/s")),
        row("statement calls (all)", lambda p: f"{p.calls:,}"),
        row("execution time (top level)", lambda p: f"{p.work.exec_time_ms:,.1f} ms"),
        row("planning time", lambda p: _planning(p.work, p.calls)),
        row("temp blocks", lambda p: f"{p.work.temp_blks_read:,} read, "
            f"{p.work.temp_blks_written:,} written"),
        row("WAL", lambda p: f"{p.work.wal_records:,} records, {byte_size(p.work.wal_bytes)}"),
        row("I/O time", lambda p: _io_time(p.work)),
        row("buffer cache hit ratio (app statements)", lambda p: percent(p.buffer_cache_hit_ratio)),
        row("index hit ratio (app indexes)", lambda p: percent(p.index_hit_ratio)),
        row("table hit ratio", lambda p: percent(p.table_hit_ratio)),
        row("app cache hit ratio", lambda p: percent(p.app_cache_hit_ratio)),
        row(P95_NAME, lambda p: p.p95_text),
        row(WORST_SECOND_NAME, lambda p: number(p.p95_worst_second_ms, 1, unit=" ms")),
        row("error rate", lambda p: percent(p.error_rate)),
        row("trusted", lambda p: "yes" if not p.problems else "NO: " + "; ".join(p.problems)),
    ]  # fmt: skip
    intro = (
        "What each period measured; ratios come from the deltas of the counters. Execution "
        "time, planning, temp blocks, WAL and I/O time add up pg_stat_statements' top-level "
        "statements (each includes what it ran inside). Buffer cache hit ratio: "
        f"{RATIO_DEFINITIONS['buffer_cache_hit_ratio']} (dbtools' own work left out). Index hit "
        f"ratio: {RATIO_DEFINITIONS['index_hit_ratio']}. "
        f"{P95_NAME[0].upper() + P95_NAME[1:]}: {P95_DEFINITION}; {WORST_SECOND_NAME}: "
        f"{WORST_SECOND_DEFINITION}."
    )
    if report.query_reduction is not None:
        intro += f" Queries per request fell by {percent(report.query_reduction)}."
    return Section(
        "summary", "Summary", intro, ["measure", *(p.name for p in report.periods)], rows
    )


def _families_cell(fingerprints: tuple[str, ...], same: bool) -> str:
    if same:
        return "the same"
    return ", ".join(fingerprints) or NO_VALUE


def changes(report: Report) -> Section | None:
    """What replaced what: one line per pair (or family that fell or rose with no partner)."""
    if len(report.periods) != 2:
        return None
    before, after = report.period_names
    rows, code = [], []
    shown: set[str] = set()
    for line in report.changes:
        b, a = line.figures[before], line.figures[after]
        same = line.before == line.after
        rows.append([
            line.change, _families_cell(line.before, False),
            _families_cell(line.after, same and bool(line.after)), line.kind,
            ", ".join(line.tables) or NO_VALUE,
            before_after(f"{b.calls:,}", f"{a.calls:,}"),
            before_after(number(b.calls_per_request), number(a.calls_per_request)),
            before_after(ms(b.total_time_ms), ms(a.total_time_ms)),
        ])  # fmt: skip
        for fingerprint in line.before + line.after:
            if fingerprint not in shown:
                shown.add(fingerprint)
                code.append(CodeBlock(f"{fingerprint}: {line.kind}", line.sql[fingerprint]))
    return Section(
        "changes",
        "What replaced what",
        f"Statement families the application sends (top level) whose calls per request (calls, "
        f"without a request count) fell or rose by more than "
        f"{percent(report.rules.min_family_change, 0)} from {before} to {after}. A family that fell is paired with those that rose on the same tables and "
        "columns (a lookup and its = ANY($n) form, an insert per row and its multi-row form): "
        "'replaced'. Unpaired, one that fell is the same statement sent less often ('fewer "
        "calls') or 'gone'; one that rose is 'new' or 'grew'. Calls, calls per request and "
        "execution time are the line's families together, before → after.",
        ["change", f"families ({before})", f"families ({after})", "kind", "tables", "calls",
         "calls/request", "time ms"],
        rows,
        code,
        empty="No family's calls per request changed by more than "
        f"{percent(report.rules.min_family_change, 0)}.",
    )  # fmt: skip


OPENING: tuple[Callable[[Report], Section | None], ...] = (opening, changes, summary)


def sections(report: Report) -> list[Section]:
    """The report's sections, in order: the opening, then each subject's (those of the windows
    from the report, the others from their model, when read) in the order of their place."""
    placed: list[tuple[int, Callable[[Any], Section | None], Any]] = []
    for subject in subjects():
        shown = report if subject.fields else report.inspected.get(subject.key)
        if shown is None:
            continue
        placed += [(place, build, shown) for place, build in subject.placed()]
    placed.sort(key=lambda item: item[0])  # stable: the registry's order within a place
    found = [build(report) for build in OPENING] + [build(shown) for _, build, shown in placed]
    return [section for section in found if section is not None]
