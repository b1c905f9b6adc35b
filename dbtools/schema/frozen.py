"""dbtools' own revisions, recorded: their graph and manifests, readable without Alembic.

Importing a revision file imports Alembic and SQLAlchemy (half a second), yet ``verify``,
``snapshot`` and ``doctor`` only need the head revision and what each revision creates. Revisions
are frozen, so ``revisions.json`` beside this module records, for this project's own migrations,
each revision's id, its down revision and its ``MANIFEST`` (``manifest.record_revisions`` writes
it: ``python -m dbtools.schema.manifest``; ``manifest.head_revision`` and ``manifest_at`` read it), with the SHA-256 of the alembic.ini and of every
revision file it was made from. The record is used only for dbtools' own migrations and only while
every one of those files is as recorded; otherwise (another project's migrations, a revision
added or edited) the revisions are read through Alembic, as before: slower, never wrong.
``tests/test_imports.py`` fails when the record is out of date.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.errors import ConfigError

IniPath = str | os.PathLike[str] | None

OWN_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
OWN_VERSIONS = OWN_INI.parent / "migrations" / "versions"
RECORD = Path(__file__).with_name("revisions.json")


def find_alembic_ini(ini: IniPath = None) -> Path:
    """The ini (or pyproject.toml, or script directory) *ini* names, else the default one:
    ``$DBTOOLS_ALEMBIC_INI``, ``./alembic.ini``, then dbtools' own.

    Raises ``ConfigError`` if there is none.
    """
    if ini is not None:
        if not Path(ini).exists():
            raise ConfigError(f"alembic.ini not found: {ini}")
        return Path(ini).resolve()
    candidates = [os.environ.get("DBTOOLS_ALEMBIC_INI"), Path.cwd() / "alembic.ini", OWN_INI]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise ConfigError("alembic.ini not found: set DBTOOLS_ALEMBIC_INI or run from the repository")


@dataclass(frozen=True)
class RecordedRevision:
    """One revision as recorded: *manifest* is its own ``MANIFEST`` in JSON form."""

    revision: str
    down_revision: str | None
    manifest: dict[str, Any]


def source_digests() -> dict[str, str]:
    """The SHA-256 of dbtools' alembic.ini and of each revision file, by path from the ini's
    directory: what the record was made from."""
    files = [OWN_INI, *sorted(OWN_VERSIONS.glob("*.py"))]
    return {
        path.relative_to(OWN_INI.parent).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in files
    }


def _is_own(ini: IniPath) -> bool:
    try:
        found = find_alembic_ini(ini)
    except ConfigError:
        return False
    return (found / "alembic.ini" if found.is_dir() else found) == OWN_INI


def recorded_revisions(ini: IniPath = None) -> tuple[RecordedRevision, ...] | None:
    """dbtools' own revisions as recorded, base first; None when *ini* names other migrations,
    or when the record is missing or was made from other files (read them through Alembic)."""
    if not _is_own(ini):
        return None
    try:
        record = json.loads(RECORD.read_text())
        if record["sources"] != source_digests():
            return None
        return tuple(
            RecordedRevision(entry["revision"], entry["down_revision"], entry["manifest"])
            for entry in record["revisions"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
