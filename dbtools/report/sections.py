"""The report's sections as plain tables of text, shared by the Markdown and HTML renderers.

Each section is a title, a sentence saying what it shows, a table (headers and rows of strings),
bullet points and code blocks (full query texts, suggested statements). The renderers only lay
them out. A section with nothing to say for this kind of report (the opening of a one-window
report) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dbtools.figures.measures import (
    P95_DEFINITION,
    P95_NAME,
    RATIO_DEFINITIONS,
    WORST_SECOND_DEFINITION,
    WORST_SECOND_NAME,
)
from dbtools.findings import Finding
from dbtools.output import NO_VALUE, byte_size, number, percent, signed_percent
from dbtools.report.activity import SessionLine
from dbtools.report.model import (
    Change,
    FamilyFigures,
    FamilyLine,
    LookupFigures,
    PeriodSummary,
    Report,
    StatementFigures,
    StatementWork,
)
from dbtools.report.plans import plan_text
from dbtools.report.timelines import StatementPoint, Timelines

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
    bullets: list[str] = field(default_factory=list)


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


def tables_text(tables: tuple[str, ...], shared: bool) -> str:
    """The tables an entry stands for; one entry for several (foreign-key checks on 18) says so."""
    if shared:
        return "several tables: " + ", ".join(tables) + (", …" if len(tables) == 1 else "")
    return ", ".join(tables) or NO_VALUE


def before_after(before: str, after: str) -> str:
    return f"{before} → {after}"


def change_text(change: Change | None) -> str:
    if change is None:
        return NO_VALUE
    if change.status != "changed":
        return change.status
    return f"calls {signed_percent(change.calls)}, time {signed_percent(change.total_time)}"


# -- sections ------------------------------------------------------------------------------------


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
        shared = f", {tables_text(line.tables, True)}" if line.shared_entry else ""
        code.append(CodeBlock(
            f"#{rank}: {line.kind}{shared}, family {line.fingerprint}{role}{nested}", line.query
        ))  # fmt: skip
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
        first = [line.fingerprint, line.kind, tables_text(line.tables, line.shared_entry)]
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
    limit = report.rules.n_plus_one.calls_per_request
    times = "once" if limit == 1 else f"{limit:g} times"
    return Section(
        "n-plus-one",
        "N+1 suspects: lookups each request sends",
        f"Point lookups (column = $n) sent {times} or more per request (without a "
        "request count: called often): the N+1 within a request; one statement with "
        "column = ANY($n) could serve the request's, or a batch's, lookups. 'batched form' "
        "names its family when it runs too. Lookups that requests send less often but at a "
        "high rate are under 'Batchable lookups'.",
        ["family", "lookup", "tables", *period, "calls", "calls/request", "batched form"],
        rows,
        code,
        empty=f"No point lookup is sent {times} or more per request.",
    )


def _saving_text(figures: LookupFigures) -> str:
    if not figures.fewer_calls:
        return NO_VALUE
    return " / ".join(f"{saving.fewer * 100:.0f}%" for saving in figures.fewer_calls)


def _batched_form(family: str | None, replaced_by: tuple[str, ...]) -> str:
    if family:
        return family
    if replaced_by:
        return f"{', '.join(replaced_by)} (replaced it)"
    return "not seen"


def batchable(report: Report) -> Section:
    rules = report.rules.batchable
    levels = " / ".join(str(c) for c in rules.concurrency)
    target = report.batchable[0].target if report.batchable else report.rules.target
    rows, code = [], []
    for lookup in report.batchable:
        first = [lookup.fingerprint, ", ".join(lookup.columns) + (" (IN list)" if lookup.small_set
                 else ""), ", ".join(lookup.tables)]  # fmt: skip
        for i, name in enumerate(report.period_names):
            figures = lookup.figures[name]
            label = first if i == 0 else ["", "", ""]
            period = [name] if _per_period(report) else []
            seen = _batched_form(lookup.batched_family, lookup.replaced_by) if i == 0 else ""
            if figures is None:
                rows.append([*label, *period, "0", NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, seen])
                continue
            calls = f"{figures.calls:,}" + ("" if figures.batchable else " (below the rate)")
            rows.append([*label, *period, calls, number(figures.calls_per_second, 1, unit="/s"),
                         number(figures.calls_per_request), _saving_text(figures),
                         number(figures.concurrency_for_target), seen])  # fmt: skip
        code.append(CodeBlock(f"{lookup.fingerprint}: lookup", lookup.sql))
        code.append(CodeBlock(f"{lookup.fingerprint}: batched form", lookup.batched_sql))
    period = ["period"] if _per_period(report) else []
    return Section(
        "batchable",
        "Batchable lookups: high-rate lookups across requests",
        f"Point lookups (column = $n) and small-set lookups (column IN (…)) on a key or indexed "
        f"column, called at least {rules.calls_per_second:g} times a second (and "
        f"{rules.min_calls:,} times) in a period, whatever their calls per request: concurrent "
        "requests each send them, and one statement with column = ANY($n) per batch of requests "
        "could serve them all. Fewer calls with one batch per c concurrent requests, as the "
        "rollout guide counts: they send c × (calls per request) lookups, a batch sends one (at "
        "one call per request: 80%, 90%, 98% at 5, 10, 50). 'requests for "
        f"{percent(target, 0)} fewer': the fewest concurrent requests one batch needs for "
        "verify's query reduction. 'batched form': the family of its = ANY form when that "
        "runs, or the family that replaced it between the windows.",
        ["family", "lookup", "tables", *period, "calls", "calls/s", "calls/request",
         f"fewer calls at {levels} concurrent requests",
         f"requests for {percent(target, 0)} fewer", "batched form"],
        rows,
        code,
        empty="No lookup on a key or indexed column runs at the batchable rate.",
    )  # fmt: skip


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


def sparse_note(found: Timelines) -> str:
    """What a chart of *found* cannot show: windows with too few intervals for a trend."""
    sparse = found.sparse_windows
    if not sparse:
        return ""
    counts = ", ".join(f"{name} {count}" for name, count in sparse)
    return (
        f" Too few intervals inside a window for a trend ({counts}; a window captured with "
        "two snapshots has one): the charts draw their figures as points, not lines; "
        "`dbtools collect` during the windows gives one interval per sample."
    )


def timelines(report: Report) -> Section | None:
    found = report.timelines
    if found is None:
        return None
    rows = [
        [moment(step.started_at), moment(step.ended_at),
         "yes" if step.comparable else "NO: " + "; ".join(step.problems),
         percent(step.buffer_cache_hit_ratio), percent(step.index_hit_ratio)]
        for step in found.steps
    ]  # fmt: skip
    windows = ", ".join(
        f"{w.name} {moment(w.started_at)} to {moment(w.ended_at)}" for w in found.windows
    )
    return Section(
        "timelines",
        "Timelines",
        f"Each interval between consecutive samples of the span ({found.samples} samples; "
        f"windows: {windows}). The charts draw the top statements' calls, total and mean time "
        "per interval (and the top families'), the hit ratios per interval, and the "
        "application's p95 and error rate per request-metrics bucket, with the windows "
        "shaded. An interval across a restart or a reset is not comparable and is not drawn."
        + sparse_note(found),
        ["from", "to", "comparable", "buffer cache hit ratio", "index hit ratio"],
        rows,
        empty="Fewer than two samples in the span.",
    )


def _per_interval(points: Sequence[StatementPoint | None], attribute: str) -> str:
    """A line's figures per interval, in order (NO_VALUE where an interval is not comparable)."""
    return ", ".join(
        NO_VALUE
        if p is None
        else (f"{p.calls:,}" if attribute == "calls" else ms(getattr(p, attribute)))
        for p in points
    )


