"""The pg_stat_statements column adapter: the one place version differences live."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from dbtools.db.server import ServerInfo, require_pg_stat_statements
from dbtools.errors import PrerequisiteMissing
from dbtools.reading.rows import StatementRow, column_names

OLDEST_SUPPORTED = (1, 8)
NEWEST_KNOWN = (1, 12)

# The columns pg_stat_statements has that snapshots do not store (yet), by the extension
# version that added them; ``live.read_unstored`` reads them live. Storing one needs a
# revision of the monitoring tables; until then a report shows them as totals since the entry
# started counting.
UNSTORED_COLUMNS: tuple[tuple[tuple[int, int], tuple[str, ...]], ...] = (
    ((1, 8), (
        "min_plan_time", "max_plan_time", "mean_plan_time", "stddev_plan_time",
        "min_exec_time", "max_exec_time", "mean_exec_time", "stddev_exec_time",
        "local_blks_dirtied", "local_blks_written", "wal_fpi",
    )),
    ((1, 10), (
        "temp_blk_read_time", "temp_blk_write_time", "jit_functions", "jit_generation_time",
        "jit_inlining_count", "jit_inlining_time", "jit_optimization_count",
        "jit_optimization_time", "jit_emission_count", "jit_emission_time",
    )),
    ((1, 11), (
        "local_blk_read_time", "local_blk_write_time", "jit_deform_count", "jit_deform_time",
        "minmax_stats_since",
    )),
    ((1, 12), ("wal_buffers_full", "parallel_workers_to_launch", "parallel_workers_launched")),
)  # fmt: skip


@dataclass(frozen=True)
class StatementColumns:
    """How one pg_stat_statements extension version spells what dbtools stores.

    The one place version differences live (docs/postgresql.md, "pg_stat_statements across
    extension versions"): 1.9 added ``toplevel`` and ``pg_stat_statements_info``; 1.11 renamed
    ``blk_read_time`` to ``shared_blk_read_time`` and added ``stats_since``.
    """

    version: tuple[int, int]
    schema: str

    @property
    def has_toplevel(self) -> bool:
        return self.version >= (1, 9)

    @property
    def has_info(self) -> bool:
        return self.version >= (1, 9)

    @property
    def has_stats_since(self) -> bool:
        return self.version >= (1, 11)

    def view(self, name: str = "pg_stat_statements") -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def expressions(self) -> dict[str, sql.Composable]:
        """The SQL expression (over ``s``, the view) for each ``StatementRow`` column."""
        renamed = self.version >= (1, 11)
        special: dict[str, sql.Composable] = {
            "rolname": sql.SQL("r.rolname::text"),
            "toplevel": sql.SQL("s.toplevel" if self.has_toplevel else "true"),
            "wal_bytes": sql.SQL("s.wal_bytes::bigint"),
            "shared_blk_read_time": sql.SQL(
                "s.shared_blk_read_time" if renamed else "s.blk_read_time"
            ),
            "shared_blk_write_time": sql.SQL(
                "s.shared_blk_write_time" if renamed else "s.blk_write_time"
            ),
            "stats_since": sql.SQL(
                "s.stats_since" if self.has_stats_since else "NULL::timestamptz"
            ),
        }
        return {
            name: special.get(name, sql.SQL("s.") + sql.Identifier(name))
            for name in column_names(StatementRow)
        }

    def toplevel_calls(self, database_oid: sql.Composable) -> sql.Composable:
        """Every top-level call counted in the database *database_oid*, whoever ran it
        (dbtools included; texts not read). On 1.8, which does not tell, every call."""
        toplevel = sql.SQL(" AND toplevel" if self.has_toplevel else "")
        return sql.SQL(
            "(SELECT coalesce(sum(calls), 0)::bigint FROM {}(false) WHERE dbid = {}{})"
        ).format(self.view(), database_oid, toplevel)

    def unstored_columns(self) -> tuple[str, ...]:
        """The columns of this version that snapshots do not store (``UNSTORED_COLUMNS``)."""
        return tuple(
            name for since, names in UNSTORED_COLUMNS if self.version >= since for name in names
        )

    def unstored_expressions(self) -> dict[str, sql.Composable]:
        """The SQL expression (over ``s``) of each unstored column (``wal_fpi`` and
        ``wal_buffers_full`` as bigint: numeric in the view)."""
        return {
            name: sql.SQL("s.")
            + sql.Identifier(name)
            + sql.SQL("::bigint" if name.startswith("wal_") else "")
            for name in self.unstored_columns()
        }

    def info_expressions(self) -> tuple[sql.Composable, sql.Composable]:
        """``pg_stat_statements_info.stats_reset`` and ``dealloc`` (NULL before 1.9)."""
        if not self.has_info:
            return sql.SQL("NULL::timestamptz"), sql.SQL("NULL::bigint")
        info = self.view("pg_stat_statements_info")
        return (
            sql.SQL("(SELECT stats_reset FROM {})").format(info),
            sql.SQL("(SELECT dealloc FROM {})").format(info),
        )


def parse_version(text: str) -> tuple[int, int]:
    """``'1.10'`` as ``(1, 10)``."""
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError as err:
        raise PrerequisiteMissing(f"unrecognised pg_stat_statements version {text!r}") from err


def statement_columns(info: ServerInfo) -> StatementColumns:
    """The adapter for the server's pg_stat_statements; raises ``PrerequisiteMissing`` when it is
    not loaded, not created, or older than 1.8. Versions newer than 1.12 read as 1.12."""
    require_pg_stat_statements(info)
    assert info.pgss_version is not None and info.pgss_schema is not None
    version = parse_version(info.pgss_version)
    if version < OLDEST_SUPPORTED:
        raise PrerequisiteMissing(
            f"pg_stat_statements {info.pgss_version} is too old: dbtools needs 1.8 or newer "
            "(PostgreSQL 13+); run: ALTER EXTENSION pg_stat_statements UPDATE"
        )
    return StatementColumns(min(version, NEWEST_KNOWN), info.pgss_schema)
