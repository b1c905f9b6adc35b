"""``dbtools downgrade-plan``, ``dbtools rehearse``, ``dbtools lint``: before anyone undoes a
rollout, what the downgrade will do, proof that it undoes each revision, and the migrations'
online-safety rules."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dbtools.cli.options import format_option
from dbtools.connection import resolve_dsn
from dbtools.downgrade.output import timestamped_path, write_atomically
from dbtools.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


def alembic_ini_option(func: F) -> F:
    """``--alembic-ini``: plan, rehearse or lint another migration directory."""
    return click.option(
        "--alembic-ini",
        "alembic_ini",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="alembic.ini of the migrations (revisions in migrations/ beside it). "
        "Default: $DBTOOLS_ALEMBIC_INI, ./alembic.ini, then the project's.",
    )(func)


def output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        metavar="PATH",
        default=None,
        help="Write the report here ('-': standard output). "
        "Default: reports/<name>-<UTC timestamp>.<md|json>.",
    )(func)


def _emit(text: str, output: str | None, stem: str, suffix: str) -> None:
    """Write a report to *output* (atomically) or stdout, and say where it went."""
    if output == "-":
        click.echo(text, nl=False)
        return
    path = Path(output) if output else timestamped_path(stem, suffix)
    write_atomically(path, text)
    click.echo(f"Written to {path}")


@click.command("downgrade-plan")
@click.option(
    "--from",
    "from_revision",
    metavar="current|head|REV",
    default=None,
    help="Revision to start from. 'current' reads alembic_version (needs a connection). "
    "Default: current when connected, else head.",
)
@click.option(
    "--to",
    "to_revision",
    metavar="REV|base|-N",
    required=True,
    help="Revision to end at: a revision id below --from, 'base', or -N (N revisions down).",
)
@click.option(
    "--dsn",
    metavar="DSN",
    default=None,
    help="Connect (read-only) for the current revision, relation sizes, row estimates and "
    "durations. Default: $DATABASE_URL when set; otherwise the plan is made offline.",
)
@click.option("--offline", is_flag=True, help="Never connect, even if $DATABASE_URL is set.")
@alembic_ini_option
@format_option("md", "json", default="md")
@output_option
def downgrade_plan(
    from_revision: str | None,
    to_revision: str,
    dsn: str | None,
    offline: bool,
    alembic_ini: Path | None,
    output_format: str,
    output: str | None,
) -> None:
    """Say exactly what a downgrade will do, before anyone runs it.

    The ordered steps Alembic would run, from the revision graph and the offline SQL of each
    revision. Every statement is classified: the lock it takes and whether that blocks reads,
    writes or neither; whether it runs inside a transaction; whether it destroys data (an
    export step, `\\copy … TO` a CSV file, comes before it); whether it can be rerun safely if
    the downgrade is interrupted. Statements dbtools cannot classify are shown verbatim with a
    warning. With a connection the plan adds the size and estimated rows of every relation
    touched and an estimated duration.

    \b
    Examples:
      dbtools downgrade-plan --to base --offline
      dbtools downgrade-plan --dsn "$DATABASE_URL" --from current --to 0002
      dbtools downgrade-plan --to -1 --format json --output -

    \b
    Exit codes: 0 planned; 2 bad input (unknown revision, --to not below --from, no
    connection for --from current), nothing written.
    """
    from dbtools.downgrade.plan import build_plan
    from dbtools.downgrade.render import plan_json, plan_markdown

    if offline and dsn is not None:
        raise UsageError("--offline and --dsn contradict each other")
    connect = dsn is not None or (
        not offline and (bool(os.environ.get("DATABASE_URL")) or from_revision == "current")
    )
    if offline and from_revision == "current":
        raise UsageError("--from current needs a connection; drop --offline")
    plan = build_plan(
        to_revision,
        from_revision,
        dsn=resolve_dsn(dsn) if connect else None,
        ini=alembic_ini,
    )
    text = plan_json(plan) if output_format == "json" else plan_markdown(plan)
    if output != "-":
        losses = len(plan.data_loss_tables)
        click.echo(
            f"Downgrade {plan.from_revision} → {plan.to_revision}: {len(plan.steps)} steps in "
            f"{len(plan.revisions)} revisions, {len(plan.warnings)} warnings"
            + (f", data loss in {losses} tables (exported first)" if losses else "")
        )
    _emit(
        text,
        output,
        f"downgrade-plan-{plan.from_revision}-to-{plan.to_revision}",
        "json" if output_format == "json" else "md",
    )


COMMANDS = [downgrade_plan]
