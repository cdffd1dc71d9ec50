"""A micro-batcher shared by every stream in a process.

Samples wait until ``batch_size`` are pending or the oldest has waited
``max_wait_s``; then one inference runs (on the caller's executor) and each
submitter gets its own result. Each stream has at most one pending sample: a
newer one from the same stream replaces it (keep the newest), the replaced
submitter gets ``None``, and the drop is counted per stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.background import BackgroundTask

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result | None]
    since: float


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, infer: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
                 batch_size: int, max_wait_s: float) -> None:
        self._infer = infer
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self._pending: dict[str, _Pending[Item, Result]] = {}
        self._arrived = asyncio.Event()
        self._loop = BackgroundTask(self._run, "micro-batcher")
        self.dropped: Counter[str] = Counter()

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        if not await self._loop.stop():
            return
        for pending in self._pending.values():
            pending.future.cancel()
        self._pending.clear()

    async def submit(self, key: str, item: Item) -> Result | None:
        """This item's result, or None if a newer item from ``key`` replaced it."""
        future: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        previous = self._pending.get(key)
        if previous is not None:
            previous.future.set_result(None)
            self.dropped[key] += 1
            previous.item, previous.future = item, future  # keeps its place in line
        else:
            self._pending[key] = _Pending(item, future, time.monotonic())
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if batch:
                await self._run_batch(batch)

    async def _wait_for_batch(self) -> None:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        oldest = min(p.since for p in self._pending.values())
        while len(self._pending) < self.batch_size:
            remaining = oldest + self.max_wait_s - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Pending[Item, Result]]:
        keys = list(self._pending)[: self.batch_size]  # arrival order
        return [self._pending.pop(key) for key in keys]

    async def _run_batch(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            results = await self._infer([p.item for p in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting submitter
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
