"""The runbook works as written: every shell block of "A rollout, phase by phase" and of "Rolling
back" in docs/rollout.md runs, in order, against a server of its own with the runbook's three
roles, and each command's exit code is the one the runbook gives it.

Only what the runbook tells a reader to replace is replaced (the server's ``db.internal:5432``,
the ``change-me-…`` passwords), and the capture windows are shortened with the variable the
runbook names (``DBTOOLS_MAX_DURATION``); the project's verify settings are the ones its
"Rehearsing this runbook" section shows. The commands run as after ``. .venv/bin/activate``
(this interpreter's scripts first on PATH, then the server's client binaries), in a checkout of
the project (its alembic.ini, migrations and pyproject.toml), with a HOME of their own whose
``~/.pgpass`` holds the superuser's password, as a DBA's does. The application's traffic comes
from the reference workload, run as the application role, on the path the runbook's
``> **Application traffic:** `…` `` lines name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import psycopg
import pytest

from dbtools.db.sandbox import Sandbox, resolve_pg_bin
from dbtools.verify.thresholds import thresholds_from
from dbtools.workload import (
    DataPath,
    Duplication,
    WorkloadConfig,
    WorkloadResult,
    run_workload,
)
from dbtools.workload.queries import APPLICATION_GRANTS
from tests.helpers import REPO, run_dbtools

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from tests.readme_runner import (
    README,
    RUNBOOK,
    Block,
    ExitCodeMismatch,
    Traffic,
    expected_codes,
    fenced_blocks,
    readme_grants,
    run_block,
    section_events,
    section_lines,
    split_commands,
)

SECTIONS = ("A rollout, phase by phase", "Rolling back")
REHEARSING = "Rehearsing this runbook"  # what the test sets around the blocks
HOST = "db.internal:5432"  # what the runbook tells the reader to replace with the server's
# The runbook's placeholder passwords, and what this test chooses instead: characters a URL must
# percent-encode, none that SQL or ~/.pgpass would need escaped.
PASSWORDS = {
    "change-me-deploy": "dep@/1%x",
    "change-me-app": "app#?2%y",
    "change-me-monitor": "mon@/3?z",
}
SUPERUSER_PASSWORD = "su-4/@w"
MAX_DURATION = "12s"  # each capture window, shortened from the runbook's 10m and 30m
# The application: short runs of 40 requests, 20 at a time (half of them answered by its cache),
# one after another. Short and frequent, so that the run whose one-second metrics bucket a
# window's edge cuts off (its statements counted, its requests not) is one of about thirty in
# a window, in every window alike: queries per request then compare within a few percent, as
# `verify --after-rollback` asks. The batched path cuts queries per request by ~88%. The runbook
# shows the same run as a `dbtools workload run` command (test_the_runbook_shows_the_test_s_runs).
RUN = WorkloadConfig(requests=40, concurrency=20, duplication=Duplication.MEDIUM, bucket_seconds=1)
PAUSE_S = 0.2


def readme_events() -> list[Block | Traffic]:
    markdown = RUNBOOK.read_text(encoding="utf-8")
    return [event for heading in SECTIONS for event in section_events(markdown, heading)]


def project_settings() -> str:
    """The ``[tool.dbtools.verify]`` settings the test adds to its project's pyproject.toml:
    the block the runbook shows under "Rehearsing this runbook", as written there."""
    (block,) = fenced_blocks(RUNBOOK.read_text(encoding="utf-8"), REHEARSING, "toml")
    return block


# -- the parts that need no server ----------------------------------------------------------------


def test_each_section_has_blocks_and_every_command_an_exit_code() -> None:
    events = readme_events()
    for heading in SECTIONS:
        blocks = [e for e in events if isinstance(e, Block) and e.section == heading]
        assert blocks and all(block.commands for block in blocks), heading
    traffic = [e.path for e in events if isinstance(e, Traffic)]
    assert traffic and traffic[-1] != "none", traffic  # the rollback's windows have traffic
    markdown = RUNBOOK.read_text(encoding="utf-8")
    _, lines = section_lines(markdown, SECTIONS[0])
    told = "\n".join(lines)
    # The runbook tells the reader what to replace, and names the duration variable.
    for placeholder in (HOST, *PASSWORDS, "DBTOOLS_MAX_DURATION"):
        assert f"`{placeholder}" in told, placeholder
    for placeholder in (HOST, *PASSWORDS):
        assert any(placeholder in b.text for b in events if isinstance(b, Block)), placeholder


def privileges(grants: Iterable[str]) -> set[tuple[str, str]]:
    """(privilege, object) pairs of ``GRANT privileges ON [SCHEMA] objects TO role`` statements."""
    pairs = set()
    for grant in grants:
        match = re.fullmatch(r"GRANT (.+?) ON (SCHEMA )?(.+?) TO \S+", " ".join(grant.split()))
        assert match, grant
        for privilege in match.group(1).split(", "):
            pairs |= {(privilege, f"{match.group(2) or ''}{o}") for o in match.group(3).split(", ")}
    return pairs


def test_the_application_role_gets_exactly_what_the_application_needs() -> None:
    """The runbook's grants to the application role are the reference workload's (what its
    statements need, ``APPLICATION_GRANTS``), plus ``INSERT`` on ``app_metrics`` for the
    application's name/value figures: nothing more, nothing less."""
    needed = privileges(g.format(role="flight_search") for g in APPLICATION_GRANTS)
    needed.add(("INSERT", "perf_monitoring.app_metrics"))
    assert privileges(readme_grants("flight_search")) == needed
    assert len(needed) == 9


NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def test_the_runbook_states_exactly_what_the_test_changes() -> None:
    """The settings the test adds are the runbook's block, as many as its prose says, each a
    verify threshold; its traffic switches are visible lines, never HTML comments."""
    markdown = RUNBOOK.read_text(encoding="utf-8")
    settings = tomllib.loads(project_settings())
    assert list(settings) == ["tool"] and list(settings["tool"]["dbtools"]) == ["verify"]
    changed = settings["tool"]["dbtools"]["verify"]
    assert {"max_p95_ms", "request_edge_tolerance"} <= set(changed)
    thresholds_from(changed)  # every key known, every value valid
    _, lines = section_lines(markdown, REHEARSING)
    told = " ".join(" ".join(lines).split())
    assert f"{NUMBERS[len(changed)]} settings of the project's `[tool.dbtools.verify]`" in told
    assert f"`DBTOOLS_MAX_DURATION={MAX_DURATION}`" in told
    assert "<!--" not in markdown  # nothing the rendered page hides


def test_the_runbook_shows_the_test_s_runs() -> None:
    """The runbook's rehearsal block seeds as the tables' owner and sends one run as the
    application role, with the same options as the test's runs (``RUN``), and says how far apart
    they come."""
    commands = [c.text for e in readme_events() if isinstance(e, Block) for c in e.commands]
    seed = next(shlex.split(c, comments=True) for c in commands if "workload seed" in c)
    assert psycopg.conninfo.conninfo_to_dict(seed[seed.index("--dsn") + 1])["user"] == "deploy"
    run = next(shlex.split(c, comments=True) for c in commands if "workload run" in c)
    options = dict(zip(run[3::2], run[4::2], strict=True))
    assert psycopg.conninfo.conninfo_to_dict(options.pop("--dsn"))["user"] == "flight_search"
    assert options == {"--path": "per-request", "--requests": str(RUN.requests),
                       "--concurrency": str(RUN.concurrency)}  # fmt: skip
    defaults = WorkloadConfig()  # what `workload run` leaves at its defaults, RUN leaves too
    assert (RUN.duplication, RUN.bucket_seconds) == (defaults.duplication, defaults.bucket_seconds)
    told = " ".join(RUNBOOK.read_text(encoding="utf-8").split())
    assert f"({RUN.requests} requests, {RUN.concurrency} at a time, {PAUSE_S} s apart)" in told


