"""What each revision creates and expects, and what a database at a given revision should hold.

Every revision module exports ``MANIFEST``: the schemas, tables, indexes (each by its exact
definition, as ``pg_get_indexdef`` prints it), per-table storage parameters and functions its
upgrade creates, and what it drops. Revisions are frozen, and so are their manifests
(``tests/test_manifests.py`` proves that each upgrade creates exactly its manifest).

``manifest_at(revision)`` adds them up from base to *revision*: what ``verify``, ``report``, the
dashboard and the workload expect of a database at that revision. Names are schema-qualified and
quoted where needed (``db.catalog.qualified``). For dbtools' own migrations the revisions and
their manifests are read from their record (``frozen``), without importing Alembic or SQLAlchemy;
``record_revisions`` (``python -m dbtools.schema.manifest``) rewrites it from the revision files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import psycopg

from dbtools.db.catalog import (
    IDENTIFIER,
    qualified,
    read_alembic_revision,
    split_qualified,
    unquote_ident,
)
from dbtools.errors import ConfigError
from dbtools.schema import frozen
from dbtools.schema.frozen import IniPath, RecordedRevision
from dbtools.schema.monitoring import MONITORING_SCHEMA

_NAME = IDENTIFIER.pattern
_INDEX_DEFINITION = re.compile(
    rf"CREATE (?P<unique>UNIQUE )?INDEX (?P<name>{_NAME}) ON (?P<only>ONLY )?"
    rf"(?P<schema>{_NAME})\.(?P<table>{_NAME}) USING (?P<rest>.+)",
    re.DOTALL,
)


@dataclass(frozen=True)
class IndexDefinition:
    """An index, by its exact definition as ``pg_get_indexdef`` prints it, e.g.
    ``CREATE INDEX ix ON public.t USING btree (id) WHERE (status = 'active'::text)``.

    The concurrent build and the drop are derived from it, so what a revision builds and what the
    catalog shows afterwards compare as text. *batch* marks the indexes the batched queries need:
    ``verify`` expects them used in the candidate window.
    """

    definition: str
    purpose: str = ""
    batch: bool = False

    def __post_init__(self) -> None:
        if not _INDEX_DEFINITION.fullmatch(self.definition):
            raise ValueError(
                f"not an index definition as pg_get_indexdef prints it: {self.definition!r}"
            )

    @cached_property
    def _parts(self) -> dict[str, str]:
        match = _INDEX_DEFINITION.fullmatch(self.definition)
        assert match is not None  # checked when made
        return {key: value or "" for key, value in match.groupdict().items()}

    @property
    def schema(self) -> str:
        return unquote_ident(self._parts["schema"])

    @property
    def name(self) -> str:
        return unquote_ident(self._parts["name"])

    @property
    def table(self) -> str:
        """The table's name, without its schema."""
        return unquote_ident(self._parts["table"])

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def qualified_table(self) -> str:
        return qualified(self.schema, self.table)

    def create_sql(self, *, concurrently: bool = True, if_not_exists: bool = False) -> str:
        """The definition, built ``CONCURRENTLY`` (and ``IF NOT EXISTS``) when asked."""
        p = self._parts
        options = ("CONCURRENTLY " if concurrently else "") + (
            "IF NOT EXISTS " if if_not_exists else ""
        )
        return (
            f"CREATE {p['unique']}INDEX {options}{p['name']} ON {p['only']}"
            f"{p['schema']}.{p['table']} USING {p['rest']}"
        )

    def drop_sql(self, *, concurrently: bool = True) -> str:
        how = "DROP INDEX CONCURRENTLY" if concurrently else "DROP INDEX"
        return f"{how} IF EXISTS {self.qualified_name}"


@dataclass(frozen=True)
class TableSettings:
    """Storage parameters (autovacuum, for the high-churn tables) a revision sets on one table."""

    schema: str
    table: str
    settings: Mapping[str, str]
    reason: str = ""

    @property
    def qualified_table(self) -> str:
        return qualified(self.schema, self.table)


