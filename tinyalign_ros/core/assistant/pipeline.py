"""The assistant end to end: encoder features -> projector -> injected prompt -> frozen LLM.

``Assistant.respond_with`` is the aligned path (Tiny-Align) with a given projector;
``respond_text`` is the cascade (ASR transcript as text, same prompt) and, given the true text,
the quality ceiling.

Prompts: an aligned response uses the prompt template its projector was trained with (recorded
in its checkpoint), with this assistant's task and hint switch (``PromptConfig.with_recorded``).
The cascade uses the assistant's own prompt without the hint (its text already is the
transcript; few-shot turns that show a hint the cascade's turn lacks measured worse: real
speaker 4.7 % -> 12.5 % WER on 12 utterances). Each distinct prompt's prefix
KV cache is computed once. LLM adapters carried by projectors are loaded under names private to
this assistant and freed by ``retire`` once their projector is no longer served.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..settings import setting
from .checkpoint import Projector, load_checkpoint
from .llm import FrozenLLM, Generation
from .prompt import PromptBuilder, PromptConfig


@dataclass
class GenerationConfig:
    max_new_tokens: int = setting(40, "longest response, in tokens", live=True)
    max_repeats: int = setting(2, "a response ends when a run of up to 8 tokens comes back more "
                                  "than this many times in a row (small LLMs loop: 'to to to "
                                  "...'); 0: never cut", live=True)
    audio_only_tokens: str = setting("snapped", "audio tokens that reach the LLM with no "
                                     "transcript (the paper's audio-only mode): 'snapped' to "
                                     "the LLM's nearest token embeddings (measured better for "
                                     "every bench user: docs/BENCHMARKS.md) or 'continuous'",
                                     live=True, choices=("snapped", "continuous"))


@dataclass
class Reply:
    text: str
    generation: Generation
    projector_s: float = 0.0
    projector_version: str = ""
    gate_shut: bool = False    # a gated projector's audio was left out: the cascade's reply

    @property
    def timings(self) -> dict:
        g = self.generation
        return {"projector_s": self.projector_s, "prefill_s": g.prefill_s, "decode_s": g.decode_s,
                "first_token_s": g.first_token_s + self.projector_s, "tokens": len(g.token_ids)}


class Assistant:
    def __init__(self, llm: FrozenLLM, prompt: PromptConfig | None = None,
                 max_new_tokens: int | None = None, max_repeats: int | None = None,
                 audio_only_tokens: str | None = None):
        defaults = GenerationConfig()
        self.llm = llm
        self.max_new_tokens = max_new_tokens or defaults.max_new_tokens
        self.max_repeats = defaults.max_repeats if max_repeats is None else max_repeats
        self.audio_only_tokens = audio_only_tokens or defaults.audio_only_tokens
        self._builders: dict[tuple, PromptBuilder] = {}
        self._caches: dict[tuple, object] = {}     # (prompt key, adapter name) -> prefix KV
        self._adapters: set[str] = set()           # adapters this assistant loaded
        self._retired: set[str] = set()            # to free once no request uses them
        self.projector: Projector | None = None    # the one respond_features uses
        self.set_prompt(prompt or PromptConfig())

    # ---- prompts
    def set_prompt(self, config: PromptConfig) -> None:
        """The assistant's prompt; the prefixes of earlier prompts are dropped."""
        with self.llm.lock, self._no_adapter():
            self._builders.clear()
            self._caches.clear()
            self.prompt = self._builder(config)
            self.text_prompt = self._builder(dataclasses.replace(config, transcript_hint=False))
            for builder in (self.prompt, self.text_prompt):   # prefill now, not on a request
                self._prefix_cache(builder, "")

    def _builder(self, config: PromptConfig) -> PromptBuilder:
        key = config.key()
        if key not in self._builders:
            self._builders[key] = PromptBuilder(self.llm.tokenizer, config)
        return self._builders[key]

    def prompt_for(self, projector: Projector | None) -> PromptBuilder:
        """The prompt an aligned response with this projector uses (ValueError when the
        projector was trained for another task)."""
        if projector is None:
            return self.prompt
        return self._builder(self.prompt.config.with_recorded(
            projector.meta.prompt, f"projector {projector.version}"))

    def _prefix_cache(self, builder: PromptBuilder, adapter: str):
        """The KV cache of a prompt's prefix under an adapter ('' = none); caller holds the
        LLM lock with that adapter active."""
        key = (builder.config.key(), adapter)
        if key not in self._caches:
            _, self._caches[key] = self.llm.prefill(
                self.llm.embed_ids(builder.prefix_ids).unsqueeze(0))
        return self._caches[key]

    def _no_adapter(self):
        from .lora import no_adapter

        return no_adapter(self.llm)

    # ---- projectors
    def load_projector(self, path, asr_model_id: str | None = None) -> Projector:
        self.use_projector(load_checkpoint(path, asr_model_id, self.llm.model_id))
        return self.projector

    def check_fits(self, projector: Projector) -> None:
        if projector.model.config.llm_dim != self.llm.dim:
            raise ValueError(f"projector makes {projector.model.config.llm_dim}-dim tokens, "
                             f"the LLM takes {self.llm.dim}")
        self.prompt_for(projector)

    def use_projector(self, projector: Projector) -> None:
        self.check_fits(projector)
        projector.model.eval().to(self.llm.device)
        self.projector = projector

    def _adapter_name(self, projector: Projector) -> str:
        # private to this assistant: two assistants sharing one LLM never free each other's
        return f"a{id(self):x}_{projector.version or id(projector)}"

    def retire(self, projector: Projector) -> None:
        """The projector is no longer served: free its LLM adapter and the adapter's prefix
        caches (now, or after the request that still uses it)."""
        if projector.adapter is None:
            return
        name = self._adapter_name(projector)
        with self.llm.lock:
            self._retired.add(name)
            self._free_retired()

    def _free_retired(self) -> None:
        from .lora import remove_adapter

        for name in list(self._retired):
            if name in self._adapters:
                remove_adapter(self.llm, name)
                self._adapters.discard(name)
            for key in [k for k in self._caches if k[1] == name]:
                del self._caches[key]
            self._retired.discard(name)

    @property
    def loaded_adapters(self) -> int:
        return len(self._adapters)

    def _activate_adapter(self, projector: Projector) -> str:
        from .lora import load_adapter

        name = self._adapter_name(projector)
        self._retired.discard(name)   # served again (e.g. after a rollback)
        if name not in self._adapters:
            load_adapter(self.llm, name, projector.adapter.settings, projector.adapter.state)
            self._adapters.add(name)
        self.llm.model.set_adapter(name)
        return name

    # ---- responses
    @torch.inference_mode()
    def project(self, features: np.ndarray, projector: Projector) -> torch.Tensor:
        model = projector.model
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if x.dim() != 2 or x.shape[-1] != model.config.asr_dim or x.shape[0] == 0:
            raise ValueError(f"features have shape {tuple(x.shape)}, the projector expects "
                             f"(frames, {model.config.asr_dim})")
        if not torch.all(torch.isfinite(x)):
            raise ValueError("features hold NaN/inf values")
        tokens, mask, _ = model(x.unsqueeze(0).to(self.llm.device))
        return tokens[0][mask[0]]

    def _generate(self, builder: PromptBuilder, middle: torch.Tensor, suffix_ids, on_token,
                  max_new_tokens, projector: Projector | None = None, gate=None) -> Generation:
        suffix = self.llm.embed_ids(suffix_ids)
        embeds = torch.cat([middle.to(self.llm.dtype), suffix]).unsqueeze(0)
        with self.llm.lock:   # the adapter chosen here is the one the generation runs under
            if projector is not None and projector.adapter is not None:
                adapter, context = self._activate_adapter(projector), nullcontext()
            else:
                adapter, context = "", self._no_adapter()
            try:
                with context:
                    cache = self._prefix_cache(builder, adapter)
                    return self.llm.generate(embeds, max_new_tokens or self.max_new_tokens,
                                             cache=cache, on_token=on_token,
                                             single_line=builder.config.single_line, gate=gate,
                                             max_repeats=self.max_repeats)
            finally:
                self._free_retired()

    def respond_features(self, features: np.ndarray, transcript: str | None = None,
                         on_token: Callable[[str], None] | None = None,
                         max_new_tokens: int | None = None,
                         confidence: float | None = None) -> Reply:
        if self.projector is None:
            raise RuntimeError("no projector loaded")
        return self.respond_with(self.projector, features, transcript, on_token, max_new_tokens,
                                 confidence)

    def respond_with(self, projector: Projector, features: np.ndarray,
                     transcript: str | None = None,
                     on_token: Callable[[str], None] | None = None,
                     max_new_tokens: int | None = None,
                     confidence: float | None = None) -> Reply:
        """Aligned response with a given projector (callers that swap projectors pass theirs
        per request, so a swap never changes a request in flight). A projector with a gate was
        trained as the hybrid input and is served that way (respond_hybrid), given the
        recogniser's ``confidence`` in the transcript where it is known."""
        if projector.model.config.gate != "none":
            return self.respond_hybrid(projector, features, transcript or "", None, on_token,
                                       max_new_tokens, confidence)
        return self.respond_aligned(projector, features, transcript, on_token, max_new_tokens)

    def respond_aligned(self, projector: Projector, features: np.ndarray,
                        transcript: str | None = None,
                        on_token: Callable[[str], None] | None = None,
                        max_new_tokens: int | None = None) -> Reply:
        """The paper's aligned path: the projector's audio tokens in the injected prompt (with
        the transcript after them where the prompt has the hint), whatever gate the projector
        has; for a gated one with no transcript, this is its audio-only mode."""
        builder = self.prompt_for(projector)
        t0 = time.perf_counter()
        audio_tokens = self.project(features, projector)
        if self.audio_only_tokens == "snapped" and not builder.hinted(transcript):
            audio_tokens = self.llm.snap(audio_tokens)
        projector_s = time.perf_counter() - t0
        gen = self._generate(builder, audio_tokens, builder.suffix_ids(transcript), on_token,
                             max_new_tokens, projector)
        return Reply(gen.text, gen, projector_s, projector.version)

    def respond_hybrid(self, projector: Projector, features: np.ndarray, transcript: str,
                       gate_bias: float | torch.Tensor | None = None,
                       on_token: Callable[[str], None] | None = None,
                       max_new_tokens: int | None = None,
                       confidence: float | None = None) -> Reply:
        """The cascade's prompt and transcript, plus the projector's audio tokens placed before
        the transcript and seen by the LLM only through an attention gate (llm.Gate): bias 0
        is open, -inf closed, per audio token or one for all; None: the projector's own learned
        gate (closed for a projector trained without one). With the gate closed the reply is
        the cascade's (the same tokens); the audio can only add to what the transcript says.
        Each audio token takes the position of the transcript stretch it accompanies. With its
        own gate, a ``confidence`` at or above the projector's gate_max_confidence shuts it:
        the cascade answers, without the projector's cost."""
        from .llm import Gate

        if gate_bias is None and projector.model.gate_shut(confidence):
            reply = self.respond_text(transcript, on_token, max_new_tokens)
            return Reply(reply.text, reply.generation, 0.0, projector.version, gate_shut=True)

        ids = self.llm.tokenizer(transcript, add_special_tokens=False).input_ids
        t0 = time.perf_counter()
        audio = self.project(features, projector)
        projector_s = time.perf_counter() - t0
        k = audio.shape[0]
        if gate_bias is None:
            with torch.inference_mode():
                bias = projector.model.gate_bias(audio.float()).float()
        else:
            bias = torch.as_tensor(gate_bias, dtype=torch.float32).expand(k).clone()
        span = max(len(ids) - 1, 0)
        gate = Gate(0, bias, torch.linspace(0, span, k).round())
        with torch.inference_mode():
            middle = torch.cat([audio.to(self.llm.dtype), self.llm.embed_ids(ids)])
        gen = self._generate(self.text_prompt, middle, self.text_prompt.suffix_ids(None),
                             on_token, max_new_tokens, gate=gate)
        return Reply(gen.text, gen, projector_s, projector.version)

    def respond_text(self, text: str, on_token: Callable[[str], None] | None = None,
                     max_new_tokens: int | None = None) -> Reply:
        ids = self.llm.tokenizer(text, add_special_tokens=False).input_ids
        with torch.inference_mode():
            middle = self.llm.embed_ids(ids)
        gen = self._generate(self.text_prompt, middle, self.text_prompt.suffix_ids(None),
                             on_token, max_new_tokens)
        return Reply(gen.text, gen)
