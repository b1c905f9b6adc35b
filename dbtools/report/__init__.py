"""``dbtools report``: what a DBA reads after a rollout (Markdown, self-contained HTML, JSON).

The costliest statements, query families, batchable lookups and N+1 suspects, hit ratios, index
and autovacuum health, for one window (``W`` or ``A..B``), two (baseline and candidate:
before/after columns, opening with verify's verdict and what replaced what), or the live
statistics; the timelines of the store's samples; and, read from the database when the report
is made, each subject of ``report.subjects``. ``generate_report`` is the one call: it reads
(read-only, autocommit, a fixed number of statements), builds, renders and writes
``reports/report-…-<UTC time>.<ext>`` atomically. The parts are usable alone: ``load_input``
(database), ``build_report`` (pure), ``render`` (pure), ``write_report``
(``report.pipeline``).

Each public name is imported on first use (PEP 562), as ``dbtools``' own are: the command line
reads ``report.subjects`` (the subjects' names, for ``--skip``) without loading sqlglot.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name: the module defining it.
API: dict[str, str] = {
    "FORMATS": "dbtools.report.pipeline",
    "Report": "dbtools.report.model",
    "ReportInput": "dbtools.report.model",
    "ReportOptions": "dbtools.report.model",
    "build_report": "dbtools.report.model",
    "generate_report": "dbtools.report.pipeline",
    "load_input": "dbtools.report.pipeline",
    "make_report": "dbtools.report.pipeline",
    "render": "dbtools.report.pipeline",
    "report_stem": "dbtools.report.pipeline",
    "with_rollout_records": "dbtools.report.pipeline",
    "write_report": "dbtools.report.pipeline",
}

__all__ = [
    "FORMATS", "Report", "ReportInput", "ReportOptions", "build_report", "generate_report",
    "load_input", "make_report", "render", "report_stem", "with_rollout_records", "write_report",
]  # fmt: skip

if TYPE_CHECKING:  # the types, for mypy and editors; at run time each name loads on first use
    from dbtools.report.model import Report, ReportInput, ReportOptions, build_report
    from dbtools.report.pipeline import (
        FORMATS,
        generate_report,
        load_input,
        make_report,
        render,
        report_stem,
        with_rollout_records,
        write_report,
    )


def __getattr__(name: str) -> Any:
    """A public name, imported when first asked for (PEP 562)."""
    if name not in API:
        raise AttributeError(f"module 'dbtools.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
