"""Adapting the projector to one user from the utterances the robot logged.

Data: the user's corrected utterances (true text) and, optionally, uncorrected ones whose ASR
confidence is at least ``pseudo_label_confidence`` (their transcript as the label). Validation
uses held-out corrected utterances when there are enough (pseudo-labels only when there are
not), and the new projector is kept as current only if its WER beats the current one's.
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .checkpoint import ProjectorMeta, to_bytes
from .data import FeatureItem, split
from .metrics import wer
from .projector import BridgeFormer
from .store import UtteranceStore
from .train import TrainConfig, Trainer


@dataclass
class AdaptConfig:
    objective: str = "embedlink"
    epochs: int = 15                  # EmbedLink epochs (CE epochs when objective is "ce")
    ce_epochs: int = 1                # the CE finish of "embedlink+ce"
    lr: float = 5e-4
    batch_size: int = 8
    val_fraction: float = 0.2
    min_utterances: int = 6
    use_pseudo_labels: bool = True
    pseudo_label_confidence: float = 0.8
    max_utterances: int = 0          # 0: all
    max_new_tokens: int = 40
    require_improvement: bool = True  # off: publish even when validation WER does not improve
    lora_rank: int = 0                # > 0 (with a CE objective): a per-user LLM adapter too
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        """The trainer settings of this adaptation recipe (also used by the benchmark)."""
        # ``epochs`` is the objective's main stage: EmbedLink's, or CE's when CE is alone
        ce_epochs = self.epochs if self.objective == "ce" else self.ce_epochs
        return TrainConfig(objective=self.objective, embedlink_epochs=self.epochs,
                           ce_epochs=ce_epochs, lr=self.lr, ce_lr=self.lr,
                           batch_size=self.batch_size, seed=self.seed, lora_rank=self.lora_rank)


@dataclass
class AdaptResult:
    success: bool
    published: bool
    version: str = ""
    message: str = ""
    metrics: dict = field(default_factory=dict)
    checkpoint: bytes = b""
    meta: ProjectorMeta | None = None


class AdaptationError(RuntimeError):
    pass


def user_items(store: UtteranceStore, user_id: str, config: AdaptConfig,
               asr_model_id: str) -> tuple[list[FeatureItem], list[FeatureItem]]:
    """(train, validation) items of a user; validation prefers corrected utterances."""
    logged = store.utterances(user_id, min_confidence=(config.pseudo_label_confidence
                                                       if config.use_pseudo_labels else None),
                              corrected_only=not config.use_pseudo_labels)
    logged = [u for u in logged if u.asr_model_id == asr_model_id]
    if config.max_utterances:
        logged = logged[-config.max_utterances:]
    if len(logged) < config.min_utterances:
        raise AdaptationError(f"user {user_id!r} has {len(logged)} usable utterances (corrected, "
                              f"or confident enough for pseudo-labels); at least "
                              f"{config.min_utterances} are needed")
    corrected = [FeatureItem(u.features(), u.label, u.utterance_id, u.transcript)
                 for u in logged if u.corrected_text is not None]
    pseudo = [FeatureItem(u.features(), u.label, u.utterance_id, u.transcript)
              for u in logged if u.corrected_text is None]
    if len(corrected) >= 4:
        train_c, val = split(corrected, config.val_fraction, config.seed)
        return train_c + pseudo, val
    train, val = split(corrected + pseudo, config.val_fraction, config.seed)
    return train, val


def score(assistant, projector: BridgeFormer, items: list[FeatureItem], max_new_tokens: int,
          cancel: threading.Event | None = None) -> float:
    refs, hyps = [], []
    for it in items:
        if cancel is not None and cancel.is_set():
            raise AdaptationError("cancelled")
        refs.append(it.text)
        hyps.append(assistant.respond_with(projector, None, it.features, it.transcript,
                                           max_new_tokens=max_new_tokens).text)
    return wer(refs, hyps)


def adapt_user(store: UtteranceStore, user_id: str, current: tuple[BridgeFormer, ProjectorMeta],
               assistant, embeddings, asr_model_id: str, config: AdaptConfig,
               progress: Callable[[dict], None] | None = None,
               cancel: threading.Event | None = None) -> AdaptResult:
    """Train a copy of ``current`` on the user's log; keep it only if it beats ``current``."""
    cancel = cancel or threading.Event()
    t0 = time.perf_counter()
    report = progress or (lambda p: None)
    train, val = user_items(store, user_id, config, asr_model_id)
    report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0})
    base_model, base_meta = current
    before = score(assistant, base_model, val, config.max_new_tokens, cancel) if val else None
    if before is not None:
        report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0,
                "validation_wer": before})

    model = copy.deepcopy(base_model).train()
    trainer = Trainer(model, config.train_config(), embeddings=embeddings,
                      llm=assistant.llm if "ce" in config.objective else None,
                      prompt=assistant.prompt if "ce" in config.objective else None,
                      progress=lambda p: report({**p, "stage": "training"}), cancel=cancel,
                      show_progress_bar=False)
    result = trainer.fit(train, val)
    if result.cancelled:
        return AdaptResult(False, False, message="cancelled; the current projector is kept")
    report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0})
    after = score(assistant, model, val, config.max_new_tokens, cancel) if val else None
    if after is not None:
        report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0,
                "validation_wer": after})

    metrics = {"train_utterances": len(train), "validation_utterances": len(val),
               "wer_before": before if before is not None else -1.0,
               "wer_after": after if after is not None else -1.0,
               "train_s": sum(s.wall_s for s in result.stages),
               "total_s": time.perf_counter() - t0}
    meta = ProjectorMeta(asr_model_id=base_meta.asr_model_id, llm_model_id=base_meta.llm_model_id,
                         projector=model.config.to_dict(), parent_version=base_meta.version,
                         prompt=base_meta.prompt,
                         training={"user_id": user_id, "adapt": config.to_dict(),
                                   "stages": result.summary()},
                         metrics=metrics)
    data = to_bytes(model, meta)
    improved = before is None or (after is not None and after < before)
    publish = improved or not config.require_improvement
    if before is None:
        msg = "no held-out utterances: published without validation"
    elif improved:
        msg = f"WER {before:.3f} -> {after:.3f} on {len(val)} held-out utterances"
    elif publish:
        msg = (f"published without improvement (require_improvement off): WER "
               f"{before:.3f} -> {after:.3f}")
    else:
        msg = (f"kept the current projector: new WER {after:.3f} is not below "
               f"{before:.3f} on {len(val)} held-out utterances")
    store.add_projector(user_id, meta.version, base_meta.version, data, metrics,
                        make_current=publish)
    return AdaptResult(True, publish, meta.version, msg, metrics, data if publish else b"", meta)
