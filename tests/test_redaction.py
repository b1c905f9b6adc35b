"""The one redaction helper masks every password form dbtools may meet."""

from __future__ import annotations

import logging

import pytest

from dbtools.redaction import RedactingFilter, redact


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
