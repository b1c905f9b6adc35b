"""The machine and date a benchmark ran on, for its results file (one helper for every script)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    """CPU, memory, kernel, Python and load average, one fact per line (Markdown-ready)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
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
