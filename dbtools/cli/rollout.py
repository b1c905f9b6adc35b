"""``dbtools rollout``: the guide's five phases for the database half, for a deploy script."""

from __future__ import annotations

from pathlib import Path

import click

from dbtools.cli.options import (
    Duration,
    config_option,
    dsn_option,
    emit,
    format_option,
    output_dir_option,
    printed_output_option,
    traffic_option,
)
from dbtools.cli.signals import interruptible
from dbtools.config import has_table, read_toml
from dbtools.db.connection import resolve_dsn
from dbtools.output import Destination


@click.command("rollout")
@dsn_option
@click.option("--migrate-dsn", metavar="DSN", default=None,
              help="Where `alembic upgrade head` runs (the deploy role, which owns the schema). "
              "Default: --dsn.")  # fmt: skip
@click.option("-e", "--environment", type=click.Choice(["staging", "production"]),
              required=True, help="Target environment (given to the application's commands).")  # fmt: skip
@traffic_option("-t", above_zero=True, required=True,
                help="Percentage of traffic to route to the new path (above 0 to 100).")  # fmt: skip
@click.option("-d", "--dry-run", is_flag=True,
              help="The preflight without its connections, then offline SQL, lint and downgrade "
              "plan only: no connection, no command run.")  # fmt: skip
@click.option("-s", "--skip-tests", is_flag=True, help="Skip the load-test command.")
@click.option("-f", "--force", is_flag=True, help="Go on when the load test fails.")
@click.option("--monitor", "monitor_seconds", type=Duration(), default="10m", show_default=True,
              help="The monitoring period (at most $DBTOOLS_MAX_DURATION when set).")  # fmt: skip
@click.option("--baseline", metavar="WINDOW", default=None,
              help="The window a 100% rollout is compared with (default: baseline in "
              "[tool.dbtools.rollout]).")  # fmt: skip
@click.option("--label", metavar="LABEL", default=None,
              help="Name the monitoring window LABEL (LABEL:start..LABEL:end), for verify and "
              "report. Default: the record's name.")  # fmt: skip
@click.option("--on-interrupt", type=click.Choice(["rollback", "hold"]), default="rollback",
              show_default=True,
              help="What Ctrl-C or SIGTERM during deploy, load test, monitor or complete does: "
              "run the rollback command, or hold the traffic where it is.")  # fmt: skip
@config_option(help="TOML file with [rollout] (the application's commands) and [verify] tables.")
@format_option("table", "json")
@printed_output_option
@output_dir_option
def rollout(
    dsn: str | None, migrate_dsn: str | None, environment: str, traffic: float, dry_run: bool,
    skip_tests: bool, force: bool, monitor_seconds: int, baseline: str | None, label: str | None,
    on_interrupt: str, config_file: Path | None, output_format: str, destination: Destination,
    output_dir: Path,
) -> None:  # fmt: skip
    """Run the guide's five phases: migrate, deploy, test, monitor, complete.

    \b
    0 preflight  nothing moves until every precondition holds: the configuration, each
                 command an executable file, the migrate DSN, the samples' repository,
                 doctor's checks for monitoring and verify, the label free (a stray
                 LABEL:start named with the command that removes it), the baseline trusted
    1 migrate    alembic upgrade head (--migrate-dsn), then doctor as --dsn's role
    2 deploy     the deploy command, then the traffic command with PCT
    3 load-test  the load_test command (--skip-tests; --force goes on when it fails)
    4 monitor    a sample now and every interval (collect's sampler, one session); the
                 guide's rollback triggers (error rate > 5%, p95 > 1000 ms, cache hit < 20%)
                 on the candidate variant's requests since the last judged sample, once
                 they number min_requests (50); failure_threshold (2) judged samples in a
                 row crossing one run the rollback command
    5 complete   verify --canary on the monitoring window (PCT < 100), else verify
                 --baseline W against it; a rollback verdict runs the rollback command

    The application's commands are argument lists in [tool.dbtools.rollout] (deploy, traffic,
    rollback, load_test; interval, min_requests, failure_threshold, baseline_variant,
    candidate_variant, attribute), run without a shell; {traffic} and {environment} are
    replaced inside arguments. Their output is logged (-v) and kept in the rollout record,
    secrets masked: --output-dir/rollout-ENV-PCT-TIME.md and .json, written after every phase.
    The final line (--format table) or the record's JSON (--format json) goes to --output.

    Ctrl-C or SIGTERM routes the traffic back (--on-interrupt hold keeps it); a second one
    during that rollback stops waiting for it. A re-run never resumes half-way: it starts
    anew, and its preflight refuses while a stray start of an interrupted run is in the way.

    One final line: rollout complete, planned (dry run), held, rolled back, rollback failed or
    interrupted. Exit codes: 0 complete or planned; 1 held (a phase or a check failed, the
    traffic stays where it is); 2 usage, configuration or preflight error (nothing done);
    3 rolled back (the traffic was routed back); 4 rollback failed (route back by hand);
    130 interrupted (the record says in which phase and what happened to the traffic).
    """
    from dbtools.rollout import Rollout, RolloutOptions, load_rollout_config, record_json
    from dbtools.verify.thresholds import load_thresholds

    options = RolloutOptions(environment, traffic, monitor_seconds, dry_run, skip_tests, force,
                             baseline, label, on_interrupt)  # type: ignore[arg-type]  # fmt: skip
    config = load_rollout_config(config_file)
    verify_file = (
        config_file if config_file and has_table(read_toml(config_file), "verify") else None
    )
    thresholds = load_thresholds(verify_file)
    target = resolve_dsn(dsn)  # not connected to in a dry run; its password masked
    run = Rollout(
        target, options, config, thresholds, output_dir,
        migrate_dsn=resolve_dsn(migrate_dsn) if migrate_dsn else None, config_file=config_file,
        on_phase=lambda p: click.echo(f"- {p.name}: {p.status}  {p.detail}", err=True),
    )  # fmt: skip
    try:
        with interruptible("rollout interrupted before any phase acted: nothing done"):
            record = run.run()
    finally:
        if run.paths:
            click.echo(f"record: {run.paths[0]}", err=True)
    text = record_json(record) if output_format == "json" else record.summary()
    emit(text, destination, f"rollout-{environment}-{traffic}", output_format)
    click.get_current_context().exit(record.exit_code)


COMMANDS = [rollout]