def test_commands_are_split_as_bash_reads_them() -> None:
    text = (
        "export X=1\n"
        "dbtools verify --baseline a \\\n  --candidate b   # exit 0 or 1: pass or fail\n"
        "case $? in\n  0) echo pass ;;\nesac\n"
        "psql \"$URL\" <<'SQL'   # exit 3: an error\nSELECT 1; # not a command\nSQL\n"
        "# a comment\n"
        "dbtools lint   # the rules (1 on violations)"
    )
    commands = split_commands(text, 10)
    assert [(c.first_line.split()[0], sorted(c.expected), c.line) for c in commands] == [
        ("export", [0], 10),
        ("dbtools", [0, 1], 11),
        ("case", [0], 13),
        ("psql", [3], 16),
        ("dbtools", [0], 20),
    ]
    assert expected_codes("alembic upgrade head   # exit 2, 3: never") == {2, 3}


def test_a_command_whose_exit_code_differs_is_named(tmp_path: Path) -> None:
    text = "export GREETING=hello\ntrue   # exit 0\nfalse   # exit 0: wrong on purpose\ntrue\n"
    block = Block("a test", 41, text, split_commands(text, 42))
    env = {"PATH": os.environ["PATH"]}
    with pytest.raises(ExitCodeMismatch) as caught:
        run_block(block, replacements={}, env=env, cwd=tmp_path, state=tmp_path / "state")
    assert str(caught.value).splitlines()[0] == (
        "the block at rollout.md line 41 ('a test'): `false   # exit 0: wrong on purpose` "
        "(line 44) exited with 1, the runbook says 0"
    )
    assert (tmp_path / "state.codes").read_text().split() == ["0", "0", "1"]  # `true` not run
    assert 'GREETING="hello"' in (tmp_path / "state").read_text()  # the shell's exports kept


# -- the whole rollout and its rollback ----------------------------------------------------------


class Application:
    """The application's traffic: runs of the reference workload as the application role, one
    after another, on the path the runbook's traffic lines name (none: no traffic). Its data
    are seeded by the runbook's own block, as the tables' owner."""

    def __init__(self, dsn: str, checkout: Path) -> None:
        self.dsn, self.checkout = dsn, checkout
        self.path = "none"
        self.running = False
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.results: list[WorkloadResult] = []
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def switch(self, path: str) -> None:
        """Route the traffic to *path*; returns once no request on the old path is left (the
        application's deploy has completed)."""
        if path != "none" and not self.thread.is_alive():
            self.thread.start()
        with self.changed:
            self.path = path
            self.changed.wait_for(lambda: not self.running)
            self.changed.notify_all()

    def stop(self) -> None:
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    def _serve(self) -> None:
        # Each run opens a pool of its own and closes it: a session that stays open and idle
        # reports its committed transactions to pg_stat_database up to 10 s late (PostgreSQL
        # 15+), and in a 12-second rehearsal window the previous path's late transactions read
        # as statements pg_stat_statements missed (verify: untrusted). Production windows are
        # minutes long; a closing session reports at once.
        while (path := self._next_path()) is not None:
            try:
                config = self._routed(dataclasses.replace(RUN, path=DataPath.parse(path)))
                self.results.append(run_workload(self.dsn, config))
            except BaseException as err:  # reported by the test
                self.failures.append(err)
            finally:
                with self.changed:
                    self.running = False
                    self.changed.notify_all()
            self.stopping.wait(PAUSE_S)

    def _routed(self, config: WorkloadConfig) -> WorkloadConfig:
        """*config* as the guide's traffic-routing file says, when there is one (acknowledged:
        the run before this one has ended)."""
        routing = self.checkout / ROUTING
        if not routing.exists():
            return config
        percentage = json.loads(routing.read_text())["flight_search_optimization"][
            "traffic_percentage"
        ]
        (self.checkout / ROUTING_ACK).write_text(str(percentage))
        if percentage == 0:
            return dataclasses.replace(config, path=DataPath.PER_REQUEST, traffic=100)
        return dataclasses.replace(config, path=DataPath.BATCHED, traffic=percentage)

    def _next_path(self) -> str | None:
        """The path of the next run, once there is one (None: stop)."""
        with self.changed:
            self.changed.wait_for(lambda: self.path != "none" or self.stopping.is_set())
            if self.stopping.is_set():
                return None
            self.running = True
            return self.path


