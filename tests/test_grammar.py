"""The command line's grammar (docs/cli.md): every command's options walked and checked against
the page's table, one meaning per option name, -v/-q everywhere, --format and -o on every
command that produces a document, usage errors as one line and a hint, renamed options that
still work with a warning."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from psycopg import conninfo

from dbtools.cli import cli
from dbtools.cli.options import RENAMED, Percent
from tests.conftest import Database
from tests.helpers import REPO, run_cli, run_dbtools

DOC = REPO / "docs" / "cli.md"


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    yield " ".join(prefix) or "dbtools", group
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


COMMANDS = dict(_walk(cli))


def _options(command: click.Command, *, hidden: bool = False) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option) and p.hidden == hidden and p.name != "help"
    ]


def _long(option: click.Option) -> str:
    return max(option.opts, key=len)


def _section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _listed(name: str) -> set[str]:
    """The commands docs/cli.md lists as *name* ("**Connecting**: a, b, …")."""
    found = re.search(rf"- \*\*{name}\*\*: ([^.(]*)\.", _section("Which commands"), re.S)
    assert found, name
    return {c.strip() for c in " ".join(found.group(1).split()).split(",")}


def _table(heading: str) -> list[list[str]]:
    rows = []
    for line in _section(heading).splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append(cells)
    return rows[1:]  # without the header


def _names(cell: str) -> list[str]:
    return re.findall(r"`(-[\w-]+)`", cell)


def _groups() -> dict[str, set[str]]:
    return {
        "all": set(COMMANDS),
        "connecting": _listed("Connecting"),
        "documents": _listed("Documents"),
    }


def _documented() -> dict[str, set[str]]:
    """Each option's long name, and the commands the table says have it."""
    groups = _groups()
    documented: dict[str, set[str]] = {}
    for option, _value, _meaning, commands in _table("Options"):
        names = _names(option)
        assert names, option
        where: set[str] = set()
        for item in (c.strip() for c in commands.split(",")):
            where |= groups.get(item, {item})
        documented[max(names, key=len)] = where
    return documented


def test_the_named_lists_of_commands_are_what_the_commands_are() -> None:
    connecting = {name for name, c in COMMANDS.items() if any(_long(o) == "--dsn" for o in
                                                               _options(c))}  # fmt: skip
    documents = {name for name, c in COMMANDS.items() if any(_long(o) == "--format" for o in
                                                             _options(c))}  # fmt: skip
    assert _listed("Connecting") == connecting
    assert _listed("Documents") == documents


def test_every_option_of_every_command_is_in_the_table_and_nothing_else() -> None:
    documented = _documented()
    actual: dict[str, set[str]] = defaultdict(set)
    for name, command in COMMANDS.items():
        for option in _options(command):
            actual[_long(option)].add(name)
    missing = {o: sorted(c - documented.get(o, set())) for o, c in actual.items()}
    assert {o: c for o, c in missing.items() if c} == {}, "options missing from docs/cli.md"
    stale = {o: sorted(c - actual.get(o, set())) for o, c in documented.items()}
    assert {o: c for o, c in stale.items() if c} == {}, "docs/cli.md names options that are gone"


def test_the_table_gives_each_option_its_short_spelling() -> None:
    documented = {max(_names(row[0]), key=len): set(_names(row[0])) for row in _table("Options")}
    for name, command in COMMANDS.items():
        for option in _options(command):
            spellings = set(option.opts) | set(option.secondary_opts)
            if _long(option) == "--traffic":  # rollout's -t, the guide's deploy script's
                spellings -= {"-t"}
            assert spellings <= documented[_long(option)] | {"-t"}, (name, spellings)


def test_an_option_name_means_one_thing_everywhere() -> None:
    kinds: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    shorts: dict[str, set[str]] = defaultdict(set)
    for command in COMMANDS.values():
        for option in _options(command):
            choices = (
                tuple(sorted(option.type.choices))
                if isinstance(option.type, click.Choice) and _long(option) != "--format"
                else None
            )
            kind = (option.type.name, option.is_flag, option.multiple, option.count, choices)
            kinds[_long(option)].add(kind)
            for short in (o for o in option.opts if not o.startswith("--")):
                shorts[short].add(_long(option))
    assert {name: k for name, k in kinds.items() if len(k) > 1} == {}
    assert {short: n for short, n in shorts.items() if len(n) > 1} == {}


