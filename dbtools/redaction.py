"""The one place that masks secrets before text reaches a user, a log or a report."""

from __future__ import annotations

import logging
import re

MASK = "***"

# postgresql://user:secret@host  ->  postgresql://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@/\s]*)(?=@)", re.I
)
# password=secret, password = 'se cret'  (libpq keyword DSNs and URL query parameters)
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I
)
# PASSWORD 'secret' in SQL text (CREATE/ALTER ROLE … PASSWORD '…')
_SQL_PASSWORD = re.compile(r"(?P<head>\bpassword\s+)(?P<secret>'(?:[^']|'')*')", re.I)


def redact(text: str) -> str:
    """Return *text* with every password in URLs, keyword DSNs and role DDL masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _SQL_PASSWORD.sub(lambda m: m.group("head") + f"'{MASK}'", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True
