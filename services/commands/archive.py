"""``streamwarden archive``: verify sessions, print a presigned playlist, legal holds."""

from __future__ import annotations

import argparse
import getpass
import sys

from services.archive.holds import HoldRequest, set_hold, validate_case
from services.archive.playback import list_sessions, signed_playlist
from services.archive.store import ObjectStore
from services.archive.verify import sessions, verify_session
from services.commands.output import print_json_line
from services.config import load_settings
from services.errors import NotFound
from services.ids import validate_id


async def archive_command(args: argparse.Namespace) -> int:
    stream_id = validate_id(args.stream_id)
    provider = validate_id(args.provider, "provider id")
    store = ObjectStore(load_settings().s3)
    if args.archive_command == "playlist":
        return await _playlist(store, provider, stream_id, args.session, args.expires_s)
    if args.archive_command == "hold":
        request = HoldRequest(validate_case(args.case), provider, stream_id,
                              validate_id(args.session, "session") if args.session else None,
                              f"cli:{getpass.getuser()}")
        result = await set_hold(store, request, not args.release)
        print_json_line("hold", {"case": request.case, "legal_hold": not args.release,
                                 "objects": len(result.keys), "record": result.record_key})
        return 0
    return await _verify(store, provider, stream_id, args.session)


async def _verify(store: ObjectStore, provider: str, stream_id: str,
                  session: str | None) -> int:
    names = [session] if session else await sessions(store, provider, stream_id)
    if not names:
        raise NotFound(f"no archived sessions for stream {stream_id} (provider {provider})")
    failed = 0
    for name in names:
        report = await verify_session(store, provider, stream_id, name)
        failed += not report.ok
        print_json_line("verify", {"stream_id": stream_id, "session": report.session,
                                   "segments": report.segments, "ok": report.ok,
                                   "complete": report.complete, "recovered": report.recovered,
                                   "problem": report.problem})
    return 1 if failed else 0


async def _playlist(store: ObjectStore, provider: str, stream_id: str, session: str | None,
                    expires_s: int) -> int:
    """The latest session unless one is named; the playlist goes to stdout."""
    if session is None:
        found = await list_sessions(store, provider, stream_id)
        if not found:
            raise NotFound(f"no archived sessions for stream {stream_id} (provider {provider})")
        session = found[-1].session
    body = await signed_playlist(store, provider, stream_id, validate_id(session, "session"),
                                 expires_s)
    sys.stdout.write(body.decode())
    return 0
