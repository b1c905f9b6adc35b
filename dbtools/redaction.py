"""The one place that masks secrets before text reaches a user, a log, a record or a report.

Two layers, the way CI systems mask secrets:

1. **Known values.** Every secret value dbtools knows is masked wherever it appears, whatever
   surrounds it (also percent-encoded, JSON-escaped or shell-quoted): the password of every DSN
   dbtools is given (``--dsn``, ``--migrate-dsn``, ``--store``, each target) and the
   ``~/.pgpass`` entries for its hosts (``add_connection``), the password a session actually
   used, ``PGPASSWORD`` and the values of environment variables whose names contain PASSWORD,
   SECRET, TOKEN, KEY or CREDENTIAL (``add_environment``), and the values the patterns find in
   a command's arguments (``redact_argv``). Values shorter than ``MIN_KNOWN_LENGTH`` are left to
   the patterns: masked everywhere, they would mask ordinary words.
2. **Patterns**, for secrets nobody told dbtools: URL passwords, ``NAME=value`` and ``NAME:
   value`` where NAME names a secret (``password``, ``PGPASSWORD``, ``DB_PASSWORD``,
   ``API_TOKEN``, ``AWS_SECRET_ACCESS_KEY`` …), ``--password value``, and SQL's ``PASSWORD
   '…'``; in argument lists also ``--password S`` as two arguments and ``-pS``.

The known values live in this process (``forget_secrets`` empties them: each command starts
afresh). No library fitted better: secret scanners such as detect-secrets judge source files by
their type and miss six of these seven forms in a command line or its output; masking known
values is a string search that the standard library does well.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

MASK = "***"
MIN_KNOWN_LENGTH = 4
# What an environment variable's name contains when its value is a secret.
SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")

# postgresql://user:secret@host  ->  postgresql://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@/\s]*)(?=@)", re.I
)
_VALUE = r"(?!\$\d)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&'\"]+)"
# NAME=s, NAME = 's', NAME: s, "NAME": "s" (not ``a::cast``, not a statement's $1 placeholder);
# masked when NAME names a secret (``names_secret``)
_ASSIGNED = re.compile(
    rf"(?<![\w.-])(?P<name>[\w.-]+)(?P<sep>[\"']?\s*(?:=|:(?!:))\s*)(?P<secret>{_VALUE})"
)
# --NAME s, --NAME=s
_OPTION = re.compile(rf"(?<![\w-])--(?P<name>[\w.-]+)(?P<sep>=|\s+)(?P<secret>{_VALUE})")
# PASSWORD 'secret' in SQL text (CREATE/ALTER ROLE … PASSWORD '…')
_SQL_PASSWORD = re.compile(r"(?P<head>\bpassword\s+)(?P<secret>'(?:[^']|'')*')", re.I)

_HINT = re.compile(r"pass|secret|token|credential|key|://", re.I)

# In argument lists: an option naming a secret (its value: the next argument, or after =),
# -pSECRET (mysql's; psql's -p5432 is a port, left alone), NAME=SECRET.
_ARGUMENT_OPTION = re.compile(r"--?(?P<name>[\w.-]+)(?:=(?P<value>.*))?", re.S)
_SHORT_PASSWORD = re.compile(r"-p(?P<value>.*[^\d].*)", re.S)
_ARGUMENT_ASSIGNMENT = re.compile(r"(?P<name>[\w.-]+)=(?P<value>.+)", re.S)
_LOWER_NAME_PARTS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey",
                     "private_key", "access_key")  # fmt: skip


def names_secret(name: str) -> bool:
    """Whether a name in text (``password``, ``DB_PASSWORD``, ``api_token``, ``API_KEY``) names
    a secret. KEY counts in environment-style names only (not ``sort_key``)."""
    lower = name.lower()
    return any(part in lower for part in _LOWER_NAME_PARTS) or (name.isupper() and "KEY" in name)


_known: tuple[str, ...] = ()  # every form of every known value, longest first
_lock = threading.Lock()


def _forms(value: str) -> set[str]:
    """*value* as it may appear in a URL, a JSON string or a shell command line."""
    return {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        json.dumps(value)[1:-1],
        shlex.quote(value),
    }


def add_secret(*values: str | None) -> None:
    """Mask *values* from now on, wherever they appear (those shorter than
    ``MIN_KNOWN_LENGTH`` are left to the patterns)."""
    global _known
    new = {f for v in values if v and len(v) >= MIN_KNOWN_LENGTH for f in _forms(v)}
    with _lock:  # the known values are replaced whole: readers in other threads see old or new
        if not new <= set(_known):
            _known = tuple(sorted(new | set(_known), key=len, reverse=True))


def forget_secrets() -> None:
    """Forget every known value (a command starts with none)."""
    global _known
    with _lock:
        _known = ()


def add_environment(environ: Mapping[str, str] | None = None) -> None:
    """Mask the values of *environ*'s (default: this process's) variables whose names contain
    PASSWORD, SECRET, TOKEN, KEY or CREDENTIAL (``PGPASSWORD`` among them)."""
    environ = os.environ if environ is None else environ
    add_secret(
        *(
            value
            for name, value in environ.items()
            if any(part in name.upper() for part in SECRET_NAME_PARTS)
        )
    )


def add_connection(params: Mapping[str, object]) -> None:
    """Mask a connection's password (*params*: its DSN's keywords) and the ``~/.pgpass``
    (``PGPASSFILE``, ``passfile``) entries for its hosts and ports."""
    password = params.get("password")
    add_secret(str(password) if password is not None else None)
    passfile = params.get("passfile") or os.environ.get("PGPASSFILE")
    path = Path(str(passfile)) if passfile else Path.home() / ".pgpass"
    hosts = str(params.get("host") or os.environ.get("PGHOST") or "").split(",")
    ports = str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")
    add_secret(*pgpass_passwords(path, hosts, ports))


def pgpass_passwords(path: Path, hosts: Sequence[str], ports: Sequence[str]) -> list[str]:
    """The passwords of *path*'s entries (``host:port:database:user:password``) for any of
    *hosts* (a socket, or no host, is ``localhost`` as libpq reads the file) on *ports*."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    wanted = {"localhost" if not h or h.startswith("/") else h for h in hosts}
    found = []
    for line in lines:
        fields = _pgpass_fields(line)
        if line.startswith("#") or len(fields) < 5:
            continue
        host, port, *_, password = fields
        if (host == "*" or host in wanted) and (port == "*" or port in ports):
            found.append(password)
    return found


