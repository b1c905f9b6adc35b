"""``dbtools demo``: the whole rollout on an embedded PostgreSQL, in about a minute."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from dbtools.cli.options import (
    dsn_option,
    emit,
    format_option,
    output_dir_option,
    pg_bin_option,
    printed_output_option,
    show_progress,
)
from dbtools.cli.signals import interruptible
from dbtools.output import Destination


@contextlib.contextmanager
def _progress_bar(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    if not show_progress():
        yield lambda done, total: None
        return
    bar: Any = click.progressbar(length=total, label=f"  {label:<10}", file=sys.stderr)
    with bar:
        seen = [0]

        def advance(done: int, _total: int) -> None:
            bar.update(done - seen[0])
            seen[0] = done

        yield advance


@click.command("demo")
@dsn_option(
    help="An empty database to run the demo in (migrated and seeded; the server must preload "
    "pg_stat_statements). Without --dsn the demo starts a throwaway embedded PostgreSQL and "
    "deletes it afterwards; $DATABASE_URL is never used.",
    environment=False,
)
@click.option(
    "--requests",
    type=click.IntRange(20, 1_000_000),
    default=2000,
    show_default=True,
    help="Requests in each window.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 200),
    default=20,
    show_default=True,
    help="Concurrent requests per wave.",
)
@click.option(
    "--duplication",
    type=click.Choice(["none", "low", "medium", "high"]),
    default="medium",
    show_default=True,
    help="How often requests repeat (the app cache's hit ratio: 0/20/50/70%).",
)
@format_option("table", "json")
@printed_output_option
@output_dir_option
@pg_bin_option
def demo(
    dsn: str | None, requests: int, concurrency: int, duplication: str, output_format: str,
    destination: Destination, output_dir: Path, pg_bin: Path | None,
) -> None:  # fmt: skip
    """Run the rollout end to end and show what dbtools measured.

    Starts an embedded PostgreSQL (no server to install), runs `alembic upgrade head`, seeds the
    flight-search tables, captures a baseline window on the per-request path (three queries per
    request) and a candidate window on the batched path (three queries per batch), runs
    `dbtools verify`, writes the report (HTML and Markdown) and a downgrade plan to
    --output-dir, then a canary window (10% of the requests batched) judged whole and per
    variant, with its report beside the others; prints a summary (--format json: verify's
    documents and the files written) and stops the server: no process is left behind, also on
    Ctrl-C. --output-dir is checked before anything starts.

    With --dsn it runs against that database instead; it must be empty (the demo migrates and
    seeds it), and the server must have pg_stat_statements preloaded.

    Exit codes: verify's (0 pass, 1 fail, 3 rollback); 2 usage or connection error; 130
    interrupted.
    """
    from dbtools.demo import DemoConfig, run_demo, summary_json, summary_text

    config = DemoConfig(
        requests=requests, concurrency=concurrency, duplication=duplication,
        output_dir=output_dir, pg_bin=pg_bin,
    )  # fmt: skip
    cleaned = (
        "the sandbox was stopped" if dsn is None else "the database keeps what was done so far"
    )
    with interruptible(f"demo interrupted: {cleaned}"):
        result = run_demo(
            config,
            dsn=dsn,
            on_step=lambda step: click.echo(f"- {step}", err=True),
            progress=_progress_bar,
        )
    text = summary_json(result) if output_format == "json" else "\n" + summary_text(result)
    emit(text, destination, "demo", output_format)
    click.get_current_context().exit(result.verification.exit_code)


COMMANDS = [demo]
