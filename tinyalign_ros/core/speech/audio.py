"""Audio in: loading files, converting rate and channels, and refusing audio that cannot be used.

Everything downstream works on mono float32 at 16 kHz (Whisper's rate); anything else is
converted here, never rejected for its format alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
RAW_EXTENSIONS = (".raw", ".pcm", ".s16")


class AudioError(ValueError):
    """Audio that cannot be used (empty, NaN, clipped, unreadable); the message says why."""


@dataclass
class AudioCheck:
    duration_s: float
    peak: float
    rms: float
    clipped_fraction: float


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved (n*channels,) or (n, channels) samples -> (n,) by averaging channels."""
    x = np.asarray(samples, dtype=np.float32)
    if channels < 1:
        raise AudioError(f"channels must be >= 1, got {channels}")
    if channels == 1:
        return x.reshape(-1)
    if x.ndim == 1:
        if x.size % channels:
            raise AudioError(f"{x.size} samples is not a multiple of {channels} channels")
        x = x.reshape(-1, channels)
    return x.mean(axis=1)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples, dtype=np.float32) / 32768.0


ENCODINGS = ("F32LE", "S16LE")   # an AudioChunk's samples: floats in [-1, 1], or int16 values


def decode_chunk(samples, encoding: str, channels: int, sample_rate: int) -> np.ndarray:
    """A streamed chunk (AudioChunk's fields) -> mono float32 at its own rate; AudioError for
    a chunk that cannot be used, so every consumer refuses bad audio the same way."""
    if sample_rate <= 0 or channels <= 0:
        raise AudioError(f"bad chunk header: {sample_rate} Hz, {channels} channel(s)")
    encoding = (encoding or "F32LE").upper()
    if encoding not in ENCODINGS:
        raise AudioError(f"unknown encoding {encoding!r} (expected one of {ENCODINGS})")
    x = np.asarray(samples, dtype=np.float32)
    if encoding == "S16LE":
        x = x / 32768.0
    mono = to_mono(x, channels)
    if not np.all(np.isfinite(mono)):
        raise AudioError("chunk holds NaN/inf samples")
    return mono


class Resampler:
    """Streaming sample-rate conversion (libswresample through PyAV, shipped with faster-whisper).

    Keeps its filter state between calls, so a stream cut into chunks resamples without clicks.
    """

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE):
        if rate_in <= 0 or rate_out <= 0:
            raise AudioError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._resampler = None
        if self.rate_in != self.rate_out:
            import av

            self._av = av
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate_out)

    def __call__(self, mono: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(mono, dtype=np.float32).reshape(1, -1)
        if self._resampler is None:
            return x[0].copy()
        if x.shape[1] == 0:
            return np.zeros(0, np.float32)
        frame = self._av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        frame.sample_rate = self.rate_in
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def resample(mono: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-signal conversion of mono float audio between rates."""
    r = Resampler(rate_in, rate_out)
    return np.concatenate([r(mono), r.flush()])


def load_audio(path: str | Path, raw_sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio file -> mono float32 at 16 kHz.

    wav/flac/ogg/mp3 are decoded by PyAV; headerless ``.raw``/``.pcm`` files are read as
    signed 16-bit little-endian mono at ``raw_sample_rate`` (e.g. pocketsphinx's goforward.raw).
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio file not found: {p}")
    if p.suffix.lower() in RAW_EXTENSIONS:
        data = np.fromfile(p, dtype="<i2")
        return resample(int16_to_float(data), raw_sample_rate)
    from faster_whisper.audio import decode_audio

    try:
        return decode_audio(str(p), sampling_rate=SAMPLE_RATE).astype(np.float32)
    except Exception as exc:  # PyAV raises many types; one clear message is what callers need
        raise AudioError(f"cannot decode audio file {p}: {exc}") from exc


def check_audio(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                min_duration_s: float = 0.1, max_clipped_fraction: float = 0.05) -> AudioCheck:
    """Raise AudioError for audio no model should see; return its levels otherwise."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"expected mono 1-D audio, got shape {x.shape}")
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"expected {SAMPLE_RATE} Hz audio, got {sample_rate} Hz (resample first)")
    if x.size == 0:
        raise AudioError("empty audio")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"audio holds {int(np.sum(~np.isfinite(x)))} NaN/inf samples")
    duration = x.size / sample_rate
    if duration < min_duration_s:
        raise AudioError(f"audio too short: {duration:.3f} s < {min_duration_s} s")
    peak = float(np.max(np.abs(x)))
    if peak > 1.0 + 1e-3:
        raise AudioError(f"samples exceed [-1, 1] (peak {peak:.1f}): int16 values sent as float?")
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > max_clipped_fraction:
        raise AudioError(f"audio is clipped: {clipped:.1%} of samples at full scale "
                         f"(limit {max_clipped_fraction:.0%}); lower the input gain")
    return AudioCheck(duration, peak, float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), clipped)