# The application team's scripts the runbook's rollout.toml names (stand-ins): the deploy and the
# load test say what they would do; the route script writes the guide's traffic-routing file,
# which the application (``Application``) reads before each run, and returns once it has
# acknowledged the new split (``ROUTING_ACK``): from then on no request takes the old one.
ROUTING, ROUTING_ACK = Path("config/traffic-routing.json"), Path("config/traffic-routing.ack")
APPLICATION_SCRIPTS = {
    "deploy-functions.sh": 'echo "deployed the optimized edge functions to $1"\n',
    "load-test.sh": 'echo "load test at $1% of traffic: passed"\n',
    "route-traffic.sh": f"""mkdir -p config
enabled=$([ "$1" -gt 0 ] && echo true || echo false)
printf '{{"flight_search_optimization":{{"enabled":%s,"traffic_percentage":%s}}}}\\n' \\
    "$enabled" "$1" > {ROUTING}.tmp && mv {ROUTING}.tmp {ROUTING}
for _ in $(seq 600); do
    [ "$(cat {ROUTING_ACK} 2>/dev/null)" = "$1" ] && echo "$1% of traffic on the batched path" && exit 0
    sleep 0.1
done
echo "the application did not take the new routing" >&2
exit 1
""",
}


def checkout(directory: Path) -> Path:
    """The project as a deploy job has it: alembic.ini, migrations, pyproject.toml (with the
    runbook's ``project_settings``), and the application's scripts."""
    directory.mkdir()
    for name in ("alembic.ini", "migrations"):
        (directory / name).symlink_to(REPO / name)
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.dbtools.verify]" not in pyproject  # else the setting goes into that table
    (directory / "pyproject.toml").write_text(f"{pyproject}\n{project_settings()}\n")
    (directory / "scripts").mkdir()
    for name, body in APPLICATION_SCRIPTS.items():
        script = directory / "scripts" / name
        script.write_text("#!/usr/bin/env bash\n" + body)
        script.chmod(0o755)
    return directory


def reader_environment(home: Path, sandbox: Sandbox) -> dict[str, str]:
    """A reader's shell after `. .venv/bin/activate`: nothing of this test's own environment
    (no DATABASE_URL, no PG* variables)."""
    scripts = Path(sys.executable).parent
    env = {
        "PATH": os.pathsep.join((str(scripts), str(sandbox.pg_bin), os.environ["PATH"])),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DBTOOLS_MAX_DURATION": MAX_DURATION,
    }
    if os.environ.get("DBTOOLS_TEST_PG_BIN"):  # rehearse on the major under test
        env["DBTOOLS_PG_BIN"] = str(sandbox.pg_bin)
    return env


