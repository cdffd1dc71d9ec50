"""The ``streamwarden`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from services import __version__
from services.errors import StreamWardenError

log = logging.getLogger("streamwarden")


def _add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="moderate one stream in the foreground")
    run.add_argument("--source", required=True, help="URL or file PyAV can open")
    run.add_argument("--stream-id", required=True)
    run.add_argument("--provider", default="local", help="provider (platform) id")
    run.add_argument("--host-id", default=None, help="the streaming host's id")
    run.add_argument("--threshold", type=float, default=None,
                     help="review threshold; 0 flags every sample (audit mode)")
    run.add_argument("--interval", type=float, default=None, help="seconds between samples")
    run.add_argument("--retry-for", type=float, default=None,
                     help="give up after retrying a failing source this long (default 30 s)")


def _add_flags(commands: Any) -> None:
    flags = commands.add_parser("flags", help="read flags from Kafka")
    sub = flags.add_subparsers(dest="flags_command", required=True)
    tail = sub.add_parser("tail", help="print flags as they arrive")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--stream-id", default=None, help="only this stream's flags")
    tail.add_argument("--max", type=int, default=None, help="exit after this many flags")
    tail.add_argument("--timeout", type=float, default=None,
                      help="exit after this many seconds without a new flag")


def _add_actions(commands: Any) -> None:
    from services.moderation.actions import ACTIONS

    actions = commands.add_parser("actions", help="moderator actions: take one, or tail them")
    sub = actions.add_subparsers(dest="actions_command", required=True)
    take = sub.add_parser("take", help="act on a flag (through the service's API)")
    take.add_argument("--flag", required=True, help="flag id")
    take.add_argument("--action", required=True, choices=ACTIONS)
    take.add_argument("--reason", required=True)
    take.add_argument("--api", default=None, help="service URL (or STREAMWARDEN_API_URL); "
                                                  "token in STREAMWARDEN_TOKEN")
    tail = sub.add_parser("tail", help="print actions as they arrive")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--stream-id", default=None, help="only this stream's actions")
    tail.add_argument("--max", type=int, default=None, help="exit after this many")
    tail.add_argument("--timeout", type=float, default=None,
                      help="exit after this many seconds without a new action")


def _add_models(commands: Any) -> None:
    classify = commands.add_parser("classify", help="score images, videos or audio files, "
                                   "one JSON per input")
    classify.add_argument("inputs", nargs="+", metavar="IMAGE_VIDEO_OR_AUDIO")
    classify.add_argument("--analyzers", default=None, metavar="A,B",
                          help="analyzers to run, comma-separated manifest names (streamwarden "
                          "models list); '' runs none; default: analyzers.enabled")
    classify.add_argument("--model", action="append", help="manifest name (repeatable)")
    classify.add_argument("--provider", default=None, help="force an execution provider")
    classify.add_argument("--threshold", type=float, default=None, help="review threshold")
    classify.add_argument("--interval", type=float, default=2.0,
                          help="seconds between samples of a video")
    models = commands.add_parser("models", help="model manifests and execution providers")
    sub = models.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="manifests, installed providers, which model is active")


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the service: API, ingest, moderation")
    serve.add_argument("--host", default=None, help="bind address (default api.host)")
    serve.add_argument("--port", type=int, default=None, help="port (default api.port)")
    serve.add_argument("--roles", default="api,ingest,archive,alerts,console",
                       help="comma-separated: api (HTTP API), ingest (watch the streams the "
                            "consumer group assigns), archive (log archivers, chat filter), "
                            "alerts (webhooks, flag-to-action latency), console (moderators' "
                            "web pages; needs api); default all")


def _add_compliance(commands: Any) -> None:
    compliance = commands.add_parser("compliance", help="reports for the compliance team")
    sub = compliance.add_subparsers(dest="compliance_command", required=True)
    report = sub.add_parser("report", help="streams, samples, flags, actions, refusals, "
                                           "retention over a period (JSON; --html a page)")
    report.add_argument("--from", dest="start", required=True, help="ISO date or time (UTC)")
    report.add_argument("--to", dest="end", required=True, help="ISO date or time (UTC)")
    report.add_argument("--html", default=None, help="also write a readable HTML page here")


def _add_evidence(commands: Any) -> None:
    evidence = commands.add_parser("evidence", help="investigators: export and verify bundles")
    sub = evidence.add_subparsers(dest="evidence_command", required=True)
    export = sub.add_parser("export", help="ask the service for a bundle and download it")
    export.add_argument("--case", required=True, help="case reference (required, audited)")
    export.add_argument("--from", dest="start", required=True, help="RFC 3339 time")
    export.add_argument("--to", dest="end", required=True, help="RFC 3339 time")
    for name in ("--stream-id", "--host-id", "--user-id", "--provider", "--reason"):
        export.add_argument(name, default=None)
    export.add_argument("--api", default=None, help="service URL (or STREAMWARDEN_API_URL); "
                                                    "token in STREAMWARDEN_TOKEN")
    export.add_argument("--out", default=None, help="bundle file (default EXPORT_ID.tar.gz)")
    verify = sub.add_parser("verify", help="check a bundle offline: hashes and chains")
    verify.add_argument("bundle")


def _add_archive(commands: Any) -> None:
    archive = commands.add_parser("archive", help="the stream archive in S3")
    sub = archive.add_subparsers(dest="archive_command", required=True)
    verify = sub.add_parser("verify", help="re-read segments, check hashes and the chain")
    playlist = sub.add_parser("playlist", help="print an HLS playlist of presigned URLs")
    playlist.add_argument("--expires-s", type=int, default=3600,
                          help="how long the segment URLs stay valid")
    hold = sub.add_parser("hold", help="put a stream's objects under legal hold for a case")
    hold.add_argument("--case", required=True, help="case reference, kept in the hold record")
    hold.add_argument("--release", action="store_true", help="lift the hold instead")
    for command in (verify, playlist, hold):
        command.add_argument("stream_id")
        command.add_argument("--provider", default="local")
        command.add_argument("--session", default=None,
                             help="one session (default: all; playlist: the latest)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamwarden", description=__doc__)
    parser.add_argument("--version", action="version", version=f"streamwarden {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--log-json", action="store_true",
                        help="structured logs: one JSON object per line, with stream_id")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    _add_flags(commands)
    _add_actions(commands)
    _add_models(commands)
    _add_serve(commands)
    _add_archive(commands)
    _add_compliance(commands)
    _add_evidence(commands)
    return parser


def _configure_logging(debug: bool, json_lines: bool) -> None:
    from services.observability import configure_logging

    configure_logging(logging.DEBUG if debug else logging.INFO if json_lines else logging.WARNING,
                      json_lines)
    if not debug:
        # Our drainers report broker trouble once, in one line; aiokafka would repeat it.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


async def _with_signals(main: Any, on_signal: Any) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        result: int = await main
        return result
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug, args.log_json)
    try:
        return _dispatch(args)
    except StreamWardenError as error:
        if args.debug:
            raise
        print(f"streamwarden: error: {error}", file=sys.stderr)
        return error.exit_code


def _dispatch(args: argparse.Namespace) -> int:
    # Imports per command keep `--help` fast and a broken extra out of unrelated commands.
    if args.command == "run":
        from services.commands.run import run_command

        return asyncio.run(run_command(args, _with_signals))
    if args.command == "serve":
        from services.commands.serve import serve_command

        return asyncio.run(serve_command(args, _with_signals))
    if args.command == "archive":
        from services.commands.archive import archive_command

        return asyncio.run(archive_command(args))
    if args.command == "actions":
        from services.commands.actions import take_command
        from services.commands.flags_tail import tail_command
        from services.config import load_settings

        if args.actions_command == "take":
            return asyncio.run(take_command(args))
        args.topic = load_settings().alerts.actions_topic
        return asyncio.run(tail_command(args, _with_signals))
    if args.command == "evidence":
        from services.commands import evidence

        command = evidence.export_command if args.evidence_command == "export" \
            else evidence.verify_command
        return asyncio.run(command(args))
    if args.command == "compliance":
        from services.commands.compliance import report_command

        return asyncio.run(report_command(args))
    if args.command == "flags":
        from services.commands.flags_tail import tail_command

        return asyncio.run(tail_command(args, _with_signals))
    from services.commands.classify import classify_command, models_list_command

    if args.command == "classify":
        return asyncio.run(classify_command(args))
    return models_list_command(args)


if __name__ == "__main__":
    sys.exit(main())
