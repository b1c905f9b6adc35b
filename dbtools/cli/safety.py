"""``dbtools downgrade-plan``, ``dbtools rehearse``, ``dbtools lint``: before anyone undoes a
rollout, what the downgrade will do, proof that it undoes each revision, and the migrations'
online-safety rules."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dbtools.cli.options import (
    DECLARATIONS_HELP,
    alembic_ini_option,
    config_option,
    dsn_option,
    emit,
    format_option,
    output_options,
    pg_bin_option,
    printed_output_option,
    renamed_option,
)
from dbtools.db.connection import resolve_dsn
from dbtools.output import Destination

if TYPE_CHECKING:
    from dbtools.schema.revisions import RunOptions

F = TypeVar("F", bound=Callable[..., Any])


def project_run_options(func: F) -> F:
    """``--python``, ``--driver``, ``--url-env``, ``--version-locations``, ``--env-context``,
    ``--autocommit``: how the project's env.py runs, handed to the command as one ``run``
    (``RunOptions``)."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        python: str | None,
        driver: str | None,
        url_env: str | None,
        version_locations: tuple[str, ...],
        env_context: str | None,
        autocommit: bool,
        **kwargs: Any,
    ) -> Any:
        from dbtools.schema.revisions import RunOptions

        run = RunOptions(python, driver, url_env, version_locations, env_context, autocommit)
        return func(*args, run=run, **kwargs)

    options = [
        click.option(
            "--python",
            metavar="PATH",
            default=None,
            help="The project's interpreter: its env.py and revisions run there (its SQLAlchemy, "
            "its driver), dbtools' own dependencies stay here. Default: dbtools' interpreter.",
        ),
        click.option(
            "--driver",
            type=click.Choice(["psycopg2", "psycopg", "asyncpg"]),
            default=None,
            help="The project's PostgreSQL driver. Default: the one its ini's sqlalchemy.url "
            "names, else its pyproject.toml's dependencies, else with --python the first "
            "installed (psycopg2, psycopg, asyncpg), else psycopg.",
        ),
        click.option(
            "--url-env",
            metavar="NAME",
            default=None,
            help="An environment variable the project's env.py reads its database URL from: "
            "it is set to the target's URL (offline: a URL never connected) while env.py runs.",
        ),
        click.option(
            "--version-locations",
            metavar="DIR",
            multiple=True,
            help="Where the revisions are (repeatable), when env.py chooses the folder itself. "
            "Default: the ini's; when it names none with revisions, where env.py points Alembic.",
        ),
        click.option(
            "--env-context",
            metavar="MODULE:CALLABLE",
            default=None,
            help="A context manager the project's migrations run inside, as its own tools run "
            "them: MODULE:CALLABLE returns it (a Flask app's app_context(), the instance a "
            "project's revisions ask for). Imported in the project's interpreter.",
        ),
        click.option(
            "--autocommit",
            is_flag=True,
            help="Hand env.py an autocommit connection, as projects that build indexes "
            "CONCURRENTLY inside their revisions run them (dagster-postgres does).",
        ),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def base_schema_option(help: str) -> Callable[[F], F]:
    """``--base-schema``: the schema the history starts from (``dbtools.safety.base``)."""
    return click.option(
        "--base-schema", metavar="FILE.sql|MODULE:METADATA", default=None, help=help
    )


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
@dsn_option(
    help="Connect (read-only) for the current revision, relation sizes, row estimates and "
    "durations. Default: $DATABASE_URL when set; otherwise the plan is made offline."
)
@click.option("--offline", is_flag=True, help="Never connect, even if $DATABASE_URL is set.")
@alembic_ini_option
@project_run_options
@format_option("md", "json", default="md")
@output_options
def downgrade_plan(
    from_revision: str | None,
    to_revision: str,
    dsn: str | None,
    offline: bool,
    alembic_ini: str | None,
    run: RunOptions,
    output_format: str,
    destination: Destination,
) -> None:
    """Say exactly what a downgrade will do, before anyone runs it.

    The ordered steps Alembic would run, from the revision graph and the offline SQL of each
    revision (across a merge, each branch's revisions in the order Alembic runs them). Every
    statement is classified: the lock it takes and whether that blocks reads,
    writes or neither; whether it runs inside a transaction; whether it destroys data (an
    export step, `\\copy … TO` a CSV file, comes before it); whether it can be rerun safely if
    the downgrade is interrupted. Statements dbtools cannot classify are shown verbatim with a
    warning. A revision whose downgrade cannot be rendered offline is a warning step ("cannot
    be planned offline: …"); with a connection the revision's own reads are answered by the
    database, and the plan adds the size and estimated rows of every relation touched and an
    estimated duration.

    \b
    Examples:
      dbtools downgrade-plan --to base --offline
      dbtools downgrade-plan --dsn "$DATABASE_URL" --from current --to 0002
      dbtools downgrade-plan --to -1 --format json --output -

    \b
    Exit codes: 0 planned; 2 bad input (unknown revision, --to not below --from, no
    connection for --from current, an empty history), nothing written.
    """
    from dbtools.safety.plan import build_plan
    from dbtools.safety.render import plan_json, plan_markdown

    if offline and dsn is not None:
        raise click.UsageError("--offline and --dsn contradict each other")
    connect = dsn is not None or (
        not offline and (bool(os.environ.get("DATABASE_URL")) or from_revision == "current")
    )
    if offline and from_revision == "current":
        raise click.UsageError("--from current needs a connection; drop --offline")
    plan = build_plan(
        to_revision,
        from_revision,
        dsn=resolve_dsn(dsn) if connect else None,
        ini=alembic_ini,
        run=run,
    )
    text = plan_json(plan) if output_format == "json" else plan_markdown(plan)
    losses = len(plan.data_loss_tables)
    click.echo(
        f"Downgrade {plan.from_revision} → {plan.to_revision}: {len(plan.steps)} steps in "
        f"{len(plan.revisions)} revisions, {len(plan.warnings)} warnings"
        + (f", data loss in {losses} tables (exported first)" if losses else ""),
        err=True,
    )
    emit(
        text,
        destination,
        f"downgrade-plan-{plan.from_revision}-to-{plan.to_revision}",
        "json" if output_format == "json" else "md",
    )


@click.command("rehearse")
@dsn_option(
    help="A scratch database to rehearse in instead of a sandbox. Never taken from "
    "$DATABASE_URL. Refused when it holds data or is the database $DATABASE_URL names.",
    environment=False,
)
@click.option(
    "--allow-data",
    is_flag=True,
    help="Rehearse in --dsn even though it holds data: its migration objects are dropped.",
)
@renamed_option("--force", "--allow-data", "allow_data", is_flag=True)
@click.option(
    "--from", "from_revision", metavar="REV", default=None,
    help="First revision to rehearse; the ones below are applied without rehearsing them.",
)  # fmt: skip
@click.option(
    "--to", "to_revision", metavar="REV", default=None,
    help="Last revision to rehearse (default: every head).",
)  # fmt: skip
@click.option(
    "--keep-going",
    is_flag=True,
    help="Go on past a failure (the database is recreated, its base schema loaded again, and "
    "brought back) and print the whole table.",
)
@base_schema_option(
    "The schema the history starts from: a SQL file (a pg_dump --schema-only of production "
    "too) or a module:metadata the project's interpreter creates with create_all. The database "
    "is recreated empty and the base loaded first."
)
@pg_bin_option
@alembic_ini_option
@project_run_options
@config_option(help=DECLARATIONS_HELP)
@format_option("table", "json")
@printed_output_option
def rehearse(
    dsn: str | None,
    allow_data: bool,
    from_revision: str | None,
    to_revision: str | None,
    keep_going: bool,
    base_schema: str | None,
    pg_bin: Path | None,
    alembic_ini: str | None,
    run: RunOptions,
    config_file: Path | None,
    output_format: str,
    destination: Destination,
) -> None:
    """Rehearse every downgrade: upgrade → downgrade → upgrade, revision by revision.

    After each downgrade the schema (pg_dump --schema-only, normalised) must equal the schema
    before that revision's upgrade, and after the second upgrade it must equal the first
    upgrade's. Prints a pass/fail table naming the objects that differ (an index or a table a
    downgrade forgot). Column order and constraint names PostgreSQL generates are not
    differences (a note says so). The first failure stops the rehearsal, unless --keep-going.

    After every step the version table is read in the rehearsal's own database: if the
    project's env.py migrated another database, the rehearsal stops (exit 2) and nothing is
    judged. Revisions declared in [tool.dbtools.rehearse] irreversible = [{ revision = "…",
    reason = "…" }] are upgraded, not downgraded ("irreversible, by declaration").

    It runs in a throwaway sandbox unless --dsn names a scratch database; that database is
    downgraded to base first and left at the last revision rehearsed (--keep-going may drop and
    create it). A database that holds data (a row in any table but the migrations' version
    table) or that $DATABASE_URL names is refused unless --allow-data. -v logs each revision
    as it is rehearsed (revision i of n).

    A revision whose upgrade changed nothing in the schema is "no change" (it passes). Every
    failure names its source: the revision (its line), the project's env.py, the driver, or
    dbtools.

    \b
    Exit codes: 0 every revision passes; 1 a revision fails; 2 refused database, no sandbox,
    bad option, empty history, env.py migrated another database or failed before any
    revision, project not importable.
    """
    from dbtools.safety.rehearse import rehearse as run_rehearsal
    from dbtools.safety.render import rehearsal_json, rehearsal_table

    if allow_data and dsn is None:
        raise click.UsageError("--allow-data only applies to --dsn (a sandbox holds no data)")
    result = run_rehearsal(
        dsn=dsn,
        ini=alembic_ini,
        pg_bin=pg_bin,
        force=allow_data,
        from_revision=from_revision,
        to_revision=to_revision,
        keep_going=keep_going,
        config_file=config_file,
        run=run,
        base_schema=base_schema,
    )
    text = rehearsal_json(result) if output_format == "json" else rehearsal_table(result)
    emit(text, destination, "rehearsal", output_format)
    if not result.passed:
        click.get_current_context().exit(1)


@click.command("lint")
@click.option(
    "--revision",
    "only",
    metavar="REV",
    multiple=True,
    help="Lint only this revision (repeatable). Default: every revision.",
)
@alembic_ini_option
@project_run_options
@base_schema_option(
    "The schema the history starts from (a SQL file, or a module:metadata): the types of the "
    "columns it defines are known to the revisions that change them."
)
@config_option(help=DECLARATIONS_HELP)
@format_option("table", "json")
@printed_output_option
def lint(
    only: tuple[str, ...],
    alembic_ini: str | None,
    run: RunOptions,
    base_schema: str | None,
    config_file: Path | None,
    output_format: str,
    destination: Destination,
) -> None:
    """Check the migrations against the rules for online migrations.

    The upgrade and the downgrade SQL of each revision are checked separately (tables created
    by earlier revisions count as existing ones): index builds and drops without CONCURRENTLY
    on existing tables, DDL without lock_timeout/statement_timeout, table rewrites, constraints
    added without NOT VALID, destructive statements, and what squawk cannot see (DO blocks,
    VACUUM FULL, CLUSTER, TRUNCATE, SET LOCAL outside a transaction…). A revision whose SQL
    cannot be rendered offline is one finding (unrenderable-revision); the rest is linted.

    \b
    A finding is ignored only with a reason, by a comment in the revision's file:
      # dbtools-lint: ignore RULE[,RULE] [in upgrade|downgrade] because REASON
    An ignore without a reason (three words at least) or that matches nothing is a violation.
    A project declares in [tool.dbtools.lint] (each with a reason): skip_rules,
    timeouts_set_by_deploy, skip_revisions, skip_before.

    \b
    Exit codes: 0 no violations; 1 violations; 2 squawk missing, unknown revision, bad
    declarations, empty history, project not importable.
    """
    from dbtools.safety.lint import lint_revisions
    from dbtools.safety.render import lint_json, lint_table

    result = lint_revisions(
        ini=alembic_ini,
        only=only or None,
        config_file=config_file,
        run=run,
        base_schema=base_schema,
    )
    text = lint_json(result) if output_format == "json" else lint_table(result)
    emit(text, destination, "lint", output_format)
    if not result.passed:
        click.get_current_context().exit(1)


COMMANDS = [downgrade_plan, rehearse, lint]
