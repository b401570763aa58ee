"""The frozen LLM: loads a local transformers folder offline, embeds text with its own
embedding table, and generates greedily from input embeddings with the KV cache, streaming.

Also ``EmbeddingTable``: just the token embedding matrix (read from the safetensors file, no
model built), which is all that EmbedLink training needs from the LLM; and ``shared_llm``: one
loaded LLM per process for every node that asks for the same one (the single-process graph).
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..models import resolve_llm


def resolve_torch_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return device


def llm_id(path: Path) -> str:
    """Identifies the LLM for checkpoint checks: folder name and embedding width."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    return f"{Path(path).resolve().name}:{cfg['hidden_size']}"


def load_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


class EmbeddingTable:
    """The LLM's input embedding matrix and tokenizer, without the transformer (for EmbedLink)."""

    def __init__(self, model_path: str | os.PathLike | None = None):
        from safetensors import safe_open

        self.path = resolve_llm(model_path)
        self.tokenizer = load_tokenizer(self.path)
        weight = None
        for f in sorted(self.path.glob("*.safetensors")):
            with safe_open(str(f), "pt") as st:
                keys = [k for k in st.keys() if k.endswith("embed_tokens.weight")]
                if keys:
                    weight = st.get_tensor(keys[0]).float()
                    break
        if weight is None:
            raise ValueError(f"no embed_tokens.weight in {self.path}")
        self._set(weight)

    def _set(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.dim = int(weight.shape[1])
        self.model_id = llm_id(self.path)

    @classmethod
    def from_llm(cls, llm: "FrozenLLM") -> "EmbeddingTable":
        """The table of an LLM already loaded: no second copy when it is fp32 on the CPU."""
        table = cls.__new__(cls)
        table.path, table.tokenizer = llm.path, llm.tokenizer
        table._set(llm.embedding.weight.detach().float().cpu())
        return table

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def embed_ids(self, ids) -> torch.Tensor:
        return self.weight[torch.as_tensor(ids, dtype=torch.long)]


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prefill_s: float
    decode_s: float
    first_token_s: float
    stopped: bool                  # ended on an end token (not the token limit)
    timings: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return len(self.token_ids) / self.decode_s if self.decode_s > 0 else 0.0


@dataclass
class Gate:
    """Audio tokens that the rest of the sequence sees through a gate: an additive attention
    bias on them as keys (log of the gate: 0 = open, -inf = closed), for every query after
    them. The other inputs keep the positions they would have without the gated tokens, so with
    every gate closed the model computes exactly what it computes on the ungated text alone
    (the cascade). ``start``: index of the first gated token among the new inputs;
    ``bias``: (k,) per gated token; ``positions``: (k,) their position offsets from ``start``'s
    position (e.g. spread over the transcript span they accompany)."""
    start: int
    bias: torch.Tensor
    positions: torch.Tensor

    def __post_init__(self):
        self._key_bias = None      # (total,) bias of every cached key, filled by prefill
        self._next_position = 0

    def prefill_inputs(self, past_len: int, n: int, device, dtype) -> dict:
        k = int(self.bias.shape[0])
        if not 0 <= self.start <= n - k:
            raise ValueError(f"gated tokens [{self.start}, {self.start + k}) outside the "
                             f"{n} inputs")
        key_bias = torch.zeros(past_len + n, dtype=dtype, device=device)
        key_bias[past_len + self.start:past_len + self.start + k] = self.bias.to(device, dtype)
        causal = torch.full((n, past_len + n), float("-inf"), dtype=dtype, device=device)
        causal = torch.triu(causal, diagonal=past_len + 1)       # row i sees keys <= past_len+i
        mask = causal + key_bias.view(1, -1)
        # a gated token's own row must see itself and the prefix unbiased (no all -inf row)
        rows = torch.arange(self.start, self.start + k, device=device)
        mask[rows, past_len + rows] = 0.0
        # positions: ungated inputs as if the gated ones were absent; gated ones at start + offset
        plain = torch.ones(n, dtype=torch.bool, device=device)
        plain[self.start:self.start + k] = False
        pos = torch.empty(n, dtype=torch.long, device=device)
        pos[plain] = past_len + torch.arange(n - k, device=device)
        pos[~plain] = past_len + self.start + self.positions.to(device).long()
        self._key_bias = key_bias
        self._next_position = past_len + n - k
        return {"attention_mask": mask.view(1, 1, n, past_len + n),
                "position_ids": pos.view(1, n)}

    def step_inputs(self, total: int, device, dtype) -> dict:
        """One decoding step: the new token attends every cached key with its bias."""
        if self._key_bias is None:
            raise RuntimeError("Gate.step_inputs before prefill_inputs")
        grow = total - self._key_bias.shape[0]
        if grow > 0:
            self._key_bias = torch.cat([self._key_bias,
                                        torch.zeros(grow, dtype=dtype, device=device)])
        pos = torch.tensor([[self._next_position]], device=device)
        self._next_position += 1
        return {"attention_mask": self._key_bias[:total].view(1, 1, 1, total),
                "position_ids": pos}


class FrozenLLM:
    """A causal LM used read-only: embeddings in, greedy text out."""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "auto",
                 dtype: str = "auto", int8: bool = False, threads: int = 0):
        from transformers import AutoModelForCausalLM

        if threads > 0:
            torch.set_num_threads(threads)
        self.path = resolve_llm(model_path)
        self.device = resolve_torch_device(device)
        if dtype == "auto":
            dtype = "float16" if self.device == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        self.tokenizer = load_tokenizer(self.path)
        model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=self.dtype,
                                                     local_files_only=True)
        model.eval().requires_grad_(False)
        if int8:
            if self.device != "cpu":
                raise ValueError("int8 dynamic quantization runs on CPU only")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                           dtype=torch.qint8)
        self.model = model.to(self.device)
        self.int8 = int8
        self.dim = int(model.config.hidden_size)
        self.model_id = llm_id(self.path)
        self.stop_ids = self._stop_ids()
        self._token_norms = None   # the token embeddings' lengths, for snap()
        # held by whoever selects a LoRA adapter and runs the model, so that two users of one
        # shared LLM (threads of the single-process graph) never run under each other's adapter
        self.lock = threading.RLock()

    def _stop_ids(self) -> set[int]:
        ids = set()
        for tok in (self.tokenizer.eos_token, "<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            if tok is not None:
                tid = self.tokenizer.convert_tokens_to_ids(tok)
                if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                    ids.add(tid)
        eos = self.model.generation_config.eos_token_id
        ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids

    @property
    def embedding(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    def embed_ids(self, ids) -> torch.Tensor:
        return self.embedding(torch.as_tensor(ids, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def snap(self, vectors: torch.Tensor) -> torch.Tensor:
        """Each (n, dim) vector replaced by the embedding of its nearest token (cosine)."""
        table = self.embedding.weight
        if self._token_norms is None:   # the norms only: no second copy of the table
            self._token_norms = table.float().norm(dim=-1).clamp_min(1e-12)
        cosine = (vectors.to(self.device, table.dtype) @ table.T).float() / self._token_norms
        return self.embed_ids(cosine.argmax(-1))

    @torch.inference_mode()
    def prefill(self, embeds: torch.Tensor, cache=None, gate: "Gate | None" = None):
        """Run (1, n, dim) embeddings through the model; return (logits of last, cache).
        ``gate``: an additive attention bias on some of these inputs as keys, and their
        positions (see Gate); None runs them as plain causal input."""
        past = copy.deepcopy(cache) if cache is not None else None
        past_len = past.get_seq_length() if past is not None else 0
        n = embeds.shape[1]
        if gate is None:
            kwargs = {"attention_mask": torch.ones(1, past_len + n, dtype=torch.long,
                                                   device=self.device)}
        else:
            kwargs = gate.prefill_inputs(past_len, n, self.device, self.dtype)
        out = self.model(inputs_embeds=embeds.to(self.device, self.dtype),
                         past_key_values=past, use_cache=True, **kwargs)
        return out.logits[:, -1], out.past_key_values

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, max_new_tokens: int = 48, cache=None,
                 on_token: Callable[[str], None] | None = None,
                 single_line: bool = False, gate: "Gate | None" = None,
                 max_repeats: int = 0) -> Generation:
        """Greedy decoding from (1, n, dim) input embeddings, appended to an optional cached
        prefix (its KV cache is copied, so one prefix serves every request). ``single_line``:
        the answer ends at its first line break (a verbatim repeat is one line; small LLMs
        tend to add a chatty second paragraph). ``max_repeats``: the reply ends when a run of
        up to 8 tokens comes back more than this many times in a row (a small LLM can loop:
        "to to to ..."); 0 lets it loop."""
        t0 = time.perf_counter()
        logits, past = self.prefill(embeds, cache, gate)
        t_prefill = time.perf_counter() - t0
        ids: list[int] = []
        text_so_far = ""
        stopped = False
        first_token_s = 0.0
        total = past.get_seq_length()
        for step in range(max_new_tokens):
            next_id = int(torch.argmax(logits, dim=-1))
            if step == 0:
                first_token_s = time.perf_counter() - t0
            if next_id in self.stop_ids:
                stopped = True
                break
            ids.append(next_id)
            if max_repeats and looping(ids, max_repeats):
                ids.pop()   # the token that made one repeat too many (not streamed yet)
                stopped = True
                break
            if single_line or on_token is not None:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if single_line and "\n" in text.strip():
                    stopped = True
                    break
            if on_token is not None:
                if len(text) > len(text_so_far):
                    on_token(text[len(text_so_far):])
                    text_so_far = text
            total += 1
            step_inputs = ({"attention_mask": torch.ones(1, total, dtype=torch.long,
                                                         device=self.device)} if gate is None
                           else gate.step_inputs(total, self.device, self.dtype))
            out = self.model(input_ids=torch.tensor([[next_id]], device=self.device),
                             past_key_values=past, use_cache=True, **step_inputs)
            logits, past = out.logits[:, -1], out.past_key_values
        decode_s = time.perf_counter() - t0 - t_prefill
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if single_line:
            text = text.split("\n")[0].strip()
        return Generation(text, ids, t_prefill, decode_s, first_token_s, stopped)


def looping(ids: list[int], max_repeats: int, longest: int = 8) -> bool:
    """True when the tail of ``ids`` is one run of 1..``longest`` tokens repeated more than
    ``max_repeats`` times in a row."""
    for period in range(1, longest + 1):
        n = period * (max_repeats + 1)
        if len(ids) < n:
            break
        tail = ids[-n:]
        if all(tail[i] == tail[i % period] for i in range(n)):
            return True
    return False


_shared: "weakref.WeakValueDictionary[tuple, FrozenLLM]" = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_llm(model_path=None, device: str = "auto", dtype: str = "auto",
               int8: bool = False) -> FrozenLLM:
    """The process's FrozenLLM for these settings, loaded on first use and freed when its last
    user drops it. Nodes in one process (the single-process graph) then hold one copy; nodes in
    their own processes each get theirs, as before. Torch threads are the caller's business."""
    key = (str(resolve_llm(model_path).resolve()), resolve_torch_device(device), dtype, int8)
    with _shared_lock:
        llm = _shared.get(key)
        if llm is None:
            llm = FrozenLLM(model_path, device, dtype, int8)
            _shared[key] = llm
        return llm


def loaded_llms() -> int:
    """How many LLMs ``shared_llm`` holds loaded in this process now."""
    with _shared_lock:
        return len(_shared)
