"""BridgeFormer: the trainable bridge from ASR encoder states to LLM input embeddings.

    frame stacking (k frames -> 1, as SLAM-ASR/Ultravox do; k=1 turns it off) ->
    input MLP (k*asr_dim -> hidden) -> N transformer encoder layers (multi-head attention, NO
    positional encoding: Whisper's states already carry time) -> pooling to tokens ->
    output MLP (hidden -> llm_dim)

Pooling (a setting):
  fixed   adaptive average pooling over the valid frames to ``num_tokens`` (T) tokens, as in
          Tiny-Align. Text shorter than T is padded in the EmbedLink target (see embedlink.py).
  length  pooling to as many tokens as the text has (training) or as a small head predicts
          from the audio (inference), at most T. Each text token then owns a contiguous stretch
          of speech, and the LLM never sees padding tokens.
Cross-layer weight sharing (one layer's weights reused N times) shrinks the projector for
per-user storage, after the low-footprint ASR work cited by the project.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from ..settings import setting


@dataclass
class ProjectorConfig:
    asr_dim: int = 384               # set from the loaded models, not by users
    llm_dim: int = 576
    hidden: int = setting(384, "projector width")
    layers: int = setting(2, "transformer layers")
    heads: int = setting(6, "attention heads (must divide hidden)")
    ff_mult: int = setting(4, "feed-forward width as a multiple of hidden")
    dropout: float = setting(0.1, "dropout while training")
    share_layers: bool = setting(False, "one set of layer weights applied `layers` times")
    num_tokens: int = setting(32, "T: tokens out (fixed pooling) or the most tokens (length)")
    pooling: str = setting("length", "fixed: T tokens; length: as many tokens as the text "
                                     "has, predicted from the audio", choices=("fixed", "length"))
    stack: int = setting(4, "encoder frames (20 ms each) concatenated per position")
    gate: str = setting("none", "hybrid input (audio tokens beside the transcript behind an "
                                "attention gate): none, scalar (one learned gate) or token (a "
                                "gate per audio token, from its embedding)",
                        choices=("none", "scalar", "token"))
    gate_init: float = setting(-4.0, "initial gate logit (sigmoid(-4) = 0.018: nearly closed, "
                                     "so the hybrid starts as the cascade)")
    gate_max_confidence: float = setting(
        1.0, "the audio enters only while the recogniser's confidence in its transcript is "
             "below this; at or above it the gate is shut and the reply is the cascade's "
             "(1.0: it always enters). The base recipe sets it on held-out speech")

    def __post_init__(self):
        if self.pooling not in ("fixed", "length"):
            raise ValueError(f"pooling must be 'fixed' or 'length', got {self.pooling!r}")
        if self.gate not in ("none", "scalar", "token"):
            raise ValueError(f"gate must be none, scalar or token, got {self.gate!r}")
        if not 0.0 <= self.gate_max_confidence <= 1.0:
            raise ValueError(f"gate_max_confidence must be in [0, 1], got "
                             f"{self.gate_max_confidence}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if min(self.asr_dim, self.llm_dim, self.hidden, self.layers, self.num_tokens,
               self.stack) < 1:
            raise ValueError(f"projector sizes must be positive: {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProjectorConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown projector settings: {sorted(unknown)}")
        return cls(**d)


def pool_matrix(valid: torch.Tensor, lengths: torch.Tensor, max_frames: int,
                max_tokens: int) -> torch.Tensor:
    """(B, max_tokens, max_frames) averaging weights: token j of sample b is the mean of frames
    [floor(j*L/n), ceil((j+1)*L/n)) of its L valid frames, n = lengths[b] (adaptive_avg_pool1d's
    bins); rows past n and columns past L are zero."""
    B = valid.shape[0]
    j = torch.arange(max_tokens, device=valid.device).view(1, -1, 1).float()
    t = torch.arange(max_frames, device=valid.device).view(1, 1, -1).float()
    L = valid.view(B, 1, 1).float()
    n = lengths.view(B, 1, 1).clamp(min=1).float()
    start = torch.floor(j * L / n)
    end = torch.ceil((j + 1) * L / n)
    w = ((t >= start) & (t < end) & (j < n)).float()
    return w / w.sum(-1, keepdim=True).clamp(min=1.0)


class BridgeFormer(nn.Module):
    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = c = config
        self.input_mlp = nn.Sequential(nn.Linear(c.asr_dim * c.stack, c.hidden), nn.GELU(),
                                       nn.Linear(c.hidden, c.hidden))
        layer = nn.TransformerEncoderLayer(c.hidden, c.heads, c.hidden * c.ff_mult, c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        n_distinct = 1 if c.share_layers else c.layers
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(n_distinct))
        self.norm = nn.LayerNorm(c.hidden)
        self.output_mlp = nn.Sequential(nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                        nn.Linear(c.hidden, c.llm_dim))
        # predicts the text length (in LLM tokens) from the mean state, for pooling="length"
        self.length_head = nn.Sequential(nn.Linear(c.hidden, c.hidden // 2), nn.GELU(),
                                         nn.Linear(c.hidden // 2, 1))
        if c.gate != "none":
            self.gate_logit = nn.Parameter(torch.tensor(float(c.gate_init)))
        if c.gate == "token":   # starts at gate_init for every token (zero weights)
            self.gate_head = nn.Linear(c.llm_dim, 1)
            nn.init.zeros_(self.gate_head.weight)
            nn.init.zeros_(self.gate_head.bias)

    def gate_bias(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., T, llm_dim) output tokens -> (..., T) additive attention bias of each token in
        the hybrid input, log(sigmoid(gate logit)): 0 = open, very negative = closed; -inf
        (always closed: the cascade) for a projector without a gate."""
        shape = tokens.shape[:-1]
        if self.config.gate == "none":
            return tokens.new_full(shape, float("-inf"))
        logit = self.gate_logit.expand(shape)
        if self.config.gate == "token":
            logit = logit + self.gate_head(tokens).squeeze(-1)
        return nn.functional.logsigmoid(logit)

    def gate_shut(self, confidence: float | None) -> bool:
        """True when the recogniser is confident enough that the audio is left out (the
        cascade answers); an unknown confidence (None) leaves it to the learned gate."""
        return (self.config.gate != "none" and confidence is not None
                and confidence >= self.config.gate_max_confidence)

    def stack_frames(self, features: torch.Tensor, frame_mask: torch.Tensor):
        """(B, L, D), (B, L) -> (B, ceil(L/k), k*D), (B, ceil(L/k)); padding frames are zeroed
        so they never leak into a stacked position."""
        k = self.config.stack
        if k == 1:
            return features, frame_mask
        B, L, D = features.shape
        pad = (-L) % k
        x = features * frame_mask.unsqueeze(-1)
        if pad:
            x = torch.cat([x, x.new_zeros(B, pad, D)], dim=1)
            frame_mask = torch.cat([frame_mask, frame_mask.new_zeros(B, pad)], dim=1)
        x = x.reshape(B, (L + pad) // k, k * D)
        return x, frame_mask.reshape(B, -1, k).any(-1)

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, P, k*asr_dim) stacked states and (B, P) True-for-valid mask -> (B, P, hidden)."""
        x = self.input_mlp(features)
        pad = ~frame_mask
        for i in range(self.config.layers):
            layer = self.layers[0 if self.config.share_layers else i]
            x = layer(x, src_key_padding_mask=pad)
        return self.norm(x)

    def predict_lengths(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        m = frame_mask.unsqueeze(-1).float()
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.length_head(mean).squeeze(-1)        # in tokens, float

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None,
                token_lengths: torch.Tensor | None = None):
        """Returns (tokens (B, T, llm_dim), token_mask (B, T), predicted lengths (B,)).

        token_lengths: text lengths to pool to (pooling="length", training); None at inference
        uses the predicted lengths. With pooling="fixed" every one of the T tokens is used.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.asr_dim:
            raise ValueError(f"expected features (B, L, {self.config.asr_dim}), "
                             f"got {tuple(features.shape)}")
        B, L, _ = features.shape
        if frame_mask is None:
            frame_mask = torch.ones(B, L, dtype=torch.bool, device=features.device)
        if torch.any(frame_mask.sum(1) == 0):
            raise ValueError("an utterance has no valid frames")
        features, frame_mask = self.stack_frames(features, frame_mask)
        L = features.shape[1]
        valid = frame_mask.sum(1)
        hidden = self.encode(features, frame_mask)
        predicted = self.predict_lengths(hidden, frame_mask)
        T = self.config.num_tokens
        if self.config.pooling == "fixed":
            lengths = torch.full((B,), T, device=features.device, dtype=torch.long)
        elif token_lengths is not None:
            lengths = token_lengths.clamp(1, T).long()
        else:
            lengths = predicted.round().clamp(1, T).long()
        weights = pool_matrix(valid, lengths, L, T).to(hidden.dtype)
        pooled = torch.bmm(weights, hidden)                              # (B, T, hidden)
        tokens = self.output_mlp(pooled)
        token_mask = torch.arange(T, device=features.device).view(1, -1) < lengths.view(-1, 1)
        return tokens, token_mask, predicted

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def magnitude_prune(model: nn.Module, sparsity: float) -> int:
    """Zero the smallest-magnitude weights of every Linear layer (per layer); returns how many."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    zeroed = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and sparsity > 0:
                w = module.weight
                k = int(w.numel() * sparsity)
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    mask = w.abs() > threshold
                    zeroed += int((~mask).sum())
                    w.mul_(mask)
            if isinstance(module, nn.MultiheadAttention) and sparsity > 0:
                w = module.in_proj_weight
                k = int(w.numel() * sparsity)
                threshold = w.abs().flatten().kthvalue(k).values
                mask = w.abs() > threshold
                zeroed += int((~mask).sum())
                w.mul_(mask)
    return zeroed
