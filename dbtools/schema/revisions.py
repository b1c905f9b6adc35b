"""The project's Alembic setup as a library: configuration, the revision graph, upgrades.

``alembic.ini`` is found at ``DBTOOLS_ALEMBIC_INI``, else ``./alembic.ini``, else next to the
``dbtools`` package (a source checkout, the usual install: ``pip install -e .``). Every function
also takes ``ini=`` to point at another migration directory (``--alembic-ini``); its revisions
live in ``migrations/`` next to that file.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from dbtools.errors import ConfigError

log = logging.getLogger(__name__)

_REPO_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


IniPath = str | os.PathLike[str] | None


def find_alembic_ini(ini: IniPath = None) -> Path:
    """Locate alembic.ini: *ini* when given, else as the module docstring says.

    Raises ``ConfigError`` if there is none (or *ini* is not a file).
    """
    if ini is not None:
        if not Path(ini).is_file():
            raise ConfigError(f"alembic.ini not found: {ini}")
        return Path(ini).resolve()
    candidates = [os.environ.get("DBTOOLS_ALEMBIC_INI"), Path.cwd() / "alembic.ini", _REPO_INI]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise ConfigError("alembic.ini not found: set DBTOOLS_ALEMBIC_INI or run from the repository")


def alembic_config(
    dsn: str | None = None,
    *,
    output: TextIO | None = None,
    x_args: dict[str, str] | None = None,
    ini: IniPath = None,
) -> Config:
    """An Alembic ``Config`` for this project, pointed at *dsn* (else DATABASE_URL/PG*).

    Programmatic runs leave the caller's logging alone; *output* receives offline SQL.
    """
    ini = find_alembic_ini(ini)
    config = Config(str(ini), output_buffer=output) if output else Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    config.attributes["configure_logging"] = False
    if dsn is not None:
        config.attributes["dsn"] = dsn
    if x_args:
        config.attributes["x_args"] = dict(x_args)
    return config


def script_directory(ini: IniPath = None) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(ini=ini))


def head_revision(ini: IniPath = None) -> str:
    """The single head of the revision graph."""
    heads = script_directory(ini).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


def upgrade(
    dsn: str, target: str = "head", *, x_args: dict[str, str] | None = None, ini: IniPath = None
) -> None:
    log.info("alembic upgrade %s", target)
    command.upgrade(alembic_config(dsn, x_args=x_args, ini=ini), target)


def downgrade(
    dsn: str, target: str, *, x_args: dict[str, str] | None = None, ini: IniPath = None
) -> None:
    log.info("alembic downgrade %s", target)
    command.downgrade(alembic_config(dsn, x_args=x_args, ini=ini), target)


def offline_sql(revision_range: str, *, downgrade: bool = False, ini: IniPath = None) -> str:
    """The SQL Alembic would run for *revision_range* (``"base:head"``, ``"0003:0002"``)."""
    buffer = io.StringIO()
    config = alembic_config(output=buffer, ini=ini)
    if downgrade:
        command.downgrade(config, revision_range, sql=True)
    else:
        command.upgrade(config, revision_range, sql=True)
    return buffer.getvalue()
