"""The docs stay true to the command line and to themselves.

Every command and every option ``--help`` shows has its line in the commands table of
docs/reference.md (the grammar's shared options, ``-v``/``-q`` and the connection's parts, in
docs/cli.md, which tests/test_grammar.py checks), and that table names no option a command lacks (as sqlite-utils' own
tests/test_docs.py keeps its documentation complete). Every link between README.md and the
pages of docs/ leads to a file that exists and, with an anchor, to a heading it has. The README
stays the front door: short.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from dbtools.cli import cli
from dbtools.cli.options import CONNECTION_PARTS
from tests.helpers import REPO

REFERENCE = REPO / "docs" / "reference.md"
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
README_MOST_LINES = 250  # alembic's and sqlite-utils' READMEs are about a hundred
_ROW = re.compile(r"^\| `(dbtools[^`]*)` \|")
_OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "dbtools"


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every command of the tree, by its path (``dbtools``, ``dbtools sandbox start``…)."""

    def walk(
        command: click.Command, path: str, ctx: click.Context
    ) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                yield from walk(
                    sub, f"{path} {name}", click.Context(sub, parent=ctx, info_name=name)
                )

    yield from walk(cli, "dbtools", click.Context(cli, info_name="dbtools"))


def shown_options(command: click.Command) -> set[str]:
    """The option names ``--help`` shows for *command* (hidden ones, such as a deprecated
    spelling, left out; ``-h/--help`` is every command's)."""
    return {
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    }


def shared_options(command: click.Command) -> set[str]:
    """The grammar's options every command (``-v``, ``-q``) or every connecting command (the
    parts beside ``--dsn``) takes: docs/cli.md has them once (tests/test_grammar.py), so the
    commands table need not repeat them on each row."""
    names = {"verbose", "quiet"}
    if any(param.name == "dsn" for param in command.params):
        names |= set(CONNECTION_PARTS)
    return {
        name
        for param in command.params
        if isinstance(param, click.Option) and param.name in names
        for name in param.opts
    }


def documented() -> dict[str, set[str]]:
    """Each command path in the commands table, and the options its synopses name."""
    paths = sorted((path for path, _ in commands()), key=len, reverse=True)  # longest first
    found: dict[str, set[str]] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line):
            synopsis = match.group(1)
            path = next(p for p in paths if synopsis == p or synopsis.startswith(f"{p} "))
            found.setdefault(path, set()).update(_OPTION.findall(synopsis))
    return found


@pytest.mark.parametrize("path", [path for path, _ in commands()])
def test_every_command_and_option_is_in_the_commands_table(path: str) -> None:
    command = dict(commands())[path]
    table = documented()
    if isinstance(command, click.Group) and path != "dbtools":
        return  # a group of commands (sandbox, workload): its commands have their rows
    options = shown_options(command) - shared_options(command) - {"-h", "--help"}
    assert path in table, f"docs/reference.md has no row for `{path}`"
    assert options <= table[path], (
        f"`{path}`: not in docs/reference.md: {sorted(options - table[path])}"
    )


def test_the_commands_table_names_no_option_a_command_lacks() -> None:
    tree = dict(commands())
    for path, options in documented().items():
        known = shown_options(tree[path]) | {"-h", "--help"}
        assert options <= known, f"`{path}` in docs/reference.md: {sorted(options - known)}"


def test_the_table_checks_can_fail() -> None:
    """A command whose option is left out of the table, and a row naming an option the command
    does not have, are both caught."""
    table = documented()
    assert "--keep" in table["dbtools sandbox stop"]
    without = table["dbtools sandbox stop"] - {"--keep"}
    assert not shown_options(dict(commands())["dbtools sandbox stop"]) <= without | {"--help"}
    assert "--nonexistent" not in shown_options(dict(commands())["dbtools rollout"])
    # only the grammar's own options are left to docs/cli.md: a sandbox's --port is its own
    assert shared_options(dict(commands())["dbtools rollout"]) == {
        "-v", "--verbose", "-q", "--quiet", "--host", "--port", "--username", "--dbname"
    }  # fmt: skip
    assert shared_options(dict(commands())["dbtools sandbox start"]) == {
        "-v", "--verbose", "-q", "--quiet"
    }  # fmt: skip


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            base = slug(match.group(2))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def test_slugs_are_github_s() -> None:
    assert slug("Canary windows: `verify --canary`") == "canary-windows-verify---canary"
    assert slug("Request metrics from the application: `dbtools.metrics`") == (
        "request-metrics-from-the-application-dbtoolsmetrics"
    )
    assert slug("The roles, once per server") == "the-roles-once-per-server"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_leads_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links that lead nowhere: {broken}"