@dataclass(frozen=True)
class SettingDifference:
    """One expected storage parameter a table does not hold; *found* None: not set at all."""

    option: str
    expected: str
    found: str | None


def setting_differences(
    expected: TableSettings, reloptions: Mapping[str, str]
) -> tuple[SettingDifference, ...]:
    """The settings in *expected* that a table's *reloptions* (name to value, as
    ``reading.rows.parse_reloptions`` reads them) lack or hold another value for, in *expected*'s
    order; empty when every one is in place. Options nobody expects (a DBA's fillfactor) do not
    count."""
    return tuple(
        SettingDifference(option, value, reloptions.get(option))
        for option, value in expected.settings.items()
        if reloptions.get(option) != value
    )


@dataclass(frozen=True)
class Manifest:
    """What a revision creates (its own ``MANIFEST``), or what every revision up to one has
    created (``manifest_at``; *revision* None: never migrated).

    *functions* are named with their argument types, as ``DROP FUNCTION`` names them
    (``perf_monitoring.purge_older_than(integer)``); *dropped* names the tables, indexes,
    functions and schemas a revision removes.
    """

    revision: str | None = None
    schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    indexes: tuple[IndexDefinition, ...] = ()
    table_settings: tuple[TableSettings, ...] = ()
    functions: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    @property
    def batch_indexes(self) -> tuple[IndexDefinition, ...]:
        return tuple(index for index in self.indexes if index.batch)

    @property
    def monitoring_tables(self) -> tuple[str, ...]:
        """The names (without the schema) of the monitoring tables."""
        return tuple(
            name
            for schema, name in map(split_qualified, self.tables)
            if schema == MONITORING_SCHEMA
        )

    def then(self, later: Manifest) -> Manifest:
        """This manifest followed by *later*'s revision: its drops removed, its objects added,
        its storage parameters set over the earlier ones."""
        gone = set(later.dropped)
        settings: dict[tuple[str, str], dict[str, str]] = {}
        reasons: dict[tuple[str, str], str] = {}
        for spec in (*self.table_settings, *later.table_settings):
            if spec.qualified_table not in gone:
                settings.setdefault((spec.schema, spec.table), {}).update(spec.settings)
                reasons[spec.schema, spec.table] = spec.reason
        return Manifest(
            revision=later.revision,
            schemas=(*(s for s in self.schemas if s not in gone), *later.schemas),
            tables=(*(t for t in self.tables if t not in gone), *later.tables),
            indexes=(
                *(
                    index
                    for index in self.indexes
                    if index.qualified_name not in gone and index.qualified_table not in gone
                ),
                *later.indexes,
            ),
            table_settings=tuple(
                TableSettings(schema, table, values, reasons[schema, table])
                for (schema, table), values in settings.items()
            ),
            functions=(*(f for f in self.functions if f not in gone), *later.functions),
        )


BASE = "base"
HEAD = "head"


def manifest_at(revision: str | None, *, ini: IniPath = None) -> Manifest:
    """What the revisions from base up to *revision* create: a revision id, ``head``, or
    ``base``/None (never migrated: an empty manifest).

    Raises ``ConfigError`` for a revision the migrations do not know (a database migrated by a
    newer dbtools, a typo) or one that exports no ``MANIFEST``.
    """
    if revision is None or revision == BASE:
        return Manifest()
    recorded = frozen.recorded_revisions(ini)
    if recorded is None:
        return _manifest_through_alembic(revision, ini)
    by_id = {entry.revision: entry for entry in recorded}
    target = _recorded_head(recorded) if revision == HEAD else revision
    if target not in by_id:
        known = ", ".join(by_id)
        raise ConfigError(
            f"unknown revision {revision!r}: the migrations in {frozen.OWN_VERSIONS.parent} "
            f"have {known}"
        )
    chain: list[RecordedRevision] = []
    at: str | None = target
    while at is not None:
        chain.append(by_id[at])
        at = by_id[at].down_revision
    manifest = Manifest()
    for entry in reversed(chain):
        manifest = manifest.then(manifest_from_json(entry.manifest, entry.revision))
    return manifest


