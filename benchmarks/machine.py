"""The machine, date and load a benchmark ran on, for its results file (one helper for every
script)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The load average now: "1-min, 5-min, 15-min"."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def under_load(loads: dict[str, tuple[str, str]], group: str, action: Callable[[], T]) -> T:
    """*action*'s value; records in *loads* the load average before and after it, as *group*."""
    before = load_average()
    value = action()
    loads[group] = (before, load_average())
    return value


def load_table(loads: dict[str, tuple[str, str]]) -> list[str]:
    """Markdown rows: each measured group and the load average before and after it."""
    return [
        "| measured group | load average before (1/5/15 min) | after |",
        "|---|---|---|",
        *(f"| {group} | {before} | {after} |" for group, (before, after) in loads.items()),
    ]


def machine_lines() -> list[str]:
    """CPU, memory, kernel, Python and load average, one fact per line (Markdown-ready)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = load_average()
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB",
        f"uname -a: `{' '.join(platform.uname())}`",
        f"Python {platform.python_version()}",
        f"load average (1/5/15 min) when the figures were written: {load} "
        "(a shared machine: other work may run at the same time)",
    ]


def describe_machine() -> str:
    """One Markdown line: date, CPU model and count, memory, kernel, Python."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"Measured {datetime.date.today().isoformat()} on {cpu_model()}, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()} (a shared machine: other work may run at the same time)."
    )
