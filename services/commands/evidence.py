"""``streamwarden evidence export``: ask the service for a bundle (so the export is
audited like any other) and download it with a progress bar; ``evidence verify``:
check a bundle offline."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from services.commands.output import print_json_line
from services.config import load_settings
from services.errors import ConfigError, StreamWardenError
from services.evidence.bundle import verify_bundle


def _body(args: argparse.Namespace) -> dict[str, Any]:
    fields = {"case": args.case, "from": args.start, "to": args.end, "reason": args.reason,
              "stream_id": args.stream_id, "host_id": args.host_id, "user_id": args.user_id,
              "provider_id": args.provider}
    return {name: value for name, value in fields.items() if value}


async def export_command(args: argparse.Namespace) -> int:
    api = args.api or os.environ.get("STREAMWARDEN_API_URL")
    token = os.environ.get("STREAMWARDEN_TOKEN")
    if not api or not token:
        raise ConfigError("set --api (or STREAMWARDEN_API_URL) and STREAMWARDEN_TOKEN "
                          "(an investigator token)")
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(f"{api.rstrip('/')}/v1/evidence/exports", json=_body(args),
                                headers=headers) as response:
            answer = await response.json()
            if response.status != 201:
                raise StreamWardenError(f"export refused ({response.status}): "
                                        f"{answer.get('error', answer)}")
        out = Path(args.out or f"{answer['export_id']}.tar.gz")
        await _download(session, answer["url"], out, int(answer["bytes"]))
    print_json_line("export", {**answer, "file": str(out)})
    return 0


async def _download(session: aiohttp.ClientSession, url: str, out: Path, size: int) -> None:
    with tqdm(total=size, unit="B", unit_scale=True, desc=out.name) as bar:
        async with session.get(url, ssl=_trust()) as response:
            response.raise_for_status()
            chunks = []
            async for chunk in response.content.iter_chunked(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    await asyncio.to_thread(out.write_bytes, b"".join(chunks))


def _trust() -> ssl.SSLContext:
    """Presigned URLs point at the S3 endpoint: trust its private CA when one is set."""
    ca_file = load_settings().s3.ca_file
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


async def verify_command(args: argparse.Namespace) -> int:
    data = await asyncio.to_thread(Path(args.bundle).read_bytes)
    problems = await asyncio.to_thread(verify_bundle, data)
    print_json_line("verify", {"bundle": args.bundle, "ok": not problems,
                               "problems": problems[:20]})
    return 1 if problems else 0
