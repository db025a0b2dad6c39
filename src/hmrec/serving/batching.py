"""Micro-batching: concurrent requests answered by one vectorised call.

A recommendation costs about two milliseconds of one core, and most of that is per
call, not per row: CatBoost builds a Pool, FAISS and NumPy dispatch, Python loops
start. Under load many requests are waiting at the same moment, so the service
answers them together (``FourStageRecommender.recommend_many``): the calls are paid
once per batch.

When to run a batch: as soon as every recommendation request the server has already
accepted is waiting in the queue (the HTTP layer tells the batcher when one arrives
and when it leaves), or when the batch is full, or when the first request has waited
``max_wait_s``. With one client nothing ever waits (the queue holds the only request
in flight); with sixteen the queue fills while the previous batch's answers are being
sent. The batch runs on the event loop thread: the work is CPU-bound and holds the
GIL, so a worker thread would add switching without adding a core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items submitted by concurrent coroutines and answers them with one call
    of ``run(items) -> results`` (same order; an Exception in a place is raised in the
    coroutine that submitted that item only). Use from one event loop."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R | BaseException]], max_batch: int = 64,
                 max_wait_s: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.in_flight = 0  # accepted requests that may still submit (told by the HTTP layer)
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._first_at = 0.0
        #: Sizes of the batches run so far (what the load test reports).
        self.batches = 0
        self.items = 0

    # -- what the HTTP layer tells the batcher ------------------------------------------
    def arrived(self) -> None:
        """A request that will (probably) submit has been accepted."""
        self.in_flight += 1

    def left(self) -> None:
        """That request has been answered (or failed before submitting)."""
        self.in_flight -= 1
        self._check()

    # -- submitting ----------------------------------------------------------------------
    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        if not self._queue:
            self._first_at = time.monotonic()
            if self.max_wait_s > 0:
                self._timer = loop.call_later(self.max_wait_s, self._flush)
        self._queue.append((item, fut))
        self._check()
        return await fut

    def _check(self) -> None:
        """Run soon if nothing else that was accepted can still join, or the batch is full."""
        if not self._queue or self._soon is not None:
            return
        if (len(self._queue) >= self.max_batch or len(self._queue) >= self.in_flight
                or self.max_wait_s == 0 or time.monotonic() - self._first_at >= self.max_wait_s):
            self._soon = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._soon = None
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        if self._queue:  # more than a batch was waiting: the rest goes next
            self._first_at = time.monotonic()
            self._soon = asyncio.get_running_loop().call_soon(self._flush)
        batch = [(item, fut) for item, fut in batch if not fut.cancelled()]  # client went away
        if not batch:
            return
        self.batches += 1
        self.items += len(batch)
        try:
            results = self.run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(batch, results):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
