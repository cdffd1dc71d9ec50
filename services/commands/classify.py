"""``streamwarden classify`` and ``streamwarden models list``: for people tuning thresholds."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from models.analyzer_manifests import (
    AnalyzerManifest,
    analyzer_manifests,
    enabled_analyzers,
    get_analyzer,
)
from models.preprocess import Image, bgr_from_picture
from models.registry import manifests
from models.runtime import choose_providers, prepare_input
from services.analyzers.audio import decode_audio
from services.analyzers.gore import GoreClassifier
from services.analyzers.ocr import OcrReader, TextLine, join_rows
from services.analyzers.speech import SpeechTranscriber, Utterance, transcribe_chunks
from services.classify.classifier import Classifier, Prepared, Scored
from services.config import Settings, load_settings
from services.errors import ModelError, SourceError, UnsupportedMedia
from services.ingest.pyav_reader import FrameReader, RawSample
from services.policy.policy import Level, PolicyConfig, StreamPolicyState, decide
from services.sampling.sampler import IntervalSampler
from services.stats import StreamStats
from services.textjudge.codes import Code, read_codes
from services.textjudge.judge import Source, TextFinding, TextJudge
from services.textjudge.rulefile import DEFAULT_FILE

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# A GIF of one frame is a picture; an animated one is sampled like a video.
_MAYBE_ANIMATED_SUFFIXES = {".gif"}

_T = TypeVar("_T")


def add_analyzer_arguments(parser: argparse.ArgumentParser) -> None:
    """``classify``'s analyzer options (services/cli.py adds them to its parser)."""
    parser.add_argument(
        "--analyzers", default=None, metavar="A,B",
        help="analyzers to run, comma-separated manifest names (streamwarden models list); "
             "'' runs none; default: analyzers.enabled, else the manifests' defaults")


def analyzer_names(option: str | None, configured: tuple[str, ...] | None) -> set[str]:
    """The analyzers a run uses: ``--analyzers`` when given, else the settings' list,
    else the manifests' defaults. An unknown name raises ModelError naming the known."""
    if option is None:
        return enabled_analyzers(configured)
    return enabled_analyzers(tuple(n.strip() for n in option.split(",") if n.strip()))


def _settings(args: argparse.Namespace) -> Settings:
    base = load_settings()
    model = base.model.model_copy(update={
        key: value for key, value in (("names", tuple(args.model or ())),
                                      ("provider", args.provider)) if value})
    return load_settings(**{**base.model_dump(), "model": model.model_dump()})


