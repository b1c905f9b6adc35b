"""The one redaction helper masks every password form dbtools may meet."""

from __future__ import annotations

import json
import logging
import shlex
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbtools import redaction
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


# -- the seven forms, known values, the environment and ~/.pgpass ---------------------------------

SECRET = "Zq-8#secret value"  # a space, a #: its quoted, percent-encoded and JSON forms differ


@pytest.fixture(autouse=True)
def no_known_secrets() -> Iterator[None]:
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--password S3cr3t-x", "--password ***"),
        ("--db-password=S3cr3t-x done", "--db-password=*** done"),
        ("password: S3cr3t-x", "password: ***"),
        ("DB_PASSWORD=S3cr3t-x", "DB_PASSWORD=***"),
        ("export PGPASSWORD=S3cr3t-x", "export PGPASSWORD=***"),
        ('{"api_token": "S3 cr3t"}', '{"api_token": ***}'),
        ("AWS_SECRET_ACCESS_KEY=ab/cd", "AWS_SECRET_ACCESS_KEY=***"),
        ("x=password=S3cr3t-x", "x=password=***"),
        # what must stay: placeholders, casts, a sort key, libpq's own words
        ("WHERE token = $1 AND k::text = $2", "WHERE token = $1 AND k::text = $2"),
        ("sort_key=departure PRIMARY KEY (id)", "sort_key=departure PRIMARY KEY (id)"),
        ("password authentication failed for user", "password authentication failed for user"),
    ],
)  # fmt: skip
def test_the_patterns_mask_secrets_nobody_named(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_argument_lists_mask_each_form_and_remember_the_values() -> None:
    argv = ["tool", "--password", "S3cr3t-a", "-pS3cr3t-b", "PGPASSWORD=S3cr3t-c",
            "DB_PASSWORD=S3cr3t-d", "-p5432", "--no-password", "-h", "db", "--token=pq"]  # fmt: skip
    assert redaction.redact_argv(argv) == [
        "tool", "--password", "***", "-p***", "PGPASSWORD=***", "DB_PASSWORD=***", "-p5432",
        "--no-password", "-h", "db", "--token=***",
    ]  # fmt: skip
    # The values found are known from now on: the command's output masks them anywhere.
    assert redact("got S3cr3t-a, S3cr3t-b; S3cr3t-c S3cr3t-d") == "got ***, ***; *** ***"
    assert redact("pq and db") == "pq and db"  # shorter than MIN_KNOWN_LENGTH: patterns only


def test_known_values_are_masked_in_every_form() -> None:
    redaction.add_secret(SECRET)
    encoded = urllib.parse.quote(SECRET, safe="")
    text = f"a {SECRET} b {encoded} c {json.dumps(SECRET)} d {shlex.quote(SECRET)}"
    assert redact(text) == 'a *** b *** c "***" d ***'
    redaction.forget_secrets()
    assert SECRET in redact(text)


def test_the_environments_secrets_by_their_names() -> None:
    redaction.add_environment({"PGPASSWORD": "pg-pass-1", "DEPLOY_TOKEN": "tok-2222",
                               "MY_API_KEY": "key-3333", "GCP_CREDENTIALS": "cred-4444",
                               "APP_SECRET": "sec-5555", "HOME": "/root/home"})  # fmt: skip
    text = "pg-pass-1 tok-2222 key-3333 cred-4444 sec-5555 /root/home"
    assert redact(text) == "*** *** *** *** *** /root/home"


def test_pgpass_entries_for_the_hosts_of_a_dsn(tmp_path: Path) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(
        "# comment\n"
        "db.internal:5432:app:deploy:dep\\:pw\\\\1\n"  # an escaped colon and backslash
        "db.internal:6543:app:deploy:other-port\n"
        "*:*:*:monitor:every:host\n"  # the password is the rest of the line
        "localhost:5432:*:*:local-socket\n"
        "elsewhere:5432:*:*:not-this-one\n"
    )
    redaction.add_connection({"host": "db.internal", "port": "5432", "passfile": str(pgpass),
                              "password": "in-the-dsn"})  # fmt: skip
    text = "dep:pw\\1 other-port every:host local-socket not-this-one in-the-dsn"
    assert redact(text) == "*** other-port *** local-socket not-this-one ***"
    redaction.add_connection({"host": "/var/run/postgresql", "passfile": str(pgpass)})
    assert redact("local-socket") == "***"  # a socket reads the localhost entries
