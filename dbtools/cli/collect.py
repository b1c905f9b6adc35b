"""``dbtools collect``: a sample of one database or a fleet every interval."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from dbtools.cli.options import Duration, dsn_option, renamed_option, store_option, verbosity
from dbtools.db.connection import normalise_dsn
from dbtools.errors import EXIT_INTERRUPTED, ConnectionFailed

if TYPE_CHECKING:
    from dbtools.store.collector import Collector, Round

# The library is imported when the command runs: `dbtools --help` starts faster.


@contextmanager
def _stopped_by_signals(collector: Collector) -> Iterator[list[int]]:
    """SIGTERM and Ctrl-C stop *collector* (its round in progress is abandoned); yields the
    signals received."""
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        collector.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("collect")
@dsn_option
@click.option(
    "--target-dsn",
    "targets",
    metavar="NAME=DSN",
    multiple=True,
    help="A database to collect from, named NAME in the repository (repeatable).",
)
@renamed_option("--target", "--target-dsn", "targets", metavar="NAME=DSN", multiple=True)
@click.option(
    "--targets",
    "targets_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file of [[target]] tables: name, and dsn or service (a libpq service name).",
)
@store_option
@click.option(
    "--interval",
    type=Duration(),
    default="60s",
    show_default=True,
    help="Time between the starts of two rounds: 60s, 5m.",
)
@click.option("--once", is_flag=True, help="One round, then exit (for cron).")
@click.option(
    "--retention",
    type=Duration(),
    default=None,
    help="Purge samples older than this (14d) after each round, in small batches. "
    "Default: keep everything.",
)
@click.option(
    "--rollup-after",
    type=Duration(),
    default=None,
    help="Keep one sample per hour of the samples older than this (2d), exactly: a window "
    "on them says it is on rolled-up data. Default: keep every sample.",
)
@click.option(
    "--metrics-grace",
    type=Duration(),
    default="2m",
    show_default=True,
    help="With --store: how late an application's request/app metrics row may be committed "
    "for its time (behind the latest copied) and still be copied to the store.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Targets read at the same time (a connection each), as pg_dump's --jobs.",
)
@renamed_option("--concurrency", "--jobs", "jobs", type=click.IntRange(1, 64))
@click.pass_context
def collect(
    ctx: click.Context,
    dsn: str | None,
    targets: tuple[str, ...],
    targets_file: Path | None,
    store: str | None,
    interval: int,
    once: bool,
    retention: int | None,
    rollup_after: int | None,
    metrics_grace: int,
    jobs: int,
) -> None:
    """Store a sample of each target's statistics every interval, compactly.

    A sample is what `dbtools snapshot` stores, without a label: only the entries whose
    counters moved since the target's previous sample, texts once per statement. Samples go to
    each target's own perf_monitoring schema, or with --store to one central repository keyed
    by target (required for a read replica), with each target's request_metrics and
    app_metrics rows copied there exactly once (rows committed later than --metrics-grace
    behind the latest copied are not). verify and report take windows of them by time
    (`--baseline last:10m`, `A..B` with ISO times).

    \b
    dbtools collect --interval 60s --retention 14d -v
    dbtools collect --once                       # one round, e.g. from cron
    dbtools collect --target-dsn app=postgresql://app-db/app \\
        --target-dsn billing=service=billing --store postgresql://monitoring/perf --retention 14d

    A target that is down or refusing is logged and retried next round; the others keep their
    interval. One collector per target: a second one is refused, naming the first.
    -v prints one line per round on stderr; a summary is printed on exit.

    \b
    Exit codes: 0 done (also after SIGTERM: the round in progress is abandoned, nothing half
    stored); 2 usage, connection or configuration error, another collector holds a target, or
    --once sampled no target at all; 130 Ctrl-C.
    """
    from dbtools import Collector
    from dbtools.db.connection import resolve_dsn
    from dbtools.store.collector import targets_from

    given_dsn = resolve_dsn(dsn) if dsn is not None or not (targets or targets_file) else None
    chosen = targets_from(given_dsn, targets, targets_file)
    verbose = verbosity() > 0
    with Collector(
        chosen,
        store=normalise_dsn(store) if store is not None else None,
        interval_s=float(interval),
        retention_s=float(retention) if retention is not None else None,
        rollup_after_s=float(rollup_after) if rollup_after is not None else None,
        concurrency=jobs,
        once=once,
        metrics_grace_s=float(metrics_grace),
    ) as collector, _stopped_by_signals(collector) as received:  # fmt: skip
        collector.open_all()

        rounds: list[Round] = []

        def progress(done: Round) -> None:
            rounds.append(done)
            if verbose:
                click.echo(done.line(), err=True)

        summary = collector.run(rounds=1 if once else None, on_round=progress)
    if once and rounds and not summary.samples and not summary.abandoned:
        # cron's one round stored nothing at all: say why, as every command does
        reasons = "; ".join(o.describe() for o in rounds[-1].outcomes)
        raise ConnectionFailed(f"no target could be sampled: {reasons}")
    click.echo(summary.line())
    if signal.SIGINT in received:
        ctx.exit(EXIT_INTERRUPTED)


COMMANDS = (collect,)
