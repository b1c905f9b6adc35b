"""``dbtools sandbox start|status|stop``: a throwaway local PostgreSQL."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from dbtools.cli.options import pg_bin_option
from dbtools.db.sandbox import Sandbox, default_directory

_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sandbox directory. Default: $TMPDIR/dbtools-sandbox-$USER.",
)


@click.group("sandbox")
def sandbox_group() -> None:
    """A throwaway PostgreSQL with pg_stat_statements loaded (no server to install).

    \b
    eval "$(dbtools sandbox start)"   # start it and point DATABASE_URL at it
    dbtools sandbox status
    dbtools sandbox stop               # stop it and delete its directory
    """


@sandbox_group.command("start")
@_dir_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="TCP port. Default: a free one."
)
@pg_bin_option
def start(directory: Path | None, port: int | None, pg_bin: Path | None) -> None:
    """Start a sandbox and print `export DATABASE_URL=…` for eval.

    The server keeps running after this command returns; stop it with `dbtools sandbox stop`.
    """
    sandbox = Sandbox(directory or default_directory(), port=port, pg_bin=pg_bin)
    sandbox.start()
    click.echo(f"export DATABASE_URL={shlex.quote(sandbox.dsn())}")
    click.echo(f"# PostgreSQL {sandbox.major} running in {sandbox.directory}", err=True)


@sandbox_group.command("status")
@_dir_option
def status(directory: Path | None) -> None:
    """Say whether a sandbox runs, and its DATABASE_URL. Exit code 1 when none runs."""
    state = Sandbox(directory or default_directory()).status()
    if not state.running:
        click.echo(f"no sandbox running in {state.directory}")
        click.get_current_context().exit(1)
    click.echo(f"running: pid {state.pid}, port {state.port}, binaries {state.pg_bin}")
    click.echo(f"export DATABASE_URL={shlex.quote(state.dsn or '')}")


@sandbox_group.command("stop")
@_dir_option
@click.option("--keep", is_flag=True, help="Keep the data directory for a later start.")
def stop(directory: Path | None, keep: bool) -> None:
    """Stop the sandbox (no process is left behind) and delete its directory."""
    sandbox = Sandbox(directory or default_directory())
    was_running = sandbox.status().running
    if keep:
        sandbox.stop()
    else:
        sandbox.destroy()
    verb = "stopped" if was_running else "no sandbox was running in"
    click.echo(f"{verb} {sandbox.directory}", err=True)


COMMANDS = [sandbox_group]
