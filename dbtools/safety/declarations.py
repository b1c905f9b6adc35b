"""What a project declares about its own migrations, each with a reason: ``[tool.dbtools.lint]``
(rules to leave out, "timeouts are set by the deploy", revisions not to lint) and
``[tool.dbtools.rehearse]`` (revisions whose downgrade is knowingly lossy or empty).

They are read from ``--config FILE`` when given, else from the ``pyproject.toml`` beside the
project's ``alembic.ini`` (none: nothing declared)::

    [tool.dbtools.lint]
    skip_rules = [{ rule = "prefer-bigint-over-int", reason = "ids stay far below 2**31" }]
    timeouts_set_by_deploy = "the deploy job runs alembic with PGOPTIONS='-c lock_timeout=3s'"
    skip_revisions = [{ revision = "cf03bd6bae1d", reason = "the baseline, applied in 2023" }]
    skip_before = { revision = "4a5e3465beb6", reason = "older revisions ran before dbtools" }

    [tool.dbtools.rehearse]
    irreversible = [{ revision = "e8283ffb257e", reason = "its downgrade cannot restore rows" }]

A reason has at least ``MIN_REASON_WORDS`` words. Anything malformed, unknown keys and revisions
the migrations do not have are a ``ConfigError`` (exit code 2).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtools.config import read_toml, section
from dbtools.errors import ConfigError

MIN_REASON_WORDS = 3
# Squawk's rules that only ask for timeouts in the script ("timeouts are set by the deploy").
TIMEOUT_RULES = ("require-lock-timeout", "require-statement-timeout")


@dataclass(frozen=True)
class LintDeclarations:
    """``[tool.dbtools.lint]``: every mapping is name → reason."""

    skip_rules: dict[str, str] = field(default_factory=dict)
    timeouts_set_by_deploy: str | None = None
    skip_revisions: dict[str, str] = field(default_factory=dict)
    skip_before: tuple[str, str] | None = None  # (revision, reason): its ancestors are not linted

    @property
    def rules_left_out(self) -> dict[str, str]:
        """Every rule not applied, with its reason (the timeout rules when the deploy sets them)."""
        left_out = dict(self.skip_rules)
        if self.timeouts_set_by_deploy:
            for name in TIMEOUT_RULES:
                left_out.setdefault(
                    name, f"timeouts are set by the deploy: {self.timeouts_set_by_deploy}"
                )
        return left_out


@dataclass(frozen=True)
class RehearseDeclarations:
    """``[tool.dbtools.rehearse]``: revisions whose downgrade is not rehearsed, and why."""

    irreversible: dict[str, str] = field(default_factory=dict)


def declarations_file(project_dir: Path, config_file: Path | None) -> Path | None:
    """The file declarations come from: *config_file*, else ``pyproject.toml`` in *project_dir*."""
    if config_file is not None:
        return config_file
    pyproject = project_dir / "pyproject.toml"
    return pyproject if pyproject.is_file() else None


def lint_declarations(path: Path | None, known: Collection[str]) -> LintDeclarations:
    """``[tool.dbtools.lint]`` of *path* (None: nothing declared); *known* revision ids."""
    table = _table(path, "lint")
    if path is None or not table:
        return LintDeclarations()
    where = f"{path} [tool.dbtools.lint]"
    _no_unknown_keys(
        table, ("skip_rules", "timeouts_set_by_deploy", "skip_revisions", "skip_before"), where
    )
    deploy = table.get("timeouts_set_by_deploy")
    if deploy is not None:
        deploy = _reason(deploy, f"{where} timeouts_set_by_deploy")
    before = table.get("skip_before")
    skip_before = None
    if before is not None:
        if not isinstance(before, dict):
            raise ConfigError(f"{where}: skip_before must be {{ revision = …, reason = … }}")
        skip_before = next(
            iter(_named_reasons([before], "revision", known, f"{where} skip_before").items())
        )
    return LintDeclarations(
        skip_rules=_named_reasons(table.get("skip_rules", []), "rule", None, f"{where} skip_rules"),
        timeouts_set_by_deploy=deploy,
        skip_revisions=_named_reasons(
            table.get("skip_revisions", []), "revision", known, f"{where} skip_revisions"
        ),
        skip_before=skip_before,
    )


def rehearse_declarations(path: Path | None, known: Collection[str]) -> RehearseDeclarations:
    """``[tool.dbtools.rehearse]`` of *path* (None: nothing declared)."""
    table = _table(path, "rehearse")
    if path is None or not table:
        return RehearseDeclarations()
    where = f"{path} [tool.dbtools.rehearse]"
    _no_unknown_keys(table, ("irreversible",), where)
    return RehearseDeclarations(
        irreversible=_named_reasons(
            table.get("irreversible", []), "revision", known, f"{where} irreversible"
        )
    )


def _table(path: Path | None, name: str) -> dict[str, Any]:
    """``[tool.dbtools.NAME]`` (in a ``--config`` file also a bare ``[NAME]``); empty if none."""
    if path is None:
        return {}
    document = read_toml(path)
    if path.name != "pyproject.toml" and name in document:
        return section(document, name, path)
    return section(document, name, path, file_is_pyproject=True)


def _no_unknown_keys(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )


def _named_reasons(
    items: object, key: str, known: Collection[str] | None, where: str
) -> dict[str, str]:
    """``[{ KEY = name, reason = "…" }, …]`` → {name: reason}, each checked."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError(f"{where}: expected a list of {{ {key} = …, reason = … }}")
    found: dict[str, str] = {}
    for item in items:
        if set(item) != {key, "reason"} or not isinstance(item[key], str):
            raise ConfigError(f'{where}: each entry is {{ {key} = "…", reason = "…" }}')
        name = item[key]
        if known is not None and name not in known:
            raise ConfigError(f"{where}: unknown revision {name!r}")
        found[name] = _reason(item["reason"], f"{where} {name}")
    return found


def _reason(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value.split()) < MIN_REASON_WORDS:
        raise ConfigError(f"{where}: needs a reason of at least {MIN_REASON_WORDS} words")
    return value.strip()