@pytest.mark.server  # starts a server of its own
def test_the_rollout_and_the_rollback_run_as_the_readme_says(
    sandbox_dir: Path, tmp_path: Path
) -> None:
    events = readme_events()
    pg_bin = os.environ.get("DBTOOLS_TEST_PG_BIN")
    sandbox = Sandbox(sandbox_dir, pg_bin=resolve_pg_bin(pg_bin) if pg_bin else None)
    sandbox.start()
    home = tmp_path / "home"
    home.mkdir()
    cwd, state = checkout(tmp_path / "project"), tmp_path / "shell-state"
    port = sandbox.port
    replacements = {HOST: f"127.0.0.1:{port}", **PASSWORDS}

    def url(role: str, password: str, database: str = "app") -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=port, dbname=database, user=role, password=password
        )

    app = Application(url("flight_search", PASSWORDS["change-me-app"]), cwd)
    ran: list[tuple[Block, list[int]]] = []
    try:
        with psycopg.connect(sandbox.dsn(), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{SUPERUSER_PASSWORD}'")
        pgpass = home / ".pgpass"  # the DBA's own line; the runbook's lines come after it
        pgpass.write_text(f"127.0.0.1:{port}:*:postgres:{SUPERUSER_PASSWORD}\n")
        pgpass.chmod(0o600)
        env = reader_environment(home, sandbox)
        for event in events:
            if isinstance(event, Traffic):
                app.switch(event.path)
            else:
                codes = run_block(event, replacements=replacements, env=env, cwd=cwd, state=state)
                ran.append((event, codes))
        app.switch("none")

        # Every command ran, with the runbook's exit code.
        assert sum(len(codes) for _, codes in ran) == sum(len(b.commands) for b, _ in ran) > 15
        assert not app.failures, app.failures
        assert app.results and all(r.errors == 0 for r in app.results)
        assert {r.config.path.value for r in app.results} == {"per-request", "batched"}

        # The 10% step held for the reasons the runbook gives: each check that failed is named in
        # its paragraph; too few of the new path's requests on a loaded machine, the reduction
        # failed on a quiet one (the window then holds enough); no trigger crossed.
        (canary,) = (
            json.loads(p.read_text()) for p in (cwd / "reports").glob("rollout-*-10-*.json")
        )
        assert (canary["outcome"], canary["stopped_in"]) == ("held", "complete")
        failed = {f["check"]: f["status"] for f in canary["verdict"]["findings"]
                  if f["status"] not in ("pass", "info", "warning", "skipped")}  # fmt: skip
        assert (failed.get("variant_requests") == "no data"
                or failed.get("query_reduction") == "fail"), failed  # fmt: skip
        markdown = RUNBOOK.read_text(encoding="utf-8")
        told = markdown[markdown.index("**10% first**") : markdown.index("**100%**")]
        assert all(f"`{check}" in told or f"({check} " in told for check in failed), failed

        # After the downgrade, verify judged what it could: the request metrics' figures and
        # the objects of 0002; queries per request, untrusted, and why.
        document = json.loads((cwd / "after-downgrade.json").read_text())
        judged = {f["check"]: f["status"] for f in document["findings"]}
        assert (document["mode"], document["verdict"]) == ("after-rollback", "fail")
        assert {c: judged[c] for c in ("returned_queries_per_request", "returned_error_rate",
                                       "returned_p95_latency", "schema_revision")} == {
            "returned_queries_per_request": "untrusted", "returned_error_rate": "pass",
            "returned_p95_latency": "pass", "schema_revision": "pass",
        }  # fmt: skip

        # The application role can write its name/value figures, and nothing beyond its grants.
        with psycopg.connect(app.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO perf_monitoring.app_metrics (name, value) "
                         "VALUES ('kms_connection_reuse_ratio', 0.9)")  # fmt: skip
            for statement in ("SELECT count(*) FROM perf_monitoring.request_metrics",
                              "DELETE FROM public.flight_offers",
                              "SELECT count(*) FROM perf_monitoring.snapshots"):  # fmt: skip
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)

        # The runbook's ~/.pgpass lines were written, the passwords nowhere else.
        assert pgpass.read_text().count(f"127.0.0.1:{port}:app:") == 3
        assert pgpass.stat().st_mode & 0o077 == 0

        # A password in a URL must be percent-encoded (the runbook says so): encoded, it works.
        monitor = PASSWORDS["change-me-monitor"]
        encoded = urllib.parse.quote(monitor, safe="")
        env_url = f"postgresql://dbtools_monitor:{encoded}@127.0.0.1:{port}/app"
        doctor = run_dbtools("doctor", "--dsn", env_url, env={"HOME": str(tmp_path)})
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert encoded not in doctor.stdout + doctor.stderr and monitor not in doctor.stdout
        # As written (not encoded), it is refused with one line that never shows it.
        raw = run_dbtools(
            "doctor", "--dsn", f"postgresql://dbtools_monitor:{monitor}@127.0.0.1:{port}/app",
            env={"HOME": str(tmp_path)},
        )  # fmt: skip
        assert raw.returncode == 2 and raw.stdout == "", raw.stdout + raw.stderr
        assert raw.stderr.startswith("Error: ") and len(raw.stderr.splitlines()) == 1
        assert monitor not in raw.stderr and "mon@" not in raw.stderr, raw.stderr

        # The test can fail: a copy of a block whose exit code in the runbook is wrong is caught, at
        # that command, before anything after it runs.
        block = next(
            b for b, _ in ran if any(c.text.startswith("dbtools lint") for c in b.commands)
        )
        lint = next(c for c in block.commands if c.text.startswith("dbtools lint"))
        (code,) = lint.expected
        wrong = block.text.replace(lint.first_line,
                                   re.sub(r"\bexit \d+", f"exit {code + 1}", lint.first_line))  # fmt: skip
        assert wrong != block.text
        copy = Block(block.section, block.line, wrong, split_commands(wrong, block.line + 1))
        with pytest.raises(ExitCodeMismatch) as caught:
            run_block(copy, replacements=replacements, env=env, cwd=cwd, state=state)
        assert str(caught.value).splitlines()[0] == (
            f"{block.name}: `{copy.commands[block.commands.index(lint)].first_line}` "
            f"(line {lint.line}) exited with {code}, the runbook says {code + 1}"
        )
    finally:
        app.stop()
        sandbox.destroy()


