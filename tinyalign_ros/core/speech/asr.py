"""ASR front end on faster-whisper: a transcript with its confidence, and the encoder states.

The encoder states are what the projector reads. Audio is cut into 30 s windows (so recordings
of any length work) and only the frames that hold audio are kept (one per 20 ms). Two encoders:
  var   (default) Whisper's encoder rebuilt in torch from the same weights, run on the
        unpadded audio only: ~15x faster for a 2-3 s command (whisper_encoder.py);
  ct2   CTranslate2's encoder on the padded 30 s window, as Whisper was trained.
Their states differ, so the encoder is part of the model id a projector is checked against.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models import resolve_whisper
from ..settings import check_choices, setting
from .audio import SAMPLE_RATE, check_audio

WINDOW_S = 30
# Beam 5 instead of greedy: 14-31 % fewer word errors on every bench speaker (real one included)
# at the same time per utterance on 2 cores, where the padded encoder dominates (docs/RECOGNIZER.md,
# "Beam search"). Also the beam the recogniser gate decodes with (AdaptConfig).
SERVED_BEAM_SIZE = 5


@dataclass
class AsrConfig:
    whisper_model: str = setting("", "CTranslate2 Whisper folder; '' = the bundled tiny.en")
    device: str = setting("auto", "auto, cpu or cuda", choices=("auto", "cpu", "cuda"))
    compute_type: str = setting("default", "CTranslate2 compute type; default = int8 on CPU, "
                                           "float16 on CUDA")
    cpu_threads: int = setting(0, "threads for Whisper on CPU; 0 = CTranslate2's default")
    transcriber_threads: int = setting(
        0, "CTranslate2 threads of faster-whisper (the transcript; the ct2 encoder) on CPU; "
           "0 = cpu_threads. 1 made torch training beside a used faster-whisper faster in a "
           "one-process test, but the single-process demo's job slower in one run each, so it "
           "is not the default (docs/RECOGNIZER.md)")
    beam_size: int = setting(SERVED_BEAM_SIZE, "Whisper beam size for the transcript (1 = "
                                               "greedy); adapted users are decoded with it too")
    encoder: str = setting("var", "features from 'var' (torch, speech frames only, ~15x "
                                  "faster) or 'ct2' (padded 30 s window); must match the "
                                  "projector's", choices=("var", "ct2"))
    max_clipped_fraction: float = setting(0.05, "utterances with a larger share of full-scale "
                                                "samples are refused")

    def __post_init__(self):
        check_choices(self)


@dataclass
class Transcript:
    text: str
    confidence: float   # 0..1, duration-weighted exp(avg token log-prob)
    language: str = "en"


@dataclass
class AsrResult:
    transcript: Transcript
    features: np.ndarray          # (frames, dim) float32, valid frames only
    duration_s: float
    timings: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device != "auto":
        return device
    try:
        import ctranslate2
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:
        return "cpu"


class AsrFrontEnd:
    """A loaded Whisper model: ``transcribe``, ``encode`` or both at once with ``process``."""

    def __init__(self, config: AsrConfig | None = None, **overrides):
        """``overrides``: AsrConfig fields to change, e.g. ``AsrFrontEnd(cpu_threads=2)``."""
        self.config = config = dataclasses.replace(config or AsrConfig(), **overrides)
        compute_type, cpu_threads, encoder = (config.compute_type, config.cpu_threads,
                                              config.encoder)
        self.model_path = resolve_whisper(config.whisper_model or None)
        self.device = resolve_device(config.device)
        if compute_type == "default":  # int8 on CPU is 2-3x faster at equal WER for tiny/base
            compute_type = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute_type
        self.beam_size = config.beam_size
        self._ct2_threads = config.transcriber_threads or cpu_threads
        self._model = None       # loaded by the model property, here and after a release
        self.model   # noqa: B018 (loads it)
        self.encoder = encoder
        self.torch_encoder = None
        if encoder == "var":
            import torch

            from .whisper_encoder import TorchWhisperEncoder, shared_encoder

            if cpu_threads > 0:
                torch.set_num_threads(cpu_threads)
            if self.device == "cuda":      # a copy of its own: it is moved and cast
                self.torch_encoder = TorchWhisperEncoder.from_ct2(self.model_path).half().cuda()
            else:   # the process's copy (the adaptation node's jobs read the same one)
                self.torch_encoder = shared_encoder(self.model_path)
            self.dim = self.torch_encoder.dim
        else:
            self.dim = self._probe_dim()
        self.english_only = not self.model.model.is_multilingual

    @property
    def model(self):
        """faster-whisper's model (loaded again on first use after ``release_transcriber``)."""
        if self._model is None:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(str(self.model_path), device=self.device,
                                       compute_type=self.compute_type,
                                       cpu_threads=self._ct2_threads)
        return self._model

    def release_transcriber(self) -> None:
        """Frees faster-whisper's CTranslate2 model until something needs it again. Why: while
        one that ran with more than one thread (``transcriber_threads``) is alive in a process,
        torch training in that process ran 1.2-2.5x slower on 2 cores (docs/RECOGNIZER.md,
        "faster-whisper in the training process"). `tinyalign adapt` and the bench call this
        before they train; the adaptation node's process never loads it."""
        self._model = None

    def _probe_dim(self) -> int:
        mel = np.zeros((1, self.model.feature_extractor.mel_filters.shape[0], 3000), np.float32)
        return int(np.asarray(self.model.encode(mel)).shape[-1])

    @property
    def model_id(self) -> str:
        """Identifies the encoder for checkpoint checks: folder name and width."""
        name = Path(self.model_path).resolve().name
        if name == "model":  # the registry package's folder name says nothing
            name = "whisper-tiny.en" if self.english_only else "whisper"
        suffix = "+var" if self.encoder == "var" else ""
        return f"{name}{suffix}:{self.dim}"

    def check(self, audio: np.ndarray) -> None:
        """AudioError for audio no model should see, by this front end's limits."""
        check_audio(audio, max_clipped_fraction=self.config.max_clipped_fraction)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        self.check(audio)
        return self._transcribe(audio)

    def _transcribe(self, audio: np.ndarray) -> Transcript:
        # a token cap per 30 s window stops tiny models' rare repetition loops early
        max_tokens = int(min(audio.size / SAMPLE_RATE, WINDOW_S) * 8) + 16
        segments, info = self.model.transcribe(
            audio, beam_size=self.beam_size, language="en" if self.english_only else None,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            max_new_tokens=max_tokens)
        texts, weights, logprobs = [], [], []
        for seg in segments:
            texts.append(seg.text.strip())
            weights.append(max(seg.end - seg.start, 1e-3))
            logprobs.append(seg.avg_logprob)
        text = " ".join(t for t in texts if t)
        conf = float(np.exp(np.average(logprobs, weights=weights))) if logprobs else 0.0
        return Transcript(text=text, confidence=min(max(conf, 0.0), 1.0),
                          language=info.language or "en")

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(frames, dim) encoder states of the audio, 30 s window by window, padding dropped."""
        self.check(audio)
        return self._encode(audio)

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        fe = self.model.feature_extractor
        window = WINDOW_S * SAMPLE_RATE
        parts = []
        for start in range(0, audio.size, window):
            chunk = audio[start:start + window]
            mel = fe(chunk)  # (80, n) log-mel, unpadded
            valid = min(1500, math.ceil(mel.shape[-1] / 2))
            if self.torch_encoder is not None:
                out = self._encode_var(mel)
            else:
                out = np.asarray(self.model.encode(pad_or_trim(mel)))[0]
            parts.append(out[:valid])
        return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)

    def _encode_var(self, mel: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(mel[:, :3000], dtype=np.float32)).unsqueeze(0)
        p = next(self.torch_encoder.parameters())
        return self.torch_encoder(x.to(p.device, p.dtype))[0].float().cpu().numpy()

    def process(self, audio: np.ndarray, transcribe=None) -> AsrResult:
        """Features and transcript of one utterance; the audio is checked once, here.
        ``transcribe``: audio -> Transcript instead of faster-whisper (a user's adapted
        recogniser, core/speech/recognizers.py)."""
        self.check(audio)
        t0 = time.perf_counter()
        features = self._encode(audio)
        t1 = time.perf_counter()
        transcript = (transcribe or self._transcribe)(audio)
        t2 = time.perf_counter()
        return AsrResult(transcript, features, audio.size / SAMPLE_RATE,
                         {"encode_s": t1 - t0, "transcribe_s": t2 - t1})
