"""Supervised background tasks with an idempotent start and stop (aiokafka/aiortc style).

A loop that raises is logged with its traceback, counted, reported as an incident and
restarted after a backoff; it is unhealthy (``/readyz`` says so) until it has run a
while without crashing. ``stop()`` never re-raises what a loop died of, so one dead
loop cannot skip the rest of a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from services import incidents
from services.backoff import Backoff
from services.observability import TASK_RESTARTS

log = logging.getLogger(__name__)

#: A run that lasted this long resets the restart backoff.
STEADY_RUN_S = 30.0
#: A task that crashed less than this ago is unhealthy.
UNHEALTHY_AFTER_CRASH_S = 30.0

#: Started and not yet stopped: what ``/readyz`` reports on.
_STARTED: set[BackgroundTask] = set()


class BackgroundTask:
    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]], name: str,
                 restart_backoff: Backoff | None = None) -> None:
        self._work = work
        self.name = name
        self._backoff = restart_backoff or Backoff(base_s=0.5, cap_s=30.0)
        self._task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self._crashed_at: float | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=self.name)
            _STARTED.add(self)

    async def stop(self) -> bool:
        """Cancel and wait; False if it was not running."""
        if self._task is None:
            return False
        task, self._task = self._task, None
        _STARTED.discard(self)
        task.cancel()
        # wait(), not await: a cancel aimed at whoever is stopping us (a shutdown's time
        # limit) must reach them, not be swallowed with the task's own.
        await asyncio.wait({task})
        return True

    @property
    def healthy(self) -> bool:
        """No crash in the last ``UNHEALTHY_AFTER_CRASH_S`` (a crash loop stays unhealthy)."""
        return self._crashed_at is None \
            or time.monotonic() - self._crashed_at >= UNHEALTHY_AFTER_CRASH_S

    def status(self) -> dict[str, Any]:
        return {"task": self.name, "healthy": self.healthy, "restarts": self.restarts,
                "last_error": self.last_error}

    async def _supervise(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self._work()
                return  # a loop that ends on its own has finished its job
            except Exception as error:  # noqa: BLE001 - the one broad catch: restart any crash
                self._crashed(error)
            if time.monotonic() - began >= STEADY_RUN_S:
                self._backoff.reset()
            await asyncio.sleep(self._backoff.next_delay())

    def _crashed(self, error: Exception) -> None:
        self.restarts += 1
        self.last_error = incidents.describe(error)
        self._crashed_at = time.monotonic()
        TASK_RESTARTS.labels(self.name).inc()
        log.error("background task %s crashed (restart %d): %s", self.name, self.restarts,
                  self.last_error, exc_info=error)
        incidents.report(incidents.TASK_RESTARTED, task=self.name, error=self.last_error,
                         restarts=self.restarts)


def task_report() -> dict[str, Any]:
    """For ``/readyz``: whether every running task is healthy, and those that crashed."""
    crashed = sorted((t.status() for t in _STARTED if t.restarts),
                     key=lambda status: str(status["task"]))
    return {"healthy": all(status["healthy"] for status in crashed), "crashed": crashed}
