"""SQL text as statements: a splitter that knows PostgreSQL's quoting, and Alembic's offline SQL
read as statements that run inside or outside a transaction.

Splitting by ``;`` alone breaks ``DO $$ … $$`` bodies and string literals; this splitter skips
single-quoted strings (``''`` escapes, ``E'…'`` backslash escapes), quoted identifiers, dollar
quotes (``$$``, ``$tag$``; never ``$1``), ``--`` comments and nested ``/* */`` comments.

Alembic's offline SQL brackets every autocommit block with ``COMMIT;`` before and ``BEGIN;`` after
it; those markers, not guesses, say which statements run inside a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$")
_TRANSACTION_START = re.compile(r"^(BEGIN|START\s+TRANSACTION)(\s+(WORK|TRANSACTION))?$", re.I)
_TRANSACTION_END = re.compile(r"^(COMMIT|END)(\s+(WORK|TRANSACTION))?$", re.I)
_SESSION_SETTING = re.compile(r"^SET\s+(?:SESSION\s+)?(\w+)\s*(?:=|\bTO\b)\s*(.+)$", re.I | re.S)


@dataclass(frozen=True)
class SqlStatement:
    """One statement of a script, without its ``;``, with the lines it spans (1-based)."""

    sql: str
    first_line: int
    last_line: int


def split_statements(text: str) -> list[SqlStatement]:
    """Split *text* into statements; comment-only pieces are dropped, comments inside kept."""
    statements: list[SqlStatement] = []
    start = 0
    for end in _statement_ends(text):
        _append(statements, text, start, end)
        start = end + 1
    _append(statements, text, start, len(text))
    return statements


def strip_comments(sql: str) -> str:
    """*sql* without ``--`` and ``/* */`` comments (quoted text untouched), whitespace squeezed."""
    out: list[str] = []
    for kind, piece in _tokens(sql):
        out.append(" " if kind == "comment" else piece)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def string_literals(sql: str) -> list[str]:
    """The single-quoted literals of *sql*, unescaped, in order (for dynamic SQL in DO blocks)."""
    found = []
    for kind, piece in _tokens(sql):
        if kind == "string":
            body = piece[piece.index("'") + 1 : -1]
            found.append(body.replace("''", "'"))
    return found


def mask_literals(sql: str) -> str:
    """*sql* with every string, quoted identifier and dollar-quoted body blanked out (same length),
    so that keyword searches cannot match inside them."""
    out = []
    for kind, piece in _tokens(sql):
        out.append(piece if kind in ("code", "comment") else " " * len(piece))
    return "".join(out)


def dollar_body(sql: str) -> str | None:
    """The body of the first dollar-quoted string in *sql* (a DO block's code), or None."""
    for kind, piece in _tokens(sql):
        if kind == "dollar":
            tag = _DOLLAR_TAG.match(piece)
            assert tag is not None
            return piece[len(tag.group()) : len(piece) - len(tag.group())]
    return None


# -- offline SQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfflineStatement:
    """A statement of Alembic's offline SQL and how it runs.

    ``block`` numbers the transactions (and autocommit statements) of the script in order, so
    statements sharing a block commit or roll back together.
    """

    sql: str
    first_line: int
    in_transaction: bool
    block: int
    last_line: int = 0

    @property
    def one_line(self) -> str:
        """The statement on one line, comments removed (for tables and messages)."""
        return strip_comments(self.sql)


@dataclass(frozen=True)
class OfflineScript:
    """Offline SQL read as statements, with the session settings its preamble makes."""

    statements: tuple[OfflineStatement, ...]
    settings: dict[str, str]


def read_offline_sql(text: str) -> OfflineScript:
    """Read offline SQL: drop BEGIN/COMMIT markers, tag each statement with its transaction."""
    statements: list[OfflineStatement] = []
    settings: dict[str, str] = {}
    in_transaction = False
    block = 0
    for statement in split_statements(text):
        bare = strip_comments(statement.sql)
        if not bare:
            continue
        if _TRANSACTION_START.match(bare):
            in_transaction, block = True, block + 1
            continue
        if _TRANSACTION_END.match(bare):
            in_transaction = False
            continue
        setting = _SESSION_SETTING.match(bare)
        if setting and not in_transaction and not statements:
            settings[setting.group(1).lower()] = setting.group(2).strip().strip("'")
            continue
        if not in_transaction:
            block += 1  # an autocommit statement is its own unit
        statements.append(
            OfflineStatement(
                statement.sql, statement.first_line, in_transaction, block, statement.last_line
            )
        )
    # Alembic opens a transaction after each autocommit block even when nothing follows: drop
    # the block numbers that hold no statement, so blocks count 1, 2, 3…
    numbering = {old: new for new, old in enumerate(sorted({s.block for s in statements}), 1)}
    return OfflineScript(
        tuple(
            OfflineStatement(s.sql, s.first_line, s.in_transaction, numbering[s.block], s.last_line)
            for s in statements
        ),
        settings,
    )


# -- the scanner -----------------------------------------------------------------------------------


def _append(statements: list[SqlStatement], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    if not strip_comments(piece):
        return
    # Leading comments (Alembic's "-- Running downgrade …") belong to no statement.
    lead = 0
    for kind, token in _tokens(piece):
        if kind == "comment" or not token.strip():
            lead += len(token)
            continue
        lead += len(token) - len(token.lstrip()) if kind == "code" else 0
        break
    first_line = text.count("\n", 0, start + lead) + 1
    body = piece[lead:].strip()
    statements.append(SqlStatement(body, first_line, first_line + body.count("\n")))


def _statement_ends(text: str) -> Iterator[int]:
    position = 0
    for kind, piece in _tokens(text):
        if kind == "code":
            for index, char in enumerate(piece):
                if char == ";":
                    yield position + index
        position += len(piece)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, text) pieces: code, string, identifier, dollar, comment; they add up to text."""
    i, n, code_start = 0, len(text), 0
    while i < n:
        char = text[i]
        end = None
        kind = ""
        if char == "-" and text.startswith("--", i):
            newline = text.find("\n", i)
            end, kind = (n if newline < 0 else newline), "comment"
        elif char == "/" and text.startswith("/*", i):
            end, kind = _block_comment_end(text, i), "comment"
        elif char == "'":
            escaped = i > 0 and text[i - 1] in "eE" and (i == 1 or not text[i - 2].isalnum())
            end, kind = _quoted_end(text, i, "'", backslashes=escaped), "string"
        elif char == '"':
            end, kind = _quoted_end(text, i, '"', backslashes=False), "identifier"
        elif char == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                close = text.find(tag.group(), tag.end())
                end, kind = (n if close < 0 else close + len(tag.group())), "dollar"
        if end is None:
            i += 1
            continue
        start = i - 1 if kind == "string" and i > 0 and text[i - 1] in "eE" else i
        start = max(start, code_start)
        if start > code_start:
            yield "code", text[code_start:start]
        yield kind, text[start:end]
        i = code_start = end
    if code_start < n:
        yield "code", text[code_start:]


def _quoted_end(text: str, start: int, quote: str, *, backslashes: bool) -> int:
    i = start + 1
    while i < len(text):
        if backslashes and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


def _block_comment_end(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)
