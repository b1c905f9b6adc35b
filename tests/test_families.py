"""Query families: fingerprints that ignore constants and list lengths, tables, kinds, point
lookups and their batched forms, unparseable texts kept, parses cached by queryid."""

from __future__ import annotations

import logging
import re

import pytest

from dbtools.safety.classify import classify
from dbtools.sqltext import tree
from dbtools.sqltext.families import (
    Batchable,
    Classifier,
    LookupKey,
    NPlusOne,
    batching_reduction,
    concurrency_for,
    is_batchable,
    is_n_plus_one,
    shape_of,
)
from dbtools.sqltext.parse import TableRef, parse_statements, tables_touched
from dbtools.sqltext.tree import read_statement
from dbtools.workload import queries

# The check PostgreSQL runs for a foreign key (ri_triggers.c), as pg_stat_statements keeps it.
FK_CHECK = (
    'SELECT $2 FROM ONLY "public"."travelers" x WHERE "id" OPERATOR(pg_catalog.=) $1 '
    "FOR KEY SHARE OF x"
)


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
        # pglast's own fingerprint gives these three one value: a point lookup and its batched
        # forms must stay apart.
        ("SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b IN ($1, $2)"),
        ("SELECT a FROM t WHERE b NOT IN ($1)", "SELECT a FROM t WHERE b IN ($1)"),
        ("SELECT a FROM t WHERE b = $1::text::int", "SELECT a FROM t WHERE b = $1"),
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
        # A locking clause names a FROM item by its alias: the alias is not a table.
        ("SELECT * FROM a AS x JOIN b y ON x.id = y.a_id WHERE x.id = $1 FOR UPDATE OF x, y",
         "select", ("a", "b")),
        (FK_CHECK, "foreign-key check", ("public.travelers",)),
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
        # A small set of values per call is a lookup too; its batched form is the same ANY.
        ("SELECT a FROM t WHERE id IN ($1, $2)", ("id",), "SELECT a FROM t WHERE id = ANY($1)"),
        ("SELECT a FROM t WHERE id IN ($1 /*, ... */) AND s = $2", ("id",),
         "SELECT a FROM t WHERE id = ANY($1) AND s = $2"),
    ],
)  # fmt: skip
def test_point_lookups_and_their_batched_form(
    text: str, columns: tuple[str, ...], batched: str
) -> None:
    shape = shape_of(text)
    lookup = shape.lookup
    assert lookup is not None
    assert (lookup.columns, shape.batched_sql) == (columns, batched)
    assert lookup.batched_fingerprint == fingerprint(batched)  # the family it has when it runs
    assert lookup.small_set is (" IN (" in text)


def test_a_lookup_knows_the_table_of_each_column() -> None:
    """Aliases and single-table scopes resolve a lookup column to its table (what tells a key
    or an indexed column from any other)."""
    lookup = shape_of(postgres_text(queries.LOOKUP_OFFERS.sql)).lookup
    assert lookup is not None
    assert lookup.keys == (
        LookupKey("public.flight_search_cache", "search_key"),
        LookupKey("public.flight_offers", "trip_request_id"),
    )
    join = shape_of("SELECT * FROM a JOIN b ON a.id = b.a_id WHERE name = $1").lookup
    assert join is not None and join.keys == (LookupKey(None, "name"),)  # a or b: unknown


def test_batched_form_is_the_family_of_the_batched_statement() -> None:
    lookup = shape_of("SELECT a FROM t WHERE status = $1 AND id = $2").lookup
    assert lookup is not None
    batched = "SELECT a FROM t WHERE status = $1 AND id = ANY($2::bigint[])"
    assert lookup.batched_fingerprint == fingerprint(batched)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT a FROM t WHERE id = ANY($1)",
        "SELECT a FROM t WHERE id IN (SELECT b FROM u)",
        FK_CHECK,  # PostgreSQL's own, never the application's to batch
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


def postgres_text(sql: str) -> str:
    """An application statement as pg_stat_statements shows it: ``%(name)b`` as ``$n``."""
    names: dict[str, int] = {}
    return re.sub(r"%\((\w+)\)[sb]", lambda m: f"${names.setdefault(m[1], len(names) + 1)}", sql)


def test_foreign_key_check_names_its_parent_table() -> None:
    shape = shape_of(FK_CHECK)
    assert shape.foreign_key_check == TableRef("public", "travelers")
    assert shape_of("SELECT 1 FROM public.travelers x WHERE id = $1").foreign_key_check is None


