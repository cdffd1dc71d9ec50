"""A dedicated thread per long blocking job (one per watched stream).

``asyncio.to_thread`` shares a small default pool (cores + 4 threads): forty
streams reading for hours would starve each other and every short job. A
reader gets its own thread instead, bridged back with a future.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_own_thread(job: Callable[[], T], name: str) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = job()
        except BaseException as error:  # noqa: BLE001 - re-raised in the awaiting task
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    context = contextvars.copy_context()  # log lines in the thread keep the stream id
    threading.Thread(target=context.run, args=(target,), name=name, daemon=True).start()
    return await future
