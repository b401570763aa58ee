"""Training the projector: EmbedLink, the cross-entropy baseline, and the two chained.

EmbedLink (Tiny-Align): the projected tokens are pulled towards the frozen LLM's own input
embeddings of the paired text; no LLM forward pass, only its embedding table is loaded.
  target   the text's token ids as they would appear in the prompt, embedded; longer than T
           is truncated to T. With pooling="length" the projector makes exactly as many tokens
           as the text has (so there is no padding) and learns to predict that count; with
           pooling="fixed" positions past the text are either trained towards the end-of-turn
           embedding (pad_target="eos", the feasibility run's choice) or left out of the loss
           (pad_target="mask").
  loss     MSE / mean(E^2) (scale-free: embedding entries are ~1e-2) + cos_weight x (1 - cos)
           on the text positions, + length_weight x SmoothL1(predicted length, text length).
Cross-entropy (SLAM-ASR style): the projected tokens sit inside the injected prompt, the frozen
LLM is teacher-forced on the text + end-of-turn, loss on those tokens only.
"embedlink+ce": EmbedLink warm start, then a short CE finish (the recipe that reached the
true-text ceiling in the feasibility run).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..assistant.checkpoint import LlmAdapter
from ..assistant.projector import BridgeFormer
from ..settings import check_choices, setting
from .data import FeatureItem

OBJECTIVES = ("embedlink", "ce", "embedlink+ce", "hybrid")
#: objectives that run the frozen LLM (and so need it and a prompt)
LLM_OBJECTIVES = ("ce", "embedlink+ce", "hybrid")


@dataclass
class TrainConfig:
    objective: str = setting("embedlink+ce", "embedlink (no LLM pass), ce (cross-entropy "
                                             "through the frozen LLM), embedlink+ce (EmbedLink "
                                             "warm start, CE finish) or hybrid (CE on the "
                                             "cascade's prompt and transcript plus the gated "
                                             "audio tokens; a projector with a gate)",
                             choices=OBJECTIVES)
    embedlink_epochs: int = setting(30, "EmbedLink epochs")
    ce_epochs: int = setting(3, "cross-entropy epochs")
    batch_size: int = setting(16, "utterances per step")
    micro_batch: int = setting(0, "run each step's batch through the model this many utterances "
                                  "at a time, adding up the gradients (the same step, less "
                                  "memory: the LLM's activations scale with it); 0 = all at once")
    lr: float = setting(1e-3, "learning rate (EmbedLink, or CE when CE is alone)")
    ce_lr: float = setting(3e-4, "learning rate of the CE finish of embedlink+ce")
    gate_lr: float = setting(0.05, "hybrid: learning rate of the projector's gate")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    cos_weight: float = setting(1.0, "EmbedLink: weight of (1 - cosine) beside the MSE")
    length_weight: float = setting(0.1, "weight of the token-count loss (length pooling)")
    pad_target: str = setting("eos", "fixed pooling: positions past the text learn the "
                                     "end-of-turn embedding (eos) or are left out (mask)",
                              choices=("eos", "mask"))
    grad_clip: float = setting(1.0, "gradient norm clip")
    max_steps: int = setting(0, "at most this many steps per stage; 0 = no cap")
    seed: int = setting(0, "random seed")
    threads: int = setting(0, "torch CPU threads; 0 = torch default")
    lora_rank: int = setting(0, "> 0: also train a LoRA adapter of this rank on the LLM in the "
                                "CE stage, stored in the projector's checkpoint")
    lora_alpha: int = setting(16, "LoRA alpha")
    time_mask: float = setting(0.0, "augmentation: zero up to this fraction of each "
                                    "utterance's encoder frames, in two random spans")

    def __post_init__(self):
        check_choices(self)
        if not 0.0 <= self.time_mask < 1.0:
            raise ValueError(f"time_mask must be in [0, 1), got {self.time_mask}")

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingCancelled(Exception):
    pass


@dataclass
class StageResult:
    name: str
    steps: int = 0
    epochs: int = 0
    wall_s: float = 0.0
    step_s: float = 0.0
    epoch_s: float = 0.0
    best_val_loss: float = math.inf
    best_epoch: int = -1
    time_to_best_s: float = 0.0
    history: list = field(default_factory=list)


@dataclass
class TrainResult:
    stages: list
    cancelled: bool = False
    adapter: LlmAdapter | None = None   # the LLM adapter trained beside the projector, if any

    def summary(self) -> dict:
        return {s.name: {k: (round(v, 4) if isinstance(v, float) else v)
                         for k, v in asdict(s).items() if k != "history"} for s in self.stages}


def answer_loss(model, labels: torch.Tensor, **inputs) -> torch.Tensor:
    """Mean next-token cross-entropy of a causal LM over the positions ``labels`` marks (not
    -100), the LM head applied there only. The same loss as from the full logits, but the head
    (576 x 49k for SmolLM2-135M) no longer runs, and keeps its output and gradient, at every
    prompt, hint and audio position, which were most of a CE step's time and memory."""
    hidden = model.get_decoder()(**inputs).last_hidden_state
    keep = labels[:, 1:] != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), labels[:, 1:][keep])


