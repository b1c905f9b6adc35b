"""Query texts are scrubbed with PostgreSQL's own scanner: every literal in every quoting form,
every number and every comment goes; a text the scanner cannot read becomes a marker."""

from __future__ import annotations

import logging
import random
import re

import pglast.parser
import pytest
from pglast.parser import ParseError, scan

from benchmarks import shapes_corpus
from benchmarks.report import distinct_texts
from dbtools.sqltext import scrub
from dbtools.sqltext.families import Classifier
from dbtools.sqltext.scrub import is_unreadable, scrub_query


def unreadable(text: str) -> str:
    return f"<unreadable statement, {len(text)} characters>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # every quoting form of a string literal
        ("ALTER ROLE x PASSWORD 'se''cret'", "ALTER ROLE x PASSWORD $1"),
        ("ALTER ROLE app PASSWORD 'S3cretLiteral'", "ALTER ROLE app PASSWORD $1"),
        ("SELECT E'a\\'b secret' FROM t", "SELECT $1 FROM t"),
        ("SELECT e'x\\\\', E'\\x41\\n' FROM t", "SELECT $1, $2 FROM t"),
        ("SELECT $$secret$$, $q$secret$q$", "SELECT $1, $2"),
        ("SELECT $q$ it's $$ still secret $q$ AS a", "SELECT $1 AS a"),
        ("SELECT U&'\\0041', u&'d!0061t' UESCAPE '!'", "SELECT $1, $2"),
        ("SELECT B'0101', x'ff', N'secret', n'secret'", "SELECT $1, $2, $3, $4"),
        ("SELECT 'se'\n'cret' FROM t", "SELECT $1 FROM t"),  # one literal continued on a line
        ("SET work_mem = '64MB'", "SET work_mem = $1"),
        ("select '{1,2}'::int[], interval '1 day'", "select $1::int[], interval $2"),
        # role DDL and user mappings
        ("CREATE USER app WITH PASSWORD 'hunter2' VALID UNTIL '2030-01-01'",
         "CREATE USER app WITH PASSWORD $1 VALID UNTIL $2"),
        ("CREATE ROLE r LOGIN ENCRYPTED PASSWORD E'p\\'w' CONNECTION LIMIT 5",
         "CREATE ROLE r LOGIN ENCRYPTED PASSWORD $1 CONNECTION LIMIT $2"),
        ("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'x1')",
         "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user $1, password $2)"),
        # numbers, in every form
        ("SELECT 1, 1.5, .5, 1., 1e10, 1.5E-3, -7", "SELECT $1, $2, $3, $4, $5, $6, -$7"),
        ("SELECT 0x1F, 0o17, 0b101, 1_000, 1_000.5_5", "SELECT $1, $2, $3, $4, $5"),
        ("SELECT 99999999999999999999", "SELECT $1"),
        # comments go (a space stands in only where a comment was the only separator)
        ("SELECT 1 -- password 'hunter2'\n, 2", "SELECT $1\n, $2"),
        ("SELECT a, -- secret\n  b FROM t", "SELECT a,\n  b FROM t"),
        ("/* password 'hunter2' */ SELECT 1", "SELECT $1"),
        ("/* dbtools */ SELECT 1", "SELECT $1"),
        ("SELECT 1 /* token=abc123 */", "SELECT $1"),
        ("SELECT 1 /* outer /* secret */ still secret */ FROM t", "SELECT $1 FROM t"),
        ("SELECT a/* secret */b", "SELECT a b"),
        ("SELECT a /* x */ /* y */ b", "SELECT a b"),
        ("SELECT 1 -- customer 4111111111111111", "SELECT $1"),
        ("SELECT 1 /* trailing secret */  ", "SELECT $1"),
        # placeholders are kept, new ones numbered after the highest
        ("SELECT * FROM t WHERE a IN ($1,$2) AND b = 'x''y' LIMIT 10",
         "SELECT * FROM t WHERE a IN ($1,$2) AND b = $3 LIMIT $4"),
        ("SELECT $1::jsonb ? 'k', a$b FROM t WHERE x = $10",
         "SELECT $1::jsonb ? $11, a$b FROM t WHERE x = $10"),
        # PostgreSQL 18's marker of a squashed list: the server's fixed text, no data in it
        ("SELECT * FROM t WHERE a IN ($1 /*, ... */) AND b = 'x'",
         "SELECT * FROM t WHERE a IN ($1 /*, ... */) AND b = $2"),
        # identifiers, keywords and operators are kept
        ('SELECT "Col ""x""", "a b", t1.a2 FROM "T" WHERE x = 1.5e3',
         'SELECT "Col ""x""", "a b", t1.a2 FROM "T" WHERE x = $1'),
        ("SELECT b->>'k', c @> '{}', d || e, f <> g, h::text FROM t",
         "SELECT b->>$1, c @> $2, d || e, f <> g, h::text FROM t"),
        ('SELECT U&"d!0061t" UESCAPE \'!\' FROM t', 'SELECT U&"d!0061t" UESCAPE $1 FROM t'),
        ("SELECT 1 \\ 2", "SELECT $1 \\ $2"),  # a stray character is an operator to the scanner
        # multibyte text: offsets are characters
        ("SELECT 'пароль', \"таблица\" FROM ü WHERE x = '日本語' -- コメント",
         "SELECT $1, \"таблица\" FROM ü WHERE x = $2"),
        # backslashes that read the same with standard_conforming_strings on or off
        ("SELECT 'C:\\\\'", "SELECT $1"),
        ("SELECT 'a\\b'", "SELECT $1"),
        ("SELECT date'2024-01-01', 'x'AS y", "SELECT date $1, $2 AS y"),
        ("-- only a comment", ""),
        ("", ""),
    ],
)  # fmt: skip
def test_every_literal_number_and_comment_is_replaced(text: str, expected: str) -> None:
    assert scrub_query(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # truncated texts
        "SELECT * FROM t WHERE name = 'secr",
        "ALTER ROLE app PASSWORD 'never closed",
        "SELECT E'abc\\'",
        "SELECT $$secret",
        "SELECT /* a /* b */ secret",
        'SELECT "unterminated identifier',
        "SELECT 'пароль",
        # with standard_conforming_strings off, the quote after a backslash is escaped: the
        # scanner (always on) would show part of the literal as SQL
        "ALTER ROLE app PASSWORD 'pa\\'ss word'",
        "ALTER ROLE x PASSWORD 'pa\\'ss\\'word'",
        "SELECT N'x\\' secret \\'y'",
        # scanner errors
        "SELECT 123abc",
        "SELECT $99999999999999999999",
        "SELECT E'\\xff'",
        # the C scanner stops at a NUL: what follows must not come through
        "SELECT 1\x00 'secret'",
        # not valid Unicode
        "SELECT '\ud800secret'",
    ],
)
def test_what_the_scanner_cannot_read_is_never_shown(text: str) -> None:
    assert scrub_query(text) == unreadable(text)
    assert is_unreadable(scrub_query(text))


