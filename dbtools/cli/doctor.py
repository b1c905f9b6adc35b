"""``dbtools doctor``: can dbtools work against this database?"""

from __future__ import annotations

import click

from dbtools.cli.options import dsn_option, emit, format_option, printed_output_option
from dbtools.db.connection import resolve_dsn
from dbtools.doctor import render_checks, run_doctor
from dbtools.output import Destination, dump_json


@click.command("doctor")
@dsn_option
@format_option("table", "json")
@printed_output_option
def doctor(dsn: str | None, output_format: str, destination: Destination) -> None:
    """Check the connection, pg_stat_statements and the role's privileges.

    --format json prints one document (schema_version, kind "doctor", target, ok, server,
    checks).

    Exit code 0 when dbtools can measure here, 1 when something is missing, 2 when the server
    cannot be reached.
    """
    result = run_doctor(resolve_dsn(dsn))
    text = (
        dump_json("doctor", result.as_dict()) if output_format == "json" else render_checks(result)
    )
    emit(text, destination, "doctor", output_format)
    click.get_current_context().exit(result.exit_code)


COMMANDS = [doctor]
