"""The runbook's shell blocks (and the README's), read by heading and run as a reader runs them.

A section is the text under a heading, down to the next heading of the same or a higher level
(its subsections included). In it, in order:

* every ```` ```bash ```` block, split into commands: a line, its continuation lines (``\\``),
  its here-document (``<<'SQL'`` … ``SQL``), or a whole ``case``/``if``/``for``/``while``;
* every ``> **Application traffic:** `PATH`…`` line (per-request, batched or none), visible on
  the rendered page: where the application's traffic changes, as the prose around it says.

A command's exit code is what the comment on its command line says (the last line of a command
continued with ``\\``) (``# exit 1: …``,
``# exit 0 or 1: …``), 0 when it says none. ``run_block`` runs one block in bash, the commands in
order, and stops at the first whose exit code differs, raising ``ExitCodeMismatch`` naming the
block (its page and line) and the command. Exported variables carry from one block to the next
(a reader's shell), through a state file; the output of the last block run is kept beside it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

RUNBOOK = REPO / "docs" / "rollout.md"
README = REPO / "README.md"
TRAFFIC_PATHS = ("per-request", "batched", "none")

_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
_FENCE = re.compile(r"^```(\w*) *$")
_TRAFFIC = re.compile(r"^> \*\*Application traffic:\*\* `([\w-]+)`")
_EXPECTED = re.compile(r"\bexit (\d+(?:(?:, | or )\d+)*)")
_COMMENT = re.compile(r"(?:^|\s)#(?!!)\s?(.*)$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_COMPOUND = {"case": "esac", "if": "fi", "for": "done", "while": "done", "until": "done"}
MISMATCH_STATUS = 97  # the generated script's exit status when a command's code differs


@dataclass(frozen=True)
class Command:
    """One command of a block: its text as written, the exit codes the runbook gives it, and the
    runbook line it starts on."""

    text: str
    expected: frozenset[int]
    line: int

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # of the opening fence, in its page
    text: str
    commands: tuple[Command, ...]
    page: Path = RUNBOOK

    @property
    def name(self) -> str:
        return f"the block at {self.page.name} line {self.line} ({self.section!r})"


@dataclass(frozen=True)
class Traffic:
    """``> **Application traffic:** `PATH```: from here on the application sends PATH."""

    path: str
    line: int


class ExitCodeMismatch(AssertionError):
    """A command's exit code is not the one the runbook gives it."""


def section_lines(markdown: str, heading: str) -> tuple[int, list[str]]:
    """The lines under *heading* (its subsections included) and the line number of the first
    one. Raises ``LookupError`` when no heading reads *heading*."""
    lines = markdown.splitlines()
    headings: list[tuple[int, int, str]] = []  # (line index, level, text), outside code blocks
    fenced = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            headings.append((number, len(match.group(1)), match.group(2)))
    for position, (number, level, text) in enumerate(headings):
        if text == heading:
            after = [n for n, lv, _ in headings[position + 1 :] if lv <= level]
            end = after[0] if after else len(lines)
            return number + 2, lines[number + 1 : end]
    raise LookupError(f"no heading {heading!r}")


def section_events(markdown: str, heading: str, page: Path = RUNBOOK) -> list[Block | Traffic]:
    """The section's bash blocks and traffic changes, in the order they appear (*markdown* is
    *page*'s text)."""
    first, lines = section_lines(markdown, heading)
    events: list[Block | Traffic] = []
    fence: tuple[str, int, list[str]] | None = None
    for offset, line in enumerate(lines):
        number = first + offset
        fenced = _FENCE.match(line)
        if fence is not None:
            if fenced and not fenced.group(1):
                language, start, body = fence
                if language == "bash":
                    text = "\n".join(body)
                    events.append(
                        Block(heading, start, text, split_commands(text, start + 1), page)
                    )
                fence = None
            else:
                fence[2].append(line)
        elif fenced:
            fence = (fenced.group(1), number, [])
        elif traffic := _TRAFFIC.match(line.strip()):
            path = traffic.group(1)
            if path not in TRAFFIC_PATHS:
                raise ValueError(f"{page.name} line {number}: unknown traffic path {path!r}")
            events.append(Traffic(path, number))
    if fence is not None:
        raise ValueError(f"{page.name} line {fence[1]}: a code block that never closes")
    return events


def fenced_blocks(markdown: str, heading: str, language: str) -> list[str]:
    """The text of each ```` ```language ```` block under *heading* (``""``: blocks with no
    language), indented ones (inside a list item) included, their indentation removed."""
    _, lines = section_lines(markdown, heading)
    blocks: list[str] = []
    fence: tuple[str, str, list[str]] | None = None  # (language, indentation, body)
    for line in lines:
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = (stripped[3:], line[: len(line) - len(line.lstrip())], [])
        elif fence is not None and stripped == "```":
            if fence[0] == language:
                blocks.append("\n".join(fence[2]))
            fence = None
        elif fence is not None:
            fence[2].append(line.removeprefix(fence[1]))
    return blocks