def timeline_lines(report: Report) -> Section | None:
    found = report.timelines
    if found is None:
        return None
    lines = [
        *((f"#{rank}", "statement", line.total_time_ms, line.points, line.query)
          for rank, line in enumerate(found.statements, 1)),
        *((f"F{rank}", f"family {line.fingerprint} ({line.kind}, {line.statements:,} "
           f"statement{'s' if line.statements != 1 else ''})",
           line.total_time_ms, line.points, line.query)
          for rank, line in enumerate(found.families, 1)),
    ]  # fmt: skip
    return Section(
        "timeline-lines",
        "Top statements and families per interval",
        "The statements and the families (their statements summed) with the most execution "
        "time over the span's comparable intervals: calls, total and mean time in each "
        f"interval, in order ({NO_VALUE}: an interval that is not comparable).",
        ["line", "what", "total ms", "calls per interval", "total ms per interval",
         "mean ms per interval"],
        [[rank, what, ms(total), _per_interval(points, "calls"),
          _per_interval(points, "total_time_ms"), _per_interval(points, "mean_time_ms")]
         for rank, what, total, points, _ in lines],
        [CodeBlock(f"{rank}: {what}", query) for rank, what, _, _, query in lines],
        empty="No statement ran in a comparable interval.",
    )  # fmt: skip


