"""Options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def dsn_option(func: F) -> F:
    """``--dsn``: where to connect (URL or keyword DSN); defaults to DATABASE_URL, then PG*."""
    return click.option(
        "--dsn",
        metavar="DSN",
        default=None,
        help="PostgreSQL URL or keyword DSN. Default: $DATABASE_URL, then libpq's PG* variables.",
    )(func)


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """``--format``: how to render the result (tables for people, json for pipelines)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def config_option(func: F) -> F:
    """``--config``: a TOML file of thresholds (else ``[tool.dbtools]`` in pyproject.toml)."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML file with a [verify] table of thresholds.",
    )(func)


def output_dir_option(func: F) -> F:
    """``--output-dir``: where generated reports land (default ``reports/``)."""
    from dbtools.output import DEFAULT_DIRECTORY

    return click.option(
        "--output-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DIRECTORY,
        show_default=True,
        help="Where reports are written.",
    )(func)