def test_deep_comment_nesting_is_refused_quickly() -> None:
    text = "SELECT " + "/*" * 40000 + "secret" + "*/" * 40000 + " 1"
    assert scrub_query(text) == unreadable(text)  # scanning it would take seconds
    assert scrub_query("SELECT " + "/* x */ " * 1000 + "1") == "SELECT $1"


def test_a_parse_error_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        scrub_query("ALTER ROLE app PASSWORD 'Hunter2Secret")
    assert "Hunter2Secret" not in caplog.text


def test_scrubbing_twice_changes_nothing() -> None:
    for text in ("SELECT 'x', 1 -- c", "SELECT 'unterminated", "ALTER ROLE a PASSWORD 'p'"):
        once = scrub_query(text)
        assert scrub_query(once) == once


def test_unreadable_texts_of_equal_length_are_not_one_family() -> None:
    first, second = "SELECT 'aaaaaaa", "UPDATE t SET 'x"
    assert len(first) == len(second)
    classifier = Classifier()
    one, other = classifier.shape(1, first), classifier.shape(2, second)
    assert one.text == other.text == unreadable(first)
    assert one.fingerprint != other.fingerprint
    assert (one.kind, one.parsed) == ("unreadable", False)


# -- whatever the input, the output has no literal and no comment ---------------------------------

_PIECES = [
    "SELECT", "FROM", "t", '"Secret Col"', ",", "(", ")", " ", "\n", "\t", "=", "::", "$1", "$7",
    "'SECRET'", "'SE''CRET'", "E'SE\\'CRET'", "$$SECRET$$", "$x$SE'CRET$x$", "U&'SECRET'",
    "B'0101'", "X'ff'", "N'SECRET'", "42", "4.2e1", "0x2A", "1_000", "-- SECRET\n",
    "/* SECRET */", "/* a /* SECRET */ b */", "'", '"', "$$", "/*", "*/", "\\", "é", "日",
    "'SECRET", "E'SECRET\\'", "\\'", "?", "->>", "/*, ... */",
]  # fmt: skip


def _literal_free(output: str) -> bool:
    """The output scans, and has no literal and no comment but the squashed-list marker; any
    SECRET left is inside an identifier (PostgreSQL reads x$$SECRET$$ as one identifier)."""
    try:
        tokens = scan(output)
    except ParseError:
        return False
    for token in tokens:
        source = output[token.start : token.end + 1]
        if token.name in {"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST"}:
            return False
        if token.name in {"SQL_COMMENT", "C_COMMENT"} and source != "/*, ... */":
            return False
        if "CRET" in source and token.name not in {"IDENT", "UIDENT"}:
            return False
    return True