def space_growth(report: Report) -> Section | None:
    found = report.timelines
    if found is None:
        return None
    rows = [
        [g.kind, g.name, byte_size(g.first_bytes), byte_size(g.last_bytes),
         NO_VALUE if g.growth_bytes is None else f"{g.growth_bytes:+,} B"]
        for g in found.growth
    ]  # fmt: skip
    return Section(
        "space-growth",
        "Space growth",
        f"Table and index sizes at the span's first and last sample ({moment(found.started_at)} "
        f"to {moment(found.ended_at)}), the largest growth first.",
        ["kind", "name", "first", "last", "growth"],
        rows,
        empty="No sizes in the samples.",
    )


SECTIONS: tuple[Callable[[Report], Section | None], ...] = (
    opening,
    changes,
    summary,
    top_statements,
    batchable,
    n_plus_one,
    families,
    unparsed,
    table_hit_ratios,
    indexes,
    index_health,
    autovacuum,
    autovacuum_health,
    timelines,
    timeline_lines,
    space_growth,
)


# -- what the inspection read (report.inspection): shown only when it was read --------------------


def _seconds(value: float | None) -> str:
    return number(value, 1, unit=" s")


def statement_costs(report: Report) -> Section:
    """Where each top statement's cost goes: planning, I/O, temporary files, WAL."""
    compare = _per_period(report)
    rows = []
    for rank, line in enumerate(report.top_statements, 1):
        for i, name in enumerate(report.period_names):
            f = line.figures[name]
            period = [name] if compare else []
            label = str(rank) if i == 0 else ""
            if f is None:
                rows.append([label, *period, *([NO_VALUE] * 10)])
                continue
            rows.append([
                label, *period, f"{f.plans:,}", ms(f.plan_time_ms), ms(f.total_time_ms),
                ms(f.blk_read_time_ms), ms(f.blk_write_time_ms), f"{f.shared_blks_read:,}",
                f"{f.temp_blks_read:,}", f"{f.temp_blks_written:,}", f"{f.wal_records:,}",
                byte_size(f.wal_bytes),
            ])  # fmt: skip
    return Section(
        "statement-costs",
        "Where the statements' time goes",
        "The statements ranked above (same numbers): planning (counted with "
        "pg_stat_statements.track_planning), time reading and writing blocks (with "
        "track_io_timing), blocks read from outside shared buffers, temporary blocks (sorts and "
        "hashes larger than work_mem), and the WAL they wrote. Every other column the server "
        "records is in the JSON.",
        ["#", *(["period"] if compare else []), "plans", "plan ms", "exec ms", "read ms",
         "write ms", "blocks read", "temp read", "temp written", "WAL records", "WAL"],
        rows,
    )  # fmt: skip


def activity_blocked(report: Report) -> Section | None:
    if report.activity is None:
        return None
    rows = [
        [str(b.pid), b.database or NO_VALUE, b.role or NO_VALUE, b.application_name,
         _seconds(b.waiting_seconds), b.lock, ", ".join(map(str, b.blocked_by)),
         " ← ".join(map(str, b.chain)), f"{b.root_pid} ({b.root_state or 'unknown'})",
         one_line(b.query)]
        for b in report.activity.blocked
    ]  # fmt: skip
    code = [
        CodeBlock(f"pid {b.pid}: chain head {b.root_pid} ({b.root_state or 'unknown'}), its "
                  "statement", b.root_query)
        for b in report.activity.blocked
    ]  # fmt: skip
    return Section(
        "activity-blocked",
        "Activity now: blocked sessions",
        "Sessions waiting for a lock (pg_blocking_pids): the lock they wait for, who holds it, "
        "and the chain to the session that waits for nobody (end it, or its transaction, to "
        "release the chain).",
        ["pid", "database", "role", "application", "waiting", "waits for", "blocked by",
         "chain", "chain head", "statement"],
        rows,
        code,
        empty="No session waits for a lock.",
    )  # fmt: skip