def _pgpass_fields(line: str) -> list[str]:
    """A ~/.pgpass line's four fields and password (``\\:`` is a colon, ``\\\\`` a backslash;
    as libpq reads it, the password is the rest of the line)."""
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in line:
        if escaped or (char != "\\" and (char != ":" or len(fields) == 4)):
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            fields.append("".join(current))
            current = []
    return [*fields, "".join(current)]


def redact(text: str) -> str:
    """*text* with every known secret value and every password, token or secret the patterns
    recognise masked."""
    for value in _known:  # longest first; a substring search each (fast)
        if value in text:
            text = text.replace(value, MASK)
    if not _HINT.search(text):  # the common case: nothing the patterns could find
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _SQL_PASSWORD.sub(lambda m: m.group("head") + f"'{MASK}'", text)
    text = _OPTION.sub(_masked_if_named, text)
    return _ASSIGNED.sub(_masked_if_named, text)


def _masked_if_named(match: re.Match[str]) -> str:
    head = match.group(0)[: match.start("secret") - match.start()]
    if match.group("secret").strip("'\"") == MASK:  # masked already (perhaps quoted since)
        return match.group(0)
    if names_secret(match.group("name")):
        return head + MASK
    # not a secret's name, but the value may hold an assignment: ``x=password=S``
    return head + _ASSIGNED.sub(_masked_if_named, match.group("secret"))


def argv_secrets(argv: Iterable[str]) -> list[tuple[int, str]]:
    """The secrets in a command's arguments, as (argument index, secret): the value of an
    option naming one (``--password S``, ``--password=S``), of ``-pS``, of ``NAME=S``."""
    found: list[tuple[int, str]] = []
    arguments = list(argv)
    for index, argument in enumerate(arguments):
        option = _ARGUMENT_OPTION.fullmatch(argument)
        if option and names_secret(option.group("name")):
            value = option.group("value")
            following = arguments[index + 1] if index + 1 < len(arguments) else None
            if value:
                found.append((index, value))
            # the next argument, unless it is an option (--no-password takes no value)
            elif value is None and following and not following.startswith("-"):
                found.append((index + 1, following))
            continue
        for pattern in (_SHORT_PASSWORD, _ARGUMENT_ASSIGNMENT):
            match = pattern.fullmatch(argument)
            if match and (pattern is _SHORT_PASSWORD or names_secret(match.group("name"))):
                found.append((index, match.group("value")))
                break
    return found


def redact_argv(argv: Sequence[str]) -> list[str]:
    """*argv* as it may be shown: the secrets ``argv_secrets`` finds masked (and known from now
    on, so that the command's output masks them too), then each argument ``redact``-ed."""
    secrets = argv_secrets(argv)
    add_secret(*(secret for _, secret in secrets))
    shown = list(argv)
    for index, secret in secrets:
        shown[index] = shown[index].replace(secret, MASK) if secret else shown[index]
    return [redact(argument) for argument in shown]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True
