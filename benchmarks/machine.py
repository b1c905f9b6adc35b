"""The machine and date a benchmark ran on, for its results file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess


def describe_machine() -> str:
    """One Markdown line: date, CPU model and count, memory, kernel, Python."""
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"Measured {datetime.date.today().isoformat()} on {model}, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()} (a shared machine: other work may run at the same time)."
    )