def test_the_readme_is_the_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MOST_LINES
    text = "\n".join(lines)
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"(docs/{page.name}" in text, f"the README does not lead to docs/{page.name}"
    assert "(docs/architecture.md)" in text


def parts_of_the_package() -> list[str]:
    """Each package of dbtools/ (``store/``) and each module at its top (``rollout.py``)."""
    packages = [f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    modules = [p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")]
    return sorted(packages + modules)


def unnamed(parts: list[str], page: str) -> list[str]:
    return [part for part in parts if not re.search(rf"(?<![\w/]){re.escape(part)}", page)]


def test_every_package_is_named_in_the_architecture_page() -> None:
    parts = parts_of_the_package()
    packages = {"store/", "figures/", "reading/", "cli/", "commands/", "grafana/", "budgets/"}
    assert packages <= set(parts)
    page = ARCHITECTURE.read_text(encoding="utf-8")
    assert not unnamed(parts, page), f"docs/architecture.md does not name {unnamed(parts, page)}"
    # the check can fail: a page without the store's line misses it
    without = "\n".join(line for line in page.splitlines() if "store/" not in line)
    assert unnamed(parts, without) == ["store/"]


def test_ci_runs_the_readme_s_test_command() -> None:
    """The README's two commands are make targets, and ``.ci/run`` runs the one that tests."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Two commands\n.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README.md: no bash block under 'Two commands'"
    targets = re.findall(r"^make (\S+)", block.group(1), re.M)
    assert targets == ["demo", "test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    ci_targets = {t for line in re.findall(r"^make ([^\n#]+)", ci, re.M) for t in line.split()}
    assert "test" in ci_targets, ".ci/run does not run `make test`, the README's test command"


NEWCOMER = REPO / "benchmarks" / "RESULTS-newcomer.md"
# Where the docs quote benchmarks/newcomer.py's figures: the page, the text just before the
# figure, and the row of RESULTS-newcomer.md it comes from.
QUOTED = (
    ("README.md", "`make test-fast` runs only the tests that need no PostgreSQL server (", "`make test-fast`"),
    ("README.md", "`make demo` runs `dbtools demo` (", "`make demo`"),
    ("docs/development.md", "need no server (", "`make test-fast`"),
    ("docs/rollout.md", "(the test ran it in ", "the runbook's test"),
    ("docs/workload.md", "# 20,000 trips, ", "`dbtools workload seed`"),
)  # fmt: skip


def measured() -> dict[str, int]:
    """Each row of RESULTS-newcomer.md and its median wall time, in whole seconds."""
    rows = re.findall(r"^\| (`[^|]+`|the runbook's test) \|[^|]*\| ([\d.]+) s",
                      NEWCOMER.read_text(encoding="utf-8"), re.M)  # fmt: skip
    return {what: round(float(seconds)) for what, seconds in rows}


def quoted(page: str, before: str) -> int:
    found = re.search(re.escape(before) + r"(\d+) s here", (REPO / page).read_text("utf-8"))
    assert found, f"{page}: no time quoted after {before!r}"
    return int(found.group(1))


@pytest.mark.parametrize(
    ("page", "before", "row"), QUOTED, ids=[q[0] + ": " + q[2] for q in QUOTED]
)
def test_the_times_quoted_are_the_benchmark_s(page: str, before: str, row: str) -> None:
    """The times the docs quote are the medians benchmarks/newcomer.py wrote down."""
    assert quoted(page, before) == measured()[row], f"{page}: not {NEWCOMER.name}'s {row}"