# -- the README's gate ---------------------------------------------------------------------------

GATE = "The gate in ten lines"


def test_the_readme_shows_what_its_gate_prints() -> None:
    """The excerpt under the gate's block is verify's table output: the figures a run decides
    (requests, queries, their ratio, the reduction, the verdict) as the run below checks them."""
    markdown = README.read_text(encoding="utf-8")
    (block,) = [e for e in section_events(markdown, GATE, README) if isinstance(e, Block)]
    assert len(block.text.splitlines()) == 10  # the ten lines
    (excerpt,) = fenced_blocks(markdown, GATE, "")
    assert "verdict: PASS (exit code 0)" in excerpt and "query reduction: 90.0%" in excerpt


@pytest.mark.server  # starts a sandbox of its own, as the README does
def test_the_readme_gate_runs_as_written(sandbox_dir: Path, tmp_path: Path) -> None:
    """The README's ten lines run in a reader's shell (this interpreter's scripts on PATH, a
    TMPDIR of the test's own, where `dbtools sandbox start` puts its server), every command
    exits as its comment says, and what verify printed holds every line of the README's excerpt
    that does not depend on the machine's speed (rates and latencies)."""
    markdown = README.read_text(encoding="utf-8")
    (block,) = [e for e in section_events(markdown, GATE, README) if isinstance(e, Block)]
    cwd = tmp_path / "project"
    cwd.mkdir()
    for name in ("alembic.ini", "migrations"):
        (cwd / name).symlink_to(REPO / name)
    env = {
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"])),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "TMPDIR": str(sandbox_dir),
    }
    if os.environ.get("DBTOOLS_TEST_PG_BIN"):  # the major under test
        env["DBTOOLS_PG_BIN"] = str(resolve_pg_bin(os.environ["DBTOOLS_TEST_PG_BIN"]))
    state = tmp_path / "shell-state"
    try:
        codes = run_block(block, replacements={}, env=env, cwd=cwd, state=state)
    finally:
        for leftover in sandbox_dir.glob("dbtools-sandbox-*"):
            Sandbox(leftover).destroy()
    assert len(codes) == len(block.commands) == 10
    printed = {
        " ".join(line.split()) for line in state.with_suffix(".out").read_text().splitlines()
    }
    (excerpt,) = fenced_blocks(markdown, GATE, "")
    timed = re.compile(r"\bms\b|/s\b")
    for line in excerpt.splitlines():
        if line.strip() and not timed.search(line) and set(line.strip()) != {"-", " "}:
            assert " ".join(line.split()) in printed, line
