"""Check (not a test): the report's shapes and families on a corpus, before and now.

The corpus is every statement text dbtools' own code and tests hold, made reproducible:

* the report benchmark's 5,000 distinct statements (``benchmarks.report.distinct_texts``);
* verify's benchmark statements (``benchmarks.snapshot_verify.shapes``);
* the reference workload's statements as pg_stat_statements shows them (``$n`` placeholders);
* every string in the test suite and the benchmarks that starts like a statement (SQL keywords
  at the start), read from their syntax trees;
* a list of utility statements (``UTILITY``) and forms where parsers disagree.

Each text is classified in a fresh process by the code at ``--before`` (default: ``main``,
extracted with ``git archive``) and by this checkout. Compared, text by text: kind, tables,
parsed, the scrubbed text, the display SQL, the footprint, the foreign-key check, the lookup
(columns, keys, small set, batched SQL) and the families, as partitions (fingerprints are hashes
of different things, so two texts share a family before exactly when they share one now), and
the batched forms' families likewise. Writes benchmarks/RESULTS-shapes.md: the counts and every
difference.

Run: ``.venv/bin/python -m benchmarks.shapes_corpus [--before DIR]``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.report import REPO, distinct_texts, extract_before
from benchmarks.snapshot_verify import shapes as verify_statements

RESULTS = Path(__file__).with_name("RESULTS-shapes.md")
_STATEMENT_START = re.compile(
    r"^\s*(select|insert|update|delete|with|values|table|merge|vacuum|analyze|alter|create|drop|"
    r"truncate|begin|start|commit|end|rollback|abort|savepoint|release|set|reset|show|explain|"
    r"reindex|cluster|lock|copy|grant|revoke|comment|refresh|do|call|discard|prepare|execute|"
    r"deallocate|listen|notify|checkpoint|fetch|declare|close)\b",
    re.I,
)
# Utility statements and forms the two parsers read differently.
UTILITY = (
    "VACUUM public.t", "VACUUM (ANALYZE, VERBOSE) t", "ANALYZE t", "ANALYZE", "REINDEX INDEX ix",
    "REINDEX INDEX CONCURRENTLY public.ix", "CLUSTER t USING ix", "LOCK TABLE t IN SHARE MODE",
    "ALTER TABLE t RESET (fillfactor)", "ALTER TABLE t SET (fillfactor = $1)",
    "ALTER TABLE t ADD COLUMN c int", "ALTER TABLE t ALTER COLUMN c TYPE bigint",
    "ALTER TYPE e ADD VALUE $1", "ALTER ROLE app PASSWORD $1", "ALTER SYSTEM SET work_mem = $1",
    "CREATE ROLE r LOGIN PASSWORD $1", "CREATE TABLE t (id bigint PRIMARY KEY, a text)",
    "CREATE TABLE t2 AS SELECT * FROM t", "CREATE VIEW v AS SELECT a FROM t WHERE b = $1",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a) INCLUDE (b) WHERE c IS NOT NULL",
    "CREATE UNIQUE INDEX ix ON s.t USING btree (lower(a))", "CREATE EXTENSION pg_stat_statements",
    "CREATE SEQUENCE s", "CREATE SCHEMA s", "DROP TABLE t", "DROP TABLE IF EXISTS s.t CASCADE",
    "DROP INDEX CONCURRENTLY IF EXISTS ix", "DROP VIEW v", "TRUNCATE t", "TRUNCATE TABLE s.t, u",
    "BEGIN", "BEGIN ISOLATION LEVEL SERIALIZABLE", "START TRANSACTION", "COMMIT", "END",
    "ROLLBACK", "ABORT", "SAVEPOINT sp", "RELEASE SAVEPOINT sp", "ROLLBACK TO SAVEPOINT sp",
    "PREPARE TRANSACTION $1", "COMMIT PREPARED $1", "SET work_mem = $1", "SET LOCAL lock_timeout = $1",
    "SET SESSION search_path TO public", "SET TIME ZONE $1", "RESET work_mem", "RESET ALL",
    "SHOW work_mem", "EXPLAIN SELECT * FROM t", "EXPLAIN (ANALYZE, BUFFERS) SELECT a FROM t",
    "COPY t FROM STDIN", "COPY (SELECT a FROM t) TO STDOUT WITH (FORMAT csv)",
    "GRANT SELECT ON t TO r", "REVOKE ALL ON t FROM r", "COMMENT ON TABLE t IS $1",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "DO $1", "CALL p($1)", "DISCARD ALL",
    "DEALLOCATE ALL", "DEALLOCATE p1", "LISTEN ch", "NOTIFY ch, $1", "CHECKPOINT",
    "DECLARE c CURSOR FOR SELECT * FROM t", "FETCH $1 FROM c", "CLOSE c", "VALUES ($1), ($2)",
    "TABLE t", "SELECT $1", "SELECT 1", "SELECT now()", "SELECT CURRENT_TIMESTAMP",
    "SELECT a FROM t WHERE b = $1 FOR UPDATE SKIP LOCKED",
    "SELECT a FROM t WHERE b = $1 FOR NO KEY UPDATE", "SELECT DISTINCT ON (a) a, b FROM t",
    "SELECT a, row_number() OVER (PARTITION BY b ORDER BY c) FROM t",
    "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT $1) x",
    "SELECT count(*) FILTER (WHERE a = $1) FROM t", "SELECT a->>$1 FROM t WHERE b @> $2",
    "SELECT * FROM generate_series($1, $2) g", "SELECT * FROM unnest($1::int[]) AS u(x)",
    "SELECT * FROM t WHERE a = $1 OR b = $1", "SELECT * FROM t WHERE a NOT IN ($1, $2)",
    "SELECT * FROM t WHERE (a, b) IN (($1, $2), ($3, $4))", "SELECT * FROM t WHERE a = ALL($1)",
    "SELECT * FROM t WHERE a = ANY(SELECT b FROM u)", "SELECT * FROM t WHERE a IN (SELECT b FROM u)",
    "SELECT * FROM t WHERE a IN (b, c)", "SELECT * FROM t WHERE a = $1::text::int",
    "SELECT * FROM t WHERE created > now() - interval $1", "SELECT * FROM t WHERE created > now() - $1::interval",
    "SELECT A FROM T WHERE ID = $1", 'SELECT "Id" FROM "T" WHERE "Id" = $1', 'SELECT a FROM "t" WHERE id = $1',
    "SELECT a FROM t WHERE id = $1 AND id = $2", "SELECT * FROM t JOIN u USING (id) WHERE t.id = $1",
    "SELECT a FROM t WHERE id = $1; SELECT b FROM u WHERE id = $1", "",
    "INSERT INTO t SELECT * FROM u", "INSERT INTO t (a) VALUES ($1) RETURNING id",
    "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING",
    "UPDATE t SET (a, b) = ($1, $2) WHERE id = $3", "UPDATE t SET a = u.a FROM u WHERE u.id = t.id",
    "DELETE FROM t USING u WHERE u.id = t.u_id AND u.k = $1",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a "
    "WHEN NOT MATCHED THEN INSERT (id, a) VALUES (u.id, u.a)",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < $1) SELECT * FROM r",
    "SELECT * FROM s.t x WHERE x.id = $1 FOR KEY SHARE OF x",
    'SELECT 1 FROM ONLY "public"."t" x WHERE "id" OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF x',
)  # fmt: skip


def test_strings() -> list[str]:
    """Every constant string in tests/ and benchmarks/ that starts like a statement."""
    found = []
    for folder in ("tests", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    if _STATEMENT_START.match(text) and len(text) < 5000:
                        found.append(_numbered(text))
    return found


def _numbered(sql: str) -> str:
    """A client-side statement as pg_stat_statements shows it: ``%(name)s`` and ``%s`` as
    ``$n``."""
    names: dict[str, int] = {}
    count = iter(range(1, 1 << 30))
    return re.sub(
        r"%\((\w+)\)[sb]|%[sb]",
        lambda m: f"${names.setdefault(m[1], len(names) + 1) if m[1] else 100 + next(count)}",
        sql,
    )


def workload_texts() -> list[str]:
    """The reference workload's statements as pg_stat_statements shows them."""
    from dbtools.workload import queries

    return [
        _numbered(value.sql)
        for value in vars(queries).values()
        if isinstance(value, queries.Statement)
    ]


