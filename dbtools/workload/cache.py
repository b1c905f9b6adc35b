"""The application's in-process search cache: normalised request -> result, with a TTL.

A request that arrives while an identical one is still being answered waits for that answer
instead of querying again (single flight), and counts as a hit: so the number of misses is
exactly the number of distinct requests in a run (as long as no entry outlives its TTL), and
the hit ratio does not depend on timing or on the data-access path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    future: asyncio.Future[V]
    expires_at: float | None = None  # None while the answer is still being computed


class SearchCache(Generic[V]):
    """A TTL cache of answers (futures), keyed by the normalised request."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0:
            raise ValueError("the cache TTL must be positive")
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry[V]] = {}

    def claim(self, key: str) -> tuple[asyncio.Future[V], bool]:
        """The future answering *key*, and whether the caller must compute it (a miss).

        On a miss the caller computes the answer and calls ``complete`` or ``fail``.
        """
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and (entry.expires_at is None or entry.expires_at > now):
            return entry.future, False
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._entries[key] = _Entry(future)
        return future, True

    def complete(self, key: str, value: V) -> None:
        """Store the answer for *key* (valid for the TTL from now) and wake its waiters."""
        entry = self._entries[key]
        entry.expires_at = self._clock() + self.ttl_s
        entry.future.set_result(value)

    def fail(self, key: str, error: BaseException) -> None:
        """Forget *key* (errors are not cached) and pass *error* to its waiters."""
        entry = self._entries.pop(key)
        entry.future.set_exception(error)
        # Waiters see the error; if nobody waited, do not let asyncio warn about it.
        entry.future.exception()

    def __len__(self) -> int:
        return len(self._entries)
