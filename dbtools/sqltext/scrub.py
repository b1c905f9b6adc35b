"""Query texts made safe to store and show, with PostgreSQL's own scanner (``pglast``).

Every string literal (plain, ``E''``, ``U&''``, ``B''``, ``X''``, ``N''``, dollar-quoted), every
number (``1``, ``1.5e3``, ``0x1F``, ``1_000``) and every comment goes: literals become ``$n``
(numbered after the text's own placeholders), comments are removed. Keywords, identifiers,
operators and placeholders are kept. A text the scanner cannot read, or whose reading cannot be
vouched for, becomes ``<unreadable statement, N characters>``: never the text itself.

Vouching means, on top of the scanner's own errors (docs/postgresql.md, "Scrubbing query
texts"):

* every character outside a token is whitespace (the C scanner stops at a NUL and silently
  drops the rest of the text);
* only token kinds known to carry no data are kept: a kind this module does not know makes
  the text unreadable rather than copied through;
* a plain ``'…'`` literal with an odd run of backslashes before a quote is unreadable: the
  scanner reads it with ``standard_conforming_strings`` on, a session with it off would not;
* a text with more than ``MAX_COMMENT_OPENERS`` ``/*`` is unreadable (the scanner's time grows
  with the square of their nesting depth).

A ``pglast`` error is never shown, logged or chained: its message quotes the text.
"""

from __future__ import annotations

import re

from dbtools.redaction import redact

UNREADABLE = "<unreadable statement, {length} characters>"
_UNREADABLE = re.compile(r"<unreadable statement, \d+ characters>")
MAX_COMMENT_OPENERS = 1000

# Token names of libpg_query's scanner (pglast 8: PostgreSQL 18's grammar).
_LITERALS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST"})
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_KEPT = frozenset(
    {
        "IDENT",  # plain and "quoted" identifiers
        "UIDENT",  # U&"…" identifiers
        "PARAM",  # $n
        "Op",
        "TYPECAST",
        "DOT_DOT",
        "COLON_EQUALS",
        "EQUALS_GREATER",
        "LESS_EQUALS",
        "GREATER_EQUALS",
        "NOT_EQUALS",
    }
)
# PostgreSQL 18's pg_stat_statements writes ``IN ($1 /*, ... */)`` for a squashed list: a fixed
# text of the server's with no data in it, kept so that the collapse stays visible.
_KEPT_COMMENTS = frozenset({"/*, ... */"})
_SPACE = " \t\n\r\f\v"  # the scanner's whitespace (str.isspace() is wider)
# A text that is its own scrub, without the scanner (most texts pg_stat_statements holds: they
# are normalised already): ASCII words, ``$n`` placeholders, "quoted" identifiers and operator
# characters, nothing else. So no quote ``'`` (strings), no ``$`` that could open a dollar quote,
# no digit that could start a number (``1``, ``.5``, ``1e3``), no ``--`` or ``/*`` (comments),
# no NUL (the scanner stops there), no ``""``, no unterminated ``"``, no ``$n`` above 2^31 (the
# scanner's errors), no character the scanner reads as a token of no known kind (``{``,
# controls). Each of these is the scanner's (tests/test_scrub.py compares the two paths).
_PLAIN = re.compile(
    r"""(?:
        [ \t\n\r]++
      | [A-Za-z_][A-Za-z0-9_$]*+  # a keyword or an identifier: digits and $ only inside
      | \$[0-9]{1,9}+(?![A-Za-z0-9_$])  # a placeholder (the scanner refuses one above 2^31)
      | "[\t\n\r !#-~]++"  # a quoted identifier
      | -(?!-) | /(?!\*) | [!#%&()*+,.:;<=>?@[\\\]^`|~]
    )*+""",
    re.VERBOSE,
)


class _Unreadable(Exception):
    """The text cannot be vouched for. Carries nothing of the text."""


# A token: (kind, start, end). Kind is literal, comment, param or keep; start and end are
# character offsets into the text, end exclusive. A plain tuple: a text of a thousand tokens
# makes a thousand of them.
_Token = tuple[str, int, int]
_CHANGED = frozenset({"literal", "comment"})  # the kinds of token scrubbing rewrites


def unreadable(text: str) -> str:
    """The marker shown instead of *text*: its length in characters, nothing else."""
    return UNREADABLE.format(length=len(text))


def is_unreadable(text: str) -> bool:
    """Whether *text* is the marker ``scrub_query`` gives for a text it could not read."""
    return _UNREADABLE.fullmatch(text) is not None


def scrub_query(text: str) -> str:
    """*text* with every literal as ``$n`` and every comment removed, then ``redact``-ed (a
    quoted identifier may still hold a URL); or the unreadable marker.

    Scrubbing a scrubbed text changes nothing (the marker included).
    """
    if is_unreadable(text):
        return text
    if _PLAIN.fullmatch(text) is not None:
        rebuilt = text
    else:
        try:
            rebuilt = _scanned(text)
        except _Unreadable:
            return unreadable(text)
    scrubbed = redact(rebuilt)
    return text if scrubbed == text else scrubbed  # one copy of the text kept


