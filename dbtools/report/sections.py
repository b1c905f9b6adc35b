"""The report's sections as plain tables of text, shared by the Markdown and HTML renderers.

Each section is a title, a sentence saying what it shows, a table (headers and rows of strings)
and code blocks (full query texts, suggested statements). The renderers only lay them out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dbtools.findings import Finding
from dbtools.output import NO_VALUE, byte_size, number, percent, signed_percent
from dbtools.report.model import (
    Change,
    FamilyFigures,
    FamilyLine,
    PeriodSummary,
    Report,
    StatementFigures,
)
from dbtools.stats.measures import RATIO_DEFINITIONS

SHORT_SQL = 72


@dataclass(frozen=True)
class CodeBlock:
    label: str
    text: str


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]]
    code: list[CodeBlock] = field(default_factory=list)
    empty: str = "Nothing to show."


# -- formatting ----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value:,.3f}"


def moment(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def one_line(text: str, width: int = SHORT_SQL) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def change_text(change: Change | None) -> str:
    if change is None:
        return NO_VALUE
    if change.status != "changed":
        return change.status
    return f"calls {signed_percent(change.calls)}, time {signed_percent(change.total_time)}"


# -- sections ------------------------------------------------------------------------------------


def _per_period(report: Report) -> bool:
    return len(report.periods) > 1


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
        row("execution time", lambda p: f"{p.total_time_ms:,.1f} ms"),
        row("buffer cache hit ratio (app statements)", lambda p: percent(p.buffer_cache_hit_ratio)),
        row("index hit ratio (app indexes)", lambda p: percent(p.index_hit_ratio)),
        row("table hit ratio", lambda p: percent(p.table_hit_ratio)),
        row("trusted", lambda p: "yes" if not p.problems else "NO: " + "; ".join(p.problems)),
    ]  # fmt: skip
    intro = (
        "What each period measured; ratios come from the deltas of the counters. Buffer cache "
        f"hit ratio: {RATIO_DEFINITIONS['buffer_cache_hit_ratio']} (dbtools' own work left out). "
        f"Index hit ratio: {RATIO_DEFINITIONS['index_hit_ratio']}."
    )
    if report.query_reduction is not None:
        intro += f" Queries per request fell by {percent(report.query_reduction)}."
    return Section(
        "summary", "Summary", intro, ["measure", *(p.name for p in report.periods)], rows
    )


def _statement_cells(figures: StatementFigures | None) -> list[str]:
    if figures is None:
        return ["0", NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE]
    return [
        f"{figures.calls:,}",
        ms(figures.total_time_ms),
        ms(figures.mean_time_ms),
        number(figures.rows_per_call),
        percent(figures.hit_ratio),
        percent(figures.share_of_time),
        number(figures.calls_per_request),
    ]


def top_statements(report: Report) -> Section:
    headers = ["#", "calls", "total ms", "mean ms", "rows/call", "hit ratio", "share of time",
               "calls/request"]  # fmt: skip
    compare = _per_period(report)
    if compare:
        headers[1:1] = ["period"]
        headers.append("change")
    rows, code = [], []
    for rank, line in enumerate(report.top_statements, 1):
        for i, name in enumerate(report.period_names):
            cells = _statement_cells(line.figures[name])
            label = str(rank) if i == 0 else ""
            if compare:
                change = change_text(line.change) if i == len(report.periods) - 1 else ""
                rows.append([label, name, *cells, change])
            else:
                rows.append([label, *cells])
        role = f", role {line.role}" if line.role else ""
        nested = "" if line.toplevel else ", nested"
        code.append(
            CodeBlock(f"#{rank}: {line.kind}, family {line.fingerprint}{role}{nested}", line.query)
        )
    return Section(
        "statements",
        "Statements that cost most",
        "Ranked by execution time; hit ratio is the shared-buffer hit ratio of the statement, "
        "share of time its part of all statements' execution time.",
        headers,
        rows,
        code,
    )


def _family_cells(figures: FamilyFigures | None) -> list[str]:
    if figures is None:
        return ["0", NO_VALUE, NO_VALUE, NO_VALUE]
    return [
        f"{figures.calls:,}",
        ms(figures.total_time_ms),
        percent(figures.share_of_time),
        number(figures.calls_per_request),
    ]


def _family_rows(report: Report, lines: Sequence[FamilyLine]) -> list[list[str]]:
    rows = []
    for line in lines:
        first = [line.fingerprint, line.kind, ", ".join(line.tables) or NO_VALUE]
        for i, name in enumerate(report.period_names):
            cells = _family_cells(line.figures[name])
            label = first if i == 0 else ["", "", ""]
            period = [name] if _per_period(report) else []
            rows.append([*label, *period, *cells, one_line(line.sql) if i == 0 else ""])
    return rows


def _family_headers(report: Report) -> list[str]:
    period = ["period"] if _per_period(report) else []
    return ["family", "kind", "tables", *period, "calls", "total ms", "share of time",
            "calls/request", "statement"]  # fmt: skip


def families(report: Report) -> Section:
    return Section(
        "families",
        "Query families",
        "Statements grouped by fingerprint (sqlglot: constants and placeholders made equal, "
        "IN lists, arrays and VALUES rows collapsed), heaviest first.",
        _family_headers(report),
        _family_rows(report, report.families),
    )


def n_plus_one(report: Report) -> Section:
    rows = []
    code = []
    for suspect in report.n_plus_one:
        first = [suspect.fingerprint, ", ".join(suspect.columns), ", ".join(suspect.tables)]
        for i, name in enumerate(report.period_names):
            figures = suspect.figures[name]
            label = first if i == 0 else ["", "", ""]
            period = [name] if _per_period(report) else []
            calls = f"{figures.calls:,}" if figures else "0"
            per_request = number(figures.calls_per_request) if figures else NO_VALUE
            seen = (suspect.batched_family or "not seen") if i == 0 else ""
            rows.append([*label, *period, calls, per_request, seen])
        code.append(CodeBlock(f"{suspect.fingerprint}: point lookup", suspect.sql))
        code.append(CodeBlock(f"{suspect.fingerprint}: batched form", suspect.batched_sql))
    period = ["period"] if _per_period(report) else []
    return Section(
        "n-plus-one",
        "N+1 suspects",
        "Point lookups (column = $n) sent once or more per request: one statement with "
        "column = ANY($n) could serve a whole batch. 'batched form' names its family when it "
        "runs too.",
        ["family", "lookup", "tables", *period, "calls", "calls/request", "batched form"],
        rows,
        code,
        empty="No point lookup is called once or more per request.",
    )


def unparsed(report: Report) -> Section:
    return Section(
        "unparsed",
        "Statements sqlglot cannot parse",
        "Listed verbatim (literals scrubbed), never dropped.",
        _family_headers(report),
        _family_rows(report, report.unparsed),
        [CodeBlock(f"{line.fingerprint}: {line.kind}", line.sql) for line in report.unparsed],
        empty="Every statement was parsed.",
    )


def table_hit_ratios(report: Report) -> Section:
    rows = []
    for line in report.table_hit_ratios:
        for i, name in enumerate(report.period_names):
            f = line.figures[name]
            period = [name] if _per_period(report) else []
            rows.append([line.table if i == 0 else "", *period, percent(f.heap_hit_ratio),
                         f"{f.heap_blocks_read:,}", percent(f.index_hit_ratio),
                         f"{f.index_blocks_read:,}"])  # fmt: skip
    period = ["period"] if _per_period(report) else []
    return Section(
        "hit-ratios",
        "Hit ratios per table",
        "hit / (hit + read) of pg_statio_user_tables, per table: heap blocks and its indexes' "
        "blocks.",
        [
            "table",
            *period,
            "heap hit ratio",
            "heap blocks read",
            "index hit ratio",
            "index blocks read",
        ],
        rows,
    )


def indexes(report: Report) -> Section:
    rows = [
        [line.index, line.table, "yes" if line.valid else "NO", "yes" if line.unique else "",
         byte_size(line.size_bytes), f"{line.total_scans:,}",
         *(number(line.scans[n]) for n in report.period_names)]
        for line in report.indexes
    ]  # fmt: skip
    return Section(
        "indexes",
        "Indexes",
        "Scans since the statistics were reset, and in each period.",
        [
            "index",
            "table",
            "valid",
            "unique",
            "size",
            "scans (total)",
            *(f"scans ({n})" for n in report.period_names),
        ],
        rows,
    )


def _findings(id: str, title: str, intro: str, findings: Sequence[Finding]) -> Section:
    return Section(
        id,
        title,
        intro,
        ["status", "check", "subject", "finding", "fix"],
        [[f.status, f.check, f.subject, f.message, f.fix] for f in findings],
        empty="No findings.",
    )


def index_health(report: Report) -> Section:
    return _findings(
        "index-health",
        "Index health",
        "Invalid, unused (unique, primary-key and FK-backing indexes left out), duplicate and "
        "overlapping indexes, foreign keys without an index, large tables read by sequential "
        "scans.",
        report.index_health,
    )


def autovacuum(report: Report) -> Section:
    rows = [
        [line.table, f"{line.live_tuples:,}", f"{line.dead_tuples:,}", percent(line.dead_ratio),
         moment(line.last_vacuum), moment(line.last_autovacuum), moment(line.last_analyze),
         moment(line.last_autoanalyze), number(line.xid_age),
         ", ".join(f"{k}={v}" for k, v in line.settings.items()) or NO_VALUE, line.expected]
        for line in report.autovacuum
    ]  # fmt: skip
    return Section(
        "autovacuum",
        "Autovacuum",
        "Dead tuples, last (auto)vacuum and (auto)analyze, transaction-ID age and the table's "
        "settings against those the migrations declare.",
        [
            "table",
            "live",
            "dead",
            "dead %",
            "last vacuum",
            "last autovacuum",
            "last analyze",
            "last autoanalyze",
            "xid age",
            "settings",
            "expected settings",
        ],
        rows,
    )


def autovacuum_health(report: Report) -> Section:
    return _findings(
        "autovacuum-health",
        "Autovacuum health",
        "Dead tuples past the autovacuum trigger, stale statistics, settings, transaction-ID age.",
        report.autovacuum_health,
    )


SECTIONS: tuple[Callable[[Report], Section], ...] = (
    summary,
    top_statements,
    n_plus_one,
    families,
    unparsed,
    table_hit_ratios,
    indexes,
    index_health,
    autovacuum,
    autovacuum_health,
)


def sections(report: Report) -> list[Section]:
    return [build(report) for build in SECTIONS]
