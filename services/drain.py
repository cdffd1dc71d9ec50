"""Delivers spooled items in the background: retries with backoff, removes on success."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from services.background import BackgroundTask
from services.backoff import Backoff
from services.errors import StreamWardenError
from services.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None


class SpoolDrainer(ABC):
    """Runs one task that empties a spool into a remote system.

    ``deliver`` raises a retriable StreamWardenError while the remote is down; the
    entry stays on disk and is tried again after a backoff. A non-retriable error
    means the entry can never be delivered: it is set aside (left in the spool
    directory, renamed) and counted, so one poison item never blocks the rest.
    """

    name = "drainer"
    #: Entries read from disk and handed to ``deliver_many`` at a time.
    chunk_size = 64

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.failed = 0
        self.poisoned = 0
        self._wakeup = asyncio.Event()
        self._loop: BackgroundTask | None = None  # named after the subclass, made at start
        self._pass_done = asyncio.Event()
        #: The event loop the drainer runs on, for ``notify`` from other threads.
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = BackgroundTask(self._run, self.name)
        self._loop.start()

    async def stop(self) -> None:
        if self._loop is not None and await self._loop.stop():
            await self.close()

    def notify(self) -> None:
        """Tell the drainer new items are waiting. Safe to call from any thread."""
        loop = self._event_loop
        if loop is None or _running_loop() is loop:
            self._wakeup.set()
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing is left to wake
            loop.call_soon_threadsafe(self._wakeup.set)

    async def wait_drained(self, timeout_s: float) -> bool:
        """True once the spool is empty; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.spool):
                    self._pass_done.clear()
                    self.notify()
                    await self._pass_done.wait()
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        backoff = Backoff()
        remote_down = False
        while True:
            self._wakeup.clear()
            remote_down = not await self._drain_once(probe=remote_down)
            self._pass_done.set()
            if remote_down:
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()
                await self._wakeup.wait()

    async def _drain_once(self, probe: bool) -> bool:
        """Deliver what is pending, a chunk at a time; False if the remote is down.

        After a failed pass the first chunk is a single entry: while the remote stays
        down, each retry reads one item from disk, not a whole chunk of segments."""
        ids = self.spool.pending_ids()
        start = 0
        while start < len(ids):
            size = 1 if probe and start == 0 else self.chunk_size
            entries = await asyncio.to_thread(self._load, ids[start : start + size])
            if not await self._deliver_chunk(entries):
                return False
            start += size
        return True

    def _load(self, ids: list[str]) -> list[SpoolEntry]:
        return [entry for entry in map(self.spool.load, ids) if entry is not None]

    async def _deliver_chunk(self, entries: list[SpoolEntry]) -> bool:
        outcomes = await self.deliver_many(entries)
        for entry, error in zip(entries, outcomes, strict=True):
            if error is None:
                self.spool.remove(entry.item_id)
            elif not error.retriable:
                self._set_aside(entry, error)
        retry = [error for error in outcomes if error is not None and error.retriable]
        if retry:
            self.failed += 1
            log.warning("%s: delivery failed, will retry: %s", self.name, retry[0])
            return False
        return True

    async def deliver_many(self, entries: list[SpoolEntry]) -> list[StreamWardenError | None]:
        """Deliver a chunk; one outcome per entry (None = delivered). Sequential by default."""
        outcomes: list[StreamWardenError | None] = []
        for index, entry in enumerate(entries):
            try:
                await self.deliver(entry)
            except StreamWardenError as error:
                outcomes.append(error)
                if error.retriable:  # the remote is down: the rest would fail the same way
                    outcomes.extend([error] * (len(entries) - index - 1))
                    break
                continue
            outcomes.append(None)
        return outcomes

    def _set_aside(self, entry: SpoolEntry, error: StreamWardenError) -> None:
        self.poisoned += 1
        log.error("%s: item %s can never be delivered: %s", self.name, entry.item_id, error)
        self.spool.set_aside(entry.item_id)

    @abstractmethod
    async def deliver(self, entry: SpoolEntry) -> None:
        """Deliver one entry or raise StreamWardenError."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release connections after the task stopped."""
