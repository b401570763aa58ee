"""Streaming voice-activity segmentation with Silero VAD (the ONNX model inside faster-whisper).

Feed it audio as it arrives; it hands back each utterance once its speech has ended (after
``min_silence_s`` of silence) or has run ``max_utterance_s``, with ``pre_roll_s`` of audio kept
from before the speech started so that first phonemes are not cut.

Early segments: ``speculate_after_s`` into a silence, ``on_early`` gets the segment that the VAD
will hand back if the silence lasts (bit for bit: the same audio, the same stream positions), so a
caller can start transcribing while the VAD still waits out ``min_silence_s``. If speech resumes,
the early segment is simply never confirmed.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..settings import setting
from .audio import SAMPLE_RATE

WINDOW = 512   # samples per Silero decision at 16 kHz (32 ms)
CONTEXT = 64   # samples of the previous window that Silero v6 sees with each window
KEEP_TRAILING = 3   # windows of trailing silence kept on an utterance


@dataclass
class Segment:
    audio: np.ndarray     # mono float32, 16 kHz, pre-roll included
    start_sample: int     # position in the stream (pre-roll included)
    end_sample: int
    forced_end: bool      # cut at max_utterance_s, not at silence
    speech_end_sample: int = 0  # stream position where the last voiced window ended

    @property
    def key(self) -> tuple:
        """Equal for an early segment and the utterance that confirms it."""
        return (self.start_sample, self.end_sample)

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


@dataclass
class VadConfig:
    # 0.35, not Silero's usual 0.5: at 0.5 the VAD dropped 3 of 25 slow-telephone and 18 of 25
    # whispered test sentences of the bench; 0.35 dropped 0 and 14, with no segment from 60 s
    # each of white, pink, brown noise, a motor hum or knocks (0.3 let the hum through;
    # scripts/experiments/vad_recall.py, docs/BENCHMARKS.md "The VAD's threshold")
    threshold: float = setting(0.35, "Silero speech probability that starts an utterance")
    min_silence_s: float = setting(0.5, "silence that ends an utterance")
    pre_roll_s: float = setting(0.3, "audio kept from before the speech started")
    max_utterance_s: float = setting(20.0, "longer speech is cut into utterances of this length")
    min_speech_s: float = setting(0.25, "shorter bursts are dropped as noise")
    # 0.1: short commands get their transcript soonest (simulated median 0.60-0.62 s after the
    # end of speech on the bench's speakers, 0.66-0.69 s at 0.15); long sentences pay for pauses
    # near their end, and more head starts are wasted (scripts/experiments/speculation_sim.py)
    speculate_after_s: float = setting(
        0.1, "silence after which the utterance is handed out early, so ASR overlaps the rest of "
        "the min_silence_s wait (0 = off; at least 0.1, below min_silence_s)")


class StreamingVad:
    def __init__(self, config: VadConfig | None = None, model=None, on_early=None, **overrides):
        """``overrides``: VadConfig fields to change, e.g. ``StreamingVad(min_silence_s=0.3)``.
        ``on_early(segment)``: called with each early segment (none without it)."""
        config = dataclasses.replace(config or VadConfig(), **overrides)
        self.config = config
        threshold, min_silence_s, pre_roll_s, max_utterance_s, min_speech_s = (
            config.threshold, config.min_silence_s, config.pre_roll_s, config.max_utterance_s,
            config.min_speech_s)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1), got {threshold}")
        if max_utterance_s <= 0 or min_silence_s < 0 or pre_roll_s < 0 or \
                config.speculate_after_s < 0:
            raise ValueError("VAD durations must be positive")
        if model is None:
            from faster_whisper.vad import get_vad_model
            model = get_vad_model()
        self._session = model.session
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)  # hysteresis, as in faster-whisper
        self.min_silence_windows = max(1, int(round(min_silence_s * SAMPLE_RATE / WINDOW)))
        self.pre_roll_windows = int(round(pre_roll_s * SAMPLE_RATE / WINDOW))
        self.max_windows = max(1, int(max_utterance_s * SAMPLE_RATE / WINDOW))
        self.min_speech_windows = max(1, int(round(min_speech_s * SAMPLE_RATE / WINDOW)))
        # an early segment needs the trailing silence the final one keeps, so that they match
        early = max(KEEP_TRAILING, int(round(config.speculate_after_s * SAMPLE_RATE / WINDOW)))
        self.early_windows = early if (on_early is not None and config.speculate_after_s > 0
                                       and early < self.min_silence_windows) else 0
        self.on_early = on_early
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._pre_roll: deque = deque(maxlen=max(self.pre_roll_windows, 1))
        self._speech: list[np.ndarray] = []
        self._speech_windows = 0
        self._silence_run = 0
        self._window_index = 0  # windows consumed so far
        self._start_window = 0

    @property
    def samples_seen(self) -> int:
        """Stream position of the newest sample accepted (Segment positions count from 0)."""
        return self._window_index * WINDOW + self._pending.size

    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        contexts = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32)
        out, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(out).reshape(-1)

    def accept(self, samples: np.ndarray) -> list[Segment]:
        """Consume 16 kHz mono audio; return the utterances that ended inside it."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, x])
        n = self._pending.size // WINDOW
        if n == 0:
            return []
        windows = self._pending[: n * WINDOW].reshape(n, WINDOW)
        self._pending = self._pending[n * WINDOW:]
        done = []
        for window, prob in zip(windows, self._probabilities(windows)):
            segment = self._step(window, float(prob))
            if segment is not None:
                done.append(segment)
            self._window_index += 1
        return done

    def _step(self, window: np.ndarray, prob: float) -> Segment | None:
        if not self._speech:
            if prob >= self.threshold:
                self._start_window = self._window_index - len(self._pre_roll)
                self._speech = list(self._pre_roll) + [window]
                self._speech_windows, self._silence_run = 1, 0
            elif self.pre_roll_windows:
                self._pre_roll.append(window)
            return None
        self._speech.append(window)
        if prob < self.neg_threshold:
            self._silence_run += 1
            if self._silence_run == self.early_windows and \
                    self._speech_windows >= self.min_speech_windows:
                self.on_early(self._segment(forced=False))
        else:
            self._silence_run = 0
            self._speech_windows += 1
        if self._silence_run >= self.min_silence_windows:
            return self._close(forced=False)
        if len(self._speech) >= self.max_windows:
            return self._close(forced=True)
        return None

    def _segment(self, forced: bool) -> Segment:
        """The utterance in progress, as it would be handed back now."""
        windows = self._speech
        voiced = len(windows) - self._silence_run
        if not forced:  # keep a little of the trailing silence, drop the rest
            windows = windows[:voiced + min(self._silence_run, KEEP_TRAILING)]
        audio = np.concatenate(windows)
        start = self._start_window * WINDOW
        return Segment(audio, start, start + audio.size, forced, start + voiced * WINDOW)

    def _close(self, forced: bool) -> Segment | None:
        segment = self._segment(forced)
        speech_windows = self._speech_windows
        self._speech, self._speech_windows, self._silence_run = [], 0, 0
        self._pre_roll.clear()
        if speech_windows < self.min_speech_windows:
            return None  # a click or a cough, not an utterance
        return segment

    def flush(self) -> Segment | None:
        """End of stream: return the utterance in progress, if any."""
        if not self._speech:
            return None
        self._silence_run = 0
        return self._close(forced=True)
