"""The assistant end to end: encoder features -> projector -> injected prompt -> frozen LLM.

``Assistant.respond_features`` is the aligned path (Tiny-Align); ``respond_text`` is the cascade
(ASR transcript as text, same prompt) and, given the true text, the quality ceiling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .checkpoint import ProjectorMeta, load_checkpoint
from .llm import FrozenLLM, Generation
from .projector import BridgeFormer
from .prompt import PromptBuilder, PromptConfig


@dataclass
class Reply:
    text: str
    generation: Generation
    projector_s: float = 0.0
    projector_version: str = ""

    @property
    def timings(self) -> dict:
        g = self.generation
        return {"projector_s": self.projector_s, "prefill_s": g.prefill_s, "decode_s": g.decode_s,
                "first_token_s": g.first_token_s + self.projector_s, "tokens": len(g.token_ids)}


class Assistant:
    def __init__(self, llm: FrozenLLM, prompt: PromptConfig | None = None,
                 max_new_tokens: int = 48):
        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self.set_prompt(prompt or PromptConfig())
        self.projector: BridgeFormer | None = None
        self.meta: ProjectorMeta | None = None

    def set_prompt(self, config: PromptConfig) -> None:
        self.prompt = PromptBuilder(self.llm.tokenizer, config)
        self._adapter_prefix: dict = {}   # LoRA adapter name -> its prefix KV cache
        # the prefix (system + few-shot turns) is the same for every request: prefill it once
        with self.llm.lock, self._no_adapter():
            _, self._prefix_cache = self.llm.prefill(
                self.llm.embed_ids(self.prompt.prefix_ids).unsqueeze(0))

    def _no_adapter(self):
        from .lora import no_adapter

        return no_adapter(self.llm)

    # ---- projector
    def load_projector(self, path, asr_model_id: str | None = None) -> ProjectorMeta:
        model, meta = load_checkpoint(path, asr_model_id, self.llm.model_id)
        self.use_projector(model, meta)
        return meta

    def use_projector(self, model: BridgeFormer, meta: ProjectorMeta | None = None) -> None:
        if model.config.llm_dim != self.llm.dim:
            raise ValueError(f"projector makes {model.config.llm_dim}-dim tokens, "
                             f"the LLM takes {self.llm.dim}")
        self.projector = model.eval().to(self.llm.device)
        self.meta = meta

    @property
    def projector_version(self) -> str:
        return self.meta.version if self.meta else ""

    # ---- responses
    @torch.inference_mode()
    def project(self, features: np.ndarray, projector: BridgeFormer | None = None) -> torch.Tensor:
        projector = projector or self.projector
        if projector is None:
            raise RuntimeError("no projector loaded")
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if x.dim() != 2 or x.shape[-1] != projector.config.asr_dim or x.shape[0] == 0:
            raise ValueError(f"features have shape {tuple(x.shape)}, the projector expects "
                             f"(frames, {projector.config.asr_dim})")
        if not torch.all(torch.isfinite(x)):
            raise ValueError("features hold NaN/inf values")
        tokens, mask, _ = projector(x.unsqueeze(0).to(self.llm.device))
        return tokens[0][mask[0]]

    def _generate(self, middle: torch.Tensor, suffix_ids, on_token, max_new_tokens,
                  projector: BridgeFormer | None = None, meta: ProjectorMeta | None = None):
        from contextlib import nullcontext

        suffix = self.llm.embed_ids(suffix_ids)
        embeds = torch.cat([middle.to(self.llm.dtype), suffix]).unsqueeze(0)
        lora = getattr(projector, "lora_state", None) if projector is not None else None
        with self.llm.lock:   # the adapter chosen here is the one the generation runs under
            if lora:  # this projector brings its own LLM adapter: use it, with its own prefix
                name = self._activate_adapter(projector, meta)
                context, cache = nullcontext(), self._adapter_prefix[name]
            else:
                context, cache = self._no_adapter(), self._prefix_cache
            with context:
                return self.llm.generate(embeds, max_new_tokens or self.max_new_tokens,
                                         cache=cache, on_token=on_token,
                                         single_line=self.prompt.config.single_line)

    def _activate_adapter(self, projector: BridgeFormer, meta: ProjectorMeta | None) -> str:
        from .lora import LoraSettings, load_adapter

        name = f"p{meta.version if meta and meta.version else id(projector)}"
        if name not in self._adapter_prefix:
            load_adapter(self.llm, name, LoraSettings(**projector.lora_settings),
                         projector.lora_state)
            _, self._adapter_prefix[name] = self.llm.prefill(
                self.llm.embed_ids(self.prompt.prefix_ids).unsqueeze(0))
        self.llm.model.set_adapter(name)
        return name

    def respond_features(self, features: np.ndarray, transcript: str | None = None,
                         on_token: Callable[[str], None] | None = None,
                         max_new_tokens: int | None = None) -> Reply:
        return self.respond_with(self.projector, self.meta, features, transcript, on_token,
                                 max_new_tokens)

    def respond_with(self, projector: BridgeFormer, meta: ProjectorMeta | None,
                     features: np.ndarray, transcript: str | None = None,
                     on_token: Callable[[str], None] | None = None,
                     max_new_tokens: int | None = None) -> Reply:
        """Aligned response with a given projector (callers that swap projectors pass theirs
        per request, so a swap never changes a request in flight)."""
        t0 = time.perf_counter()
        audio_tokens = self.project(features, projector)
        projector_s = time.perf_counter() - t0
        gen = self._generate(audio_tokens, self.prompt.suffix_ids(transcript), on_token,
                             max_new_tokens, projector, meta)
        return Reply(gen.text, gen, projector_s, meta.version if meta else "")

    def respond_text(self, text: str, on_token: Callable[[str], None] | None = None,
                     max_new_tokens: int | None = None) -> Reply:
        ids = self.llm.tokenizer(text, add_special_tokens=False).input_ids
        with torch.inference_mode():
            middle = self.llm.embed_ids(ids)
        gen = self._generate(middle, self.prompt.suffix_ids(None), on_token, max_new_tokens)
        return Reply(gen.text, gen)