def _session_rows(lines: Sequence[SessionLine]) -> list[list[str]]:
    return [
        [str(s.pid), s.database or NO_VALUE, s.role or NO_VALUE, s.application_name,
         s.state or NO_VALUE, _seconds(s.seconds), _seconds(s.transaction_seconds),
         s.wait or NO_VALUE, one_line(s.query)]
        for s in lines
    ]  # fmt: skip


_SESSION_HEADERS = ["pid", "database", "role", "application", "state", "for", "transaction",
                    "wait", "statement"]  # fmt: skip


def activity_running(report: Report) -> Section | None:
    if report.activity is None:
        return None
    limit = report.activity.settings.long_running_seconds
    return Section(
        "activity-running",
        "Activity now: long-running statements",
        f"Statements active for {limit:g} s or more (texts scrubbed of literals).",
        _SESSION_HEADERS,
        _session_rows(report.activity.long_running),
        empty=f"No statement has run for {limit:g} s.",
    )


def activity_idle(report: Report) -> Section | None:
    if report.activity is None:
        return None
    return Section(
        "activity-idle",
        "Activity now: idle in transaction",
        "Sessions inside a transaction that are doing nothing: they hold their locks and keep "
        "vacuum from removing dead rows; 'for' is the time since their last statement.",
        _SESSION_HEADERS,
        _session_rows(report.activity.idle_in_transaction),
        empty="No session is idle in a transaction.",
    )


def activity_connections(report: Report) -> Section | None:
    activity = report.activity
    if activity is None:
        return None
    rows = [
        [c.database or NO_VALUE, c.role or NO_VALUE, c.application_name, c.state,
         f"{c.connections:,}"]
        for c in activity.connections
    ]  # fmt: skip
    return Section(
        "activity-connections",
        "Activity now: connections",
        f"{activity.client_connections:,} client connections of max_connections "
        f"{activity.max_connections:,} ({percent(activity.connection_share)}; "
        f"{activity.reserved_connections} reserved for superusers), by database, role, "
        "application and state.",
        ["database", "role", "application", "state", "connections"],
        rows,
    )


def space_tables(report: Report) -> Section | None:
    space = report.space
    if space is None:
        return None
    rows = [
        [t.table, byte_size(t.total_bytes), byte_size(t.heap_bytes), byte_size(t.toast_bytes),
         byte_size(t.index_bytes), number(round(t.row_estimate)), byte_size(t.bloat_bytes),
         percent(t.bloat_ratio), t.method]
        for t in space.tables
    ]  # fmt: skip
    return Section(
        "space-tables",
        "Space: tables",
        f"The {space.settings.top_tables} largest tables. Bloat is space the live rows do not "
        "need (dead rows and free space): measured with pgstattuple_approx where the extension "
        f"is created and permitted (here: {space.pgstattuple}), else estimated from the "
        "catalog (pages held against the pages the rows need at the table's fillfactor, from "
        "ANALYZE's widths). Growth over time will come from collected samples.",
        ["table", "total", "heap", "TOAST", "indexes", "rows (est.)", "bloat", "bloat %",
         "method"],
        rows,
    )  # fmt: skip


def space_indexes(report: Report) -> Section | None:
    space = report.space
    if space is None:
        return None
    rows = [
        [i.index, i.table, i.access_method, byte_size(i.index_bytes), byte_size(i.bloat_bytes),
         percent(i.bloat_ratio), i.method]
        for i in space.indexes
    ]  # fmt: skip
    return Section(
        "space-indexes",
        "Space: indexes",
        f"The {space.settings.top_indexes} largest indexes. Btree bloat is estimated: pages "
        "held against the pages their entries need at the index's fillfactor (90% by "
        "default); REINDEX INDEX CONCURRENTLY gives the space back.",
        ["index", "table", "method", "size", "bloat", "bloat %", "estimated by"],
        rows,
    )