def corpus() -> list[str]:
    texts: Iterable[str] = (
        *distinct_texts(5_000), *verify_statements(), *workload_texts(), *test_strings(), *UTILITY
    )  # fmt: skip
    return list(dict.fromkeys(texts))


EXPLAINED = """
Why each kind of difference is right (written by hand, for the corpus above). Every text that
differs falls in one of these groups. Among SELECT, INSERT, UPDATE and DELETE texts, only the
families groups 4 and 5 name changed, and one INSERT sqlglot could not parse is parsed now.

1. **Texts PostgreSQL's grammar rejects** (most of the `parsed`, `kind`, `tables`, `footprint`
   and `sql` rows): fragments from tests (`table`, `start`, `set`, `INSERT INTO t`, `CREATE
   TABLE t`, `DROP INDEX CONCURRENTLY`, `ALTER TABLE … DROP COLUMN`) that sqlglot read as a
   column, an alias or a table named `concurrently`; and utility statements whose literal the
   scrubber made `$n` where the grammar takes no parameter (`ALTER TABLE … SET (x = $1)`,
   `COMMENT ON … IS $1`, `CREATE TABLE … WITH (fillfactor=$1)`). pg_stat_statements only
   holds texts PostgreSQL parsed, so the first group never reaches a report; the second is
   now kept verbatim (unparsed, named by its leading keywords), as `VACUUM` always was.
2. **Utility statements sqlglot only half read** (kinds `alias`, `column`, `values`, `sub`
   before): `START TRANSACTION`, `SAVEPOINT`, `RELEASE`, `ABORT` are now `transaction`;
   `CHECKPOINT`, `DISCARD`, `DEALLOCATE`, `LISTEN`, `CLOSE` are kept verbatim (sqlglot made
   `DISCARD AS ALL` of them). `ALTER TABLE … RESET`, `VALIDATE CONSTRAINT` and `ALTER SEQUENCE` are parsed now
   (kind `ddl`, their table), where sqlglot gave up, and so is a test's `INSERT … SELECT 1 + g
   %% 20000 …` (psycopg's escaped `%`, which sqlglot could not read). DDL named by two words (`create table`)
   where sqlglot called it `ddl`: those texts are kept verbatim now because of group 1.
3. **Tables that are not tables**: sqlglot listed index names (`ALTER INDEX a RENAME TO b`),
   function names (`DROP FUNCTION f()`), database and schema names (`CREATE DATABASE x`,
   `REVOKE … ON SCHEMA public`) as tables; the parse tree names only relations.
4. **Families PostgreSQL's parser merges** (`family`, and the two `lookup` rows' batched
   family): `BEGIN`/`BEGIN;`, `ROLLBACK`/`ABORT`, `COMMIT`/`END` (one statement each);
   unquoted identifiers in any case and `"t"` vs `t` (PostgreSQL folds them; pg_stat_statements
   gives them one query id, so one server's report never holds both); `CREATE INDEX … (a)` and
   `… USING btree (a)`; `interval $1` and `$1::interval` (both a cast of the parameter, which a
   family ignores: `SELECT $1, $2` and `select $1::int[], interval $2` are one family).
5. **Families PostgreSQL's parser splits**: `now()` and `CURRENT_TIMESTAMP` (sqlglot rewrote
   one into the other; PostgreSQL and pg_stat_statements tell them apart), `BEGIN ISOLATION
   LEVEL SERIALIZABLE` and `BEGIN`, and the semicolon-terminated twins of group 1's texts.

No family of `= $1`, `IN (…)` and `= ANY($1)` merged (tests/test_families.py), and every lookup
of the benchmark and workload statements kept its columns, keys, small-set flag, batched SQL
and batched family.
"""

