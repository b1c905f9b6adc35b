"""Query families: fingerprints that ignore constants and list lengths, tables, kinds, point
lookups and their batched forms, unparseable texts kept, parses cached by queryid."""

from __future__ import annotations

import logging

import pytest

from dbtools.safety.classify import classify
from dbtools.sqltext.families import Classifier, NPlusOne, is_n_plus_one, shape_of
from dbtools.sqltext.parse import TableRef, parse_statements, tables_touched


def fingerprint(text: str) -> str:
    return shape_of(text).fingerprint


@pytest.mark.parametrize(
    "variants",
    [
        # PostgreSQL 15 keeps one entry per list length, 18 shows the collapsed form.
        ["SELECT * FROM t WHERE id IN ($1,$2)", "SELECT * FROM t WHERE id IN ($1,$2,$3,$4)",
         "SELECT * FROM t WHERE id IN ($1 /*, ... */)", "select * from t where id in (1, 2, 3)"],
        ["SELECT * FROM t WHERE id = ANY($1)", "SELECT * FROM t WHERE id = ANY($1::bigint[])"],
        ["SELECT * FROM t WHERE id = ANY(ARRAY[$1,$2])", "SELECT * FROM t WHERE id = ANY(ARRAY[$1])"],
        ["INSERT INTO t (a, b) VALUES ($1, $2)", "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4)"],
        ["SELECT a FROM t WHERE b = 'x' LIMIT 10", "SELECT a FROM t WHERE b = $1 LIMIT $2",
         "SELECT /* app:tag */ a\nFROM   t\nWHERE  b = $1 LIMIT $2"],
    ],
)  # fmt: skip
def test_one_family_whatever_the_constants_and_list_lengths(variants: list[str]) -> None:
    assert len({fingerprint(text) for text in variants}) == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("SELECT a FROM t WHERE b = $1", "SELECT a FROM u WHERE b = $1"),
        ("SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b > $1"),
        ("SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b = ANY($1)"),
        ("SELECT a FROM t WHERE b IN ($1)", "SELECT a FROM t WHERE b = ANY($1)"),
        ("VACUUM t", "VACUUM u"),
    ],
)
def test_different_statements_are_different_families(one: str, other: str) -> None:
    assert fingerprint(one) != fingerprint(other)


@pytest.mark.parametrize(
    ("text", "kind", "tables"),
    [
        ("SELECT 1", "select", ()),
        ("WITH recent AS (SELECT * FROM public.orders) SELECT * FROM recent JOIN items "
         "ON true", "select", ("items", "public.orders")),
        ("SELECT a FROM t UNION ALL SELECT a FROM u", "select", ("t", "u")),
        ("INSERT INTO t (a) VALUES ($1)", "insert", ("t",)),
        ("INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) DO NOTHING", "upsert", ("t",)),
        ("UPDATE t SET a = $1 WHERE id = $2", "update", ("t",)),
        ("DELETE FROM s.t WHERE id = $1", "delete", ("s.t",)),
        ("BEGIN", "transaction", ()),
        ("COMMIT", "transaction", ()),
        ("SET work_mem = $1", "set", ()),
        ("CREATE INDEX CONCURRENTLY ix ON t (a)", "ddl", ("t",)),
    ],
)  # fmt: skip
def test_kind_and_tables(text: str, kind: str, tables: tuple[str, ...]) -> None:
    shape = shape_of(text)
    assert shape.parsed and (shape.kind, shape.tables) == (kind, tables)


def test_placeholder_trap_is_padded() -> None:
    """``($1,$2)`` would be read as a dollar-quoted string without padding: every parse in
    dbtools (families, the tables a statement touches, migration safety) goes through the one
    entry that pads."""
    text = "SELECT * FROM t WHERE (a, b) IN (($1,$2))"
    shape = shape_of(text)
    assert shape.parsed and shape.tables == ("t",)
    assert tables_touched(text) == frozenset({TableRef(None, "t")})
    assert classify("DELETE FROM t WHERE (a, b) IN (($1,$2))").parser == "sqlglot"