def collate(items: list[FeatureItem], device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    L = max(it.features.shape[0] for it in items)
    D = items[0].features.shape[1]
    x = torch.zeros(len(items), L, D)
    mask = torch.zeros(len(items), L, dtype=torch.bool)
    for i, it in enumerate(items):
        n = it.features.shape[0]
        x[i, :n] = torch.from_numpy(np.asarray(it.features, dtype=np.float32))
        mask[i, :n] = True
    return x.to(device), mask.to(device)


class Trainer:
    """Trains a BridgeFormer in place. ``embeddings`` (EmbeddingTable) is needed for EmbedLink,
    ``llm`` (FrozenLLM) and ``prompt`` (PromptBuilder) for cross-entropy."""

    def __init__(self, projector: BridgeFormer, config: TrainConfig, embeddings=None, llm=None,
                 prompt=None, progress: Callable[[dict], None] | None = None,
                 cancel: threading.Event | None = None, show_progress_bar: bool = True,
                 device: str | None = None, checkpoint_dir: str | Path | None = None):
        self.projector, self.config = projector, config
        # resumable training: each stage's state is saved there after every epoch, and a
        # Trainer given the same folder, settings and data goes on from the last saved epoch
        # (a finished stage is not trained again)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        if self.checkpoint_dir is not None and config.lora_rank:
            raise ValueError("resumable training (checkpoint_dir) does not cover an LLM LoRA "
                             "adapter")
        # where the projector trains: beside the LLM when there is one (its activations and the
        # projector's tokens must meet on one device), else CUDA when torch sees one
        if llm is not None:
            self.device = torch.device(llm.device)
        else:
            from ..assistant.llm import resolve_torch_device
            self.device = torch.device(resolve_torch_device(device or "auto"))
        self.embeddings, self.llm, self.prompt = embeddings, llm, prompt
        self.progress, self.cancel = progress, cancel or threading.Event()
        self.show_progress_bar = show_progress_bar
        if "embedlink" in config.objective and embeddings is None:
            raise ValueError("EmbedLink needs the LLM's embedding table (EmbeddingTable)")
        if config.objective in LLM_OBJECTIVES and (llm is None or prompt is None):
            raise ValueError("cross-entropy training needs the LLM and the prompt")
        if config.objective == "hybrid":
            if projector.config.gate == "none":
                raise ValueError("hybrid training needs a projector with a gate "
                                 "(ProjectorConfig.gate: scalar or token)")
            if config.lora_rank:
                raise ValueError("hybrid training does not train a LoRA adapter")
            from ..assistant.prompt import PromptBuilder
            # the cascade's own prompt: the hybrid is the cascade plus gated audio
            prompt = PromptBuilder(prompt.tokenizer,
                                   dataclasses.replace(prompt.config, transcript_hint=False))
            self.prompt = prompt
        tok = (embeddings or llm).tokenizer
        self.tokenizer = tok
        self.end_id = tok.convert_tokens_to_ids("<|im_end|>")
        if not isinstance(self.end_id, int) or self.end_id == tok.unk_token_id:
            self.end_id = tok.eos_token_id
        if embeddings is not None:
            self.table = embeddings.weight
        elif llm is not None:
            self.table = llm.embedding.weight.detach().float().cpu()
        self.target_scale = float(self.table.pow(2).mean())
        self.lora_name = None
        if config.lora_rank > 0:
            if llm is None or "ce" not in config.objective.split("+"):
                raise ValueError("LoRA trains with cross-entropy: use objective ce or "
                                 "embedlink+ce")
            from ..assistant.lora import LoraSettings, add_adapter

            self.lora_settings = LoraSettings(config.lora_rank, config.lora_alpha)
            self.lora_name = f"train{id(self)}"
            with llm.lock:
                add_adapter(llm, self.lora_name, self.lora_settings)

    def lora_state(self) -> dict:
        """The trained adapter's tensors (checkpoint keys), then the adapter is dropped from
        the shared LLM so that it serves the base model again."""
        from ..assistant.lora import adapter_state, remove_adapter

        if self.lora_name is None:
            return {}
        with self.llm.lock:
            state = adapter_state(self.llm, self.lora_name)
            remove_adapter(self.llm, self.lora_name)
        self.lora_name = None
        return state

    # ---- text -> targets
    def text_ids(self, text: str) -> list[int]:
        """Token ids of a text, tokenized once per text, not once per step."""
        cache = self.__dict__.setdefault("_ids_cache", {})
        if text not in cache:
            cache[text] = self.tokenizer(text, add_special_tokens=False).input_ids
        return cache[text]

    def embedlink_targets(self, items):
        T = self.projector.config.num_tokens
        fixed = self.projector.config.pooling == "fixed"
        B = len(items)
        targets = torch.zeros(B, T, self.table.shape[1])
        mask = torch.zeros(B, T, dtype=torch.bool)
        lengths = torch.zeros(B, dtype=torch.long)
        for i, it in enumerate(items):
            ids = self.text_ids(it.text)[:T] or [self.end_id]
            n = len(ids)
            lengths[i] = n
            if fixed and self.config.pad_target == "eos":
                ids = ids + [self.end_id] * (T - n)
                mask[i] = True
            else:
                mask[i, :n] = True
            targets[i, :len(ids)] = self.table[torch.tensor(ids)]
        return targets, mask, lengths

    def augment(self, x: torch.Tensor, fmask: torch.Tensor) -> torch.Tensor:
        """Time masking while training: two spans per utterance, together at most
        ``time_mask`` of its frames, set to zero (the padding value)."""
        if not (self.config.time_mask and self.projector.training):
            return x
        x = x.clone()
        for i, n in enumerate(fmask.sum(1).tolist()):
            width = int(n * self.config.time_mask / 2)
            for _ in range(2 if width else 0):
                w = int(torch.randint(0, width + 1, ()))
                start = int(torch.randint(0, max(n - w, 0) + 1, ()))
                x[i, start:start + w] = 0.0
        return x

    # ---- losses
    def embedlink_loss(self, items) -> torch.Tensor:
        x, fmask = collate(items, self.device)
        x = self.augment(x, fmask)
        targets, tmask, lengths = (t.to(self.device) for t in self.embedlink_targets(items))
        tokens, token_mask, predicted = self.projector(x, fmask, token_lengths=lengths)
        valid = tmask & token_mask
        mse = ((tokens - targets) ** 2).mean(-1)[valid].mean() / self.target_scale
        cos = F.cosine_similarity(tokens, targets, dim=-1)[valid].mean()
        return mse + self.config.cos_weight * (1.0 - cos) + self._length_loss(predicted, lengths)

    def ce_loss(self, items) -> torch.Tensor:
        llm = self.llm
        dev = llm.device
        x, fmask = collate(items, dev)
        x = self.augment(x, fmask)
        lengths = torch.tensor([min(len(self.text_ids(it.text)) or 1,
                                    self.projector.config.num_tokens) for it in items], device=dev)
        tokens, token_mask, predicted = self.projector(x, fmask, token_lengths=lengths)
        emb = llm.embedding
        seqs, labels = [], []
        for i, it in enumerate(items):
            suffix_ids = self.prompt.suffix_ids(it.transcript if it.transcript else None)
            answer = self.text_ids(it.text) + [self.end_id]   # a new list: the cache stays intact
            audio = tokens[i][token_mask[i]].to(llm.dtype)
            rest = emb(torch.tensor(suffix_ids + answer, device=dev)).detach()
            seqs.append(torch.cat([audio, rest]))
            labels.append([-100] * (audio.shape[0] + len(suffix_ids)) + answer)
        P = len(self.prompt.prefix_ids)
        if self.lora_name is not None:
            # with LoRA the prefix's keys/values change as the adapter trains: no shared cache
            prefix = emb(torch.tensor(self.prompt.prefix_ids, device=dev)).detach()
            seqs = [torch.cat([prefix, s]) for s in seqs]
            labels = [[-100] * P + l for l in labels]
            P = 0
        n = max(s.shape[0] for s in seqs)
        B = len(seqs)
        batch = torch.zeros(B, n, seqs[0].shape[1], dtype=llm.dtype, device=dev)
        lab = torch.full((B, n), -100, dtype=torch.long, device=dev)
        attn = torch.zeros(B, P + n, dtype=torch.long, device=dev)
        attn[:, :P] = 1
        for i, (s, l) in enumerate(zip(seqs, labels)):
            batch[i, :s.shape[0]] = s
            attn[i, P:P + s.shape[0]] = 1
            lab[i, :len(l)] = torch.tensor(l, device=dev)
        # The prompt prefix (system + few-shot turns) is the same for every example and holds
        # no trainable input: its KV cache is computed once and shared, not recomputed per step.
        with llm.lock, self._adapter_context():   # the LLM may be shared with a responder
            past = None
            if P:
                past = copy.deepcopy(self._prefix_cache())
                past.batch_repeat_interleave(B)
            loss = answer_loss(llm.model, lab, inputs_embeds=batch, attention_mask=attn,
                               past_key_values=past, use_cache=True)
        return loss + self._length_loss(predicted, lengths)

    def hybrid_loss(self, items) -> torch.Tensor:
        """CE of the true text given the cascade's prompt with the item's transcript (the hint,
        wrong the way recognisers are) and the projector's audio tokens before it, seen through
        the projector's gate (core.assistant.llm.Gate)."""
        from ..assistant.llm import Gate

        llm, dev = self.llm, self.llm.device
        x, fmask = collate(items, dev)
        x = self.augment(x, fmask)
        lengths = torch.tensor([min(len(self.text_ids(it.text)) or 1,
                                    self.projector.config.num_tokens) for it in items], device=dev)
        tokens, token_mask, predicted = self.projector(x, fmask, token_lengths=lengths)
        bias = self.projector.gate_bias(tokens)
        suffix = self.prompt.suffix_ids(None)
        emb = llm.embedding
        seqs, labels, gates = [], [], []
        for i, it in enumerate(items):
            hint = list(self.text_ids(it.transcript)) if it.transcript else []
            answer = self.text_ids(it.text) + [self.end_id]
            audio = tokens[i][token_mask[i]].to(llm.dtype)
            k = audio.shape[0]
            rest = emb(torch.tensor(hint + suffix + answer, device=dev)).detach()
            seqs.append(torch.cat([audio, rest]))
            labels.append([-100] * (k + len(hint) + len(suffix)) + answer)
            gates.append(Gate(0, bias[i][token_mask[i]],
                              torch.linspace(0, max(len(hint) - 1, 0), k).round()))
        P = len(self.prompt.prefix_ids)
        n, B = max(s.shape[0] for s in seqs), len(seqs)
        batch = torch.zeros(B, n, seqs[0].shape[1], dtype=llm.dtype, device=dev)
        lab = torch.full((B, n), -100, dtype=torch.long, device=dev)
        mask = torch.full((B, 1, n, P + n), float("-inf"), dtype=llm.dtype, device=dev)
        mask[:, :, :, :P] = 0.0          # padding rows see the prefix (no all -inf row)
        pos = torch.zeros(B, n, dtype=torch.long, device=dev)
        for i, (s, l, g) in enumerate(zip(seqs, labels, gates)):
            m = s.shape[0]
            batch[i, :m] = s
            lab[i, :len(l)] = torch.tensor(l, device=dev)
            inputs = g.prefill_inputs(P, m, dev, llm.dtype)
            mask[i, 0, :m, :P + m] = inputs["attention_mask"][0, 0]
            pos[i, :m] = inputs["position_ids"][0]
        with llm.lock, self._adapter_context():
            past = copy.deepcopy(self._prefix_cache())
            past.batch_repeat_interleave(B)
            loss = answer_loss(llm.model, lab, inputs_embeds=batch, attention_mask=mask,
                               position_ids=pos, past_key_values=past, use_cache=True)
        return loss + self._length_loss(predicted, lengths)

    def _length_loss(self, predicted, lengths) -> torch.Tensor | float:
        """Length pooling: the token-count head learns the text's length beside the main loss."""
        if self.projector.config.pooling != "length":
            return 0.0
        return self.config.length_weight * F.smooth_l1_loss(predicted.float(), lengths.float())

    def _adapter_context(self):
        """Our own LoRA adapter when training one, else none of the adapters the LLM may hold
        (a responder sharing it may have selected one for its user)."""
        from contextlib import nullcontext

        from ..assistant.lora import no_adapter

        if self.lora_name is not None:
            self.llm.model.set_adapter(self.lora_name)
            return nullcontext()
        return no_adapter(self.llm)

    def _prefix_cache(self):
        if getattr(self, "_prefix_kv", None) is None:
            with torch.no_grad():
                ids = torch.tensor([self.prompt.prefix_ids], device=self.llm.device)
                self._prefix_kv = self.llm.model(input_ids=ids, use_cache=True).past_key_values
        return self._prefix_kv

    # ---- loop
    def _batches(self, items, rng):
        order = rng.permutation(len(items))
        bs = self.config.batch_size
        return [[items[j] for j in order[i:i + bs]] for i in range(0, len(items), bs)]

    def backward(self, batch, loss_fn) -> float:
        """The batch's loss and its gradients, run ``micro_batch`` utterances at a time (the
        parts' losses weighted by their share of the batch, so the gradients add up to the
        whole batch's). Returns the loss."""
        total = 0.0
        size = self.config.micro_batch or len(batch)
        for i in range(0, len(batch), size):
            part = batch[i:i + size]
            loss = loss_fn(part) * (len(part) / len(batch))
            loss.backward()
            total += float(loss.detach())
        return total

    @torch.no_grad()
    def evaluate(self, items, loss_fn) -> float:
        if not items:
            return math.nan
        self.projector.eval()
        total, n = 0.0, 0
        for i in range(0, len(items), self.config.batch_size):
            batch = items[i:i + self.config.batch_size]
            total += float(loss_fn(batch)) * len(batch)
            n += len(batch)
        return total / n

    def _stage(self, name, loss_fn, epochs, lr, train, val) -> StageResult:
        from tqdm import tqdm

        cfg = self.config
        result = StageResult(name)
        named = [(n, p) for n, p in self.projector.named_parameters() if p.requires_grad]
        params = [p for n, p in named if not n.startswith("gate_")]
        gate_params = [p for n, p in named if n.startswith("gate_")] if name == "hybrid" else []
        if name == "ce" and self.lora_name is not None:
            from ..assistant.lora import adapter_parameters

            params += adapter_parameters(self.llm, self.lora_name)
        groups = [{"params": params, "lr": lr}]
        if gate_params:   # the gate is a few numbers that must move far: its own rate
            groups.append({"params": gate_params, "lr": cfg.gate_lr, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)
        params = params + gate_params
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = steps_per_epoch * epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups],
                                                    total_steps=max(total, 1),
                                                    pct_start=0.1 if total > 20 else 0.3)
        rng = np.random.default_rng(cfg.seed)
        best_state = {k: v.detach().clone() for k, v in self.projector.state_dict().items()}
        t0 = time.perf_counter()
        step, start_epoch = 0, 0
        saved = self._saved_stage(name, epochs, lr, train, val)
        if saved is not None:       # resume: everything as it was at the end of that epoch
            self.projector.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            rng.bit_generator.state = saved["numpy_rng"]
            torch.set_rng_state(saved["torch_rng"])
            best_state, step = saved["best"], saved["step"]
            result = StageResult(**saved["result"])
            start_epoch = result.epochs if not saved["done"] else epochs
            t0 -= result.wall_s
            if self.progress:
                self.progress({"stage": name, "step": step, "total_steps": total, "loss": 0.0,
                               "eta_s": 0.0, "resumed_epochs": result.epochs})
        # disable=None: a bar on a terminal, nothing in logs (tqdm checks for a TTY)
        bar = tqdm(total=total, desc=name, unit="step",
                   disable=None if self.show_progress_bar else True,
                   leave=False)
        try:
            for epoch in range(start_epoch, epochs):
                self.projector.train()
                t_epoch = time.perf_counter()
                for batch in self._batches(train, rng):
                    if self.cancel.is_set():
                        raise TrainingCancelled()
                    if step >= total:
                        break
                    opt.zero_grad(set_to_none=True)
                    loss_value = self.backward(batch, loss_fn)
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                    sched.step()
                    step += 1
                    elapsed = time.perf_counter() - t0
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    if self.progress:
                        self.progress({"stage": name, "step": step, "total_steps": total,
                                       "loss": loss_value,
                                       "eta_s": elapsed / step * (total - step)})
                result.epoch_s = time.perf_counter() - t_epoch
                val_loss = self.evaluate(val or train[:cfg.batch_size * 2], loss_fn)
                result.history.append({"epoch": epoch, "val_loss": val_loss,
                                       "train_loss": loss_value})
                if val_loss < result.best_val_loss:
                    result.best_val_loss, result.best_epoch = val_loss, epoch
                    result.time_to_best_s = time.perf_counter() - t0
                    best_state = {k: v.detach().clone()
                                  for k, v in self.projector.state_dict().items()}
                result.epochs = epoch + 1
                result.wall_s = time.perf_counter() - t0
                # saved before it is reported: whoever stops the run on this report keeps it
                self._save_stage(name, epochs, lr, train, val, opt, sched, rng, best_state,
                                 step, result, done=step >= total or epoch + 1 == epochs)
                if self.progress:
                    self.progress({"stage": name, "step": step, "total_steps": total,
                                   "loss": loss_value, "val_loss": val_loss,
                                   "eta_s": (time.perf_counter() - t0) / step * (total - step)})
                if step >= total:
                    break
        finally:
            bar.close()
            self.projector.load_state_dict(best_state)   # best so far, also when cancelled
            self.projector.eval()
            result.steps = step
            result.wall_s = time.perf_counter() - t0
            result.step_s = result.wall_s / max(step, 1)
        return result

    # -- resuming ------------------------------------------------------------------------

    def _stage_file(self, name: str) -> Path | None:
        return self.checkpoint_dir / f"{name}.pt" if self.checkpoint_dir else None

    def _fingerprint(self, name, epochs, lr, train, val) -> dict:
        """What must match for a saved stage to be resumed: the settings (threads aside), the
        projector's shape and the utterances, in order."""
        def ids(items):
            return [len(items), hashlib.sha256("\n".join(
                it.id or it.text for it in items).encode()).hexdigest()[:16]]
        config = {k: v for k, v in self.config.to_dict().items() if k != "threads"}
        return {"stage": name, "epochs": epochs, "lr": lr, "config": config,
                "projector": self.projector.config.to_dict(), "train": ids(train),
                "val": ids(val)}

    def _saved_stage(self, name, epochs, lr, train, val) -> dict | None:
        path = self._stage_file(name)
        if path is None or not path.is_file():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=False)
        want = self._fingerprint(name, epochs, lr, train, val)
        if saved.get("fingerprint") != want:
            diff = sorted(k for k in want if saved.get("fingerprint", {}).get(k) != want[k])
            raise ValueError(f"{path} was saved by training with other {', '.join(diff)}; "
                             f"run with the same settings and data to resume, or delete "
                             f"{self.checkpoint_dir} to start over")
        return saved

    def _save_stage(self, name, epochs, lr, train, val, opt, sched, rng, best_state, step,
                    result, done: bool) -> None:
        path = self._stage_file(name)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"fingerprint": self._fingerprint(name, epochs, lr, train, val),
                 "model": self.projector.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "best": best_state, "step": step,
                 "result": asdict(result), "done": done}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)     # a kill mid-write leaves the last whole epoch

    def fit(self, train: list[FeatureItem], val: list[FeatureItem]) -> TrainResult:
        if not train:
            raise ValueError("no training examples")
        if self.config.threads > 0:
            torch.set_num_threads(self.config.threads)
        torch.manual_seed(self.config.seed)
        self.projector.to(self.device)
        stages, cancelled = [], False
        plan = []
        if "embedlink" in self.config.objective:
            plan.append(("embedlink", self.embedlink_loss, self.config.embedlink_epochs,
                         self.config.lr))
        if self.config.objective in ("ce", "embedlink+ce"):
            plan.append(("ce", self.ce_loss, self.config.ce_epochs,
                         self.config.ce_lr if self.config.objective != "ce" else self.config.lr))
        if self.config.objective == "hybrid":
            plan.append(("hybrid", self.hybrid_loss, self.config.ce_epochs, self.config.lr))
        for name, fn, epochs, lr in plan:
            try:
                stages.append(self._stage(name, fn, epochs, lr, train, val))
            except TrainingCancelled:
                cancelled = True
                break
        adapter = None
        if self.lora_name is not None:  # the adapter travels with the projector's checkpoint
            adapter = LlmAdapter(self.lora_settings, self.lora_state())
        return TrainResult(stages, cancelled, adapter)