# Run in a fresh process by each side: prints each text's shape as JSON, one per line.
CLASSIFY = """
import dataclasses, json, sys
from dbtools.sqltext.families import Classifier
texts = json.load(sys.stdin)
for queryid, (text, shape) in enumerate(zip(texts, Classifier(workers=1).shapes(
        [(i, t) for i, t in enumerate(texts, 1)])), 1):
    value = dataclasses.asdict(shape)
    value["sql"] = shape.sql
    value["batched_sql"] = getattr(shape, "batched_sql", None) or (
        shape.lookup.batched_sql if shape.lookup else None)
    print(json.dumps(value))
"""


def classify(code: Path, texts: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", CLASSIFY], input=json.dumps(texts), capture_output=True,
        text=True, check=True, cwd=code, env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def _families(shapes: list[dict[str, Any]], texts: list[str]) -> dict[str, frozenset[str]]:
    """Fingerprint to the texts of its family."""
    members: dict[str, set[str]] = {}
    for text, shape in zip(texts, shapes, strict=True):
        members.setdefault(shape["fingerprint"], set()).add(text)
    return {fingerprint: frozenset(found) for fingerprint, found in members.items()}


def _comparable(shape: dict[str, Any], families: dict[str, frozenset[str]]) -> dict[str, Any]:
    """What must be the same before and now: fingerprints as the texts they group."""
    lookup = shape["lookup"]
    return {
        "kind": shape["kind"],
        "tables": shape["tables"],
        "parsed": shape["parsed"],
        "text": shape["text"],
        "sql": shape["sql"],
        "footprint": shape["footprint"],
        "foreign_key_check": shape["foreign_key_check"],
        "lookup": None
        if lookup is None
        else {
            "columns": lookup["columns"],
            "keys": lookup["keys"],
            "small_set": lookup["small_set"],
            "batched_sql": shape["batched_sql"],
            "batched_family": sorted(families.get(lookup["batched_fingerprint"], ())),
        },
        "family": sorted(families[shape["fingerprint"]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the code to compare with")
    parser.add_argument("--before-commit", default="main")
    args = parser.parse_args()
    before_code = args.before or extract_before(args.before_commit)
    texts = corpus()
    before, now = classify(before_code, texts), classify(REPO, texts)
    families_before, families_now = _families(before, texts), _families(now, texts)
    differences: dict[str, list[tuple[str, Any, Any]]] = {}
    for text, old, new in zip(texts, before, now, strict=True):
        old_view = _comparable(old, families_before)
        new_view = _comparable(new, families_now)
        for key in old_view:
            if old_view[key] != new_view[key]:
                differences.setdefault(key, []).append((text, old_view[key], new_view[key]))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Shapes and families, before and now",
        "",
        f"- date: {when}",
        f"- command: `.venv/bin/python -m benchmarks.shapes_corpus` (before: "
        f"{args.before or args.before_commit})",
        f"- corpus: {len(texts):,} distinct texts; families before: {len(families_before):,}, "
        f"now: {len(families_now):,}",
        f"- texts whose shape differs in some field: "
        f"{len({text for found in differences.values() for text, _, _ in found}):,}",
        "",
        "| field | texts that differ |",
        "|---|---:|",
        *(f"| {key} | {len(found)} |" for key, found in differences.items()),
        EXPLAINED,
    ]
    for key, found in differences.items():
        lines += [f"## {key}", ""]
        for text, old, new in found:
            lines += [f"- `{text[:300]}`", f"  - before: `{old}`", f"  - now: `{new}`"]
        lines.append("")
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines[: 12 + len(differences)]))


if __name__ == "__main__":
    main()