# The formats a document may offer: the same kind of document, the same choices.
FORMAT_CHOICES = {("table", "json"), ("md", "html", "json"), ("md", "json"), ("json",)}


@pytest.mark.parametrize("name", sorted(_listed("Documents")))
def test_every_document_takes_format_and_output(name: str) -> None:
    options = {_long(o): o for o in _options(COMMANDS[name])}
    assert isinstance(options["--format"].type, click.Choice)
    assert tuple(options["--format"].type.choices) in FORMAT_CHOICES
    assert set(options["--output"].opts) == {"-o", "--output"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_verbose_and_quiet_on_every_command(name: str) -> None:
    options = {_long(o): set(o.opts) for o in _options(COMMANDS[name])}
    assert options["--verbose"] == {"-v", "--verbose"}
    assert options["--quiet"] == {"-q", "--quiet"}


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if n != "dbtools"))
def test_a_usage_error_is_one_error_line_and_one_hint(name: str) -> None:
    result = run_cli(*name.split(), "--no-such-option")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: No such option '--no-such-option'.",
        f"Try 'dbtools {name} --help'.",
    ]


def test_a_bad_value_is_one_error_line_and_one_hint() -> None:
    result = run_cli("rollout", "-e", "staging", "--traffic", "0")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: Invalid value for '-t' / '--traffic': 0 is not a percentage above 0 to 100",
        "Try 'dbtools rollout --help'.",
    ]


def test_renamed_options_are_documented_hidden_and_still_accepted() -> None:
    rows = {tuple(_names(row[0])): (_names(row[1]), row[2]) for row in _table("Renamed options")}
    assert {old[0]: max(new, key=len) for old, (new, _) in rows.items()} == RENAMED
    for (old,), (new, commands) in rows.items():
        for name in (c.strip() for c in commands.split(",")):
            hidden = {_long(o) for o in _options(COMMANDS[name], hidden=True)}
            shown = {_long(o) for o in _options(COMMANDS[name])}
            assert old in hidden and max(new, key=len) in shown, (name, old)


def test_a_renamed_option_warns_and_stands_for_the_new_one() -> None:
    # No server needed: each reaches the check that the new name's value would reach.
    result = run_cli("rehearse", "--force")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "WARNING dbtools.cli: --force is deprecated: use --allow-data (the old name goes in the "
        "next release)",
        "Error: --allow-data only applies to --dsn (a sandbox holds no data)",
        "Try 'dbtools rehearse --help'.",
    ]
    result = run_cli("collect", "--target", "nodsn")
    assert result.stderr.splitlines()[-1] == (
        "Error: invalid --target-dsn 'nodsn'...: expected NAME=DSN"
    )
    assert "--target is deprecated: use --target-dsn" in result.stderr
    quiet = run_cli("collect", "--target", "nodsn", "-q")
    assert quiet.stderr.splitlines() == [
        "Error: invalid --target-dsn 'nodsn'...: expected NAME=DSN"
    ]


def test_the_old_and_the_new_name_together_are_a_usage_error() -> None:
    result = run_cli("snapshot", "--label", "x", "--requests", "1", "--requests-served", "2")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: --requests is the old name of --requests-served: give --requests-served only",
        "Try 'dbtools snapshot --help'.",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "--baseline", "a", "--candidate", "b"),
        ("report", "--live"),
        ("doctor",),
        ("snapshot", "--label", "x"),
        ("workload", "seed"),
    ],
)
def test_an_output_whose_directory_is_missing_is_refused_before_any_work(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    """As pg_dump -f: nothing makes the directories. The DSN names no server at all: the
    output is refused before any connection is tried."""
    missing = tmp_path / "no" / "such" / "dir" / "x.out"
    result = run_cli(*args, "--dsn", "host=/nonexistent-socket-dir", "-o", str(missing))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: cannot write {missing}: no directory {missing.parent}"
    ]
    assert not (tmp_path / "no").exists()


def test_an_output_dir_that_cannot_be_written_is_refused_before_the_demo_starts() -> None:
    # /sys refuses new files even to root (whom a permission bit would not stop).
    result = run_cli("demo", "--output-dir", "/sys/dbtools-reports")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("Error: cannot write /sys/dbtools-reports: ")
    assert "starting an embedded PostgreSQL" not in result.stderr


