"""A projector as one value, and its checkpoint: one safetensors file whose header also carries
the JSON metadata (so the file alone can travel in a ROS message), plus a readable .json copy.

``Projector`` = the BridgeFormer + its metadata + (optionally) the LoRA adapter of the LLM that
was trained with it. Training returns its parts, checkpoints store and load it, serving takes it.

Metadata: format, version, parent version, ASR model id and dim, LLM id and dim, every
projector setting, the prompt, training data summary and metrics. Loading refuses a checkpoint
that does not fit the loaded ASR/LLM and says which field differs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .lora import PREFIX as LORA_PREFIX
from .lora import LoraSettings
from .projector import BridgeFormer, ProjectorConfig

FORMAT = "tinyalign-projector/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incomplete or for other models."""


@dataclass
class ProjectorMeta:
    asr_model_id: str
    llm_model_id: str
    projector: dict
    version: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parent_version: str = ""
    prompt: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    int8: bool = False
    lora: dict = field(default_factory=dict)   # LoRA settings when the checkpoint carries one
    format: str = FORMAT

    @property
    def asr_dim(self) -> int:
        return int(self.projector["asr_dim"])

    @property
    def llm_dim(self) -> int:
        return int(self.projector["llm_dim"])

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["asr_dim"], d["llm_dim"] = self.asr_dim, self.llm_dim
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ProjectorMeta":
        d = json.loads(text)
        d.pop("asr_dim", None), d.pop("llm_dim", None)
        if d.get("format") != FORMAT:
            raise CheckpointError(f"not a tinyalign projector (format {d.get('format')!r})")
        return cls(**d)


@dataclass
class LlmAdapter:
    """A LoRA adapter of the frozen LLM, trained with a projector and served with it."""
    settings: LoraSettings
    state: dict            # checkpoint keys (lora.PREFIX + peft name) -> float32 tensors


@dataclass
class Projector:
    model: BridgeFormer
    meta: ProjectorMeta
    adapter: LlmAdapter | None = None

    @property
    def version(self) -> str:
        return self.meta.version

    def to(self, device) -> "Projector":
        self.model.to(device)
        return self


def _int8_state(model: BridgeFormer) -> dict[str, torch.Tensor]:
    """Per-output-row symmetric int8 weights (2-D tensors) + fp32 scales; the rest stays fp32."""
    out = {}
    for name, t in model.state_dict().items():
        if t.dim() == 2 and t.is_floating_point():
            scale = t.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            out[name + ".q8"] = torch.round(t / scale).to(torch.int8)
            out[name + ".scale"] = scale.float()
        else:
            out[name] = t.float().contiguous()
    return out


def _dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        if name.endswith(".q8"):
            base = name[:-3]
            out[base] = t.float() * state[base + ".scale"]
        elif not name.endswith(".scale"):
            out[name] = t
    return out


def stored_meta(projector: Projector, int8: bool = False) -> ProjectorMeta:
    """The metadata a checkpoint of ``projector`` carries (a copy: the projector is untouched)."""
    return dataclasses.replace(
        projector.meta, int8=int8, projector=projector.model.config.to_dict(),
        lora=projector.adapter.settings.to_dict() if projector.adapter else {})


def to_bytes(projector: Projector, int8: bool = False) -> bytes:
    """The checkpoint as bytes; the LLM adapter, if any, travels with it in float32."""
    from safetensors.torch import save

    model, meta = projector.model, stored_meta(projector, int8)
    state = _int8_state(model) if int8 else {k: v.float().contiguous()
                                             for k, v in model.state_dict().items()}
    if projector.adapter:
        state.update(projector.adapter.state)
    return save(state, metadata={"tinyalign": meta.to_json()})


def save_checkpoint(projector: Projector, path: str | os.PathLike, int8: bool = False) -> Path:
    """Atomic write (temp file + rename): a crash or a full disk never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(projector, int8)
    meta = stored_meta(projector, int8)
    for target, payload in ((path, data), (path.with_suffix(".json"), meta.to_json().encode())):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)   # mkstemp makes 0600; checkpoints are shared, installed files
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


def from_bytes(data: bytes) -> Projector:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = ProjectorMeta.from_json(header["__metadata__"]["tinyalign"])
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"corrupt or foreign projector checkpoint: {exc}") from exc
    try:
        model = BridgeFormer(ProjectorConfig.from_dict(meta.projector))
        lora = {k: v for k, v in state.items() if k.startswith(LORA_PREFIX)}
        adapter = LlmAdapter(LoraSettings(**meta.lora), lora) if lora else None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint settings not understood by this version: {exc}") \
            from exc
    state = _dequantize({k: v for k, v in state.items() if not k.startswith(LORA_PREFIX)})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not match its settings: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    return Projector(model.eval(), meta, adapter)


def load_checkpoint(path: str | os.PathLike, asr_model_id: str | None = None,
                    llm_model_id: str | None = None) -> Projector:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"projector checkpoint not found: {path}")
    projector = from_bytes(path.read_bytes())
    check_compatible(projector.meta, asr_model_id, llm_model_id, source=str(path))
    return projector


def check_compatible(meta: ProjectorMeta, asr_model_id: str | None, llm_model_id: str | None,
                     source: str = "checkpoint") -> None:
    for name, have, want in (("asr_model_id", asr_model_id, meta.asr_model_id),
                             ("llm_model_id", llm_model_id, meta.llm_model_id)):
        if have is None:
            continue
        have_dim, want_dim = have.rsplit(":", 1)[-1], want.rsplit(":", 1)[-1]
        if have_dim != want_dim:
            raise CheckpointError(f"{source}: {name} differs: the projector was trained for "
                                  f"{want!r} (dim {want_dim}), the loaded model is {have!r} "
                                  f"(dim {have_dim})")
        if have != want:
            raise CheckpointError(f"{source}: {name} differs: projector trained for {want!r}, "
                                  f"loaded model is {have!r}")
