"""The one redaction helper masks every password form dbtools may meet."""

from __future__ import annotations

import logging

import pytest

from dbtools.redaction import RedactingFilter, redact
from dbtools.sqltext.scrub import scrub_query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:p%40ss@h:5/db", "postgresql://u:***@h:5/db"),
        ("postgresql+psycopg://bob:secret@db.example/x?sslmode=require",
         "postgresql+psycopg://bob:***@db.example/x?sslmode=require"),
        ("host=h password=s3cr3t user=u", "host=h password=*** user=u"),
        ("host=h password='a b\\' c' user=u", "host=h password=*** user=u"),
        ("postgresql://u@h/db?password=zz&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD '***'"),
        ("create user x with encrypted password 'it''s'", "create user x with encrypted password '***'"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("no secrets here", "no secrets here"),
    ],
)  # fmt: skip
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_logging_filter_redacts_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("dbtools.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="dbtools.test"):
        logger.info("connecting to %s", "postgresql://a:topsecret@h/db")
    assert "topsecret" not in caplog.text and "postgresql://a:***@h/db" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ALTER ROLE app PASSWORD 'S3cretLiteral'", "ALTER ROLE app PASSWORD $1"),
        ("SET work_mem = '64MB'", "SET work_mem = $1"),
        ("SELECT * FROM t WHERE a IN ($1,$2) AND b = 'x''y' LIMIT 10",
         "SELECT * FROM t WHERE a IN ($1,$2) AND b = $3 LIMIT $4"),
        ('SELECT "col 1", t1.a2 FROM t1 WHERE x = 1.5e3 AND y = .5 AND z = 0x1F',
         'SELECT "col 1", t1.a2 FROM t1 WHERE x = $1 AND y = $2 AND z = $3'),
        ("SELECT E'a\\'b', $$body 'x' $$, $fn$ q $fn$ FROM t", "SELECT $1, $2, $3 FROM t"),
        ("select '{1,2}'::int[], U&'d\\0061t', B'0101', interval '1 day'",
         "select $1::int[], $2, $3, interval $4"),
        ("CREATE ROLE x PASSWORD 'never closed", "CREATE ROLE x PASSWORD $1"),
        ("SELECT $1::jsonb ? 'k', a$b FROM t WHERE x = $10", "SELECT $1::jsonb ? $11, a$b FROM t WHERE x = $10"),
        ("SELECT 1 -- it's 'fine'\n, 2", "SELECT $1 -- it's 'fine'\n, $2"),
        ("/* password 'hunter2' */ SELECT 1", "/* password '***' */ SELECT $1"),
    ],
)  # fmt: skip
def test_scrub_query_replaces_every_literal(text: str, expected: str) -> None:
    assert scrub_query(text) == expected