def _scanned(text: str) -> str:
    """*text* with its literals and comments rewritten, read by the scanner. Raises
    ``_Unreadable``."""
    tokens = _tokens(text)
    # A text with no literal and no comment rebuilds as itself (a text scrubbed already).
    return _rebuild(text, tokens) if any(t[0] in _CHANGED for t in tokens) else text


def _is_space(piece: str) -> bool:
    return not piece.strip(_SPACE)


def _is_word_character(character: str) -> bool:
    return character.isalnum() or character in "_$" or ord(character) > 127


def _ambiguous_backslash(literal: str) -> bool:
    """A plain ``'…'`` literal with an odd run of backslashes right before a quote: with
    ``standard_conforming_strings`` off that quote is escaped and the literal ends elsewhere."""
    run = 0
    for character in literal:
        if character == "\\":
            run += 1
            continue
        if character == "'" and run % 2:
            return True
        run = 0
    return False


def _tokens(text: str) -> list[_Token]:
    """The text's tokens, literals merged (``N'…'``, ``U&'…' UESCAPE '…'``). Raises
    ``_Unreadable``."""
    if text.count("/*") > MAX_COMMENT_OPENERS:
        raise _Unreadable("too many comments")
    # Imported on first use: a command that scrubs nothing (verify) does not pay for it.
    from pglast.parser import ParseError, scan

    try:
        scanned = scan(text)
    except (ParseError, UnicodeError):
        # Never show, log or chain the error: a ParseError quotes the text.
        raise _Unreadable("the scanner refused it") from None
    spans = [(t.name, t.kind, t.start, t.end + 1) for t in scanned]  # pglast's end is inclusive
    tokens: list[_Token] = []
    position = i = 0
    while i < len(spans):
        first = i
        name, keyword, start, end = spans[i]
        if start < position or end <= start:
            raise _Unreadable("text outside the tokens")
        if start > position and not _is_space(text[position:start]):
            raise _Unreadable("text outside the tokens")  # the scanner stopped at a NUL
        following = (
            [n for n, _, _, _ in spans[i + 1 : i + 3]] if name in ("USCONST", "NCHAR") else []
        )
        if name == "USCONST" and following == ["UESCAPE", "SCONST"]:
            i += 2  # U&'…' UESCAPE '!' is one literal
            kind = "literal"
        elif name in _LITERALS:
            kind = "literal"
        elif name == "NCHAR" and following[:1] == ["SCONST"] and spans[i + 1][2] == end:
            i += 1  # N'…' is scanned as the keyword NCHAR, then a string: one literal
            kind = "literal"
        elif name in _COMMENTS:
            kind = "keep" if text[start:end] in _KEPT_COMMENTS else "comment"
        elif name == "PARAM":
            kind = "param"
        elif name in _KEPT or name.startswith("ASCII_") or keyword != "NO_KEYWORD":
            kind = "keep"
        else:
            raise _Unreadable("a token of an unknown kind")
        for k in range(first, i + 1) if kind == "literal" else ():
            if k > first and not _is_space(text[spans[k - 1][3] : spans[k][2]]):
                raise _Unreadable("text between the parts of a literal")
            part = text[spans[k][2] : spans[k][3]]
            if spans[k][0] == "SCONST" and part.startswith("'") and _ambiguous_backslash(part):
                raise _Unreadable("standard_conforming_strings decides the reading")
        tokens.append((kind, start, spans[i][3]))
        position = spans[i][3]
        i += 1
    if not _is_space(text[position:]):
        raise _Unreadable("text outside the tokens")
    return tokens


def _rebuild(text: str, tokens: list[_Token]) -> str:
    """The text from its tokens: literals as new placeholders, comments dropped, the spacing
    around them kept as far as it separates words."""
    numbers = (int(text[start + 1 : end]) for kind, start, end in tokens if kind == "param")
    next_number = 1 + max(numbers, default=0)
    pieces: list[str] = []
    position = 0
    gaps: list[str] = []  # the whitespace since the last token written, split by comments
    for kind, start, end in tokens:
        gaps.append(text[position:start])
        position = end
        if kind == "comment":
            continue
        if not pieces:
            separator = "" if len(gaps) > 1 else gaps[0]  # a leading comment takes its space
        elif len(gaps) == 1:
            separator = gaps[0]
        else:
            # Comments dropped between two tokens: keep the last space (the newline after a
            # -- comment), or one space where comments were the only separator (a/**/b).
            separator = next((gap for gap in reversed(gaps) if gap), " ")
        gaps = []
        previous = pieces[-1] if pieces else ""
        pieces.append(separator)
        if kind == "literal":
            # date'2024-01-01' must not become the identifier date$1, nor 'x'AS y $1AS y.
            before = " " if not separator and previous and _is_word_character(previous[-1]) else ""
            after = text[end : end + 1]
            pieces.append(
                f"{before}${next_number}{' ' if after and _is_word_character(after) else ''}"
            )
            next_number += 1
        else:
            pieces.append(text[start:end])
    if not tokens or tokens[-1][0] != "comment":
        pieces.append(text[position:])  # the space after a trailing comment goes with it
    return "".join(pieces)
