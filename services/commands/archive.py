"""``streamwarden archive verify``: one JSON line per session; exit 1 on any problem."""

from __future__ import annotations

import argparse

from services.archive.store import ObjectStore
from services.archive.verify import sessions, verify_session
from services.commands.output import print_json_line
from services.config import load_settings
from services.errors import ConfigError
from services.ids import validate_id


async def verify_command(args: argparse.Namespace) -> int:
    stream_id = validate_id(args.stream_id)
    provider = validate_id(args.provider, "provider id")
    store = ObjectStore(load_settings().s3)
    names = [args.session] if args.session else await sessions(store, provider, stream_id)
    if not names:
        raise ConfigError(f"no archived sessions for stream {stream_id} (provider {provider})")
    failed = 0
    for name in names:
        report = await verify_session(store, provider, stream_id, name)
        failed += not report.ok
        print_json_line("verify", {"stream_id": stream_id, "session": report.session,
                                   "segments": report.segments, "ok": report.ok,
                                   "problem": report.problem})
    return 1 if failed else 0