def head_revision(ini: IniPath = None) -> str:
    """The single head of the revision graph (from the record when it holds: no Alembic).

    Raises ``ConfigError`` when the migrations have several heads.
    """
    recorded = frozen.recorded_revisions(ini)
    if recorded is not None:
        return _recorded_head(recorded)
    heads = _script_directory(ini).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return str(heads[0])


def _recorded_head(recorded: tuple[RecordedRevision, ...]) -> str:
    downs = {entry.down_revision for entry in recorded}
    heads = [entry.revision for entry in recorded if entry.revision not in downs]
    if len(heads) != 1:
        raise ConfigError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


def _script_directory(ini: IniPath) -> Any:
    # Alembic (and SQLAlchemy, which it imports) only for migrations the record does not hold.
    from dbtools.schema.revisions import script_directory

    return script_directory(ini)


def _manifest_through_alembic(revision: str, ini: IniPath) -> Manifest:
    from alembic.util import CommandError  # with the script directory: see _script_directory

    script = _script_directory(ini)
    try:
        target = script.get_revision(revision)
    except CommandError as err:
        known = ", ".join(rev.revision for rev in reversed(list(script.walk_revisions())))
        raise ConfigError(
            f"unknown revision {revision!r}: the migrations in {script.dir} have {known}"
        ) from err
    if target is None:
        return Manifest()
    manifest = Manifest()
    for rev in reversed(list(script.iterate_revisions(target.revision, "base"))):
        own = getattr(rev.module, "MANIFEST", None)
        if not isinstance(own, Manifest):
            raise ConfigError(f"revision {rev.revision} ({rev.path}) exports no MANIFEST")
        manifest = manifest.then(dataclasses.replace(own, revision=rev.revision))
    return manifest


def manifest_as_json(manifest: Manifest) -> dict[str, Any]:
    """A revision's own manifest as its record holds it (no revision id: the record's own)."""
    found = dataclasses.asdict(manifest)
    found.pop("revision")
    for spec in found["table_settings"]:
        spec["settings"] = dict(spec["settings"])
    return found


def manifest_from_json(value: Mapping[str, Any], revision: str) -> Manifest:
    """The ``Manifest`` ``manifest_as_json`` recorded for *revision*."""
    return Manifest(
        revision=revision,
        schemas=tuple(value["schemas"]),
        tables=tuple(value["tables"]),
        indexes=tuple(IndexDefinition(**index) for index in value["indexes"]),
        table_settings=tuple(
            TableSettings(s["schema"], s["table"], dict(s["settings"]), s["reason"])
            for s in value["table_settings"]
        ),
        functions=tuple(value["functions"]),
        dropped=tuple(value["dropped"]),
    )


def revision_record() -> dict[str, Any]:
    """The record of dbtools' own revisions, read through Alembic from the revision files."""
    script = _script_directory(frozen.OWN_INI)
    revisions = []
    for rev in reversed(list(script.walk_revisions())):
        own = getattr(rev.module, "MANIFEST", None)
        if not isinstance(own, Manifest):
            raise ConfigError(f"revision {rev.revision} ({rev.path}) exports no MANIFEST")
        down = rev.down_revision
        if down is not None and not isinstance(down, str):
            raise ConfigError(f"revision {rev.revision}: a merge; the record holds a chain only")
        revisions.append(
            {"revision": rev.revision, "down_revision": down, "manifest": manifest_as_json(own)}
        )
    return {"sources": frozen.source_digests(), "revisions": revisions}


def record_revisions() -> None:
    """Rewrite the record of dbtools' own revisions (``frozen.RECORD``)."""
    frozen.RECORD.write_text(json.dumps(revision_record(), indent=1) + "\n")


def database_manifest(conn: psycopg.Connection[Any], *, ini: IniPath = None) -> Manifest:
    """The manifest at the revision *conn*'s database is at (``alembic_version``)."""
    return manifest_at(read_alembic_revision(conn), ini=ini)


if __name__ == "__main__":
    # The revision files import this module by name: record with that module's Manifest.
    from dbtools.schema import manifest

    manifest.record_revisions()
