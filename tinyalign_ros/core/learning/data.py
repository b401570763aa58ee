"""Training data: pairs of audio and its text, and their encoder features, computed once.

Formats accepted by ``load_examples``:
  * a JSONL file, one object per line: {"audio": "clips/0001.wav", "text": "go forward"}
    (relative audio paths are relative to the JSONL file's folder);
  * a folder of audio files, each with a same-named .txt holding its text.
Encoder features are cached per (file, size, mtime, ASR model) under ``cache_dir`` as float16
.npy, so a corpus is encoded once, never per epoch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..speech.sources import AUDIO_EXTENSIONS


@dataclass
class Example:
    audio: Path
    text: str
    id: str = ""


@dataclass
class FeatureItem:
    features: np.ndarray     # (frames, asr_dim) float32
    text: str
    id: str = ""
    transcript: str = ""     # ASR transcript, for the hint variant and the cascade
    confidence: float | None = None   # the recogniser's in that transcript (None: unknown)


def load_examples(spec: str | os.PathLike) -> list[Example]:
    p = Path(spec)
    if p.is_dir():
        out = []
        for audio in sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS):
            txt = audio.with_suffix(".txt")
            if txt.is_file():
                out.append(Example(audio, txt.read_text().strip(), audio.stem))
        if not out:
            raise ValueError(f"{p}: no audio file with a same-named .txt beside it")
        return out
    if not p.is_file():
        raise FileNotFoundError(f"training data not found: {p}")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio, text = Path(row["audio"]), str(row["text"]).strip()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}:{n}: expected {{\"audio\": ..., \"text\": ...}}: {exc}") from exc
        if not audio.is_absolute():
            audio = p.parent / audio
        out.append(Example(audio, text, str(row.get("id", audio.stem))))
    if not out:
        raise ValueError(f"{p}: no examples")
    return out


def cache_key(path: Path, asr_model_id: str) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{asr_model_id}"
    return hashlib.sha1(raw.encode()).hexdigest()


def encode_examples(examples: list[Example], asr, cache_dir: str | os.PathLike | None = None,
                    with_transcripts: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> list[FeatureItem]:
    """Features (and optionally ASR transcripts) of every example, from the cache when there."""
    from ..speech.audio import load_audio

    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    items = []
    for i, ex in enumerate(examples):
        key = cache_key(ex.audio, asr.model_id) if cache else None
        feats = transcript = confidence = None
        if cache and (cache / f"{key}.npy").is_file():
            try:
                feats = np.load(cache / f"{key}.npy").astype(np.float32)
                meta_path = cache / f"{key}.json"
                if meta_path.is_file():
                    meta = json.loads(meta_path.read_text())
                    transcript, confidence = meta.get("transcript"), meta.get("confidence")
            except (ValueError, OSError):
                feats = None  # a damaged cache entry is recomputed
        # entries cached before confidences were kept are transcribed again
        if feats is None or (with_transcripts and (transcript is None or confidence is None)):
            audio = load_audio(ex.audio)
            if feats is None:
                feats = asr.encode(audio)
            if with_transcripts:
                t = asr.transcribe(audio)
                transcript, confidence = t.text, t.confidence
            if cache:
                tmp = cache / f".{key}.tmp.npy"
                np.save(tmp, feats.astype(np.float16))
                os.replace(tmp, cache / f"{key}.npy")
                if transcript is not None:
                    (cache / f"{key}.json").write_text(json.dumps(
                        {"transcript": transcript, "confidence": confidence}))
        items.append(FeatureItem(feats, ex.text, ex.id, transcript or "", confidence))
        if progress:
            progress(i + 1, len(examples))
    return items


def split(items: list, val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Held-out validation split, grouped by text so no sentence is in both."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    texts = sorted({it.text for it in items})
    rng = np.random.default_rng(seed)
    rng.shuffle(texts)
    n_val = int(round(len(texts) * val_fraction))
    if val_fraction > 0 and len(texts) > 1:
        n_val = max(1, n_val)
    val_texts = set(texts[:n_val])
    return ([it for it in items if it.text not in val_texts],
            [it for it in items if it.text in val_texts])
