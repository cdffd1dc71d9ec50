"""Bounded queues with an explicit overload policy."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestQueue(Generic[T]):
    """A bounded queue that keeps the newest items: when full, the oldest is dropped.

    For live video a fresh sample is worth more than a stale one, so producers never
    block; every drop is counted. Use from the event loop only (threads hand items
    over with ``loop.call_soon_threadsafe(queue.offer, item)``).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, item: T) -> T | None:
        """Add ``item``; return the oldest item if it had to make room for it."""
        evicted = None
        if len(self._items) >= self._maxsize:
            evicted = self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()
        return evicted

    async def put(self, item: T) -> None:
        """Wait for room instead of dropping: backpressure for inputs that can wait (files)."""
        while len(self._items) >= self._maxsize and not self.closed:
            self._space.clear()
            await self._space.wait()
        self.offer(item)

    def close(self) -> None:
        """No more items will come; ``get`` returns None once the queue is empty."""
        self.closed = True
        self._ready.set()
        self._space.set()

    async def get(self) -> T | None:
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._take()

    def _take(self) -> T:
        self._space.set()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