def read_still(path: Path) -> Image:
    """A picture file as a BGR frame, decoded and converted as the reference package
    does (PIL), except that EXIF orientation is applied: what a viewer sees is judged."""
    if not path.is_file():
        raise UnsupportedMedia(f"{path}: no such file")
    try:
        with PILImage.open(path) as picture:
            return bgr_from_picture(ImageOps.exif_transpose(picture))
    except PILImage.DecompressionBombError as error:  # not an OSError: a picture too big
        raise UnsupportedMedia(f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        pass  # formats PIL lacks may still be in OpenCV's build
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnsupportedMedia(f"{path}: not an image this build can decode")
    return np.asarray(image, np.uint8)


def is_still(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return True
    if suffix not in _MAYBE_ANIMATED_SUFFIXES:
        return False
    try:
        with PILImage.open(path) as picture:
            return getattr(picture, "n_frames", 1) == 1
    except (UnidentifiedImageError, OSError, ValueError):
        return False  # the video reader reports what is wrong with it


def _video_frames(path: Path, interval: float) -> list[RawSample]:
    frames: list[RawSample] = []
    reader = FrameReader(str(path), load_settings().source, IntervalSampler(interval),
                         StreamStats(), frames.append)
    reader.run()
    if not frames:
        raise UnsupportedMedia(f"{path}: no frame could be decoded")
    return frames


def _judge(scored: list[Scored], config: PolicyConfig) -> Level:
    if len(scored) == 1:  # one picture: no smoothing
        config = PolicyConfig(config.thresholds, config.default, k=1, n=1)
    state, worst = StreamPolicyState(), Level.NONE
    for item in scored:
        outcome = decide(state, item.per_model, config)
        state, worst = outcome.state, max(worst, outcome.level)
    return worst


async def _classify_still(classifier: Classifier, path: Path) -> Scored:
    """A picture is prepared with the reference's exact steps, so it scores as the
    reference package scores it; video samples take the live pipeline's faster ones."""
    def prepare() -> Prepared:
        image = read_still(path)
        return tuple(prepare_input(manifest, image, still=True)
                     for manifest in classifier.manifests)

    # Through the batcher; inputs are classified one after another, so no newer item
    # under this key can replace it.
    scored = await classifier.classify(f"classify:{path}", await asyncio.to_thread(prepare))
    if scored is None:
        raise RuntimeError(f"{path}: the classifier dropped the picture")
    return scored


@dataclass
class Analyzers:
    """The enabled analyzers, loaded once per command (every file verified on load)."""

    names: tuple[str, ...]
    judge: TextJudge
    codes: bool = False
    ocr: OcrReader | None = None
    gore: GoreClassifier | None = None
    speech_manifest: AnalyzerManifest | None = None
    _speech: SpeechTranscriber | None = field(default=None, repr=False)

    @classmethod
    def load(cls, names: set[str], settings: Settings) -> Analyzers:
        manifests = [get_analyzer(name) for name in sorted(names)]
        rules = settings.analyzers.rules_file or DEFAULT_FILE
        found = cls(tuple(m.name for m in manifests),
                    TextJudge.load(rules, settings.chat.lists_dir))
        for manifest in manifests:
            if manifest.kind == "codes":
                found.codes = True
            elif manifest.kind == "ocr" and found.ocr is None:
                found.ocr = OcrReader.load(manifest)
            elif manifest.kind == "frame_classifier" and found.gore is None:
                found.gore = GoreClassifier.load(manifest)
            elif manifest.kind == "speech" and found.speech_manifest is None:
                found.speech_manifest = manifest
        return found

    @property
    def frame_analyzers(self) -> bool:
        return self.codes or self.ocr is not None or self.gore is not None

    def transcriber(self) -> SpeechTranscriber | None:
        """Loaded on the first input with audio (Whisper takes seconds to load)."""
        if self.speech_manifest is not None and self._speech is None:
            self._speech = SpeechTranscriber.load(self.speech_manifest.name)
        return self._speech


def _finding(finding: TextFinding) -> dict[str, Any]:
    shown = dataclasses.asdict(finding)
    shown["span"] = list(finding.span) if finding.span is not None else None
    return shown


def _box(box: tuple[tuple[int, int], ...]) -> list[list[int]]:
    return [[int(x), int(y)] for x, y in box]


def _judged(judge: TextJudge, text: str, source: Source) -> list[dict[str, Any]]:
    return [_finding(f) for f in judge.judge(text, source)]


def _code(judge: TextJudge, code: Code) -> dict[str, Any]:
    return {"text": code.text, "format": code.format, "box": _box(code.box),
            "escaped": code.escaped, "findings": _judged(judge, code.payload, "qr")}


def _line(judge: TextJudge, line: TextLine) -> dict[str, Any]:
    return {"text": line.text, "score": line.score, "box": _box(line.box),
            "findings": _judged(judge, line.text, "ocr")}


def _timed(timings: dict[str, float], name: str, work: Callable[[], _T]) -> _T:
    started = time.perf_counter()
    try:
        return work()
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000


def analyze_frame(analyzers: Analyzers, image: Image, time_s: float | None,
                  timings: dict[str, float]) -> dict[str, Any]:
    """What each enabled frame analyzer found in one frame (an empty list: nothing)."""
    found: dict[str, Any] = {"time_s": None if time_s is None else round(time_s, 3)}
    judge = analyzers.judge
    if analyzers.codes:
        codes = _timed(timings, "codes", lambda: read_codes(image))
        found["codes"] = [_code(judge, code) for code in codes]
    if analyzers.ocr is not None:
        reader = analyzers.ocr
        lines = _timed(timings, "ocr", lambda: join_rows(reader.read(image)))
        found["ocr"] = [_line(judge, line) for line in lines]
    if analyzers.gore is not None:
        gore = analyzers.gore
        scores = _timed(timings, "gore", lambda: gore.scores(image))
        found["gore"] = {name: round(value, 4) for name, value in scores.items()}
    return found


def _utterance(judge: TextJudge, utterance: Utterance) -> dict[str, Any]:
    return {"start_s": round(utterance.start_s, 3), "end_s": round(utterance.end_s, 3),
            "text": utterance.text, "language": utterance.language,
            "avg_logprob": round(utterance.avg_logprob, 3),
            "findings": _judged(judge, utterance.text, "speech")}


def analyze_audio(analyzers: Analyzers, path: Path, timings: dict[str, float]
                  ) -> dict[str, Any]:
    """The input's first audio track transcribed, or why it was skipped: an absent or
    unreadable track is reported here, never raised."""
    decoded = _timed(timings, "audio_decode", lambda: decode_audio(path))
    report: dict[str, Any] = {"status": decoded.status,
                              "seconds": round(decoded.duration_s, 3),
                              "decode_errors": decoded.counters.decode_errors}
    if decoded.error is not None:
        report["error"] = decoded.error
    if decoded.status in ("no_audio", "undecodable", "unreadable") or not len(decoded.samples):
        report["skipped"] = True
        report["utterances"] = []
        return report
    transcriber = _timed(timings, "speech_load", analyzers.transcriber)
    if transcriber is None:  # not enabled: the caller does not ask
        return report
    utterances = _timed(timings, "speech",
                        lambda: transcribe_chunks(transcriber, decoded.chunks()))
    report["utterances"] = [_utterance(analyzers.judge, u) for u in utterances]
    return report


def _all_findings(frames: list[dict[str, Any]], speech: dict[str, Any] | None
                  ) -> list[dict[str, Any]]:
    """Every finding of the input in one list, with where it was seen."""
    flat: list[dict[str, Any]] = []
    for frame in frames:
        for kind in ("codes", "ocr"):
            for item in frame.get(kind, []):
                flat += [{**f, "time_s": frame["time_s"], "box": item["box"]}
                         for f in item["findings"]]
    for utterance in (speech or {}).get("utterances", []):
        flat += [{**f, "time_s": utterance["start_s"], "end_s": utterance["end_s"]}
                 for f in utterance["findings"]]
    return flat


def probe_kind(path: Path) -> str | None:
    """``audio`` for an input with audio and no video track; ``None`` (the video path,
    which reports what is wrong) for anything else or anything that does not open."""
    try:
        with av.open(str(path), timeout=10.0) as container:
            if not container.streams.video and container.streams.audio:
                return "audio"
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


async def _classify_one(classifier: Classifier, analyzers: Analyzers, path: Path,
                        args: argparse.Namespace, config: PolicyConfig
                        ) -> tuple[dict[str, Any], bool]:
    """One input's JSON line, and whether it counts as bad input (exit status 1)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    is_image = await asyncio.to_thread(is_still, path)
    probed = None if is_image else await asyncio.to_thread(probe_kind, path)
    kind = "image" if is_image else probed or "video"
    if kind == "audio":
        return await _classify_audio(analyzers, path, timings, started)
    frames: list[tuple[float | None, Image]]
    if is_image:
        scored = [await _classify_still(classifier, path)]
        frames = [(None, await asyncio.to_thread(read_still, path))] \
            if analyzers.frame_analyzers else []
    else:
        samples = await asyncio.to_thread(_video_frames, path, args.interval)
        scored = await classifier.classify_now([sample.image for sample in samples])
        frames = [(s.time_s, s.image) for s in samples] if analyzers.frame_analyzers else []
    found = [await asyncio.to_thread(analyze_frame, analyzers, image, at, timings)
             for at, image in frames]
    speech = (await asyncio.to_thread(analyze_audio, analyzers, path, timings)
              if analyzers.speech_manifest is not None and not is_image else None)
    fused = {k: max(s.fused[k] for s in scored) for k in scored[0].fused}
    result = {
        "input": str(path), "kind": kind, "samples": len(scored),
        "scores": fused, "model_scores": scored[0].per_model if is_image else None,
        "decision": _judge(scored, config).name.lower(),
        "informational": scored[0].informational if is_image else None,
        "models": [f"{m.name}@{m.version}" for m in classifier.models],
        "providers": classifier.providers,
        "analyzers": list(analyzers.names),
        "frames": found, "speech": speech, "findings": _all_findings(found, speech),
        "timing_ms": {"total": round((time.perf_counter() - started) * 1000, 1),
                      "inference_per_sample": round(
                          sum(s.inference_s for s in scored) / len(scored) * 1000, 1),
                      **{k: round(v, 1) for k, v in timings.items()}},
    }
    return result, False


async def _classify_audio(analyzers: Analyzers, path: Path, timings: dict[str, float],
                          started: float) -> tuple[dict[str, Any], bool]:
    """An audio file: transcribed when speech is enabled; an audio file whose track does
    not decode is bad input, like a picture that does not."""
    result: dict[str, Any] = {"input": str(path), "kind": "audio", "samples": 0,
                              "analyzers": list(analyzers.names), "frames": []}
    if analyzers.speech_manifest is None:
        speech: dict[str, Any] = {
            "skipped": True, "reason": "no speech analyzer enabled (--analyzers "
                                       "speech_whisper_base, with the speech extra)"}
        bad = False
    else:
        speech = await asyncio.to_thread(analyze_audio, analyzers, path, timings)
        bad = speech["status"] in ("undecodable", "unreadable")
    result.update(speech=speech, findings=_all_findings([], speech), timing_ms={
        "total": round((time.perf_counter() - started) * 1000, 1),
        **{k: round(v, 1) for k, v in timings.items()}})
    if bad:
        result["error"] = f"{path}: audio {speech['status']}" + (
            f": {speech['error']}" if speech.get("error") else "")
    return result, bad


def json_line(result: dict[str, Any]) -> str:
    """One input's JSON, text shown as is (Chinese stays readable) unless something in it
    is not encodable (a lone surrogate from undecodable bytes): then all of it escaped."""
    line = json.dumps(result, sort_keys=True, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result, sort_keys=True)
    return line


async def classify_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    names = analyzer_names(getattr(args, "analyzers", None), settings.analyzers.enabled)
    analyzers = await asyncio.to_thread(Analyzers.load, names, settings)
    classifier = Classifier(settings.model)
    await classifier.start()
    config = classifier.policy_defaults()
    if args.threshold is not None:
        config = config.with_review_threshold(args.threshold)
    failures = 0
    try:
        for name in args.inputs:
            path = Path(name)
            try:
                result, bad = await _classify_one(classifier, analyzers, path, args, config)
            except (UnsupportedMedia, SourceError) as error:
                result, bad = {"input": str(path), "error": str(error)}, True
            failures += bad
            print(json_line(result), flush=True)
    finally:
        await classifier.stop()
    return 1 if failures else 0


def models_list_command(args: argparse.Namespace) -> int:
    active = load_settings().model
    installed = ort.get_available_providers()
    for manifest in manifests().values():
        try:
            available, reason = manifest.model_path().is_file(), None
        except ModelError as error:
            available, reason = False, str(error)
        print(json.dumps({
            "name": manifest.name, "version": manifest.version, "kind": manifest.kind,
            "source_package": manifest.source_package, "sha256": manifest.sha256,
            "input": manifest.input.model_dump(), "categories": manifest.categories,
            "thresholds": {k: v.model_dump() for k, v in manifest.thresholds.items()},
            "license": manifest.license, "installed": available, "problem": reason,
            "active": manifest.name in active.names,
        }, sort_keys=True))
    enabled = enabled_analyzers(load_settings().analyzers.enabled)
    for analyzer in analyzer_manifests().values():
        print(json.dumps({
            "name": analyzer.name, "version": analyzer.version, "kind": analyzer.kind,
            "analyzer": True, "cost": analyzer.cost, "source_package": analyzer.source_package,
            "optional_extra": analyzer.optional_extra, "license": analyzer.license,
            "installed": analyzer.installed(), "enabled": analyzer.name in enabled,
            "experimental": analyzer.experimental, "description": analyzer.description,
            "files": {f.path: f.sha256 for f in analyzer.files},
        }, sort_keys=True, ensure_ascii=False))
    print(json.dumps({"providers_installed": installed,
                      "providers_chosen": choose_providers(active.provider)}))
    return 0
