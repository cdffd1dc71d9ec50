"""``streamwarden run``: moderate one stream in the foreground."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.commands.output import print_json_line
from services.config import Settings, load_settings
from services.ids import validate_id
from services.ingest.pyav_reader import is_local_path
from services.pipeline.stream import PipelineObserver, SampleResult, StreamIdentity
from services.stages import Stages, watch_one

EXIT_UNDRAINED = 3
#: A file is not a live stream: damage in it is an error of the input, said once.
EXIT_DAMAGED_FILE = 1


def settings_for(args: argparse.Namespace) -> Settings:
    base = load_settings()
    sampling = base.sampling.model_copy(
        update={"interval_s": args.interval} if args.interval is not None else {})
    source = base.source.model_copy(
        update={"retry_for_s": args.retry_for} if args.retry_for is not None else {})
    policy = base.policy
    if args.threshold is not None:
        policy = policy.model_copy(update={"review_threshold": args.threshold})
    # Re-validate the merged values once, with the same clear messages as the env.
    return load_settings(**{**base.model_dump(), "sampling": sampling.model_dump(),
                            "source": source.model_dump(), "policy": policy.model_dump()})


def print_sample(stream_id: str, result: SampleResult) -> None:
    scores = " ".join(f"{name}={value:.4f}" for name, value in sorted(result.scores.items()))
    timing = "reused" if result.reused else f"inference={result.inference_s * 1000:.0f}ms"
    print(f"sample stream={stream_id} t={result.stream_time:.3f}s {scores} "
          f"decision={result.level.name.lower()} {timing}", flush=True)
    if result.flag is not None:
        print(f"FLAG id={result.flag.id} stream={stream_id} t={result.stream_time:.3f}s "
              f"decision={result.flag.decision} snapshot={result.flag.snapshot}", flush=True)


async def run_command(args: argparse.Namespace, with_signals: Any) -> int:
    stream_id = validate_id(args.stream_id)
    identity = StreamIdentity(stream_id, validate_id(args.provider, "provider id"),
                              validate_id(args.host_id, "host id") if args.host_id else None)
    settings = settings_for(args)
    app = Stages(settings)
    try:
        await app.start()
        observer = PipelineObserver(on_sample=lambda result: print_sample(stream_id, result))
        pipeline = app.pipeline(identity, args.source, observer)
        reason, drained = await with_signals(watch_one(app, pipeline), pipeline.stop)
    finally:
        await app.stop()
    summary: dict[str, Any] = {
        **pipeline.stats.as_dict(),
        "stream_id": stream_id,
        "ended": reason.value,
        "flags_topic": settings.kafka.flags_topic,
        "snapshots": f"s3://{settings.s3.bucket}/snapshots/{identity.provider_id}/{stream_id}/",
        "pending_flags": drained.flags_pending,
        "pending_objects": drained.objects_pending,
        "archive_refused": pipeline.archive.refused if pipeline.archive else 0,
        "snapshots_refused": app.sink.snapshots_refused,
    }
    print_json_line("summary", summary)
    damaged = pipeline.stats.corrupt_packets + pipeline.stats.remux_refused_packets
    if damaged and is_local_path(args.source):
        print(f"streamwarden: error: {args.source} is damaged: {damaged} packets skipped; "
              "what could be read was moderated", file=sys.stderr)
        return EXIT_DAMAGED_FILE
    if not drained.complete:
        print(f"streamwarden: warning: {drained.flags_pending} flags and "
              f"{drained.objects_pending} archive objects are still spooled in "
              f"{settings.spool.dir}; the next run delivers them")
        return EXIT_UNDRAINED
    return 0
