"""Driver errors as the one line a user reads: a refused privilege names the object, the role
and the GRANT that lifts it (never "internal error"); a lost connection, a cancelled statement
say so (``translated_errors`` around the library's work, ``translate_driver_error`` for what
escaped it).

PostgreSQL's "permission denied for table travelers" names neither the role, nor the privilege
the statement lacked, nor the table's schema. dbtools' sessions remember the statement and the
role of an error (``connection.attempt_of``): the privilege is the statement's (INSERT for the
table an INSERT or a COPY … FROM fills, SELECT for a table it reads) and the schema the one the
statement qualifies the table with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from dbtools.db.catalog import quote_ident
from dbtools.db.connection import Attempt, attempt_of, error_reason
from dbtools.errors import ConnectionFailed, DbtoolsError, PrerequisiteMissing

_DENIED = re.compile(
    r"permission denied for (table|view|materialized view|function|schema|sequence) (\S+)"
)
_NOT_OWNER = re.compile(r"must be owner of (\w+(?: \w+)?) (\S+)")
_OBJECT = {"sequence": "SEQUENCE ", "function": "FUNCTION ", "schema": "SCHEMA "}
_NAME = r'(?:"(?:[^"]|"")+"|\w+)'
# The tables a statement writes (a data-modifying CTE's too), after its verb.
_WRITE = re.compile(
    rf"\b(?P<verb>insert\s+into|update|delete\s+from|truncate|copy)\s+(?:table\s+)?(?:only\s+)?"
    rf"(?P<names>{_NAME}(?:\.{_NAME})?(?:\s*,\s*{_NAME}(?:\.{_NAME})?)*)",
    re.I | re.S,
)
# The tables a statement reads: after FROM or JOIN (``delete from`` is a write, not a read).
_READ = re.compile(
    rf"(?<!delete)\s+(?:from|join)\s+(?:only\s+)?(?P<name>{_NAME}(?:\.{_NAME})?)", re.I
)


def _unquoted(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def privilege_needed(kind: str, name: str, statement: str) -> str:
    """The privilege *statement* needs on the *kind* object *name* (reading, unless it is the
    table the statement writes)."""
    if kind == "schema":
        return "CREATE" if re.match(r"\s*create\b", statement, re.I) else "USAGE"
    if kind == "function":
        return "EXECUTE"
    if kind == "sequence":
        return "UPDATE" if re.search(r"\bsetval\s*\(", statement, re.I) else "USAGE"
    for write in _WRITE.finditer(statement):
        written = (n.strip().split(".")[-1] for n in write.group("names").split(","))
        if name not in {_unquoted(n) for n in written}:
            continue
        verb = write.group("verb").lower().split()[0]
        rest = statement[write.end() :].partition(";")[0]
        if verb == "copy":
            return "INSERT" if re.search(r"\bfrom\b", rest, re.I) else "SELECT"
        reads = verb in ("update", "delete") and re.search(r"\b(where|returning)\b", rest, re.I)
        return f"SELECT, {verb.upper()}" if reads or _reads(statement, name) else verb.upper()
    return "SELECT"


def _reads(statement: str, name: str) -> bool:
    """Whether *statement* also reads table *name* (an INSERT … SELECT from the table it fills
    needs SELECT on it as well)."""
    return any(_unquoted(m.group("name").split(".")[-1]) == name for m in _READ.finditer(statement))


def schema_in(statement: str, name: str) -> str | None:
    """The schema *statement* qualifies *name* with (``public.travelers``: public), if any."""
    found = re.search(rf"({_NAME})\.(?:{re.escape(name)}|\"{re.escape(name)}\")(?!\w)", statement)
    return _unquoted(found.group(1)) if found else None


def grant_for(
    error: str,
    role: str,
    schema_of: Callable[[str], str | None] = lambda name: None,
    *,
    statement: str = "",
) -> str | None:
    """The GRANT that lifts the "permission denied for KIND NAME" in *error* (the server names
    objects without their schema: *schema_of* gives it, else *statement*), the privilege the
    *statement* needed (reading without one); None for any other error."""
    denied = _DENIED.search(error)
    if denied is None:
        return None
    kind, name = denied.groups()
    schema = None if kind == "schema" else schema_of(name) or schema_in(statement, name)
    target = f"{quote_ident(schema)}.{name}" if schema and "." not in name else name
    privilege = privilege_needed(kind, name, statement)
    return f"GRANT {privilege} ON {_OBJECT.get(kind, '')}{target} TO {role};"


def refusal_message(err: psycopg.errors.InsufficientPrivilege) -> str:
    """*err* as a message naming the object, the role and the fix: ``permission denied for
    table T to role R; grant it: GRANT …;``, or for an owner's statement (ALTER, DROP, CREATE
    INDEX) that the role must own the object."""
    reason = error_reason(err)
    attempt = attempt_of(err) or Attempt("", "")
    role = quote_ident(attempt.role) if attempt.role else "the role connected"
    grant = grant_for(reason, role, statement=attempt.statement)
    owner = _NOT_OWNER.search(reason)
    if grant is not None:
        return f"{reason} to role {role}; grant it: {grant}"
    if owner is not None:
        kind, name = owner.groups()
        schema = schema_in(attempt.statement, name)
        target = f"{quote_ident(schema)}.{name}" if schema and "." not in name else name
        return (f"role {role} does not own {kind} {target}: run this as its owner (the role "
                "that ran the migrations)")  # fmt: skip
    return f"{reason} (role {role}; `dbtools doctor` lists the grants each command needs)"


def refusal(err: psycopg.errors.InsufficientPrivilege, what: str) -> PrerequisiteMissing:
    """*err*, raised while doing *what*, as ``PrerequisiteMissing`` (``refusal_message``)."""
    return PrerequisiteMissing(f"{what}: {refusal_message(err)}")


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn driver errors raised while doing *what* into one-line ``DbtoolsError``s (exit 2).

    A refused privilege becomes ``PrerequisiteMissing`` naming the object, the role and the
    GRANT (``refusal``); a missing object ``PrerequisiteMissing`` too; a lost connection
    ``ConnectionFailed``; anything else from the server a ``DbtoolsError`` naming *what*.
    """
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as err:
        raise refusal(err, what) from err
    except psycopg.errors.UndefinedTable as err:
        raise PrerequisiteMissing(f"{what}: {error_reason(err)}") from err
    except psycopg.errors.QueryCanceled as err:
        raise DbtoolsError(f"{what}: cancelled ({error_reason(err)})") from err
    except psycopg.OperationalError as err:
        raise ConnectionFailed(f"{what}: {error_reason(err)}") from err
    except psycopg.Error as err:
        raise DbtoolsError(f"{what}: {error_reason(err)}") from err


def translate_driver_error(err: BaseException, what: str) -> DbtoolsError | None:
    """A driver error that reached the command line untranslated while doing *what*, as one
    line: a refused privilege names the object, the role and the GRANT; a lost connection or a
    cancelled statement say so. None for anything else (a bug: shown as an internal error)."""
    found: BaseException | None = err
    while found is not None and not isinstance(found, psycopg.Error):
        found = found.__cause__ or found.__context__
    if isinstance(found, psycopg.errors.InsufficientPrivilege):
        translated: DbtoolsError = refusal(found, what)
    elif isinstance(found, psycopg.errors.QueryCanceled):
        translated = DbtoolsError(f"{what}: cancelled ({error_reason(found)})")
    elif isinstance(found, psycopg.OperationalError):
        translated = ConnectionFailed(f"{what}: {error_reason(found)}")
    else:
        return None
    translated.__cause__ = found
    return translated
