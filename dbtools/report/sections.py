"""The shared formatting of the report's sections, used by every subject and both renderers.

A section is a title, a sentence saying what it shows, a table (headers and rows of strings),
bullet points and code blocks (full query texts, suggested statements); the renderers only lay
them out. Each subject builds its own sections from its own model (``report.subjects``); the
helpers here format what several of them show: times, moments, one-line texts, findings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dbtools.findings import Finding
from dbtools.output import NO_VALUE, number

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


def findings_section(id: str, title: str, intro: str, findings: Sequence[Finding]) -> Section:
    return Section(
        id,
        title,
        intro,
        ["status", "check", "subject", "finding", "fix"],
        [[f.status, f.check, f.subject, f.message, f.fix] for f in findings],
        empty="No findings.",
    )


def seconds(value: float | None) -> str:
    return number(value, 1, unit=" s")
