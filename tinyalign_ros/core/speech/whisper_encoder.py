"""Whisper's encoder rebuilt in torch from the CTranslate2 model.bin, to encode only the frames
that hold speech.

CTranslate2 always encodes a 30 s window (1500 frames), so a 2 s command costs as much as 30 s
of audio. This encoder takes the unpadded log-mel and returns ceil(n/2) frames. Its states for
speech frames differ from the padded ones (attention no longer sees the padding), so it is a
different feature extractor: its model id carries a "+var" suffix and projectors trained on one
are refused with the other. With pad_to_30s=True it reproduces CTranslate2's output.
"""
from __future__ import annotations

import struct
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2_variables(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose names start with prefix."""
    data = Path(path).read_bytes()
    off = 0

    def take(fmt):
        nonlocal off
        value = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return value[0]

    def string():
        nonlocal off
        n = take("H")
        s = data[off:off + n - 1].decode()
        off += n
        return s

    version = take("I")
    if version < 5:
        raise ValueError(f"unsupported CTranslate2 model.bin version {version}")
    string()          # spec name
    take("I")         # revision
    out = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = take("B")
        nbytes = take("I")
        if name.startswith(prefix):
            if dtype not in _DTYPES:
                raise ValueError(f"{name}: dtype id {dtype} not supported (use a float model)")
            arr = np.frombuffer(data, _DTYPES[dtype], nbytes // np.dtype(_DTYPES[dtype]).itemsize,
                                off)
            out[name[len(prefix):]] = arr.reshape(shape) if shape else arr.reshape(())
        off += nbytes
    return out


#: LoRA keys of the encoder's last layer a per-user recogniser adapter may carry
TOP_KEYS = ("encoder.top.out", "encoder.top.ffn1", "encoder.top.ffn2")
#: ... and of the layer below it (the last layer's attention is then recomputed for the frames
#: with audio, over their new keys/values and the padding's base ones)
BELOW_KEYS = ("encoder.below.out", "encoder.below.ffn1", "encoder.below.ffn2")
ENCODER_KEYS = TOP_KEYS + BELOW_KEYS


def keys_depth(keys) -> int:
    """How many of the encoder's last layers LoRA on ``keys`` reaches (0: none)."""
    keys = set(keys)
    if keys & set(BELOW_KEYS):
        return 2
    return 1 if keys & set(TOP_KEYS) else 0


def encoder_depth(adapter) -> int:
    """How many of the encoder's last layers a DecoderAdapter's LoRA pairs reach (0: none)."""
    return 0 if adapter is None else keys_depth(adapter.lora)


def _lora(y, x, adapter, key):
    pair = adapter.lora.get(key) if adapter is not None else None
    if pair is None:
        return y
    return y + adapter.scale * F.linear(F.linear(x, pair[0]), pair[1])


def _qkv(layer, x):
    """(q, k, v) of a layer's self-attention, each (B, heads, T, dim / heads)."""
    B, T, D = x.shape
    return layer.qkv(layer.attn_norm(x)).view(B, T, 3, layer.heads, D // layer.heads) \
        .permute(2, 0, 3, 1, 4)


def split_attention(q, k_moving, v_moving, k_fixed, v_fixed):
    """Attention over keys/values given in two parts, one softmax over both: the first part
    (the frames an encoder adapter changes) carries gradients, the second (the padding, the
    base's) none, so neither the whole keys/values nor their gradients are ever built (by
    shape, ~37 MB an utterance at the decoder in recogniser training; the measured job peak
    fell ~0.1 GB at K = 50, docs/RECOGNIZER.md)."""
    scale = q.shape[-1] ** -0.5
    n = k_moving.shape[2]
    scores = torch.cat([q @ k_moving.transpose(-1, -2), q @ k_fixed.transpose(-1, -2)], -1)
    p = torch.softmax(scores * scale, -1)
    return p[..., :n] @ v_moving + p[..., n:] @ v_fixed


def _attend(layer, x):
    """A layer's attention context over all of x's frames, before the output projection."""
    return F.scaled_dot_product_attention(*_qkv(layer, x)).transpose(1, 2).reshape(x.shape)


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn1 = nn.Linear(dim, ff)
        self.ffn2 = nn.Linear(ff, dim)

    def forward(self, x):
        x = x + self.out(_attend(self, x))
        return x + self.ffn2(F.gelu(self.ffn1(self.ffn_norm(x))))


class TorchWhisperEncoder(nn.Module):
    def __init__(self, n_mels: int, dim: int, heads: int, ff: int, layers: int, ctx: int = 1500):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(ctx, dim))
        self.layers = nn.ModuleList(_Layer(dim, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    @classmethod
    def from_ct2(cls, model_dir: str | Path) -> "TorchWhisperEncoder":
        v = read_ct2_variables(Path(model_dir) / "model.bin")
        n_layers = len({k.split("/")[0] for k in v if k.startswith("layer_") and
                        k.split("/")[0][6:].isdigit()})
        dim, n_mels = v["conv1/weight"].shape[:2]
        ff = v["layer_0/ffn/linear_0/weight"].shape[0]
        heads = int(v["num_heads"]) if "num_heads" in v else dim // 64
        enc = cls(n_mels, dim, heads, ff, n_layers, v["position_encodings/encodings"].shape[0])
        t = lambda name: torch.from_numpy(np.array(v[name], dtype=np.float32))  # noqa: E731
        sd = {"conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
              "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
              "positions": t("position_encodings/encodings"),
              "norm.weight": t("layer_norm/gamma"), "norm.bias": t("layer_norm/beta")}
        for i in range(n_layers):
            p = f"layer_{i}/"
            sd.update({
                f"layers.{i}.attn_norm.weight": t(p + "self_attention/layer_norm/gamma"),
                f"layers.{i}.attn_norm.bias": t(p + "self_attention/layer_norm/beta"),
                f"layers.{i}.qkv.weight": t(p + "self_attention/linear_0/weight"),
                f"layers.{i}.qkv.bias": t(p + "self_attention/linear_0/bias"),
                f"layers.{i}.out.weight": t(p + "self_attention/linear_1/weight"),
                f"layers.{i}.out.bias": t(p + "self_attention/linear_1/bias"),
                f"layers.{i}.ffn_norm.weight": t(p + "ffn/layer_norm/gamma"),
                f"layers.{i}.ffn_norm.bias": t(p + "ffn/layer_norm/beta"),
                f"layers.{i}.ffn1.weight": t(p + "ffn/linear_0/weight"),
                f"layers.{i}.ffn1.bias": t(p + "ffn/linear_0/bias"),
                f"layers.{i}.ffn2.weight": t(p + "ffn/linear_1/weight"),
                f"layers.{i}.ffn2.bias": t(p + "ffn/linear_1/bias")})
        enc.load_state_dict(sd)
        return enc.eval().requires_grad_(False)

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, n) log-mel -> (B, ceil(n/2), dim); n at most 3000."""
        return self.top(*self.top_inputs(mel))

    @torch.inference_mode()
    def top_inputs(self, mel: torch.Tensor, n: int | None = None) -> tuple:
        """What the last layer's attention output projection and FFN read, frame by frame:
        (residual input, attention context before the output projection), each (B, T, dim).
        A per-user adapter of those two (``TOP_KEYS``) changes no key or value of the
        attention, so these are computed once and the adapted frames cost only ``top``.
        With ``n`` (the frames holding audio) also what ``BELOW_KEYS`` train on: the layer
        below's (residual input, attention context) for those frames, and the last layer's
        input for the other frames (the padding, whose states stay the base's)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"at most {2 * self.positions.shape[0]} mel frames per window")
        x = x + self.positions[:x.shape[1]]
        for layer in self.layers[:-2]:
            x = layer(x)
        x_below, context_below = x, _attend(self.layers[-2], x)
        x = self._after_attention(self.layers[-2], "encoder.below", x, context_below, None)
        out = (x, _attend(self.layers[-1], x))
        if n is None:
            return out
        return out + ((x_below[:, :n], context_below[:, :n], x[:, n:]),)

    @staticmethod
    def _after_attention(layer, prefix, x, context, adapter):
        """A layer's residual additions after its attention, with the adapter's pairs."""
        lin = lambda name, z: _lora(getattr(layer, name)(z), z, adapter,  # noqa: E731
                                    f"{prefix}.{name}")
        x = x + lin("out", context)
        return x + lin("ffn2", F.gelu(lin("ffn1", layer.ffn_norm(x))))

    def top(self, x: torch.Tensor, context: torch.Tensor, adapter=None) -> torch.Tensor:
        """The last layer from ``top_inputs`` on, and the final norm; ``adapter`` (a
        DecoderAdapter whose ``lora`` may hold ``TOP_KEYS``) adds its LoRA pairs."""
        return self.norm(self._after_attention(self.layers[-1], "encoder.top", x, context,
                                               adapter))

    def padding_kv(self, padding: torch.Tensor) -> tuple:
        """The last layer's keys and values of the padding frames, each (B, heads, T - n, d)."""
        _, k, v = _qkv(self.layers[-1], padding)
        return k, v

    def top_from_below(self, x: torch.Tensor, context: torch.Tensor, padding_kv: tuple,
                       adapter) -> tuple:
        """The last layer's (residual input, attention context) for the audio frames after the
        layer below with the adapter's ``BELOW_KEYS`` pairs: the frames' queries, keys and
        values are recomputed; the padding's keys and values (``padding_kv``) are the base's."""
        last = self.layers[-1]
        x = self._after_attention(self.layers[-2], "encoder.below", x, context, adapter)
        q, k, v = _qkv(last, x)
        a = split_attention(q, k, v, *padding_kv)
        return x, a.transpose(1, 2).reshape(x.shape)

    def adapt_frames(self, memory: torch.Tensor, x: torch.Tensor, context: torch.Tensor,
                     adapter, below: tuple | None = None) -> torch.Tensor:
        """``memory`` (B, T, dim) with its first ``x.shape[1]`` frames (those holding audio)
        recomputed with the adapter's encoder LoRA pairs, as they were trained: by ``top``
        from (x, context), or with ``BELOW_KEYS`` from ``below`` (``top_inputs`` with n); the
        same tensor when the adapter has none."""
        depth = encoder_depth(adapter)
        if depth == 0:
            return memory
        if depth == 2:
            if below is None:
                raise ValueError("an adapter of the encoder's last two layers needs the "
                                 "below inputs (top_inputs with n)")
            xb, cb, padding = below
            x, context = self.top_from_below(xb, cb, self.padding_kv(padding), adapter)
        memory = memory.clone()
        memory[:, :x.shape[1]] = self.top(x, context, adapter)
        return memory

    def adaptable(self) -> dict:
        """LoRA key -> the linear it adapts (``ENCODER_KEYS``)."""
        return {f"{prefix}.{name}": getattr(layer, name)
                for prefix, layer in (("encoder.top", self.layers[-1]),
                                      ("encoder.below", self.layers[-2]))
                for name in ("out", "ffn1", "ffn2")}

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """(n_mels, n) unpadded log-mel -> (ceil(n/2), dim) float32."""
        x = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(0)
        return self.forward(x)[0].numpy()


_shared: "weakref.WeakValueDictionary[str, TorchWhisperEncoder]" = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_encoder(model_dir: str | Path) -> TorchWhisperEncoder:
    """The process's CPU float32 encoder of this CTranslate2 model, loaded on first use and
    freed when its last user drops it: in the single-process graph the ASR front end and the
    adaptation node's jobs hold one copy. Never modified in place (adapters are per call)."""
    key = str(Path(model_dir).resolve())
    with _shared_lock:
        enc = _shared.get(key)
        if enc is None:
            enc = TorchWhisperEncoder.from_ct2(model_dir)
            _shared[key] = enc
        return enc