def test_an_output_dir_is_made_one_level_deep_only(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    result = run_cli("dashboard", "--output-dir", str(deep))
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"Error: cannot write in {deep}: no directory {deep.parent} to create it in"
    )
    shallow = tmp_path / "a"
    result = run_cli("dashboard", "--output-dir", str(shallow))
    assert result.exit_code == 0, result.stderr
    (written,) = shallow.iterdir()
    assert result.stdout == f"{written}\n"


def test_a_file_given_as_output_dir_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "reports"
    file.write_text("not a directory")
    result = run_cli("dashboard", "--output-dir", str(file))
    assert result.stderr.strip() == f"Error: cannot write in {file}: it is not a directory"
    result = run_cli("dashboard", "-o", str(tmp_path))
    assert result.stderr.strip() == f"Error: cannot write {tmp_path}: it is a directory"


# -- with a server ------------------------------------------------------------------------------


def test_verbose_and_quiet_count_wherever_they_are_given(migrated_database: Database) -> None:
    dsn = migrated_database.dsn
    connecting = "INFO dbtools.db.connection: connecting to "
    before = run_dbtools("-v", "doctor", "--dsn", dsn)
    after = run_dbtools("doctor", "--dsn", dsn, "-v")
    assert before.returncode == after.returncode == 0, after.stderr
    assert connecting in before.stderr and connecting in after.stderr
    assert after.stdout == before.stdout
    cancelled = run_dbtools("-v", "doctor", "--dsn", dsn, "-q")  # one of each: the default
    assert cancelled.returncode == 0 and cancelled.stderr == ""
    # -q silences the warnings too (here a renamed option's), never the document
    quiet = run_dbtools("snapshot", "--dsn", dsn, "--label", "x", "--requests", "3", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("snapshot x of ")


def test_connection_parts_beside_the_dsn_as_pg_dump_has_them(migrated_database: Database) -> None:
    db = migrated_database
    params = conninfo.conninfo_to_dict(db.dsn)
    host, port, user = (str(params[key]) for key in ("host", "port", "user"))
    other = conninfo.make_conninfo(db.dsn, dbname="postgres")
    shown = f"database: {db.name} as role"
    for args, env in [
        # the parts alone (DATABASE_URL empty: libpq's defaults for the rest)
        (["--host", host, "--port", port, "--username", user, "--dbname", db.name],
         {"DATABASE_URL": ""}),
        (["--dsn", other, "--dbname", db.name], {}),  # replacing a part of --dsn
        (["--dbname", db.name], {"DATABASE_URL": other}),  # and of DATABASE_URL
    ]:  # fmt: skip
        result = run_dbtools("doctor", *args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert shown in result.stdout
    result = run_dbtools("doctor", "--dsn", db.dsn, "--dbname", "no_such_database_here")
    assert result.returncode == 2
    assert 'database "no_such_database_here" does not exist' in result.stderr


@pytest.mark.parametrize(
    ("given", "above_zero", "expected"),
    [("10", False, 10), ("12.5", False, 12.5), ("10%", False, 10), (" 0 ", False, 0),
     ("100", True, 100), ("0.5", True, 0.5)],
)  # fmt: skip
def test_a_share_of_the_traffic_is_one_type_everywhere(
    given: str, above_zero: bool, expected: float
) -> None:
    value = Percent(above_zero=above_zero).convert(given, None, None)
    assert value == expected and type(value) is type(expected)  # 10, not 10.0, in names


@pytest.mark.parametrize(("given", "above_zero"), [("0", True), ("101", False), ("-1", False),
                                                   ("ten", False), ("nan", False)])  # fmt: skip
def test_a_share_outside_0_to_100_is_refused(given: str, above_zero: bool) -> None:
    with pytest.raises(click.BadParameter):
        Percent(above_zero=above_zero).convert(given, None, None)


def test_a_pipe_given_as_output_is_written_through_never_replaced(tmp_path: Path) -> None:
    """As /dev/null or /dev/stdout: an atomic rename would put a regular file in its place."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    result = run_cli("dashboard", "-o", str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(received[0])["uid"] and list(tmp_path.iterdir()) == [fifo]
