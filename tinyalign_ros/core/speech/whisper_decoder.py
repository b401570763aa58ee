"""Whisper's decoder rebuilt in torch from the CTranslate2 model.bin, and a recogniser on it.

The torch decoder is what per-user recogniser adaptation trains (learning/recognizer_adapt.py):
CTranslate2 cannot run a LoRA or a per-user copy of a layer, torch can, and the base weights stay
shared between users. Decoding reproduces what faster-whisper asks CTranslate2 for in
``WhisperModel.transcribe(audio, without_timestamps=True, condition_on_previous_text=False,
temperature=0, beam_size=...)``:

  * input: faster-whisper's log-mel of the audio, cut in 30 s windows, the last frame dropped and
    each window zero-padded to 3000 frames; the torch encoder on the padded window (as Whisper was
    trained; the "var" encoder states of the ASR node are a different feature);
  * prompt ``<|startoftranscript|> [language task] <|notimestamps|>``;
  * suppress_tokens = faster-whisper's ``get_suppressed_tokens(tokenizer, [-1])`` (the model's
    non-speech tokens and the special task tokens), suppress_blank (" " and <|endoftext|> at the
    first step), no timestamp rules (CTranslate2 applies none after <|notimestamps|>);
  * CTranslate2's length limit ``min(L // 2, L - 1)`` decoding steps, L = prompt + max_new_tokens
    (448 when unset), greedy or CTranslate2's beam search (2 x beam candidates per step, a
    finished hypothesis is replaced by the next unfinished candidate, stop after
    round(beam x patience) finished, score / length ** length_penalty);
  * no-speech skip: a window whose no-speech probability is > 0.6 and whose average log-prob is
    < -1 yields no text.
Temperature fallback (sampling) is not reproduced: it is random in faster-whisper too.

Adapters (``DecoderAdapter``) are passed to ``forward``: LoRA pairs added to named linears, and/or
replacement tensors for named parameters; the base module is never modified.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .whisper_encoder import (TorchWhisperEncoder, read_ct2_variables, shared_encoder,
                              split_attention)

N_FRAMES = 3000          # mel frames in one 30 s window
MAX_LENGTH = 448         # Whisper's decoder context


@dataclass
class DecoderAdapter:
    """Per-user changes to a shared decoder, applied on the fly.

    lora:      linear key -> (A (r, in), B (out, r)); y += scale * x A^T B^T
    overrides: parameter name (e.g. "layers.3.ffn1.weight") -> tensor used instead of the base's
    """
    lora: dict = field(default_factory=dict)
    scale: float = 1.0
    overrides: dict = field(default_factory=dict)


class _Lin(nn.Linear):
    """A linear that looks up LoRA pairs and replacement weights in an adapter by its key."""

    def __init__(self, key: str, n_in: int, n_out: int, bias: bool = True):
        super().__init__(n_in, n_out, bias=bias)
        self.key = key

    def forward(self, x, ad: DecoderAdapter | None = None):
        if ad is None:
            return F.linear(x, self.weight, self.bias)
        w = ad.overrides.get(self.key + ".weight", self.weight)
        b = ad.overrides.get(self.key + ".bias", self.bias)
        y = F.linear(x, w, b)
        pair = ad.lora.get(self.key)
        if pair is not None:
            a, bb = pair
            y = y + ad.scale * F.linear(F.linear(x, a), bb)
        return y


class _Norm(nn.LayerNorm):
    def __init__(self, key: str, dim: int):
        super().__init__(dim)
        self.key = key

    def forward(self, x, ad: DecoderAdapter | None = None):
        if ad is None or not ad.overrides:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.layer_norm(x, self.normalized_shape,
                            ad.overrides.get(self.key + ".weight", self.weight),
                            ad.overrides.get(self.key + ".bias", self.bias), self.eps)


def _split_heads(x, heads):
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


class _Block(nn.Module):
    def __init__(self, i: int, dim: int, heads: int, ff: int):
        super().__init__()
        p = f"layers.{i}."
        self.heads = heads
        self.self_norm = _Norm(p + "self_norm", dim)
        self.self_qkv = _Lin(p + "self_qkv", dim, 3 * dim)
        self.self_out = _Lin(p + "self_out", dim, dim)
        self.cross_norm = _Norm(p + "cross_norm", dim)
        self.cross_q = _Lin(p + "cross_q", dim, dim)
        self.cross_kv = _Lin(p + "cross_kv", dim, 2 * dim)
        self.cross_out = _Lin(p + "cross_out", dim, dim)
        self.ffn_norm = _Norm(p + "ffn_norm", dim)
        self.ffn1 = _Lin(p + "ffn1", dim, ff)
        self.ffn2 = _Lin(p + "ffn2", ff, dim)

    def cross_kv_of(self, memory, ad=None):
        """(B, S, D) encoder states -> (k, v), each (B, heads, S, D/heads)."""
        k, v = self.cross_kv(memory, ad).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def forward(self, x, cross, cache=None, ad=None):
        """x (B, T, D); cross (k, v); cache (k, v) of the previous tokens or None.
        Returns x and the new self-attention cache."""
        b, t, d = x.shape
        q, k, v = self.self_qkv(self.self_norm(x, ad), ad).chunk(3, dim=-1)
        q, k, v = (_split_heads(z, self.heads) for z in (q, k, v))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        if t == 1:
            a = F.scaled_dot_product_attention(q, k, v)
        else:   # causal over the new tokens, all cached tokens visible
            past = k.shape[2] - t
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.self_out(a.transpose(1, 2).reshape(b, t, d), ad)
        q = _split_heads(self.cross_q(self.cross_norm(x, ad), ad), self.heads)
        n = cross[0].shape[0]
        if len(cross) == 4:   # training: (k, v) of the frames that move, then of those that don't
            a = split_attention(q, *cross)
        elif n == b:
            a = F.scaled_dot_product_attention(q, cross[0], cross[1])
        else:   # b = n windows x g beams: a window's beams are queries of its keys/values
            g, h = b // n, self.heads
            q = q.reshape(n, g, h, t, -1).transpose(1, 2).reshape(n, h, g * t, -1)
            a = F.scaled_dot_product_attention(q, cross[0], cross[1])
            a = a.reshape(n, h, g, t, -1).transpose(1, 2).reshape(b, h, t, -1)
        x = x + self.cross_out(a.transpose(1, 2).reshape(b, t, d), ad)
        x = x + self.ffn2(F.gelu(self.ffn1(self.ffn_norm(x, ad), ad)), ad)
        return x, (k, v)


class TorchWhisperDecoder(nn.Module):
    """Whisper's text decoder: embeddings, pre-norm blocks with self- and cross-attention, final
    layer norm, logits tied to the token embedding; a self-attention KV cache for decoding."""

    def __init__(self, vocab: int, dim: int, heads: int, ff: int, layers: int,
                 ctx: int = MAX_LENGTH):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.register_buffer("positions", torch.zeros(ctx, dim))
        self.layers = nn.ModuleList(_Block(i, dim, heads, ff) for i in range(layers))
        self.norm = _Norm("norm", dim)
        self.dim, self.heads, self.vocab = dim, heads, vocab

    @classmethod
    def from_ct2(cls, model_dir: str | Path) -> "TorchWhisperDecoder":
        v = read_ct2_variables(Path(model_dir) / "model.bin", prefix="decoder/")
        for flag, want in (("pre_norm", 1), ("scale_embeddings", 0), ("alibi", 0)):
            if flag in v and int(v[flag]) != want:
                raise ValueError(f"unsupported CTranslate2 decoder: {flag}={int(v[flag])}")
        n_layers = len({k.split("/")[0] for k in v if k.startswith("layer_") and
                        k.split("/")[0][6:].isdigit()})
        vocab, dim = v["embeddings/weight"].shape
        ff = v["layer_0/ffn/linear_0/weight"].shape[0]
        heads = int(v["num_heads"]) if "num_heads" in v else dim // 64
        dec = cls(vocab, dim, heads, ff, n_layers, v["position_encodings/encodings"].shape[0])
        t = lambda name: torch.from_numpy(np.array(v[name], dtype=np.float32))  # noqa: E731
        sd = {"embed.weight": t("embeddings/weight"),
              "positions": t("position_encodings/encodings"),
              "norm.weight": t("layer_norm/gamma"), "norm.bias": t("layer_norm/beta")}
        names = {"self_norm": "self_attention/layer_norm", "self_qkv": "self_attention/linear_0",
                 "self_out": "self_attention/linear_1", "cross_norm": "attention/layer_norm",
                 "cross_q": "attention/linear_0", "cross_kv": "attention/linear_1",
                 "cross_out": "attention/linear_2", "ffn_norm": "ffn/layer_norm",
                 "ffn1": "ffn/linear_0", "ffn2": "ffn/linear_1"}
        for i in range(n_layers):
            for ours, theirs in names.items():
                src = f"layer_{i}/{theirs}/"
                w, b = ("gamma", "beta") if theirs.endswith("layer_norm") else ("weight", "bias")
                sd[f"layers.{i}.{ours}.weight"] = t(src + w)
                sd[f"layers.{i}.{ours}.bias"] = t(src + b)
        dec.load_state_dict(sd)
        return dec.eval().requires_grad_(False)

    def cross_kv(self, memory: torch.Tensor, ad: DecoderAdapter | None = None) -> list:
        """Per-layer cross-attention keys/values of (B, S, D) encoder states (compute once)."""
        return [layer.cross_kv_of(memory, ad) for layer in self.layers]

    def hidden(self, tokens, cross, cache=None, ad=None, start_layer: int = 0, x=None):
        """Final-normed hidden states (B, T, D) and the new cache. With start_layer > 0, x holds
        the input of that layer (for training only the top blocks)."""
        offset = 0 if cache is None else cache[0][0].shape[2]
        if x is None:
            w = ad.overrides.get("embed.weight", self.embed.weight) if ad else self.embed.weight
            x = F.embedding(tokens, w) + self.positions[offset:offset + tokens.shape[1]]
        new_cache = []
        for i in range(start_layer, len(self.layers)):
            x, kv = self.layers[i](x, cross[i], None if cache is None else cache[i], ad)
            new_cache.append(kv)
        return self.norm(x, ad), new_cache

    def logits(self, h, ad=None):
        w = ad.overrides.get("embed.weight", self.embed.weight) if ad else self.embed.weight
        return F.linear(h, w)

    def forward(self, tokens, cross, cache=None, ad=None):
        """tokens (B, T) -> logits (B, T, vocab) and the new self-attention cache."""
        h, new_cache = self.hidden(tokens, cross, cache, ad)
        return self.logits(h, ad), new_cache


# ---------------------------------------------------------------------------------------------


@dataclass
class DecodeOptions:
    beam_size: int = 1
    patience: float = 1.0
    length_penalty: float = 1.0
    max_new_tokens: int | None = None
    suppress_blank: bool = True
    suppress_tokens: tuple = (-1,)
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0


@dataclass
class Decoded:
    tokens: list
    text: str
    avg_logprob: float
    no_speech_prob: float
    skipped: bool = False       # no-speech rule: the window gave no text


class WhisperRecognizer:
    """Whisper in torch (encoder + decoder from one CTranslate2 folder) with faster-whisper's
    tokenizer, features and decoding rules. ``transcribe(audio)`` -> text; ``decode(memory)`` for
    encoder states already computed; ``adapter`` = a per-user DecoderAdapter."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 0,
                 encoder: TorchWhisperEncoder | None = None):
        """``encoder``: a TorchWhisperEncoder of the same model already loaded (the ASR node's
        "var" encoder is the same module), shared instead of loading a second copy."""
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        from ..models import resolve_whisper

        if threads > 0:
            torch.set_num_threads(threads)
        self.model_path = Path(resolve_whisper(str(model_dir) if model_dir else None))
        self.encoder = encoder if encoder is not None else \
            TorchWhisperEncoder.from_ct2(self.model_path)
        self.decoder = TorchWhisperDecoder.from_ct2(self.model_path)
        n_mels = self.encoder.conv1.weight.shape[1]
        self.feature_extractor = FeatureExtractor(feature_size=n_mels)
        self.multilingual = self.decoder.vocab >= 51865
        hf = tokenizers.Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        self.tokenizer = Tokenizer(hf, self.multilingual, task="transcribe",
                                  language="en" if self.multilingual else None)
        tok = self.tokenizer
        self.prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        self.eot = tok.eot
        self._suppressed = {}
        self._get_suppressed = lambda ids: get_suppressed_tokens(tok, list(ids))
        cfg = json.loads((self.model_path / "config.json").read_text())
        self.suppress_begin = list(cfg.get("suppress_ids_begin", [tok.encode(" ")[0], tok.eot]))

    @property
    def model_id(self) -> str:
        name = self.model_path.resolve().name
        if name == "model":
            name = "whisper" if self.multilingual else "whisper-tiny.en"
        return name

    # -- features -------------------------------------------------------------------------------

    def windows(self, audio: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """faster-whisper's input, per 30 s window: (log-mel, last frame dropped, zero-padded to
        the window; the encoder frames that hold audio)."""
        from faster_whisper.audio import pad_or_trim

        mel = self.feature_extractor(np.asarray(audio, dtype=np.float32))
        content = mel.shape[-1] - 1
        return [(pad_or_trim(mel[:, s:min(s + N_FRAMES, content)]),
                 max(1, math.ceil((min(s + N_FRAMES, content) - s) / 2)))
                for s in range(0, max(content, 1), N_FRAMES)]

    @torch.inference_mode()
    def encode(self, audio: np.ndarray, adapter: DecoderAdapter | None = None) -> torch.Tensor:
        """(windows, 1500, dim) encoder states of the padded windows. An adapter with encoder
        LoRA pairs (whisper_encoder.ENCODER_KEYS) changes the frames that hold audio only, as it
        was trained (learning/recognizer_adapt.py)."""
        return torch.cat([m for m, *_ in self.encode_top(audio, adapter)])

    @torch.inference_mode()
    def encode_top(self, audio: np.ndarray, adapter: DecoderAdapter | None = None) -> list:
        """Per window: ((1, 1500, dim) encoder states, (residual input, attention context) of
        the last encoder layer for the frames that hold audio, each (n, dim), and the layer
        below's inputs (TorchWhisperEncoder.top_inputs with n)): what an encoder adapter
        trains on."""
        out = []
        for mel, n in self.windows(audio):
            x, context, below = self.encoder.top_inputs(
                torch.from_numpy(mel[None].astype(np.float32)), n)
            memory = self.encoder.top(x, context)
            x, context = x[:, :n], context[:, :n]          # the frames that hold audio
            out.append((self.encoder.adapt_frames(memory, x, context, adapter, below),
                        (x[0], context[0]), tuple(t[0] for t in below)))
        return out

    # -- decoding -------------------------------------------------------------------------------

    def target_tokens(self, text: str) -> list[int]:
        """Prompt + text + <|endoftext|>: the teacher-forcing sequence of a corrected text."""
        return self.prompt + self.tokenizer.encode(" " + text.strip()) + [self.eot]

    def _suppress_mask(self, ids: tuple) -> torch.Tensor:
        if ids not in self._suppressed:
            mask = torch.zeros(self.decoder.vocab, dtype=torch.bool)
            listed = self._get_suppressed(ids) if ids else []
            mask[[i for i in listed if 0 <= i < self.decoder.vocab]] = True
            self._suppressed[ids] = mask
        return self._suppressed[ids]

    @torch.inference_mode()
    def decode(self, memory: torch.Tensor, options: DecodeOptions | None = None,
               adapter: DecoderAdapter | None = None) -> Decoded:
        """One 30 s window: memory (1500, dim) or (1, 1500, dim) encoder states."""
        return self.decode_batch([memory], options, adapter)[0]

    @torch.inference_mode()
    def decode_batch(self, memories: list, options=None,
                     adapter: DecoderAdapter | None = None) -> list[Decoded]:
        """Several windows with one adapter, searched together: each as ``decode`` alone gives
        it (its own hypotheses, stopping rule and token cap), at a fraction of the time, since
        every step reads the vocabulary projection (80 MB for tiny.en) once for all of them.
        ``options``: one DecodeOptions, or one per window differing in max_new_tokens only."""
        if not memories:
            return []
        opts = list(options) if isinstance(options, (list, tuple)) else \
            [options or DecodeOptions()] * len(memories)
        if len(opts) != len(memories):
            raise ValueError(f"{len(opts)} options for {len(memories)} windows")
        o = opts[0]
        if any(dataclasses.replace(p, max_new_tokens=None) !=
               dataclasses.replace(o, max_new_tokens=None) for p in opts):
            raise ValueError("decode_batch: the windows' options may differ in "
                             "max_new_tokens only")
        memory = torch.stack([m[0] if m.dim() == 3 else m for m in memories])
        dec = self.decoder
        cross = dec.cross_kv(memory, adapter)
        n = len(memories)
        prompt = torch.tensor([self.prompt]).expand(n, -1)
        max_steps = []
        for p in opts:
            total = (len(self.prompt) + p.max_new_tokens if p.max_new_tokens is not None
                     else MAX_LENGTH)
            if total > MAX_LENGTH:
                raise ValueError(f"prompt + max_new_tokens = {total} > {MAX_LENGTH}")
            # CTranslate2: the prompt minus its last token initialises the state; decoding
            # starts from the last token, for min(total // 2, total - start) steps.
            max_steps.append(min(total // 2, total - (len(self.prompt) - 1)))
        logits, cache = dec(prompt[:, :-1], cross, None, adapter)
        no_speech = torch.softmax(logits[:, 0].float(), -1)[:, self.tokenizer.no_speech]
        mask = self._suppress_mask(tuple(o.suppress_tokens or ()))
        begin = torch.zeros_like(mask)
        if o.suppress_blank:
            begin[self.suppress_begin] = True
        start = prompt[:, -1:]
        found = (self._greedy(cross, cache, start, max_steps, mask, begin, adapter)
                 if o.beam_size <= 1 else
                 self._beam(cross, cache, start, max_steps, mask, begin, adapter, o))
        # faster-whisper: avg_logprob = (score * n ** length_penalty) / (n + 1)
        lp = o.length_penalty if o.beam_size > 1 else 1.0
        out = []
        for (tokens, score), ns in zip(found, no_speech.tolist()):
            k = len(tokens)
            avg = score * (k ** lp) / (k + 1) if k else score
            skipped = (o.no_speech_threshold is not None and ns > o.no_speech_threshold
                       and not (o.log_prob_threshold is not None and avg > o.log_prob_threshold))
            text = self.tokenizer.decode(tokens)
            out.append(Decoded(tokens, "" if skipped else text, float(avg), ns, skipped))
        return out

    @staticmethod
    def _log_probs(logits, mask, begin, step):
        logits = logits.float().masked_fill(mask, -math.inf)
        if step == 0:
            logits = logits.masked_fill(begin, -math.inf)
        return torch.log_softmax(logits, -1)

    @staticmethod
    def _drop(cross, cache, windows: list, rows: list):
        """The search's states for the windows and rows it goes on with (positions)."""
        if len(windows) < cross[0][0].shape[0]:
            w = torch.tensor(windows)
            cross = [(k.index_select(0, w), v.index_select(0, w)) for k, v in cross]
        r = torch.tensor(rows)
        return cross, [(k.index_select(0, r), v.index_select(0, r)) for k, v in cache]

    def _greedy(self, cross, cache, start, max_steps, mask, begin, ad):
        """CTranslate2's greedy search, for each window (row) of the batch."""
        alive = list(range(len(max_steps)))        # the windows still searching, row order
        tokens, scores = [[] for _ in alive], [0.0] * len(alive)
        x = start
        for step in range(max(max_steps)):
            logits, cache = self.decoder(x, cross, cache, ad)
            lp = self._log_probs(logits[:, -1], mask, begin, step)
            best = lp.argmax(-1)
            picked = lp.gather(1, best[:, None])[:, 0].tolist()
            still = []
            for j, (u, tok) in enumerate(zip(alive, best.tolist())):
                scores[u] += picked[j]
                if tok == self.eot:
                    continue
                tokens[u].append(tok)
                if step + 1 < max_steps[u]:
                    still.append(j)
            if not still:
                break
            if len(still) < len(alive):
                cross, cache = self._drop(cross, cache, still, still)
            x = best[still][:, None]
            alive = [alive[j] for j in still]
        # CTranslate2 normalises by length
        return [(t, s / len(t) if t else -math.inf) for t, s in zip(tokens, scores)]

    def _beam(self, cross, cache, start, max_steps, mask, begin, ad, o: DecodeOptions):
        """CTranslate2's BeamSearch, for each window of the batch: rows are the windows'
        alive hypotheses, window by window (one each at the first step, ``beam_size`` after)."""
        beam, cand = o.beam_size, 2 * o.beam_size
        max_finished = round(beam * o.patience)
        vocab = self.decoder.vocab
        alive = list(range(len(max_steps)))        # the windows still searching, row order
        seqs = [[[]] for _ in alive]               # per window: its alive hypotheses
        finished: list[list[tuple[float, list]]] = [[] for _ in alive]
        scores = torch.zeros(len(alive), 1)        # (windows, hypotheses)
        x = start
        for step in range(max(max_steps)):
            logits, cache = self.decoder(x, cross, cache, ad)
            g = scores.shape[1]
            lp = self._log_probs(logits[:, -1], mask, begin, step).view(len(alive), g, vocab)
            top_s, top_i = (lp + scores[:, :, None]).reshape(len(alive), -1).topk(cand)
            origins, words = (top_i // vocab).tolist(), (top_i % vocab).tolist()
            still, rows, nxt_words, nxt_scores = [], [], [], []
            for j, u in enumerate(alive):
                origin, word = origins[j], words[j]
                last = step + 1 == max_steps[u]
                keep, secondary = [], beam
                for k in range(beam):
                    nxt = k
                    if word[k] == self.eot or last:
                        hyp = seqs[u][origin[k]] + ([] if word[k] == self.eot else [word[k]])
                        finished[u].append((float(top_s[j, k]), hyp))
                        for i in range(secondary, cand):
                            if word[i] != self.eot:
                                nxt, secondary = i, i + 1
                                break
                    keep.append(nxt)
                if last or len(finished[u]) >= max_finished:
                    continue
                still.append(j)
                seqs[u] = [seqs[u][origin[i]] + [word[i]] for i in keep]
                rows += [j * g + origin[i] for i in keep]
                nxt_words += [word[i] for i in keep]
                nxt_scores.append(top_s[j, keep])
            if not still:
                break
            cross, cache = self._drop(cross, cache, still, rows)
            scores = torch.stack(nxt_scores)
            x = torch.tensor(nxt_words)[:, None]
            alive = [alive[j] for j in still]

        def final(s, hyp):
            n = len(hyp)
            return s / (n ** o.length_penalty) if n else -math.inf

        out = []
        for f in finished:
            best = max(f, key=lambda h: final(*h))
            out.append((best[1], final(*best)))
        return out

    def transcribe(self, audio: np.ndarray, options: DecodeOptions | None = None,
                   adapter: DecoderAdapter | None = None, **overrides) -> str:
        """Text of the audio, window by window (faster-whisper without timestamps)."""
        o = options or DecodeOptions(**overrides)
        texts = []
        for memory in self.encode(audio, adapter):
            r = self.decode(memory, o, adapter)
            if r.text.strip():
                texts.append(r.text.strip())
        return " ".join(texts)


_shared: "weakref.WeakValueDictionary[tuple, WhisperRecognizer]" = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_recognizer(model_dir: str | Path | None = None,
                      encoder: TorchWhisperEncoder | None = None) -> WhisperRecognizer:
    """The process's WhisperRecognizer of this model, loaded on first use and freed when its
    last user drops it, on ``encoder`` (default: ``shared_encoder``'s). In the single-process
    graph the ASR node's per-user table and the adaptation node's jobs then hold one decoder
    (~120 MB for tiny.en) on the ASR front end's encoder, not a copy each. Adapters are per
    call, never written into the shared modules; torch threads are the caller's business."""
    from ..models import resolve_whisper

    path = resolve_whisper(str(model_dir) if model_dir else None)
    encoder = encoder if encoder is not None else shared_encoder(path)
    # the entry holds its encoder, so the encoder's id is not reused while the entry lives
    key = (str(Path(path).resolve()), id(encoder))
    with _shared_lock:
        rec = _shared.get(key)
        if rec is None:
            rec = WhisperRecognizer(path, encoder=encoder)
            _shared[key] = rec
        return rec
