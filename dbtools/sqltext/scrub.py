"""Query texts made safe to store and show: every literal replaced, then passwords masked."""

from __future__ import annotations

import re

from dbtools.redaction import redact

# One SQL token per match, in the order PostgreSQL's lexer decides between them. Unterminated
# strings run to the end of the text (and are scrubbed whole).
_SQL_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<identifier>"(?:[^"]|"")*(?:"|\Z))
    | (?P<dollar_string>\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<placeholder>\$(?P<number>\d+))
    | (?P<escape_string>[Ee]'(?:[^'\\]|''|\\.)*(?:'|\Z))
    | (?P<string>(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*(?:'|\Z))
    | (?P<word>[^\W\d][\w$]*)
    | (?P<numeric>(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
    """,
    re.S | re.X,
)
_LITERALS = frozenset({"dollar_string", "escape_string", "string", "numeric"})


def scrub_query(text: str) -> str:
    """Return SQL *text* with every literal (strings, dollar-quoted strings, numbers) replaced by
    a placeholder ``$n`` numbered after the text's own, then ``redact``-ed.

    pg_stat_statements normalises constants in most statements, but older servers keep them in
    utility statements (``ALTER ROLE app PASSWORD 'secret'``): every query text goes through this
    before a report shows it. Works on any text, parseable or not; identifiers, comments and
    existing placeholders are kept.
    """
    tokens = list(_SQL_TOKEN.finditer(text))
    numbers = [int(m.group("number")) for m in tokens if m.lastgroup == "placeholder"]
    next_number = max(numbers, default=0) + 1
    pieces: list[str] = []
    position = 0
    for match in tokens:
        if match.lastgroup not in _LITERALS:
            continue
        pieces.append(text[position : match.start()])
        pieces.append(f"${next_number}")
        next_number += 1
        position = match.end()
    pieces.append(text[position:])
    return redact("".join(pieces))
