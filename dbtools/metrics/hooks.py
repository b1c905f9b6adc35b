"""Count the statements an application sends, per request: a psycopg cursor and an SQLAlchemy
event, both counting into the request being served (a context variable, so concurrent requests
in threads or asyncio tasks each count their own).

A statement is counted when it completes, as pg_stat_statements counts it (a statement that
fails is in neither count): ``execute`` counts one, ``executemany`` one per parameter set.
Statements sent outside a request (start-up, health checks) are not counted. What an asyncio
task started by a request sends counts for that request (tasks copy the context they are
created in): a batch answering several requests counts once, for the request that started it.

Counting never fails a statement: a bug here is logged, and the statement's result returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import psycopg
from psycopg.rows import Row

log = logging.getLogger(__name__)


class StatementCounter(Protocol):
    """What a request being served offers the hooks."""

    def count(self, statements: int) -> None: ...


_current: ContextVar[StatementCounter | None] = ContextVar("dbtools_metrics_request", default=None)


@contextmanager
def counting_into(counter: StatementCounter) -> Iterator[None]:
    """Count the statements sent in this context (and the tasks it starts) into *counter*."""
    token = _current.set(counter)
    try:
        yield
    finally:
        _current.reset(token)


def count_statements(statements: int = 1) -> None:
    """Count *statements* for the request being served (none: nothing happens)."""
    counter = _current.get()
    if counter is None:
        return
    try:
        counter.count(statements)
    except Exception:  # counting must never fail the application's statement
        log.warning("could not count a statement", exc_info=True)


def _parameter_sets(params_seq: Iterable[Any]) -> Sequence[Any]:
    return params_seq if isinstance(params_seq, Sequence) else list(params_seq)


class CountingCursor(psycopg.Cursor[Row]):
    """A psycopg cursor that counts what it executes (``conn.cursor_factory``)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> CountingCursor[Row]:
        super().execute(query, params, **kwargs)
        count_statements()
        return self

    def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> None:
        sets = _parameter_sets(params_seq)
        super().executemany(query, sets, **kwargs)
        count_statements(len(sets))


class AsyncCountingCursor(psycopg.AsyncCursor[Row]):
    """An asyncio psycopg cursor that counts what it executes (``conn.cursor_factory``)."""

    async def execute(
        self, query: Any, params: Any = None, **kwargs: Any
    ) -> AsyncCountingCursor[Row]:
        await super().execute(query, params, **kwargs)
        count_statements()
        return self

    async def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> None:
        sets = _parameter_sets(params_seq)
        await super().executemany(query, sets, **kwargs)
        count_statements(len(sets))


def instrument_psycopg(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Count what *conn* executes (``conn.execute`` and its cursors; not server-side cursors
    nor COPY). For a pool, call it from the pool's ``configure`` callback."""
    if isinstance(conn, psycopg.AsyncConnection):
        conn.cursor_factory = AsyncCountingCursor
    else:
        conn.cursor_factory = CountingCursor


def _after_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    # executemany hands the driver a list of parameter sets (one execution each); SQLAlchemy's
    # multi-row INSERT … RETURNING ("insertmanyvalues") says executemany too, but sends each
    # batch as one statement, with one mapping of parameters.
    many = executemany and isinstance(parameters, (list, tuple))
    count_statements(len(parameters) if many else 1)


def instrument_sqlalchemy(target: Any) -> None:
    """Count what an SQLAlchemy ``Engine`` (or ``Connection``) executes: its
    ``after_cursor_execute`` event, once per execution (an ``executemany`` once per parameter
    set; a multi-row INSERT … RETURNING batch once)."""
    from sqlalchemy import event  # the application may not use SQLAlchemy at all

    if not event.contains(target, "after_cursor_execute", _after_cursor_execute):
        event.listen(target, "after_cursor_execute", _after_cursor_execute)
