"""``streamwarden flags tail``: print flags from Kafka as they arrive, one JSON per line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.config import load_settings
from services.errors import BrokerUnavailable


async def _consumer(args: argparse.Namespace) -> AIOKafkaConsumer:
    settings = load_settings().kafka
    consumer = AIOKafkaConsumer(
        getattr(args, "topic", None) or settings.flags_topic,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-tail",
        # A private group: tailing never steals partitions from real moderators.
        group_id=f"streamwarden-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        request_timeout_ms=int(settings.request_timeout_s * 1000),
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as error:
        await consumer.stop()
        raise BrokerUnavailable(f"broker {settings.bootstrap_servers}: {error}") from None
    return consumer


def _matches(flag: dict[str, Any], stream_id: str | None) -> bool:
    return stream_id is None or flag.get("stream_id") == stream_id


async def _print_flags(consumer: AIOKafkaConsumer, args: argparse.Namespace) -> None:
    printed, seen = 0, set()
    while args.max is None or printed < args.max:
        try:
            message = await asyncio.wait_for(consumer.getone(), args.timeout)
        except TimeoutError:
            return
        try:
            flag = json.loads(message.value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            print(f"streamwarden: skipping a message that is not JSON at offset "
                  f"{message.offset}", file=sys.stderr)
            continue
        if not _matches(flag, args.stream_id) or flag.get("id") in seen:
            continue  # flags are delivered at least once: drop repeats by id
        seen.add(flag.get("id"))
        print(json.dumps(flag, sort_keys=True), flush=True)
        printed += 1


async def tail_command(args: argparse.Namespace, with_signals: Any) -> int:
    consumer = await _consumer(args)
    task = asyncio.ensure_future(_print_flags(consumer, args))
    try:
        await with_signals(_finish(task), task.cancel)
    finally:
        await consumer.stop()
    return 0


async def _finish(task: asyncio.Future[None]) -> int:
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0
