"""Windows: what a window is, how one is named (labels, times, ``last:10m``) and when the samples
that answer it cover it.

A *window* is two samples of one target (``store.compact``): ``W`` means ``W:start..W:end``
(what ``capture`` writes); ``A..B`` takes two labels or two times (ISO 8601:
``2026-11-30T10:00Z``), or one of each; ``last:10m`` is the last ten minutes. A time stands for
the nearest sample inside the window (the first at or after a start, the last at or before an
end), and a window by time is untrusted when an end has no sample within twice the collection
interval, or two samples inside it lie further apart than that (``coverage``). A window on
rolled-up samples says so. The store resolves a window to its samples (``store.Store``); this
module is pure.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dbtools.config import parse_duration
from dbtools.errors import UsageError
from dbtools.figures.deltas import WindowDeltas, window_deltas
from dbtools.figures.requests import NO_REQUESTS, RequestTotals
from dbtools.reading.rows import Snapshot, SnapshotHeader

START_SUFFIX = ":start"
END_SUFFIX = ":end"
RANGE_SEPARATOR = ".."
LAST_PREFIX = "last:"
MAX_LABEL_LENGTH = 200

# -- labels, times and windows ------------------------------------------------------------------


def validate_label(label: str) -> str:
    """Return *label* if it can name a snapshot, else raise ``UsageError``."""
    if not label or label != label.strip():
        raise UsageError(f"invalid label {label!r}: empty, or leading/trailing spaces")
    if RANGE_SEPARATOR in label:
        raise UsageError(f"invalid label {label!r}: '..' separates the two labels of a window")
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise UsageError(f"invalid label {label!r}: too long or not printable")
    if parse_time(label) is not None or label.startswith(LAST_PREFIX):
        raise UsageError(f"invalid label {label!r}: it reads as a time (a window's end)")
    return label


_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.I,
)


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (``2026-11-30T10:00Z``, ``2026-11-30 10:00:05+01:00``; without an offset:
    UTC), or None when *text* is not one."""
    match = _TIME.match(text.strip())
    if match is None:
        return None
    date, clock, zone = match.groups()
    zone = "+00:00" if zone is None or zone.upper() == "Z" else zone
    if len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as err:
        raise UsageError(f"invalid time {text!r}: {err}") from err


@dataclass(frozen=True)
class WindowRef:
    """A window as given on the command line: its two ends as given (a label or a time), or
    the last *last_seconds* (``last:10m``)."""

    name: str
    start: str
    end: str
    last_seconds: int | None = None

    def __str__(self) -> str:
        if self.last_seconds is not None:
            return self.name
        return f"{self.start}{RANGE_SEPARATOR}{self.end}"

    @property
    def start_time(self) -> datetime | None:
        return parse_time(self.start) if self.start else None

    @property
    def end_time(self) -> datetime | None:
        return parse_time(self.end) if self.end else None

    @property
    def by_time(self) -> bool:
        """Whether an end is a time: the window takes the samples nearest inside it."""
        return (
            self.last_seconds is not None
            or self.start_time is not None
            or self.end_time is not None
        )


def window_labels(label: str) -> tuple[str, str]:
    """The labels ``capture --label L`` writes: ``L:start`` and ``L:end``."""
    return f"{label}{START_SUFFIX}", f"{label}{END_SUFFIX}"


def parse_window(reference: str) -> WindowRef:
    """``W`` (``W:start..W:end``), ``A..B`` (labels or times) or ``last:DURATION``; raises
    ``UsageError`` for anything else."""
    if reference.startswith(LAST_PREFIX):
        return WindowRef(reference, "", "", parse_duration(reference[len(LAST_PREFIX) :]))
    if RANGE_SEPARATOR in reference:
        start, _, end = reference.partition(RANGE_SEPARATOR)
        if not start or not end or RANGE_SEPARATOR in end:
            raise UsageError(
                f"invalid window {reference!r}: expected LABEL, START..END or last:DURATION"
            )
        ends = [
            side if parse_time(side) is not None else validate_label(side) for side in (start, end)
        ]
        ref = WindowRef(reference, ends[0], ends[1])
        if ref.start_time and ref.end_time and ref.end_time <= ref.start_time:
            raise UsageError(f"window {reference}: its end is not after its start")
        return ref
    start, end = window_labels(validate_label(reference))
    return WindowRef(reference, start, end)