@pytest.mark.parametrize(
    ("per_request", "batched"),
    [
        *zip(queries.PER_REQUEST_STATEMENTS, queries.BATCHED_STATEMENTS, strict=True),
    ],
    ids=lambda statement: statement.name,
)
def test_a_per_request_statement_and_its_batched_form_share_a_footprint(
    per_request: queries.Statement, batched: queries.Statement
) -> None:
    """What the workload's code pairs, the footprint pairs: same kind, tables and columns."""
    before = shape_of(postgres_text(per_request.sql)).footprint
    after = shape_of(postgres_text(batched.sql)).footprint
    assert before is not None and before == after
    others = {shape_of(postgres_text(s.sql)).footprint for s in queries.PER_REQUEST_STATEMENTS}
    assert len(others) == len(queries.PER_REQUEST_STATEMENTS)  # and tells the three apart


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("INSERT INTO t (a, b) VALUES ($1, $2)",
         "INSERT INTO t (a, b) SELECT * FROM unnest($1::int[], $2::int[]) AS u(a, b)", True),
        ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t AS x WHERE x.id = ANY($1)", True),
        ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE parent_id = ANY($1)", False),
        ("SELECT * FROM t WHERE id = $1", "SELECT * FROM u WHERE id = ANY($1)", False),
        ("SELECT * FROM t WHERE id = $1", "DELETE FROM t WHERE id = ANY($1)", False),
        ("INSERT INTO t (a, b) VALUES ($1, $2)", "INSERT INTO t (a) VALUES ($1)", False),
    ],
)  # fmt: skip
def test_footprints(one: str, other: str, same: bool) -> None:
    assert (shape_of(one).footprint == shape_of(other).footprint) is same


@pytest.mark.parametrize(
    ("calls", "seconds", "batchable"),
    [(1_000, 10.0, True), (100, 10.0, True), (99, 10.0, False), (60, 1.0, True),
     (49, 0.1, False), (100, None, False), (10_000, 0.0, False)],
)  # fmt: skip
def test_batchable_is_a_lookup_called_at_a_high_rate_whatever_its_calls_per_request(
    calls: int, seconds: float | None, batchable: bool
) -> None:
    """At least ``calls_per_second`` (10/s) over at least ``min_calls`` (50) calls; without a
    period's length there is no rate, so never. Requests play no part."""
    lookup = shape_of("SELECT a FROM t WHERE id = $1").lookup
    assert is_batchable(lookup, calls, seconds) is batchable
    assert is_batchable(lookup, calls, seconds, Batchable(calls_per_second=1e9)) is False
    assert is_batchable(None, 10_000, 1.0) is False


@pytest.mark.parametrize(
    ("calls_per_request", "reductions", "for_85"),
    [(1.0, (0.8, 0.9, 0.98), 7), (0.5, (0.6, 0.8, 0.96), 14), (3.0, (14 / 15, 29 / 30, 149 / 150), 3),
     (0.01, (0.0, 0.0, 0.0), 667), (0.2, (0.0, 0.5, 0.9), 34)],
)  # fmt: skip
def test_what_batching_would_save_at_the_guides_concurrency(
    calls_per_request: float, reductions: tuple[float, ...], for_85: int
) -> None:
    """The guide's table (5, 10, 50 concurrent requests: 80, 90, 98% fewer) at one call per
    request; c concurrent requests send c × p lookups, a batch sends one."""
    found = tuple(batching_reduction(c, calls_per_request) for c in (5, 10, 50))
    assert found == pytest.approx(reductions)
    assert concurrency_for(0.85, calls_per_request) == for_85


class _NoOrjson:
    """``orjson`` refusing everything: ``tree._encode`` falls back to ``json``."""

    @staticmethod
    def dumps(value: object) -> bytes:
        raise TypeError("refused")


@pytest.mark.parametrize(
    "text",
    [
        "SELECT a FROM t WHERE id = $1 AND b IN ($2, $3)",
        'SELECT "é" FROM t WHERE "ü" = $1',  # json escapes what is not ASCII, orjson does not
        'SELECT "a\x7fb" FROM t WHERE id = $1',  # json escapes DEL, orjson does not
        'SELECT U&"d\\00e9t" FROM t WHERE id = $1',  # an ASCII text, a tree that is not
        'SELECT "a\tb\x01" FROM t WHERE id = $1',  # control characters: the same escapes
    ],
)
def test_family_keys_are_the_bytes_json_writes(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = read_statement(text)
    monkeypatch.setattr(tree, "orjson", _NoOrjson)
    reference = read_statement(text)
    assert fast is not None and reference is not None and fast.lookup is not None
    assert fast == reference


def test_a_float_in_a_tree_is_encoded_by_json() -> None:
    found = tree._DECODER.decode('{"a": [1.5, 2, "x"]}')
    assert type(found["a"][0]) is tree._Float
    assert tree._encode(found) == '{"a":[1.5,2,"x"]}'
