"""``verify`` thresholds: the rollout guide's by default, overridable in TOML.

Where they come from, later overriding earlier: the defaults (the guide's figures), then
``[tool.dbtools.verify]`` in ``./pyproject.toml``, then a ``--config FILE`` (TOML with a
``[verify]`` table, or a ``[tool.dbtools.verify]`` one, so a pyproject.toml can be given too).
Ratios are fractions (``0.85`` for 85%), latencies milliseconds, rates statements per second,
memory megabytes (2**20 bytes).
An unknown key, a wrong type, a value out of range or thresholds in the wrong order is a
``ConfigError`` (exit code 2): a typo must never leave a default silently in force.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.config import layered_table
from dbtools.errors import ConfigError
from dbtools.figures.measures import EDGE_TOLERANCE
from dbtools.figures.windows import MIN_COVERAGE


@dataclass(frozen=True)
class Thresholds:
    """The figures ``verify`` judges the candidate window by (defaults: the rollout guide)."""

    # success criteria: the rollout passes only if all hold
    min_query_reduction: float = 0.85
    min_cache_hit_ratio: float = 0.40
    max_p95_ms: float = 300.0
    max_error_rate: float = 0.01
    # critical alerts: fail, said loudly
    critical_error_rate: float = 0.05
    critical_p95_ms: float = 500.0
    critical_query_rate: float = 50.0
    # warning alerts (the last two on application metrics: the dashboard's alert rules)
    warning_cache_hit_ratio: float = 0.30
    warning_memory_growth_mb: float = 100.0  # memory usage increase in 30 minutes, 2**20 bytes
    warning_kms_reuse_ratio: float = 0.60
    # automatic rollback triggers: exit code 3
    rollback_error_rate: float = 0.05
    rollback_p95_ms: float = 1000.0
    rollback_cache_hit_ratio: float = 0.20
    # after a rollback (verify --after-rollback): how far from the baseline is "returned to it"
    after_rollback_query_tolerance: float = 0.10  # queries per request, either way, relative
    after_rollback_error_rate_tolerance: float = 0.005  # error rate, above, absolute
    after_rollback_p95_tolerance: float = 0.25  # p95 above, relative …
    after_rollback_p95_tolerance_ms: float = 50.0  # … or absolute, whichever allows more
    after_rollback_min_minutes: float = 30.0  # the guide's monitoring period after a rollback
    # canary windows (verify --canary): a variant with fewer requests is "too few requests",
    # never a pass (with 20 requests or fewer the slowest one is in the p95's interpolation;
    # at 100, five lie above the p95); the application's statement counts (--attribute app)
    # may differ from pg_stat_statements' by this share at most
    canary_min_requests: int = 100
    canary_max_mismatch: float = 0.05
    # --attribute role: a variant's role with fewer statements is "too few statements", never a
    # pass; the candidate's share of the requests must lie in this confidence interval around
    # the share asked (rollout --traffic, verify --canary --traffic)
    canary_min_statements: int = 20
    canary_share_confidence: float = 0.999
    # what a window must be to be trusted: queries per request off by at most this much from
    # request-metrics buckets its ends cut (relative); a window by time spanned by its samples
    # for at least this share of its length
    request_edge_tolerance: float = EDGE_TOLERANCE
    min_window_coverage: float = MIN_COVERAGE
    # checks to leave out (reported as "skipped", never as "pass")
    skip: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["skip"] = list(self.skip)
        return values


_RATIOS = {
    "min_query_reduction",
    "min_cache_hit_ratio",
    "max_error_rate",
    "critical_error_rate",
    "warning_cache_hit_ratio",
    "warning_kms_reuse_ratio",
    "rollback_error_rate",
    "rollback_cache_hit_ratio",
    "after_rollback_query_tolerance",
    "after_rollback_error_rate_tolerance",
    "after_rollback_p95_tolerance",
    "canary_max_mismatch",
    "canary_share_confidence",
    "request_edge_tolerance",
    "min_window_coverage",
}
_COUNTS = {"canary_min_requests", "canary_min_statements"}
# (lower, higher): the first must not exceed the second.
_ORDER = (
    ("max_error_rate", "critical_error_rate"),
    ("critical_error_rate", "rollback_error_rate"),
    ("max_p95_ms", "critical_p95_ms"),
    ("critical_p95_ms", "rollback_p95_ms"),
    ("rollback_cache_hit_ratio", "warning_cache_hit_ratio"),
    ("warning_cache_hit_ratio", "min_cache_hit_ratio"),
)


def load_thresholds(
    config_file: Path | None = None, *, project_dir: Path | None = None
) -> Thresholds:
    """The thresholds in force: defaults, then ``pyproject.toml``, then *config_file*.

    Raises ``ConfigError`` for an unreadable or malformed file, an unknown key or a bad value.
    """
    values, source = layered_table("verify", config_file, project_dir=project_dir)
    return thresholds_from(values, source=source)


def thresholds_from(values: Mapping[str, Any], *, source: str = "configuration") -> Thresholds:
    """``Thresholds`` from a mapping of overrides, validated (raises ``ConfigError``)."""
    known = {f.name: f for f in dataclasses.fields(Thresholds)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown verify setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key == "skip":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: skip must be a list of check names")
            checked[key] = tuple(value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, not {value!r}")
        if key in _RATIOS and not 0 <= value <= 1:
            raise ConfigError(f"{source}: {key} is a fraction between 0 and 1, not {value!r}")
        if value < 0:
            raise ConfigError(f"{source}: {key} must not be negative")
        if key in _COUNTS and value != int(value):
            raise ConfigError(f"{source}: {key} is a number of requests, not {value!r}")
        checked[key] = int(value) if key in _COUNTS else float(value)
    thresholds = Thresholds(**checked)
    for lower, higher in _ORDER:
        if getattr(thresholds, lower) > getattr(thresholds, higher):
            raise ConfigError(
                f"{source}: {lower} ({getattr(thresholds, lower)}) must not exceed "
                f"{higher} ({getattr(thresholds, higher)})"
            )
    return thresholds
