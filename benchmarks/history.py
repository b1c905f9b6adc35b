"""A results file's history: the goals of the run it replaces are kept under "Earlier runs".

A script that rewrites its results file calls :func:`earlier_runs` first, then writes its new
figures followed by the lines returned. What is kept of the replaced run: its date and load lines,
the section with the goals (heading to the next ``## ``), and every paragraph beginning
``Note (added by hand`` above the "Earlier runs" heading (a reader's note on that run). The runs
already kept follow, newest first.
"""

from __future__ import annotations

import itertools
from pathlib import Path

HEADING = "## Earlier runs"
NOTE = "Note (added by hand"
NOTE_PLACE = (
    "<!-- A note on this run goes above this line: a paragraph starting "
    f'"{NOTE}". The next run moves it under "{HEADING[3:]}" with the goals of this run. -->'
)


def _paragraphs(lines: list[str]) -> list[list[str]]:
    found: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            found[-1].append(line)
        elif found[-1]:
            found.append([])
    return [paragraph for paragraph in found if paragraph]


def _section(lines: list[str], heading: str) -> list[str]:
    """*heading*'s section (without the heading), up to the next ``## `` heading."""
    if heading not in lines:
        return []
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def earlier_runs(path: Path, goals_heading: str) -> list[str]:
    """The end of *path*'s next version: where a note on the new run goes, then "Earlier runs":
    the run *path* holds now (date, load, *goals_heading*'s section and the notes on it), then the
    runs it kept already."""
    if not path.exists():
        return [NOTE_PLACE, ""]
    lines = path.read_text(encoding="utf-8").splitlines()
    cut = lines.index(HEADING) if HEADING in lines else len(lines)
    current, kept = lines[:cut], lines[cut + 1 :]
    when = [x[2:].removeprefix("date: ") for x in current if x.startswith(("- date:", "- load"))]
    if goals_heading in current:
        goals = _section(current, goals_heading)
    else:  # a file written before the goals had their heading: all of it below its header
        after_header = max((i for i, x in enumerate(current) if x.startswith("- ")), default=0)
        goals = list(
            itertools.takewhile(lambda x: not x.startswith(NOTE), current[after_header + 1 :])
        )
    while goals and not goals[0]:
        goals.pop(0)
    notes = [p for p in _paragraphs(current) if p[0].startswith(NOTE)]
    run = [f"### The run of {'; '.join(when) or 'an earlier date'}", "", *goals]
    for note in notes:
        run += [*note, ""]
    found = [NOTE_PLACE, "", HEADING, "", *run, *(kept[1:] if kept and not kept[0] else kept)]
    while not found[-1]:
        found.pop()
    return [*found, ""]