@pytest.mark.parametrize(
    ("text", "statements"),
    [("SELECT 1; SELECT 2", 2), ("", None), (";", None), ("SELECT FROM WHERE (", None),
     ("VACUUM t", None), ("ALTER TABLE t RESET (fillfactor)", None)],
)  # fmt: skip
def test_parse_entry_returns_trees_or_none(
    text: str, statements: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Opaque ``Command`` fallbacks and errors are None, and sqlglot's logger stays quiet."""
    with caplog.at_level(logging.DEBUG, logger="sqlglot"):
        trees = parse_statements(text)
    assert (None if trees is None else len(trees)) == statements
    assert not [r for r in caplog.records if r.name.startswith("sqlglot")]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("VACUUM (ANALYZE) public.t", "vacuum"),
        ("ALTER ROLE app PASSWORD 'S3cretLiteral'", "alter role"),
        ("REINDEX INDEX CONCURRENTLY ix", "reindex index"),
        ("SELECT FROM WHERE (", "select"),
    ],
)
def test_unparseable_texts_are_kept_verbatim_and_scrubbed(text: str, kind: str) -> None:
    shape = shape_of(text)
    assert not shape.parsed and shape.kind == kind and shape.tables == ()
    assert shape.sql == shape.text == text.replace("'S3cretLiteral'", "$1")


def test_sqlglot_never_sees_a_literal(caplog: pytest.LogCaptureFixture) -> None:
    """The text is scrubbed before sqlglot parses it, so its warnings cannot leak a secret."""
    with caplog.at_level(logging.DEBUG):
        shape_of("ALTER ROLE app PASSWORD 'S3cretLiteral'")
        shape_of("CREATE ROLE app LOGIN PASSWORD 'S3cretLiteral' VALID UNTIL 'infinity'")
    assert "S3cretLiteral" not in caplog.text


@pytest.mark.parametrize(
    ("text", "columns", "batched"),
    [
        ("SELECT a FROM t WHERE id = $1", ("id",), "SELECT a FROM t WHERE id = ANY($1)"),
        ("SELECT a FROM t WHERE $1 = t.id", ("t.id",), "SELECT a FROM t WHERE t.id = ANY($1)"),
        ("SELECT a FROM t WHERE id = $1::bigint", ("id",),
         "SELECT a FROM t WHERE id = ANY($1)"),
        # The key-like column is batched, a constant filter stays.
        ("SELECT a FROM t WHERE status = $1 AND trip_id = $2", ("trip_id",),
         "SELECT a FROM t WHERE status = $1 AND trip_id = ANY($2)"),
        ("SELECT a FROM t WHERE k = $1 UNION ALL SELECT a FROM u WHERE k = $2", ("k", "k"),
         "SELECT a FROM t WHERE k = ANY($1) UNION ALL SELECT a FROM u WHERE k = ANY($2)"),
    ],
)  # fmt: skip
def test_point_lookups_and_their_batched_form(
    text: str, columns: tuple[str, ...], batched: str
) -> None:
    lookup = shape_of(text).lookup
    assert lookup is not None
    assert (lookup.columns, lookup.batched_sql) == (columns, batched)


def test_batched_form_is_the_family_of_the_batched_statement() -> None:
    lookup = shape_of("SELECT a FROM t WHERE status = $1 AND id = $2").lookup
    assert lookup is not None
    batched = "SELECT a FROM t WHERE status = $1 AND id = ANY($2::bigint[])"
    assert lookup.batched_fingerprint == fingerprint(batched)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT a FROM t WHERE id = ANY($1)",
        "SELECT a FROM t WHERE id IN ($1, $2)",
        "SELECT a FROM t WHERE id > $1",
        "SELECT a FROM t",
        "UPDATE t SET a = $1 WHERE id = $2",
        "SELECT a FROM t WHERE id = other_id",
    ],
)
def test_not_point_lookups(text: str) -> None:
    assert shape_of(text).lookup is None


@pytest.mark.parametrize(
    ("calls", "requests", "suspect"),
    [(100, 100, True), (99, 100, False), (300, 100, True), (100, None, True), (99, None, False),
     (99, 0, False)],
)  # fmt: skip
def test_n_plus_one_is_a_point_lookup_sent_once_or_more_per_request(
    calls: int, requests: int | None, suspect: bool
) -> None:
    lookup = shape_of("SELECT a FROM t WHERE id = $1").lookup
    assert is_n_plus_one(lookup, calls, requests) is suspect
    assert is_n_plus_one(lookup, calls, requests, NPlusOne(3.1, 1000)) is False
    assert is_n_plus_one(None, 10_000, 1) is False  # not a point lookup: never


def test_classifier_caches_parses_by_queryid() -> None:
    cached, uncached = Classifier(), Classifier(cache=False)
    for _ in range(3):
        for queryid, text in ((1, "SELECT 1"), (2, "SELECT a FROM t WHERE id = $1")):
            assert cached.shape(queryid, text) == uncached.shape(queryid, text)
    assert (cached.parses, uncached.parses) == (2, 6)