def space_sequences(report: Report) -> Section | None:
    space = report.space
    if space is None:
        return None
    rows = [
        [q.sequence, q.data_type, q.column or NO_VALUE, number(q.last_value), number(q.maximum),
         percent(q.fraction_used), q.fix]
        for q in space.sequences
    ]  # fmt: skip
    share = percent(space.settings.sequence_fraction, 0)
    return Section(
        "space-sequences",
        "Space: sequences running out",
        f"Sequences (identity and serial columns' included) {share} or more through their "
        f"range, of {space.sequences_checked} checked; the range ends at the smaller of the "
        "sequence's maximum and its column type's.",
        ["sequence", "type", "column", "last value", "maximum", "used", "fix"],
        rows,
        empty=f"No sequence is {share} through its range.",
    )


def space_health(report: Report) -> Section | None:
    space = report.space
    if space is None:
        return None
    settings = space.settings
    return _findings(
        "space-health",
        "Space health",
        f"Sequences {percent(settings.sequence_fraction, 0)} through the range of the column "
        f"they feed (critical from {percent(settings.sequence_critical, 0)}), tables and btree "
        f"indexes {percent(settings.bloat_warning, 0)} or more bloat (and at least "
        f"{byte_size(settings.bloat_min_bytes)}), each with the method that measured it.",
        space.findings,
    )


def settings_review(report: Report) -> Section | None:
    if report.settings is None:
        return None
    return Section(
        "settings",
        "Settings",
        "The settings that matter for this workload, their values and where they come from "
        "(pg_settings.source). Notes are rules of thumb, not prescriptions: the report does "
        "not know the machine's memory or disks.",
        ["setting", "value", "source", "note"],
        [[s.name, s.value, s.source, s.note] for s in report.settings.settings],
    )


def plans(report: Report) -> Section | None:
    found = report.plans
    if found is None:
        return None
    rows, code = [], []
    for rank, p in enumerate(found.statements, 1):
        scans = ", ".join(f"{s.table} ({number(s.table_rows)} rows)" for s in p.large_seq_scans)
        rows.append([
            str(rank), str(p.queryid), p.status, number(p.total_cost), ", ".join(p.indexes_used)
            or NO_VALUE, scans or NO_VALUE, p.reason or one_line(p.query),
        ])  # fmt: skip
        body = f"{p.query}\n\n-- plan:\n{plan_text(p.nodes)}" if p.nodes else p.query
        code.append(CodeBlock(f"#{rank}: {p.status}", body))
    return Section(
        "plans",
        "Plans",
        f"The costliest statements' plans ({found.method}). Sequential scans over tables of "
        f"{found.large_table_rows:,} rows or more are flagged.",
        ["#", "queryid", "plan", "cost", "indexes used", "sequential scans on large tables",
         "statement, or why there is no plan"],
        rows,
        code,
        empty="No statement to plan (only SELECT, INSERT, UPDATE and DELETE are explained).",
    )  # fmt: skip


def index_advice(report: Report) -> Section | None:
    advice = report.index_advice
    if advice is None:
        return None
    rows, code = [], []
    for s in advice.suggestions:
        served = "; ".join(
            f"{x.queryid}: {x.cost_before:,.0f} → {x.cost_after:,.0f}" for x in s.serves
        )
        rows.append([s.table, ", ".join(s.columns), byte_size(s.estimated_bytes), served])
        code.append(CodeBlock(f"{s.table} ({', '.join(s.columns)})", s.create_statement))
    return Section(
        "index-advice",
        "Index advice",
        advice.status,
        ["table", "columns", "estimated size", "statements served (queryid: cost before → after)"],
        rows,
        code,
        empty="No index suggested.",
    )


def schema_health(report: Report) -> Section | None:
    if report.schema_health is None:
        return None
    return _findings(
        "schema-health",
        "Schema health",
        "Tables without a primary key, NOT VALID constraints, foreign keys whose type differs "
        "from the key they reference, btree indexes on boolean or array columns, indexes on "
        "mostly-NULL columns (after pg-index-health's checks).",
        report.schema_health,
    )


INSPECTION_SECTIONS: tuple[Callable[[Report], Section | None], ...] = (
    statement_costs,
    activity_blocked,
    activity_running,
    activity_idle,
    activity_connections,
    plans,
    index_advice,
    space_tables,
    space_indexes,
    space_sequences,
    space_health,
    settings_review,
    schema_health,
)


def sections(report: Report) -> list[Section]:
    """The report's sections, in order; those with nothing to say for it left out."""
    return [
        section
        for build in (*SECTIONS, *INSPECTION_SECTIONS)
        if (section := build(report)) is not None
    ]
