"""The report as Markdown: tables with tabulate, full query texts in fenced code blocks."""

from __future__ import annotations

from tabulate import tabulate

from dbtools.output import markdown_cell
from dbtools.report.contents import sections
from dbtools.report.model import Report
from dbtools.report.sections import Section, moment


def _fence(text: str) -> str:
    """A fence longer than any run of backticks in *text*."""
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    return "`" * max(3, longest + 1)


def render_section(section: Section) -> str:
    parts = [f"## {section.title}", "", section.intro, ""]
    if section.rows:
        table = tabulate(
            [[markdown_cell(cell) for cell in row] for row in section.rows],
            headers=section.headers,
            tablefmt="pipe",
            disable_numparse=True,
        )
        parts += [table, ""]
    else:
        parts += [f"_{section.empty}_", ""]
    if section.bullets:
        parts += [*(f"- {markdown_cell(bullet)}" for bullet in section.bullets), ""]
    for block in section.code:
        fence = _fence(block.text)
        parts += [f"**{markdown_cell(block.label)}**", "", f"{fence}sql", block.text, fence, ""]
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    """The whole report as one Markdown document."""
    header = [
        f"# {report.title}",
        "",
        f"- database: {report.database} (PostgreSQL {report.server_version}), {report.target}",
        f"- generated: {moment(report.generated_at)} by dbtools (schema {report.schema_version})",
        f"- periods: {', '.join(f'{p.name} = {p.label}' for p in report.periods)}",
        "",
    ]
    body = [render_section(section) for section in sections(report)]
    notes = ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(header + body + notes)
