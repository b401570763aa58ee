"""The ASR node's per-user recognisers: faster-whisper serves everyone, except users with an
adapted recogniser (a RecognizerAdapter from the adaptation node, learning/recognizer_adapt.py),
whose transcript comes from Whisper's decoder in torch with that user's adapter.

Memory: one shared torch decoder (loaded when the first adapter arrives, freed when the last
goes; the encoder is the ASR front end's own torch encoder when it has one), plus per user the
adapter's fp16 tensors (~0.5 MB for a rank-8 LoRA on tiny.en). The fp32 copy the decoder reads
(~1 MB) is made per utterance and dropped with it. One adapter per user: a new one replaces
(and frees) the old.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .asr import WINDOW_S, Transcript
from .audio import SAMPLE_RATE


class RecognizerTable:
    def __init__(self):
        self._lock = threading.RLock()
        self.adapters: dict = {}          # user -> (version, RecognizerAdapter)
        self.recognizer = None            # WhisperRecognizer, while an adapter is held
        self._model_dir: Path | None = None
        self._encoder = None
        self.beam_size = 1

    # -- models
    def attach(self, model_dir, encoder=None, beam_size: int = 1) -> list[str]:
        """The Whisper model the ASR node serves (configure). Adapters kept from before are
        checked against it; returns the errors of those dropped."""
        with self._lock:
            self._model_dir, self._encoder, self.beam_size = Path(model_dir), encoder, beam_size
            errors = []
            for user, (version, adapter) in list(self.adapters.items()):
                try:
                    self._check(adapter)
                except ValueError as exc:
                    del self.adapters[user]
                    errors.append(f"{user!r} ({version}): {exc}")
            if not self.adapters:
                self.recognizer = None
            return errors

    def detach(self) -> None:
        """Cleanup: the torch model goes; the adapters (small) stay for the next configure."""
        with self._lock:
            self._model_dir = self._encoder = self.recognizer = None

    def _load(self):
        if self.recognizer is None:
            from .whisper_decoder import shared_recognizer

            # the process's copy: in the single-process graph, the adaptation node's too
            self.recognizer = shared_recognizer(self._model_dir, encoder=self._encoder)
        return self.recognizer

    def _check(self, adapter) -> None:
        """ValueError unless ``adapter`` fits this model (base id and tensor shapes)."""
        rec = self._load()
        adapter.check_base(rec)
        params = dict(rec.decoder.named_parameters())
        linears = {m.key: m for m in rec.decoder.modules() if hasattr(m, "key")}
        linears.update(rec.encoder.adaptable())
        for name, t in adapter.tensors.items():
            if name.endswith((".lora_a", ".lora_b")):
                key = name.rsplit(".", 1)[0]
                lin = linears.get(key)
                if lin is None or not hasattr(lin, "in_features"):
                    raise ValueError(f"adapter tensor {name} names no decoder linear")
                other = adapter.tensors.get(key + (".lora_b" if name.endswith("_a")
                                                   else ".lora_a"))
                if other is None:
                    raise ValueError(f"adapter tensor {name} has no pair")
                a, b = (t, other) if name.endswith("_a") else (other, t)
                if a.dim() != 2 or b.dim() != 2 or a.shape[1] != lin.in_features or \
                        b.shape[0] != lin.out_features or a.shape[0] != b.shape[1]:
                    raise ValueError(f"adapter tensor {name} has the wrong shape")
            elif name not in params or params[name].shape != t.shape:
                raise ValueError(f"adapter tensor {name} does not fit the decoder")
            if not bool(t.float().isfinite().all()):
                raise ValueError(f"adapter tensor {name} holds NaN/inf")

    # -- per-user adapters
    def put(self, user_id: str, data: bytes, version: str) -> None:
        """The user's adapter from its bytes; ValueError (the user keeps what they had) when
        it is not one or does not fit the model."""
        from ..learning.recognizer_adapt import RecognizerAdapter

        try:
            adapter = RecognizerAdapter.from_bytes(bytes(data))
        except ValueError:
            raise
        except Exception as exc:     # safetensors' own errors for garbage
            raise ValueError(f"not a recogniser adapter: {exc}") from exc
        with self._lock:
            had = self.recognizer is not None
            if self._model_dir is not None:
                try:
                    self._check(adapter)
                except ValueError:
                    if not had and not self.adapters:
                        self.recognizer = None
                    raise
            self.adapters[user_id] = (version, adapter)   # the old one is freed

    def remove(self, user_id: str) -> bool:
        with self._lock:
            gone = self.adapters.pop(user_id, None) is not None
            if not self.adapters:
                self.recognizer = None    # the shared decoder goes with the last adapter
            return gone

    def clear(self) -> None:
        with self._lock:
            self.adapters.clear()
            self.recognizer = None

    def version(self, user_id: str) -> str:
        """The user's adapter version ('' = none: faster-whisper serves them)."""
        entry = self.adapters.get(user_id)
        return entry[0] if entry else ""

    def nbytes(self, user_id: str | None = None) -> int:
        """Bytes of adapter tensors held (one user's, or every user's)."""
        entries = [self.adapters[user_id]] if user_id else list(self.adapters.values())
        return sum(a.nbytes for _, a in entries)

    def transcriber(self, user_id: str):
        """audio -> Transcript with the user's adapter, or None when they have none."""
        entry = self.adapters.get(user_id)
        if entry is None or self._model_dir is None:
            return None
        return lambda audio: self.transcribe(entry[1], audio)

    def transcribe(self, adapter, audio: np.ndarray) -> Transcript:
        """As the ASR front end's faster-whisper transcript: 30 s windows, the same token cap,
        confidence = duration-weighted exp(average token log-prob)."""
        from .whisper_decoder import DecodeOptions

        with self._lock:
            rec = self._load()
            ad = adapter.decoder_adapter()        # fp32 copy, for this utterance only
            texts, weights, logprobs = [], [], []
            window = WINDOW_S * SAMPLE_RATE
            for i, memory in enumerate(rec.encode(audio, ad)):
                seconds = min(audio.size - i * window, window) / SAMPLE_RATE
                opts = DecodeOptions(beam_size=self.beam_size,
                                     max_new_tokens=int(min(seconds, WINDOW_S) * 8) + 16)
                d = rec.decode(memory, opts, ad)
                if d.text.strip():
                    texts.append(d.text.strip())
                    weights.append(max(seconds, 1e-3))
                    logprobs.append(d.avg_logprob)
        conf = float(np.exp(np.average(logprobs, weights=weights))) if logprobs else 0.0
        return Transcript(" ".join(texts), min(max(conf, 0.0), 1.0))
