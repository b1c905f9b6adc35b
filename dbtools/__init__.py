"""dbtools: take a PostgreSQL-backed service safely through a performance rollout.

The Python API: what each command does, as one call (each name is imported on first use, so
``import dbtools`` and ``dbtools --help`` stay fast; the command line is a thin layer over
these):

- ``snapshot(dsn, label)``: store one sample of pg_stat_statements and the tables' counters.
- ``capture(dsn, label, seconds)``: a window: ``LABEL:start``, a wait, ``LABEL:end``.
- ``Collector([parse_target("NAME=DSN")], store=...)``: ``collect``, sampling its targets every
  interval into their repositories or a central one; ``with Collector(...) as c: c.run()``.
- ``verify_candidate(dsn, baseline, candidate)``: the gate (``dbtools verify``), a candidate
  window judged against the baseline with the thresholds of ``load_thresholds()``.
- ``verify_canary(dsn, window, CanarySpec(...))``: the canary judged against its control
  inside one window.
- ``make_report(dsn, window=...)``: the report of one window, two, or live statistics;
  ``write_report(report, "html")`` writes it (Markdown, HTML or JSON).
- ``build_plan(to_revision)``: the downgrade plan (``dbtools downgrade-plan``).
- ``rehearse()``: every downgrade rehearsed in a sandbox or a scratch database.
- ``lint_revisions()``: the migrations' SQL linted, upgrade and downgrade.
- ``run_doctor(dsn)``: can each command work on this server, as this role?
- ``Rollout(dsn, RolloutOptions(...), load_rollout_config(), load_thresholds(), directory)``:
  ``.run()`` takes the service through the guide's five phases and returns the record.

Each function's own docstring says its arguments, what it raises and the exit code the command
line gives for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name: (the module defining it, its name there). The one list: an entry point a
# Python user calls gets a line here (tests/test_api.py checks each is documented and lazy).
API: dict[str, tuple[str, str]] = {
    "snapshot": ("dbtools.store.snapshots", "snapshot"),
    "capture": ("dbtools.store.snapshots", "capture"),
    "Collector": ("dbtools.store.collector", "Collector"),
    "parse_target": ("dbtools.store.collector", "parse_target"),
    # the package dbtools.verify keeps its name: the gate is exported beside the canary
    "verify_candidate": ("dbtools.verify", "verify"),
    "verify_canary": ("dbtools.verify.canary", "verify_canary"),
    "CanarySpec": ("dbtools.verify.canary", "CanarySpec"),
    "load_thresholds": ("dbtools.verify.thresholds", "load_thresholds"),
    "make_report": ("dbtools.report", "make_report"),
    "write_report": ("dbtools.report", "write_report"),
    "build_plan": ("dbtools.safety.plan", "build_plan"),
    "rehearse": ("dbtools.safety.rehearse", "rehearse"),
    "lint_revisions": ("dbtools.safety.lint", "lint_revisions"),
    "run_doctor": ("dbtools.commands.doctor", "run_doctor"),
    "Rollout": ("dbtools.commands.rollout", "Rollout"),
    "RolloutOptions": ("dbtools.commands.rollout", "RolloutOptions"),
    "load_rollout_config": ("dbtools.commands.rollout", "load_rollout_config"),
}

__all__ = [
    "CanarySpec", "Collector", "Rollout", "RolloutOptions", "__version__", "build_plan",
    "capture", "lint_revisions", "load_rollout_config", "load_thresholds", "make_report",
    "parse_target", "rehearse", "run_doctor", "snapshot", "verify_canary", "verify_candidate",
    "write_report",
]  # fmt: skip

if TYPE_CHECKING:  # the types, for mypy and editors; at run time each name loads on first use
    from dbtools.commands.doctor import run_doctor
    from dbtools.commands.rollout import Rollout, RolloutOptions, load_rollout_config
    from dbtools.report import make_report, write_report
    from dbtools.safety.lint import lint_revisions
    from dbtools.safety.plan import build_plan
    from dbtools.safety.rehearse import rehearse
    from dbtools.store.collector import Collector, parse_target
    from dbtools.store.snapshots import capture, snapshot
    from dbtools.verify import verify as verify_candidate
    from dbtools.verify.canary import CanarySpec, verify_canary
    from dbtools.verify.thresholds import load_thresholds


def __getattr__(name: str) -> Any:
    """A public name, imported when first asked for (PEP 562)."""
    if name not in API:
        raise AttributeError(f"module 'dbtools' has no attribute {name!r}")
    module, attribute = API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