@dataclass(frozen=True)
class Window:
    """A window resolved to its two samples: their headers, the request metrics inside it, and,
    once loaded (``Store.load``), every entry's state at each end (``states``, ``deltas``).

    A window given by time also carries the times asked, why it cannot be trusted when its
    samples do not cover it (``problems``), and ``notes`` (rolled-up samples). ``inside``: the
    headers of the samples between its two (``collect``'s), whose settings are judged too.
    """

    ref: WindowRef
    start: SnapshotHeader
    end: SnapshotHeader
    request_totals: RequestTotals = NO_REQUESTS
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    asked: tuple[datetime | None, datetime | None] = (None, None)
    inside: tuple[SnapshotHeader, ...] = ()
    states: tuple[Snapshot, Snapshot] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def between(
        cls,
        start: Snapshot,
        end: Snapshot,
        ref: WindowRef,
        request_totals: RequestTotals = NO_REQUESTS,
    ) -> Window:
        """The window from the state *start* to the state *end*, both in hand (a timeline's
        step, a window of in-memory snapshots)."""
        return cls(ref, start.header, end.header, request_totals, states=(start, end))

    def loaded(self, start: Snapshot, end: Snapshot) -> Window:
        """This window with its two samples' states."""
        return dataclasses.replace(self, states=(start, end))

    @property
    def seconds(self) -> float:
        return (self.end.taken_at - self.start.taken_at).total_seconds()

    @property
    def target(self) -> str | None:
        """The target the window's samples are of (None before revision 0005)."""
        return self.start.target

    @property
    def end_state(self) -> Snapshot:
        """Every entry's state at the window's end sample (its states loaded)."""
        if self.states is None:
            raise ValueError(f"window {self.ref}: its samples' states are not loaded")
        return self.states[1]

    @functools.cached_property
    def deltas(self) -> WindowDeltas:
        """What every counter did inside the window (computed once, on first use); its states
        must be loaded."""
        if self.states is None:
            raise ValueError(f"window {self.ref}: its samples' states are not loaded")
        return window_deltas(*self.states)


def clock_text(moment: datetime) -> str:
    """*moment* for people, in UTC: ``2026-11-30 10:00:05``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        (f"{hours}h " if hours else "") + (f"{minutes}m " if minutes or hours else "") + f"{secs}s"
    )


# A window by time is trusted only when its samples span this share of the time asked.
MIN_COVERAGE = 0.90


def coverage(
    headers: Sequence[SnapshotHeader],
    asked: tuple[datetime | None, datetime | None],
    min_coverage: float = MIN_COVERAGE,
) -> tuple[list[str], list[str]]:
    """Why a window by time cannot be trusted, and its notes, from the samples inside it
    (*headers*, in time order, its two ends first and last) and the times asked.

    Its two samples must span *min_coverage* of the time asked (an end given as a label asks
    its sample's time): a window answered by samples covering a few seconds of ten minutes says
    nothing of the rest. The collection interval is the largest among the window's collected
    samples (a rolled-up sample stands for its period); an end farther than twice that from the
    time asked, or two samples farther apart, leaves statements unaccounted for at those moments.
    """
    problems: list[str] = []
    notes: list[str] = []
    first, last = headers[0], headers[-1]
    asked_from, asked_to = asked[0] or first.taken_at, asked[1] or last.taken_at
    length = (asked_to - asked_from).total_seconds()
    spanned = (last.taken_at - first.taken_at).total_seconds()
    if length > 0 and spanned < min_coverage * length:
        problems.append(
            f"its samples cover {spanned / length:.1%} of it ({_span(spanned)} of {_span(length)}, "
            f"from {clock_text(first.taken_at)} to {clock_text(last.taken_at)} UTC; at least "
            f"{min_coverage:.0%} needed): what happened in the rest was not observed"
        )
    intervals = [h.interval_seconds for h in headers if h.interval_seconds]
    rolled = [h for h in headers if h.rollup_seconds]
    if not intervals:
        notes.append("no collected sample in the window (labelled snapshots only): gaps not judged")
        return problems, notes
    interval = max(intervals)

    def allowed(header: SnapshotHeader) -> float:
        return 2 * max(interval, header.rollup_seconds or 0.0)

    if asked[0] is not None and (first.taken_at - asked[0]).total_seconds() > allowed(first):
        problems.append(
            f"no sample at the start: the first inside the window is {_span((first.taken_at - asked[0]).total_seconds())} "
            f"after {clock_text(asked[0])} UTC (more than twice the collection interval, {interval:g} s)"
        )
    if asked[1] is not None and (asked[1] - last.taken_at).total_seconds() > allowed(last):
        problems.append(
            f"no sample at the end: the last inside the window is {_span((asked[1] - last.taken_at).total_seconds())} "
            f"before {clock_text(asked[1])} UTC (more than twice the collection interval, {interval:g} s)"
        )
    for before, after in itertools.pairwise(headers):
        gap = (after.taken_at - before.taken_at).total_seconds()
        if gap > allowed(after):
            problems.append(
                f"a gap of {_span(gap)} between samples at {clock_text(before.taken_at)} and "
                f"{clock_text(after.taken_at)} UTC (more than twice the collection interval, "
                f"{interval:g} s): the collector missed samples"
            )
    if rolled:
        periods = sorted({h.rollup_seconds for h in rolled if h.rollup_seconds})
        notes.append(
            f"rolled-up data: {len(rolled)} of the window's samples are kept one per "
            f"{', '.join(_span(p) for p in periods)} (older samples are rolled up), up to "
            f"{clock_text(max(h.taken_at for h in rolled))} UTC"
        )
    return problems, notes
