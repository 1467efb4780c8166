"""Audio constants and pure functions: decode, resample to 32 kHz mono, cut into segments.

Everything downstream (front-ends, encoders, the index) assumes the waveform this module returns:
float32, mono, ``SAMPLE_RATE`` Hz, not normalised (values as decoded, nominally in [-1, 1]).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 32000
SEGMENT_SECONDS = 10.0
SEGMENT_SAMPLES = int(SAMPLE_RATE * SEGMENT_SECONDS)  # 320000: one PaSST input (1000 mel frames)
MAX_TRAIN_SECONDS = 30.0  # the recipe crops or pads training audio to 30 s

# Extensions we try to decode (libsndfile 1.1+ reads these, MP3 included).
AUDIO_EXTENSIONS = frozenset(
    [
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".voc",
        ".wv",
    ]
)


class AudioError(Exception):
    """An audio file could not be read. ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _open(path: str | os.PathLike) -> sf.SoundFile:
    p = Path(path)
    if not p.exists():
        raise AudioError(path, "file not found")
    if p.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        return sf.SoundFile(str(p))
    except PermissionError as e:
        raise AudioError(path, f"permission denied ({e.strerror})") from e
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(path, f"unsupported or corrupt audio ({e})") from e


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """(native sample rate, channels, duration in seconds) without decoding the samples."""
    with _open(path) as f:
        dur = f.frames / f.samplerate if f.samplerate else 0.0
        return f.samplerate, f.channels, dur


def to_mono(x: np.ndarray) -> np.ndarray:
    """[N, C] or [N] -> [N] float32, channels averaged."""
    if x.ndim == 2:
        x = x.mean(axis=1)
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); identity when the rates agree."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike,
    sr: int = SAMPLE_RATE,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to float32 mono at ``sr`` Hz. Raises :class:`AudioError` naming the file."""
    with _open(path) as f:
        native = f.samplerate
        try:
            if offset_s > 0:
                f.seek(min(round(offset_s * native), f.frames))
            frames = -1 if duration_s is None else round(duration_s * native)
            x = f.read(frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(path, f"decoding failed ({e})") from e
    if x.shape[0] == 0:
        raise AudioError(path, "no audio samples (truncated or empty stream)")
    y = resample(to_mono(x), native, sr)
    if not np.isfinite(y).all():
        raise AudioError(path, "decoded samples contain NaN or infinity")
    return y


def iter_segments(
    path: str | os.PathLike,
    segment_samples: int = SEGMENT_SAMPLES,
    sr: int = SAMPLE_RATE,
    block_seconds: float = 30.0,
) -> Iterator[np.ndarray]:
    """Stream a file as consecutive ``segment_samples``-long pieces at ``sr`` Hz, mono.

    Memory stays bounded for hour-long files: the file is decoded in blocks and resampled with a
    streaming resampler. The last piece is shorter when the file does not fill it (never empty).
    """
    with _open(path) as f:
        native = f.samplerate
        stream = soxr.ResampleStream(native, sr, 1, dtype="float32") if native != sr else None
        buf = np.zeros(0, dtype=np.float32)
        block = max(1, int(block_seconds * native))
        total = 0
        try:
            while True:
                x = f.read(frames=block, dtype="float32", always_2d=True)
                last = x.shape[0] < block
                y = to_mono(x)
                if stream is not None:
                    y = stream.resample_chunk(y, last=last)
                if y.size and not np.isfinite(y).all():
                    raise AudioError(path, "decoded samples contain NaN or infinity")
                buf = np.concatenate([buf, y]) if buf.size else y
                while buf.size >= segment_samples:
                    total += segment_samples
                    yield buf[:segment_samples].copy()
                    buf = buf[segment_samples:]
                if last:
                    break
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(path, f"decoding failed ({e})") from e
        if buf.size:
            total += buf.size
            yield buf
        if total == 0:
            raise AudioError(path, "no audio samples (truncated or empty stream)")


def crop_or_pad(
    x: np.ndarray, length: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, int]:
    """Fit ``x`` to ``length`` samples: random crop if longer (start 0 without ``rng``), zero-pad
    at the end if shorter. Returns the fitted waveform and the number of real samples in it."""
    n = x.shape[-1]
    if n >= length:
        start = int(rng.integers(0, n - length + 1)) if (rng is not None and n > length) else 0
        return x[..., start : start + length], length
    out = np.zeros(x.shape[:-1] + (length,), dtype=np.float32)
    out[..., :n] = x
    return out, n


def num_segments(n_samples: int, segment_samples: int = SEGMENT_SAMPLES) -> int:
    """Segments that hold real audio: ceil(n / segment), at least 1."""
    return max(1, -(-int(n_samples) // segment_samples))