@pytest.mark.parametrize("separator", [" ", ""])
def test_random_texts_never_leak(separator: str) -> None:
    rng = random.Random(20240518)
    readable = 0
    for _ in range(20000):
        text = separator.join(rng.choice(_PIECES) for _ in range(rng.randint(1, 14)))
        out = scrub_query(text)
        if out.startswith("<unreadable statement, "):
            assert out == unreadable(text)
            continue
        readable += 1
        assert _literal_free(out), (text, out)
    assert readable > 2000  # the generator does produce readable texts


# -- the fast path: a text the scanner would give back as it is, known without the scanner ------


def _scanner_only(monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    """``scrub_query`` with every text read by the scanner."""
    with monkeypatch.context() as patched:
        patched.setattr(scrub, "_PLAIN", re.compile("(?!)"))  # matches nothing
        return scrub_query(text)


def test_normalised_texts_skip_the_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = distinct_texts(2000)  # pg_stat_statements texts: $n, no literal, no comment
    expected = [_scanner_only(monkeypatch, text) for text in texts]
    assert expected == texts  # the scanner gives each back as it is
    with monkeypatch.context() as patched:
        patched.setattr(pglast.parser, "scan", None)  # scrub_query must not call it
        assert [scrub_query(text) for text in texts] == texts


def test_the_fast_path_agrees_with_the_scanner_on_the_shapes_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = shapes_corpus.corpus()
    plain = [text for text in texts if scrub._PLAIN.fullmatch(text)]
    assert len(texts) > len(plain) > len(texts) // 2  # both paths are taken
    for text in texts:
        assert scrub_query(text) == _scanner_only(monkeypatch, text), text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # literals: strings, dollar quotes, numbers in every place a digit can start one
        ("SELECT a FROM t WHERE b = 'x'", "SELECT a FROM t WHERE b = $1"),
        ("SELECT $$x$$", "SELECT $1"),
        ("SELECT $q$x$q$ FROM t", "SELECT $1 FROM t"),
        ("SELECT a FROM t LIMIT 10", "SELECT a FROM t LIMIT $1"),
        ("SELECT .5, t.a", "SELECT $1, t.a"),
        ("SELECT 1e3 FROM t", "SELECT $1 FROM t"),
        ("SELECT a FROM t WHERE b = $1+2", "SELECT a FROM t WHERE b = $1+$2"),
        ("SELECT $1.5", "SELECT $1 $2"),  # the scanner reads $1, then .5
        ("SELECT a FROM t WHERE b=-1", "SELECT a FROM t WHERE b=-$1"),
        # comments
        ("SELECT a -- b", "SELECT a"),
        ("SELECT a /* b */ FROM t", "SELECT a FROM t"),
        ("SELECT a/*b*/", "SELECT a"),
        # what the scanner refuses or cannot vouch for
        ('SELECT "" FROM t', unreadable('SELECT "" FROM t')),
        ('SELECT "a FROM t', unreadable('SELECT "a FROM t')),
        ("SELECT a\x00 FROM t", unreadable("SELECT a\x00 FROM t")),
        ('SELECT "a\x00b" FROM t', unreadable('SELECT "a\x00b" FROM t')),
        ("SELECT 1abc", unreadable("SELECT 1abc")),
        ("SELECT $9999999999", unreadable("SELECT $9999999999")),
        ("SELECT a { b", unreadable("SELECT a { b")),
        ("SELECT a } b", unreadable("SELECT a } b")),
        ("SELECT a\x01 FROM t", unreadable("SELECT a\x01 FROM t")),
        ("SELECT a\x7f FROM t", unreadable("SELECT a\x7f FROM t")),
        ('SELECT "\ud800"', unreadable('SELECT "\ud800"')),
        # kept as they are, but read by the scanner (not vouched for without it)
        ("SELECT $1abc", "SELECT $1abc"),
        ("SELECT é FROM t", "SELECT é FROM t"),
        ("SELECT a\fFROM t", "SELECT a\fFROM t"),
        ("SELECT a $ b", "SELECT a $ b"),
    ],
)
def test_what_the_fast_path_leaves_to_the_scanner(text: str, expected: str) -> None:
    assert scrub._PLAIN.fullmatch(text) is None
    assert scrub_query(text) == expected


def test_the_fast_path_agrees_with_the_scanner_on_random_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pieces = ["a", "SELECT", "_", "e", "x", "$", "$1", "1", "9", ".", "-", "/", "*", '"', '"a"',
              "'", "''", " ", "\n", "\t", "\f", "\x00", "\x01", "{", "}", "\\", "é", "#", "?",
              "`", "&", "U&", "(", ")", ":", ",", "=", "$$", "$q$", "--", "/*", "*/"]  # fmt: skip
    rng = random.Random(20261207)
    plain = 0
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10)))
        plain += scrub._PLAIN.fullmatch(text) is not None
        assert scrub_query(text) == _scanner_only(monkeypatch, text), text
    assert plain > 1000  # the fast path is taken often enough to be tested
