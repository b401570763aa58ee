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


def has_top_lora(adapter) -> bool:
    """Whether a DecoderAdapter carries LoRA pairs for the encoder's last layer."""
    return adapter is not None and any(k in adapter.lora for k in TOP_KEYS)


def _lora(y, x, adapter, key):
    pair = adapter.lora.get(key) if adapter is not None else None
    if pair is None:
        return y
    return y + adapter.scale * F.linear(F.linear(x, pair[0]), pair[1])


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
        B, T, D = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(B, T, 3, self.heads, D // self.heads) \
            .permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)
        x = x + self.out(a)
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
    def top_inputs(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the last layer's attention output projection and FFN read, frame by frame:
        (residual input, attention context before the output projection), each (B, T, dim).
        A per-user adapter of those two (``TOP_KEYS``) changes no key or value of the
        attention, so these are computed once and the adapted frames cost only ``top``."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"at most {2 * self.positions.shape[0]} mel frames per window")
        x = x + self.positions[:x.shape[1]]
        for layer in self.layers[:-1]:
            x = layer(x)
        last = self.layers[-1]
        B, T, D = x.shape
        q, k, v = last.qkv(last.attn_norm(x)).view(B, T, 3, last.heads, D // last.heads) \
            .permute(2, 0, 3, 1, 4)
        return x, F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)

    def top(self, x: torch.Tensor, context: torch.Tensor, adapter=None) -> torch.Tensor:
        """The last layer from ``top_inputs`` on, and the final norm; ``adapter`` (a
        DecoderAdapter whose ``lora`` may hold ``TOP_KEYS``) adds its LoRA pairs."""
        last = self.layers[-1]
        lin = lambda key, m, z: _lora(m(z), z, adapter, key)  # noqa: E731
        x = x + lin("encoder.top.out", last.out, context)
        h = F.gelu(lin("encoder.top.ffn1", last.ffn1, last.ffn_norm(x)))
        return self.norm(x + lin("encoder.top.ffn2", last.ffn2, h))

    def adapt_frames(self, memory: torch.Tensor, x: torch.Tensor, context: torch.Tensor,
                     adapter) -> torch.Tensor:
        """``memory`` (B, T, dim) with its first ``x.shape[1]`` frames (those holding audio)
        recomputed by ``top`` with the adapter's encoder LoRA pairs, as they were trained; the
        same tensor when the adapter has none."""
        if not has_top_lora(adapter):
            return memory
        memory = memory.clone()
        memory[:, :x.shape[1]] = self.top(x, context, adapter)
        return memory

    def adaptable(self) -> dict:
        """LoRA key -> the linear it adapts (``TOP_KEYS``)."""
        last = self.layers[-1]
        return {"encoder.top.out": last.out, "encoder.top.ffn1": last.ffn1,
                "encoder.top.ffn2": last.ffn2}

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """(n_mels, n) unpadded log-mel -> (ceil(n/2), dim) float32."""
        x = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(0)
        return self.forward(x)[0].numpy()