def expected_codes(first_line: str) -> frozenset[int]:
    """The exit codes a command's comment gives (``# exit 0 or 1: …``); {0} when it gives none."""
    comment = _COMMENT.search(first_line)
    found = _EXPECTED.search(comment.group(1)) if comment else None
    if found is None:
        return frozenset({0})
    return frozenset(int(code) for code in re.findall(r"\d+", found.group(1)))


def split_commands(text: str, first_line: int) -> tuple[Command, ...]:
    """*text* (a bash block starting at line *first_line* of its page) as its commands."""
    lines = text.splitlines()
    commands = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
        head = lines[start : i + 1]  # the command line, its continuations joined (with its comment)
        words = line.split()
        if words[0] in _COMPOUND:
            depth, opener = 0, words[0]
            while i < len(lines):
                first = (lines[i].split() or [""])[0]
                depth += (first == opener) - (first == _COMPOUND[opener])
                if depth == 0:
                    break
                i += 1
            if depth:
                raise ValueError(f"line {first_line + start}: {opener} never closes")
        elif heredoc := _HEREDOC.search(line.split(" #")[0]):
            terminator = heredoc.group(2)
            i += 1
            while i < len(lines) and lines[i].strip() != terminator:
                i += 1
            if i == len(lines):
                raise ValueError(f"line {first_line + start}: {terminator} never comes")
        commands.append(
            Command("\n".join(lines[start : i + 1]), expected_codes(head[-1]), first_line + start)
        )
        i += 1
    return tuple(commands)


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """*text* with what the runbook tells the reader to replace, replaced."""
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    return text


def _script(commands: tuple[Command, ...], state: Path, codes: Path) -> str:
    """Bash that runs *commands* in order in one shell, records each exit code in *codes*, and
    stops at the first that differs from the runbook's; exported variables are kept in *state*."""
    keep = f"export -p > {shlex.quote(str(state))}"
    parts = [f"[ -f {shlex.quote(str(state))} ] && . {shlex.quote(str(state))}"]
    for command in commands:
        allowed = "|".join(str(code) for code in sorted(command.expected))
        parts += [
            command.text,
            f"__readme_rc=$?; echo $__readme_rc >> {shlex.quote(str(codes))}; "
            f"case $__readme_rc in {allowed}) ;; *) {keep}; exit {MISMATCH_STATUS};; esac; "
            "(exit $__readme_rc)",
        ]
    parts.append(keep)
    return "\n".join(parts) + "\n"


def run_block(
    block: Block,
    *,
    replacements: Mapping[str, str],
    env: Mapping[str, str],
    cwd: Path,
    state: Path,
    timeout: float = 600,
) -> list[int]:
    """Run *block*'s commands (with *replacements*) in bash; return their exit codes.

    Raises ``ExitCodeMismatch`` naming the block and the first command whose exit code is not
    the runbook's, with the end of the block's output. The whole output (stdout, then stderr)
    is kept in *state* with the suffix ``.out``."""
    commands = tuple(
        Command(substitute(c.text, replacements), c.expected, c.line) for c in block.commands
    )
    codes = state.with_suffix(".codes")
    codes.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", "-c", _script(commands, state, codes)],
        cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    found = [int(code) for code in codes.read_text().split()] if codes.exists() else []
    state.with_suffix(".out").write_text(result.stdout + result.stderr)
    output = (result.stdout + result.stderr).strip().splitlines()
    tail = "\n".join(output[-25:])
    if result.returncode == MISMATCH_STATUS:
        command = block.commands[len(found) - 1]
        expected = " or ".join(str(code) for code in sorted(command.expected))
        raise ExitCodeMismatch(
            f"{block.name}: `{command.first_line}` (line {command.line}) exited with "
            f"{found[-1]}, the runbook says {expected}\n{tail}"
        )
    if result.returncode != 0 or len(found) != len(commands):
        raise AssertionError(
            f"{block.name} did not run to its end (bash exit {result.returncode}, "
            f"{len(found)} of {len(commands)} commands)\n{tail}"
        )
    return found


def readme_grants(grantee: str) -> list[str]:
    """The runbook's ``GRANT … TO grantee`` statements, as written in the SQL its rollout's blocks
    send to psql (``<<'SQL'``), in order, without their comments."""
    markdown = RUNBOOK.read_text(encoding="utf-8")
    statements = []
    for event in section_events(markdown, "A rollout, phase by phase"):
        for command in event.commands if isinstance(event, Block) else ():
            lines = command.text.splitlines()
            if "<<'SQL'" in lines[0]:
                body = "\n".join(line.split("--")[0] for line in lines[1:-1])
                statements += [" ".join(s.split()) for s in body.split(";") if s.strip()]
    return [s for s in statements if s.startswith("GRANT ") and s.endswith(f" TO {grantee}")]


def readme_monitor_grants(role: str) -> str:
    """The runbook's grants to the monitoring role (``pg_monitor`` first, then the tables', after
    the upgrade), exactly as written there, for *role*."""
    grants = readme_grants("dbtools_monitor")
    assert grants and grants[0] == "GRANT pg_monitor TO dbtools_monitor", grants
    return ";\n".join(grants).replace("dbtools_monitor", role) + ";"
