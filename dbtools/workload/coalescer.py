"""Coalesce concurrent calls into batches: what turns ten requests' thirty queries into three.

Items submitted within ``window_s`` of the first one of a batch (or until ``max_size`` items
are waiting) are handed to the batch handler together; each caller gets its own result back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchHandler = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Coalescer(Generic[T, R]):
    """Batch ``submit`` calls made close together and answer each from one handler call.

    ``window_s = 0`` batches what is submitted during the same event-loop iteration (a burst of
    concurrent requests) without waiting at all. The handler returns one result per item, in
    order; if it raises, every caller of that batch gets the exception.
    """

    def __init__(self, handler: BatchHandler[T, R], *, window_s: float, max_size: int) -> None:
        if window_s < 0:
            raise ValueError("the batch window must not be negative")
        if max_size < 1:
            raise ValueError("the maximum batch size must be at least 1")
        self._handler = handler
        self.window_s = window_s
        self.max_size = max_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue *item* for the next batch and wait for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._dispatch()
        elif self._timer is None:
            if self.window_s == 0:
                self._timer = loop.call_soon(self._dispatch)
            else:
                self._timer = loop.call_later(self.window_s, self._dispatch)
        return await future

    async def drain(self) -> None:
        """Dispatch what is waiting and wait until every batch has been answered."""
        if self._pending:
            self._dispatch()
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._answer(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._handler([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch handler answered {len(results)} of {len(batch)} items")
        except BaseException as err:  # every caller must hear about it, whatever it is
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            if not isinstance(err, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
