"""Cheap speaker/channel multipliers for synthetic speech (16 kHz float32): sox through pipes
for tempo, pitch, the telephone band and reverb; numpy for noise. Deterministic for a given rng.

    audio, what = augment(audio, rng)              # one kind drawn from KINDS
    audio, what = augment(audio, rng, "telephone") # that kind
"""
from __future__ import annotations

import random
import subprocess

import numpy as np

SAMPLE_RATE = 16000
KINDS = ("clean", "tempo", "pitch", "telephone", "reverb", "noise")
TIMEOUT_S = 60.0
PEAK = 0.9
_F32 = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]


def _sox(audio: np.ndarray, effects: list[str], rate_in: int = SAMPLE_RATE,
         rate_out: int = SAMPLE_RATE) -> np.ndarray:
    cmd = ["sox", "-R", "-V1", *_F32, "-r", str(rate_in), "-", *_F32, "-r", str(rate_out), "-",
           *effects]
    try:
        out = subprocess.run(cmd, input=np.ascontiguousarray(audio, np.float32).tobytes(),
                             capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"augment: sox timed out after {TIMEOUT_S:.0f} s") from None
    except FileNotFoundError:
        raise RuntimeError("augment: sox not found (apt-get install sox)") from None
    if out.returncode != 0:
        raise RuntimeError(f"augment: sox {' '.join(effects)} failed: "
                           f"{out.stderr.decode(errors='replace').strip()[-300:]}")
    return np.frombuffer(out.stdout, dtype=np.float32).copy()


def _mu_law(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit mu-law round trip, as a G.711 telephone line quantises."""
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def _babble(audio: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Speech-shaped, unintelligible noise: several reversed, shifted, rescaled copies of the
    utterance itself, summed (a babble-ish crowd of the same voice)."""
    rev = audio[::-1]
    out = np.zeros_like(audio)
    for _ in range(int(gen.integers(4, 8))):
        out += np.roll(rev, int(gen.integers(0, max(audio.size, 1)))) * gen.uniform(0.5, 1.0)
    return out


def _normalise(audio: np.ndarray) -> np.ndarray:
    audio = np.nan_to_num(np.asarray(audio, np.float32).ravel())
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (PEAK / peak)).astype(np.float32) if peak > 1e-6 else audio


def augment(audio: np.ndarray, rng: random.Random, kind: str | None = None
            ) -> tuple[np.ndarray, str]:
    """One cheap speaker/channel multiplier drawn from rng (or the named kind): 'clean',
    'tempo' (0.9-1.1), 'pitch' (+-150 cents), 'telephone' (300-3400 Hz band, 8 kHz round trip,
    mu-law), 'reverb', 'noise' (white or babble-ish noise at 10-30 dB SNR).
    Returns (audio float32 16 kHz peak-normalised to 0.9, description e.g. 'noise snr=17dB')."""
    audio = np.ascontiguousarray(audio, dtype=np.float32).ravel()
    kind = kind or rng.choice(KINDS)
    if kind not in KINDS:
        raise ValueError(f"augment: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if audio.size == 0 or kind == "clean":
        return audio.copy(), "clean"
    if kind == "tempo":
        f = rng.uniform(0.9, 1.1)
        out, what = _sox(audio, ["tempo", "-s", f"{f:.3f}"]), f"tempo x{f:.2f}"
    elif kind == "pitch":
        cents = rng.uniform(-150, 150)
        out, what = _sox(audio, ["pitch", f"{cents:.0f}"]), f"pitch {cents:+.0f} cents"
    elif kind == "telephone":
        low, high = rng.randint(250, 350), rng.randint(3200, 3500)
        narrow = _sox(audio, ["sinc", f"{low}-{high}", "rate", "-v", "8000"], rate_out=8000)
        out = _sox(_mu_law(narrow), ["rate", "-v", str(SAMPLE_RATE)], rate_in=8000)
        out, what = out[:audio.size], f"telephone {low}-{high}Hz 8kHz mu-law"
    elif kind == "reverb":
        rev, room = rng.randint(20, 80), rng.randint(30, 100)
        out = _sox(audio, ["reverb", str(rev), "50", str(room), "pad", "0", "0.2"])
        what = f"reverb reverberance={rev} room={room}"
    else:  # noise
        gen = np.random.default_rng(rng.getrandbits(63))
        snr = rng.uniform(10, 30)
        babble = rng.random() < 0.5
        noise = (_babble(audio, gen) if babble
                 else gen.standard_normal(audio.size).astype(np.float32))
        p_sig = float(np.mean(audio ** 2)) or 1e-12
        p_noise = float(np.mean(noise ** 2)) or 1e-12
        out = audio + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
        what = f"noise {'babble' if babble else 'white'} snr={snr:.0f}dB"
    return _normalise(out), what
