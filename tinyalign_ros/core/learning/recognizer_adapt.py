"""Adapting Whisper's decoder to one user from their corrected utterances.

Data: (encoder states of the padded 30 s window, corrected text) pairs, the states from
``WhisperRecognizer.encode`` (the torch encoder stays frozen and shared). Objective: teacher-forced
cross-entropy of ``<|startoftranscript|> <|notimestamps|> text <|endoftext|>`` on the decoder.

Methods (``RecognizerAdaptConfig.method``):
  lora        rank-r LoRA pairs on the decoder linears (self-attention qkv/out, cross-attention
              q/out, both FFN linears; cross-attention k/v optional); the base weights stay
              shared, an adapter is ~0.5 MB (fp16, tiny.en, r = 8), ~1 MB of RAM once loaded.
  last_block  a per-user copy of the last decoder block (its cross-attention key/value projection
              excepted, so the encoder-side keys can be computed once) and the final layer norm;
              the lower blocks run once per utterance before training. ~4 MB fp16 for tiny.en.
Both are carried as a ``RecognizerAdapter`` (safetensors bytes with metadata) and applied with
``adapter.decoder_adapter()`` passed to the decoder; the base decoder is never modified.

Held-out validation (``validation``): "split" holds out ``val_fraction`` of the user's
utterances, keeps the best epoch by held-out loss, and ``metrics["publish"]`` is True only when
the adapted greedy WER on the held-out utterances is below the unadapted one's
(``require_improvement``). "crossfit" (``crossfit_recognizer``) trains on each half and decodes
the other, so every utterance is held out once, then trains the adapter it returns on all of them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..memory import release_memory
from ..metrics import wer
from ..speech.whisper_decoder import DecodeOptions, DecoderAdapter, WhisperRecognizer
from ..speech.whisper_encoder import (BELOW_KEYS, ENCODER_KEYS, TOP_KEYS, encoder_depth,
                                      keys_depth)

METHODS = ("lora", "last_block")
VALIDATIONS = ("crossfit", "split")
REFITS = ("steps", "epochs")
PADDING_DTYPES = ("int8", "float16")
DECODER_TARGETS = ("self_qkv", "self_out", "cross_q", "cross_kv", "cross_out", "ffn1", "ffn2")
# the encoder's last layer (attention output projection and FFN, over the frames that hold
# audio): acoustics the decoder's LoRA cannot reach; its keys and values stay the base's, so the
# layer's inputs are computed once per utterance (RecognizerItem.top). BELOW_KEYS reach the
# layer below too (RecognizerItem.below): the last layer's attention is then recomputed for
# the frames with audio, the padding keeping the base's states
LORA_TARGETS = DECODER_TARGETS + ENCODER_KEYS
# cross_kv is left out by default: LoRA on it means recomputing the 1500 encoder-side keys and
# values of every layer at every step (measured ~3x the training time for no gain needed here)
DEFAULT_TARGETS = tuple(t for t in DECODER_TARGETS if t != "cross_kv")
FORMAT = "tinyalign-recognizer-adapter/1"


def item_depth(targets, *adapters) -> int:
    """The encoder depth RecognizerItem.of_audio must keep for LoRA on ``targets`` and for
    decoding with each of ``adapters`` (DecoderAdapters or None: e.g. the user's current one,
    which the gate decodes with and may reach deeper than the targets now set)."""
    return max([keys_depth(targets)] + [encoder_depth(ad) for ad in adapters])


def lora_targets(lora_on: str) -> tuple:
    """The LoRA targets of AdaptConfig.recognizer_lora_on (decoder, encoder_top, both,
    encoder_top2 or both_top2: "top2" is the encoder's last two layers)."""
    parts = {"decoder": DEFAULT_TARGETS, "encoder_top": TOP_KEYS,
             "both": DEFAULT_TARGETS + TOP_KEYS, "encoder_top2": ENCODER_KEYS,
             "both_top2": DEFAULT_TARGETS + ENCODER_KEYS}
    if lora_on not in parts:
        raise ValueError(f"recognizer LoRA on {lora_on!r}: one of {sorted(parts)}")
    return parts[lora_on]


@dataclass
class RecognizerAdaptConfig:
    method: str = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple = DEFAULT_TARGETS
    learning_rate: float = 0.0          # 0 = the method's default (lora 5e-4, last_block 1e-4)
    encoder_learning_rate: float = 0.0  # for the encoder targets (0 = learning_rate's)
    weight_decay: float = 0.0
    epochs: int = 8
    batch_size: int = 8
    # utterances per forward and backward pass; the gradient is still the whole batch's. Each
    # carries its 1500 frames' keys and values (~18 MB in float32 for tiny.en; only the frames
    # with audio get gradients). 2 would peak ~130 MB lower at K = 50, for ~8 % more time
    micro_batch_size: int = 4
    # held-out windows decoded together by the gate (transcribe_items), at beam 5 ~60 MB each
    # with an encoder adapter: 16 windows in batches of 2 peaked 115 MB above the job's floor
    # against 234-299 MB for 4, in the same time (docs/RECOGNIZER.md)
    decode_batch_size: int = 2
    # how the prepared keys and values of the padding frames (those an encoder adapter never
    # moves, ~85 % of a 30 s window) are kept: "int8" (a scale per head and channel; half of
    # float16's ~8 MB an utterance) or "float16". With int8 the test WERs of the whisper,
    # croaky and slow_telephone voices were the same or a word better (docs/RECOGNIZER.md)
    padding_dtype: str = "int8"
    val_fraction: float = 0.2           # validation "split": the held-out share
    # "crossfit": two adapters, each trained on half the utterances, decode the other half (every
    # utterance held out once: at K = 50 the gate sees 50, not 10); the adapter kept trains on
    # all of them. "split": one adapter on 1 - val_fraction, judged on the rest (cheaper)
    validation: str = "crossfit"
    # the cross-fitted refit on all utterances trains "steps": as many optimizer steps as the
    # folds' best epoch took (a fold sees half the utterances, so half the steps per epoch), or
    # "epochs": as many epochs (about twice the steps the folds validated)
    refit: str = "steps"
    max_steps: int = 0                  # training stops after this many steps (0 = no limit)
    min_utterances: int = 5
    time_budget_s: float = 180.0        # a safety limit: training stops early past this
                                        # (precompute included)
    require_improvement: bool = True
    # held-out utterances are decoded with the beam the ASR node serves (AsrConfig.beam_size),
    # so the gate compares an adapter with what the user actually gets
    beam_size: int = 1
    save_dtype: str = "float16"
    seed: int = 0

    def __post_init__(self):
        if self.validation not in VALIDATIONS:
            raise ValueError(f"validation must be one of {VALIDATIONS}, got "
                             f"{self.validation!r}")
        if self.refit not in REFITS:
            raise ValueError(f"refit must be one of {REFITS}, got {self.refit!r}")
        if self.padding_dtype not in PADDING_DTYPES:
            raise ValueError(f"padding_dtype must be one of {PADDING_DTYPES}, got "
                             f"{self.padding_dtype!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        unknown = set(self.targets) - set(LORA_TARGETS)
        if unknown:
            raise ValueError(f"unknown LoRA targets {sorted(unknown)}")
        if self.encoder_targets and ("cross_kv" in self.targets or self.method != "lora"):
            raise ValueError("encoder LoRA targets go with method lora and without cross_kv")

    @property
    def encoder_targets(self) -> tuple:
        return tuple(t for t in self.targets if t in ENCODER_KEYS)

    @property
    def lr(self) -> float:
        return self.learning_rate or (5e-4 if self.method == "lora" else 1e-4)


def _tensors(arrays) -> tuple:
    """(1, ...) float32 tensors of an item's kept float16 arrays."""
    return tuple(torch.from_numpy(np.asarray(t, dtype=np.float32))[None] for t in arrays)


@dataclass
class RecognizerItem:
    memory: np.ndarray       # (1500, dim) encoder states of the padded window (float16/32)
    text: str                # the corrected text
    id: str = ""
    duration_s: float = 0.0  # audio length: caps decoding like the ASR front end (8 tok/s + 16)
    served: str | None = None  # the transcript the user was served (logged); None = unknown
    # (residual input, attention context) of the encoder's last layer for the frames that hold
    # audio, each (n, dim): what encoder LoRA targets train on; None = not kept
    top: tuple | None = None
    # the layer below's (residual input, attention context) for those frames and the last
    # layer's input for the others, (n, dim), (n, dim), (1500 - n, dim): what BELOW_KEYS train on
    below: tuple | None = None

    @classmethod
    def of_audio(cls, recognizer: WhisperRecognizer, audio: np.ndarray, text: str, id: str = "",
                 served: str | None = None, depth: int = 2) -> "RecognizerItem":
        """The first 30 s window of ``audio`` (16 kHz float), states kept in float16: the
        encoder's output (~1.1 MB for a 3 s utterance) and the inputs an adapter reaching
        ``depth`` of the encoder's last layers trains and decodes on (``item_depth``; 1: ~0.3 MB
        more, 2: ~1.3 MB more)."""
        from ..speech.audio import SAMPLE_RATE

        memory, top, below = recognizer.encode_top(audio)[0]
        half = lambda ts: tuple(t.half().numpy() for t in ts)  # noqa: E731
        return cls(memory[0].half().numpy(), text, id, audio.size / SAMPLE_RATE, served,
                   half(top) if depth >= 1 else None, half(below) if depth >= 2 else None)

    def memory_for(self, recognizer: WhisperRecognizer, ad: DecoderAdapter | None = None):
        """(1500, dim) float32 encoder states, with ``ad``'s encoder LoRA pairs applied."""
        memory = torch.from_numpy(np.asarray(self.memory, dtype=np.float32))
        depth = encoder_depth(ad)
        if depth == 0:
            return memory
        if self.top is None or (depth == 2 and self.below is None):
            raise ValueError(f"utterance {self.id!r}: an encoder adapter needs the encoder's "
                             "top inputs (build items with RecognizerItem.of_audio)")
        x, context = _tensors(self.top)
        below = _tensors(self.below) if depth == 2 else None
        return recognizer.encoder.adapt_frames(memory[None], x, context, ad, below)[0]

    def max_new_tokens(self) -> int:
        return int(min(self.duration_s, 30) * 8) + 16 if self.duration_s > 0 else 96


def encode_items(recognizer: WhisperRecognizer, utterances, depth: int, before_each=None,
                 report=None) -> list[RecognizerItem]:
    """RecognizerItems of ``utterances`` ((load_audio, text, id, served) each), in order, their
    freed encoder temporaries handed back at the end. One whose audio is gone (``load_audio()``
    gives None or raises FileNotFoundError: retention dropped it since it was listed) or is
    longer than one 30 s window is left out. ``before_each()`` runs before each (the node's
    cancel check raises there); ``report(done, total)`` after each."""
    from ..speech.audio import SAMPLE_RATE

    utterances = list(utterances)
    items = []
    for i, (load_audio, text, id, served) in enumerate(utterances):
        if before_each is not None:
            before_each()
        try:
            audio = load_audio()
        except FileNotFoundError:
            audio = None
        if audio is not None and audio.size <= 30 * SAMPLE_RATE:
            items.append(RecognizerItem.of_audio(recognizer, audio, text, id, served, depth))
        if report is not None:
            report(i + 1, len(utterances))
    release_memory()   # the encoder's temporaries, freed between the kept states
    return items


@dataclass
class RecognizerAdapter:
    """Per-user decoder changes: LoRA pairs ("<key>.lora_a"/".lora_b") or replacement
    parameters ("<param name>"), with metadata (base model, method, rank, metrics)."""
    method: str
    tensors: dict
    metadata: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return float(self.metadata.get("alpha", 16.0)) / max(int(self.metadata.get("rank", 8)), 1)

    def decoder_adapter(self, dtype=torch.float32) -> DecoderAdapter:
        lora, overrides = {}, {}
        for name, t in self.tensors.items():
            if name.endswith(".lora_a"):
                key = name[:-len(".lora_a")]
                lora[key] = (t.to(dtype), self.tensors[key + ".lora_b"].to(dtype))
            elif not name.endswith(".lora_b"):
                overrides[name] = t.to(dtype)
        return DecoderAdapter(lora=lora, scale=self.scale, overrides=overrides)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        meta = {"format": FORMAT, "method": self.method,
                "metadata": json.dumps(self.metadata, sort_keys=True)}
        return save({k: v.contiguous() for k, v in self.tensors.items()}, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> "RecognizerAdapter":
        from safetensors.torch import load

        tensors = load(data)
        n = int.from_bytes(data[:8], "little")     # the header carries the metadata
        header = json.loads(data[8:8 + n])
        meta = header.get("__metadata__", {})
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a recognizer adapter (format {meta.get('format')!r})")
        return cls(meta["method"], tensors, json.loads(meta.get("metadata", "{}")))

    def check_base(self, recognizer: WhisperRecognizer) -> None:
        want = self.metadata.get("base_model")
        if want and want != base_id(recognizer):
            raise ValueError(f"adapter made for {want}, recognizer is {base_id(recognizer)}")


def base_id(recognizer: WhisperRecognizer) -> str:
    d = recognizer.decoder
    return f"{recognizer.model_id}:dec{len(d.layers)}x{d.dim}"


# -- teacher forcing -------------------------------------------------------------------------


def _batch_tokens(recognizer: WhisperRecognizer, texts: list[str]):
    seqs = [recognizer.target_tokens(t) for t in texts]
    n = max(len(s) for s in seqs) - 1
    inp = torch.full((len(seqs), n), recognizer.eot, dtype=torch.long)
    tgt = torch.full((len(seqs), n), -100, dtype=torch.long)
    first = len(recognizer.prompt) - 1   # the position that predicts the first text token
    for i, s in enumerate(seqs):
        inp[i, :len(s) - 1] = torch.tensor(s[:-1])
        tgt[i, first:len(s) - 1] = torch.tensor(s[first + 1:])
    return inp, tgt


class _Frames:
    """One utterance's keys or values (..., frames, d) as training keeps them: the first ``n``
    frames (those with audio, which an encoder adapter moves) in float16, the rest (the
    padding, which stays the base's) in float16 or in int8 with one scale per channel over
    the padding frames (~half the memory)."""

    __slots__ = ("audio", "padding", "scale")

    def __init__(self, t: torch.Tensor, n: int, dtype: str):
        # copies (never views that would keep the whole float32 tensor alive)
        self.audio = t[..., :n, :].to(torch.float16, copy=True)
        pad = t[..., n:, :]
        if dtype == "int8" and pad.shape[-2] > 0:
            self.scale = pad.abs().amax(-2, keepdim=True).float().clamp_min(1e-8) / 127
            self.padding = torch.round(pad.float() / self.scale).clamp(-127, 127).to(torch.int8)
        else:
            self.scale, self.padding = None, pad.to(torch.float16, copy=True)

    @property
    def shape(self) -> tuple:
        return self.audio.shape[:-2] + (self.audio.shape[-2] + self.padding.shape[-2],
                                        self.audio.shape[-1])

    def into(self, out: torch.Tensor) -> torch.Tensor:
        """Writes the float32 frames into ``out`` (of ``shape``) and returns it."""
        n = self.audio.shape[-2]
        out[..., :n, :].copy_(self.audio)
        out[..., n:, :].copy_(self.padding)
        if self.scale is not None:
            out[..., n:, :].mul_(self.scale)   # in place: ~2x faster than mul with out=
        return out

    def float(self) -> torch.Tensor:
        return self.into(torch.empty(self.shape))


class _Prepared:
    """What training reads per utterance, computed once per job (the cross-fitted folds and the
    refit share it): the cross-attention keys/values of the frozen layers (+ for last_block the
    input of the last block; for encoder targets the encoder's top inputs). Kept in float16,
    half the memory (~12 MB an utterance for tiny.en, most of it the 1500 frames' keys and
    values, or ~8 MB with the padding frames in int8: ``padding_dtype``); each batch is read
    back in float32."""

    def __init__(self, recognizer, items, config, start_layer):
        dec = recognizer.decoder
        self.items = items
        self.start_layer = start_layer
        self.inp, self.tgt, self.cross, self.x0, self.mem = [], [], [], [], []
        self.top = [] if config.encoder_targets else None   # (x, context, unadapted output)
        # BELOW_KEYS: per utterance the layer below's (x, context) and the padding's base keys
        # and values at the last layer (computed once here, not at every step)
        self.below = [] if set(BELOW_KEYS) & set(config.targets) else None
        half = lambda ts: tuple(t.half() for t in ts)  # noqa: E731
        with torch.inference_mode():
            for it in items:
                if self.top is not None:
                    if it.top is None:
                        raise ValueError(f"utterance {it.id!r}: encoder LoRA targets need the "
                                         "encoder's top inputs (RecognizerItem.of_audio)")
                    x, c = (torch.from_numpy(np.asarray(t, dtype=np.float32)) for t in it.top)
                    self.top.append(half((x, c, recognizer.encoder.top(x[None], c[None])[0])))
                if self.below is not None:
                    if it.below is None:
                        raise ValueError(f"utterance {it.id!r}: LoRA on the encoder's layer "
                                         "below the last needs its inputs "
                                         "(RecognizerItem.of_audio)")
                    xb, cb, padding = _tensors(it.below)
                    pk, pv = recognizer.encoder.padding_kv(padding)   # every frame is padding
                    self.below.append(half((xb, cb)) + tuple(
                        _Frames(t, 0, config.padding_dtype) for t in (pk, pv)))
                mem = torch.from_numpy(np.asarray(it.memory, dtype=np.float32))[None]
                cross = dec.cross_kv(mem)
                inp, tgt = _batch_tokens(recognizer, [it.text])
                x0 = None
                if start_layer > 0:
                    x = F.embedding(inp, dec.embed.weight) + dec.positions[:inp.shape[1]]
                    for i in range(start_layer):
                        x, _ = dec.layers[i](x, cross[i])
                    x0 = x[0].clone()
                self.inp.append(inp[0])
                self.tgt.append(tgt[0])
                # the frames an encoder adapter moves stay float16; without one none move
                n = len(it.top[0]) if self.top is not None else mem.shape[1]
                self.cross.append([tuple(_Frames(t[0], n, config.padding_dtype) for t in kv)
                                   for kv in cross[start_layer:]])
                self.x0.append(x0)
                self.mem.append(mem[0].half() if "cross_kv" in config.targets
                                and config.method == "lora" else None)
        # the float32 temporaries freed between the float16 states kept: their pages go back now,
        # not at the end of the job (docs/RECOGNIZER.md, "The job's memory")
        release_memory()

    def batch(self, idx, eot):
        n = max(len(self.inp[i]) for i in idx)
        inp = torch.full((len(idx), n), eot, dtype=torch.long)
        tgt = torch.full((len(idx), n), -100, dtype=torch.long)
        for j, i in enumerate(idx):
            inp[j, :len(self.inp[i])] = self.inp[i]
            tgt[j, :len(self.tgt[i])] = self.tgt[i]
        cross = [tuple(self._stacked([self.cross[i][l][kv] for i in idx]) for kv in (0, 1))
                 for l in range(len(self.cross[idx[0]]))]
        x0 = None
        if self.start_layer > 0:
            d = self.x0[idx[0]].shape[-1]
            x0 = torch.zeros(len(idx), n, d)
            for j, i in enumerate(idx):
                x0[j, :len(self.x0[i])] = self.x0[i]
        mem = (torch.stack([self.mem[i] for i in idx]).float() if self.mem[idx[0]] is not None
               else None)
        return inp, tgt, cross, x0, mem

    @staticmethod
    def _stacked(frames: list) -> torch.Tensor:
        """_Frames of one shape, stacked into float32 in one copy each."""
        out = torch.empty((len(frames),) + tuple(frames[0].shape))
        for j, f in enumerate(frames):
            f.into(out[j])
        return out

    def n_targets(self, i) -> int:
        """The number of predicted tokens of utterance ``i`` (what its loss sums over)."""
        return int((self.tgt[i] >= 0).sum())

    def top_batch(self, idx):
        """Zero-padded (x, context, unadapted output, mask) of the encoder frames with audio."""
        n = max(len(self.top[i][0]) for i in idx)
        d = self.top[idx[0]][0].shape[-1]
        x, c, base = (torch.zeros(len(idx), n, d) for _ in range(3))
        mask = torch.zeros(len(idx), n, 1)
        for j, i in enumerate(idx):
            k = len(self.top[i][0])
            x[j, :k], c[j, :k], base[j, :k] = self.top[i]
            mask[j, :k] = 1
        return x, c, base, mask


def _loss(recognizer, prep: _Prepared, idx, ad: DecoderAdapter | None):
    dec = recognizer.decoder
    inp, tgt, cross, x0, mem = prep.batch(idx, recognizer.eot)
    if mem is not None and ad is not None:   # LoRA on the cross-attention key/value projection
        cross = list(cross)
        for i, layer in enumerate(dec.layers):
            pair = ad.lora.get(layer.cross_kv.key)
            if pair is not None:
                dk, dv = (ad.scale * F.linear(F.linear(mem, pair[0]), pair[1])).chunk(2, -1)
                b, s, d = dk.shape
                h = layer.heads
                cross[i] = (cross[i][0] + dk.view(b, s, h, d // h).transpose(1, 2),
                            cross[i][1] + dv.view(b, s, h, d // h).transpose(1, 2))
    if prep.top is not None and ad is not None:   # LoRA on the encoder's last layer(s)
        x, c, base, mask = prep.top_batch(idx)
        if prep.below is not None:   # the last layer's inputs move: per utterance (their
            for j, i in enumerate(idx):   # padding keys and values differ in length)
                xb, cb, pk, pv = (t.float() for t in prep.below[i])   # _Frames: pk, pv
                xj, cj = recognizer.encoder.top_from_below(xb, cb, (pk, pv), ad)
                x[j, :xj.shape[1]], c[j, :xj.shape[1]] = xj[0], cj[0]
        delta = (recognizer.encoder.top(x, c, ad) - base) * mask
        cross, n = list(cross), delta.shape[1]
        for i, layer in enumerate(dec.layers):
            # keys/values are linear in the encoder states: only the changed frames move
            dk, dv = F.linear(delta, layer.cross_kv.weight).chunk(2, -1)
            h = layer.heads
            dk, dv = (z.view(z.shape[0], n, h, -1).transpose(1, 2) for z in (dk, dv))
            k, v = cross[i]
            # the frames that move, then the padding's (views, no gradient): split_attention
            cross[i] = (k[:, :, :n] + dk, v[:, :, :n] + dv, k[:, :, n:], v[:, :, n:])
    if prep.start_layer > 0:
        full = [None] * prep.start_layer + list(cross)
        h, _ = dec.hidden(inp, full, ad=ad, start_layer=prep.start_layer, x=x0)
    else:
        h, _ = dec.hidden(inp, cross, ad=ad)
    keep = tgt >= 0
    logits = dec.logits(h[keep], ad)
    return F.cross_entropy(logits, tgt[keep], reduction="sum"), int(keep.sum())


def _backward(recognizer, prep: _Prepared, idx, ad, micro_batch_size: int) -> tuple:
    """Backpropagates the batch ``idx``'s mean per-token loss ``micro_batch_size`` utterances
    at a time (the gradient is the whole batch's; the memory a micro-batch's). Returns (summed
    loss, tokens)."""
    k = sum(prep.n_targets(i) for i in idx)
    total = 0.0
    for m in range(0, len(idx), micro_batch_size):
        loss, _ = _loss(recognizer, prep, idx[m:m + micro_batch_size], ad)
        (loss / k).backward()
        total += float(loss.detach())
    return total, k


def _mean_loss(recognizer, prep, idx, ad, batch_size) -> float:
    """Mean per-token loss on the prepared utterances ``idx``, ``batch_size`` at a time."""
    total, n = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(idx), batch_size):
            l, k = _loss(recognizer, prep, idx[s:s + batch_size], ad)
            total, n = total + float(l), n + k
    return total / max(n, 1)


#: utterances decoded together by transcribe_items: at beam 5 on 2 cores, 8 took ~1/3 of the
#: time of one by one; their cross-attention states take ~18 MB each
DECODE_BATCH = 8


def transcribe_items(recognizer: WhisperRecognizer, items, adapter=None,
                     options: DecodeOptions | None = None, beam_size: int = 1,
                     batch_size: int = DECODE_BATCH) -> list[str]:
    """Each item's transcript (``options``, or ``beam_size`` with the item's token cap),
    ``batch_size`` utterances decoded together (``WhisperRecognizer.decode_batch``)."""
    ad = adapter.decoder_adapter() if isinstance(adapter, RecognizerAdapter) else adapter
    out = []
    for s in range(0, len(items), max(1, batch_size)):
        chunk = items[s:s + max(1, batch_size)]
        opts = [options or DecodeOptions(beam_size=beam_size, max_new_tokens=it.max_new_tokens())
                for it in chunk]
        with torch.inference_mode():
            mems = [it.memory_for(recognizer, ad) for it in chunk]
        out += [d.text.strip() for d in recognizer.decode_batch(mems, opts, ad)]
    return out


def evaluate(recognizer: WhisperRecognizer, items, adapter=None,
             options: DecodeOptions | None = None, beam_size: int = 1,
             batch_size: int = DECODE_BATCH) -> dict:
    hyps = transcribe_items(recognizer, items, adapter, options, beam_size, batch_size)
    return {"wer": wer([it.text for it in items], hyps), "hypotheses": hyps}


# -- adaptation ------------------------------------------------------------------------------


def _init_params(recognizer, config: RecognizerAdaptConfig, gen):
    dec = recognizer.decoder
    params = {}
    if config.method == "lora":
        linears = [(lin.key, lin) for layer in dec.layers for name in config.targets
                   if name in DECODER_TARGETS for lin in [getattr(layer, name)]]
        top = recognizer.encoder.adaptable()
        linears += [(key, top[key]) for key in config.encoder_targets]
        for key, lin in linears:
            a = torch.empty(config.rank, lin.in_features)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
            params[key + ".lora_a"] = a.requires_grad_(True)
            params[key + ".lora_b"] = torch.zeros(lin.out_features, config.rank,
                                                  requires_grad=True)
    else:
        last = len(dec.layers) - 1
        base = dict(dec.named_parameters())
        for name, p in base.items():
            if (name.startswith(f"layers.{last}.") and ".cross_kv." not in name) or \
                    name.startswith("norm."):
                params[name] = p.detach().clone().requires_grad_(True)
    return params


def _start_layer(recognizer, config: RecognizerAdaptConfig) -> int:
    """The first decoder layer training runs (last_block: the lower ones run once, prepared)."""
    return 0 if config.method == "lora" else len(recognizer.decoder.layers) - 1


def _metadata(recognizer, config: RecognizerAdaptConfig) -> dict:
    """What an adapter of ``config``'s shape records about itself (checked when it loads)."""
    lora = config.method == "lora"
    return {"base_model": base_id(recognizer), "method": config.method,
            "rank": config.rank if lora else 0, "alpha": config.alpha,
            "targets": list(config.targets) if lora else []}


def random_adapter(recognizer, config: RecognizerAdaptConfig, seed: int = 1,
                   scale: float = 0.02) -> "RecognizerAdapter":
    """An adapter of ``config``'s shape with random weights, for tests and the memory benchmark:
    the method's initial parameters, with the ones that start out changing nothing (LoRA B is
    zero; a last block starts as the base's) moved by ``scale`` so the adapter does something."""
    gen = torch.Generator().manual_seed(seed)
    params = _init_params(recognizer, config, gen)
    dtype = getattr(torch, config.save_dtype)
    tensors = {k: (v.detach() + (scale * torch.randn(v.shape, generator=gen)
                                 if k.endswith(".lora_b") or config.method == "last_block"
                                 else 0)).to(dtype).contiguous()
               for k, v in params.items()}
    return RecognizerAdapter(config.method, tensors, _metadata(recognizer, config))


def _adapter_of(params, config, scale) -> DecoderAdapter:
    lora, overrides = {}, {}
    for name, t in params.items():
        if name.endswith(".lora_a"):
            key = name[:-len(".lora_a")]
            lora[key] = (t, params[key + ".lora_b"])
        elif not name.endswith(".lora_b"):
            overrides[name] = t
    return DecoderAdapter(lora=lora, scale=scale, overrides=overrides)


def split_items(items, val_fraction: float, seed: int = 0):
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, round(len(items) * val_fraction)) if val_fraction > 0 else 0
    val = [items[i] for i in sorted(idx[:n_val])]
    train = [items[i] for i in sorted(idx[n_val:])]
    return train, val


def adapt_recognizer(recognizer: WhisperRecognizer, items: list[RecognizerItem],
                     config: RecognizerAdaptConfig | None = None, val_items=None,
                     progress=None, decode_unadapted: bool = True
                     ) -> tuple[RecognizerAdapter | None, dict]:
    """Train a per-user adapter; returns (adapter, metrics). metrics["publish"] says whether the
    gate passed (adapted held-out WER < unadapted). ``val_items`` overrides the split.
    ``decode_unadapted`` False: the caller judges against something else (the transcripts the
    user was served), so the unadapted decoder does not decode the held-out utterances (no
    ``base_val_wer``, and ``publish`` is False)."""
    config = config or RecognizerAdaptConfig()
    if len(items) < config.min_utterances:
        return None, {"publish": False, "reason": f"{len(items)} utterances < "
                                                  f"{config.min_utterances}"}
    t0 = time.perf_counter()
    if val_items is None:
        train, val = split_items(items, config.val_fraction, config.seed)
    else:
        train, val = list(items), list(val_items)
    prep = _Prepared(recognizer, train + val, config, _start_layer(recognizer, config))
    n = len(train)
    return _adapt(recognizer, prep, list(range(n)), list(range(n, n + len(val))), config,
                  progress, decode_unadapted, t0)


def _adapt(recognizer, prep: _Prepared, train_idx: list, val_idx: list,
           config: RecognizerAdaptConfig, progress, decode_unadapted: bool, t0: float):
    """adapt_recognizer on prepared utterances: trains on ``train_idx``, validates on
    ``val_idx`` (positions in ``prep.items``); ``t0`` starts the time budget."""
    train = [prep.items[i] for i in train_idx]
    val = [prep.items[i] for i in val_idx]
    t_prep = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    params = _init_params(recognizer, config, gen)
    scale = config.alpha / config.rank
    ad = _adapter_of(params, config, scale)
    encoder = [v for k, v in params.items() if k.startswith(ENCODER_KEYS)]
    groups = [{"params": [v for k, v in params.items() if not k.startswith(ENCODER_KEYS)]},
              {"params": encoder, "lr": config.encoder_learning_rate or config.lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                            weight_decay=config.weight_decay)
    base_val_loss = (_mean_loss(recognizer, prep, val_idx, None, config.micro_batch_size)
                     if val else None)
    best = (base_val_loss if base_val_loss is not None else math.inf, -1,
            {k: v.detach().clone() for k, v in params.items()})
    rng = random.Random(config.seed)
    history, steps, best_steps, stopped = [], 0, 0, "epochs"
    for epoch in range(config.epochs):
        if config.max_steps and steps >= config.max_steps:
            break
        order = list(range(len(train)))
        rng.shuffle(order)
        total, n = 0.0, 0
        for s in range(0, len(order), config.batch_size):
            if config.max_steps and steps >= config.max_steps:
                break               # the last epoch, cut short
            idx = [train_idx[i] for i in order[s:s + config.batch_size]]
            opt.zero_grad()
            loss, k = _backward(recognizer, prep, idx, ad, config.micro_batch_size)
            opt.step()
            steps += 1
            total, n = total + loss, n + k
        val_loss = (_mean_loss(recognizer, prep, val_idx, ad, config.micro_batch_size)
                    if val else None)
        history.append({"epoch": epoch + 1, "train_loss": total / max(n, 1),
                        "val_loss": val_loss, "steps": steps})
        if progress:
            progress(history[-1])
        if val_loss is not None and val_loss < best[0]:
            best = (val_loss, epoch + 1, {k: v.detach().clone() for k, v in params.items()})
            best_steps = steps
        if time.perf_counter() - t0 > config.time_budget_s:
            stopped = "time_budget"
            break
    if config.max_steps and steps >= config.max_steps:
        stopped = "max_steps"
    if not val:
        best = (None, len(history), {k: v.detach().clone() for k, v in params.items()})
        best_steps = steps
    train_s = time.perf_counter() - t0
    dtype = getattr(torch, config.save_dtype)
    tensors = {k: v.to(dtype).contiguous() for k, v in best[2].items()}
    metadata = {**_metadata(recognizer, config), "train_utterances": len(train),
                "val_utterances": len(val), "best_epoch": best[1]}
    adapter = RecognizerAdapter(config.method, tensors, metadata)
    metrics = {"train_s": train_s, "prepare_s": t_prep, "steps": steps, "stopped": stopped,
               "history": history, "base_val_loss": base_val_loss, "val_loss": best[0],
               "best_epoch": best[1], "best_steps": best_steps,
               "bytes": len(adapter.to_bytes()),
               "train_utterances": len(train), "val_utterances": len(val)}
    if val:
        t1 = time.perf_counter()
        beam = config.beam_size
        together = config.decode_batch_size
        base = (evaluate(recognizer, val, beam_size=beam, batch_size=together)
                if decode_unadapted else None)
        if best[1] > 0:
            adapted = evaluate(recognizer, val, adapter, beam_size=beam, batch_size=together)
        else:                        # never beat the unadapted loss: the adapter is the base
            adapted = base if base is not None else evaluate(recognizer, val, beam_size=beam,
                                                             batch_size=together)
        metrics.update(val_wer=adapted["wer"], val_hypotheses=adapted["hypotheses"],
                       validate_s=time.perf_counter() - t1)
        if base is not None:
            metrics.update(base_val_wer=base["wer"], base_val_hypotheses=base["hypotheses"])
        improved = base is not None and metrics["val_wer"] < metrics["base_val_wer"]
    else:
        improved = False
    metrics["publish"] = bool(improved or not config.require_improvement)
    metrics["reason"] = ("adapted held-out WER below the unadapted one" if improved else
                         "no held-out improvement")
    adapter.metadata.update({k: metrics[k] for k in ("base_val_wer", "val_wer", "base_val_loss",
                                                     "val_loss", "train_s") if k in metrics})
    return adapter, metrics


def crossfit_recognizer(recognizer: WhisperRecognizer, items: list[RecognizerItem],
                        config: RecognizerAdaptConfig | None = None,
                        progress=None, decode_unadapted: bool = True
                        ) -> tuple[RecognizerAdapter | None, dict]:
    """Two-fold cross-fitting. An adapter trained on each half (its best epoch picked by the
    other half's loss) decodes the other half, so every utterance has a held-out transcript:
    ``metrics["val_wer"]`` is their pooled WER, ``base_val_wer`` the unadapted decoder's on the
    same utterances, and ``hypotheses`` the held-out transcripts in ``items`` order. The fold
    adapters are pessimistic (half the data), which suits a gate. The returned adapter trains on
    all ``items`` for the folds' mean best number of optimizer steps (``refit`` "steps"; or of
    epochs, "epochs"); if the folds never beat the unadapted loss, it is None and nothing is
    refitted. ``progress`` gets each epoch's history row with "part":
    "fold 1", "fold 2" or "all". ``decode_unadapted``: as in ``adapt_recognizer`` (False: no
    ``base_val_wer``, ``publish`` False; the caller has another "before")."""
    config = config or RecognizerAdaptConfig()
    if len(items) < max(config.min_utterances, 2):
        return None, {"publish": False, "reason": f"{len(items)} utterances < "
                                                  f"{max(config.min_utterances, 2)}"}
    t0 = time.perf_counter()
    # every utterance is prepared once: both folds and the refit read the same keys and values
    prep = _Prepared(recognizer, list(items), config, _start_layer(recognizer, config))
    prepare_s = time.perf_counter() - t0
    first, second = split_items(list(range(len(items))), 0.5, config.seed)
    folds = ((second, first), (first, second))     # (train, held out), positions in items
    hyps, best_epochs, best_steps, history, train_s = [None] * len(items), [], [], [], prepare_s
    # each fold may use 30 % of the time budget; refitting on all gets what is left
    # (min_utterances counts the whole set, checked above; a fold trains on half of it)
    fold_config = dataclasses.replace(config, time_budget_s=0.3 * config.time_budget_s,
                                      min_utterances=1)
    base_hyps, stops = [None] * len(items), []
    for n, (train, held) in enumerate(folds, 1):
        report = (lambda h, part=f"fold {n}": progress(dict(h, part=part))) if progress else None
        # its held-out transcripts, unadapted and adapted (the unadapted ones where the fold
        # never beat the unadapted loss), come back with its metrics
        _, m = _adapt(recognizer, prep, train, held, fold_config, report, decode_unadapted,
                      time.perf_counter())
        train_s += m["train_s"]
        stops.append(m["stopped"])
        best_epochs.append(max(m["best_epoch"], 0))   # -1: no epoch beat the unadapted loss
        best_steps.append(m["best_steps"])
        history += [dict(h, part=f"fold {n}") for h in m["history"]]
        for i, h, b in zip(held, m["val_hypotheses"],
                           m.get("base_val_hypotheses", [None] * len(held))):
            hyps[i], base_hyps[i] = h, b
        release_memory()   # the fold's decodes
    refs = [it.text for it in items]
    metrics = {"val_wer": wer(refs, hyps),
               "hypotheses": hyps,
               "fold_best_epochs": best_epochs, "train_utterances": len(items),
               "val_utterances": len(items)}
    if decode_unadapted:
        metrics["base_val_wer"] = wer(refs, base_hyps)
    adapter = None
    epochs = round(sum(best_epochs) / len(best_epochs))
    steps = round(sum(best_steps) / len(best_steps)) if config.refit == "steps" else 0
    if epochs == 0 and not config.require_improvement:    # published whatever it scores
        epochs, steps = config.epochs, 0
    if epochs > 0:
        left = max(config.time_budget_s - (time.perf_counter() - t0), 0.2 * config.time_budget_s)
        report = (lambda h: progress(dict(h, part="all"))) if progress else None
        adapter, m = _adapt(recognizer, prep, list(range(len(items))), [], dataclasses.replace(
            config, epochs=config.epochs if steps else epochs, max_steps=steps,
            time_budget_s=left), report, True, time.perf_counter())
        train_s += m["train_s"]
        stops.append(m["stopped"])
        history += [dict(h, part="all") for h in m["history"]]
        metrics["bytes"] = m["bytes"]
    improved = adapter is not None and decode_unadapted and \
        metrics["val_wer"] < metrics["base_val_wer"]
    # a fold or the refit cut short by its time budget: the epochs picked depend on the
    # machine's speed at the time
    metrics.update(stopped="time_budget" if "time_budget" in stops else "")
    metrics.update(train_s=train_s, prepare_s=prepare_s, history=history,
                   refit_steps=steps or None,
                   best_epoch=epochs, publish=bool(adapter is not None and (
                       improved or not config.require_improvement)),
                   reason="cross-fitted held-out WER below the unadapted one" if improved else
                   "no held-out improvement")
    if adapter is not None:
        adapter.metadata.update(validation="crossfit", fold_best_epochs=best_epochs,
                                refit=config.refit, refit_steps=steps or None,
                                val_utterances=len(items),
                                **{k: metrics[k] for k in ("base_val_wer", "val_wer", "train_s")
                                   if k in metrics})
    return adapter, metrics
