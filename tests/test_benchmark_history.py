"""A benchmark's results file keeps the goals of the runs it replaced (benchmarks/history.py)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.history import HEADING, NOTE_PLACE, earlier_runs

GOALS = "## Goals"


def results(date: str, figure: str, history: list[str], note: str | None = None) -> str:
    """A results file as a benchmark writes it: header, goals, another section, history."""
    lines = [
        "# A benchmark",
        "",
        f"- date: {date}",
        "- machine: a CPU; load average (1/5/15 min) when the figures were written: 9.99",
        f"- load average when the run ended: {figure}0",
        "",
        GOALS,
        "",
        f"| build (s) | {figure} | met |",
        "",
        "## Other figures",
        "",
        "| render | 0.1 |",
        "",
    ]
    if note:
        lines += [note, ""]
    return "\n".join(lines + history)


def test_a_missing_file_leaves_only_the_place_for_a_note(tmp_path: Path) -> None:
    assert earlier_runs(tmp_path / "RESULTS.md", GOALS) == [NOTE_PLACE, ""]


def test_each_rewrite_keeps_the_replaced_run_first_with_its_note(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    note = "Note (added by hand after the run): the load was high.\nIt says why."
    path.write_text(results("day 1", "3.5", [], note))
    first = earlier_runs(path, GOALS)
    assert first == [
        NOTE_PLACE,
        "",
        HEADING,
        "",
        "### The run of day 1; load average when the run ended: 3.50",
        "",
        "| build (s) | 3.5 | met |",
        "",
        "Note (added by hand after the run): the load was high.",
        "It says why.",
        "",
    ]
    path.write_text(results("day 2", "1.2", first))
    second = earlier_runs(path, GOALS)
    assert second == [
        NOTE_PLACE,
        "",
        HEADING,
        "",
        "### The run of day 2; load average when the run ended: 1.20",
        "",
        "| build (s) | 1.2 | met |",
        "",
        *first[4:],  # day 1's entry, unchanged; not the other section, not the machine line
    ]
