"""Small helpers the tests share: CLI runs, the usage-error contract, golden files, and whether a
test's own server is running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from dbtools.cli import cli

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"

# Python code that makes the rest of a `python -c` program import sqlglot's modules from their
# .py files, never from the compiled ones (sqlglotc) installed beside them.
PURE_SQLGLOT = """
import importlib.machinery as machinery, sys

class PureSqlglot:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] != "sqlglot":
            return None
        for entry in path or sys.path:
            loaders = (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES)
            spec = machinery.FileFinder(entry, loaders).find_spec(name)
            if spec is not None:
                return spec
        return None

sys.meta_path.insert(0, PureSqlglot)
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``dbtools ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_dbtools(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dbtools ARGS`` in a child process (for signals, exit codes, leftovers)."""
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def interruptible_child() -> None:
    """``preexec_fn`` for a child a test will Ctrl-C: SIGINT back to its default. A suite started
    in the background (``make test &``) runs with SIGINT ignored, which every child inherits and
    Python then keeps: the child would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_usage_error(result: Result | subprocess.CompletedProcess[str], expected: str) -> str:
    """The contract for bad input: exit code 2, nothing on stdout, and exactly one line on
    stderr, ``Error: …`` containing *expected*, without a traceback, followed by the hint of an
    error in the command line (``Try 'dbtools … --help'.``) if it is one. Returns that line."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2, (code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if len(lines) == 2 and re.fullmatch(r"Try 'dbtools [\w -]+ --help'\.", lines[1]):
        lines = lines[:1]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert expected in lines[0], lines
    assert result.stdout == "", result.stdout
    return lines[0]


def check_golden(name: str, text: str) -> None:
    """*text* must equal ``tests/golden/NAME``. ``UPDATE_GOLDEN=1`` rewrites the file instead
    (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates it; review the diff)"
    )


def postmaster_pid(data_dir: Path) -> int:
    """The pid a server recorded in its own ``postmaster.pid`` (the test's data directory)."""
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def server_alive(pid: int, data_dir: Path) -> bool:
    """Whether *pid* is still the server of *data_dir*: only that pid's /proc entry is read, and
    its command line must name *data_dir* (a reused pid belongs to someone else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone (FileNotFoundError), or a process we may not look at
        return False
    return str(data_dir).encode() in cmdline
