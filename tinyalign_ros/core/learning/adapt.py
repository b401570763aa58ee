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

from ..assistant.checkpoint import Projector, ProjectorMeta, to_bytes
from ..metrics import wer
from ..settings import check_choices, setting
from .data import FeatureItem, split
from .store import UtteranceStore
from .train import LLM_OBJECTIVES, OBJECTIVES, TrainConfig, Trainer


@dataclass
class AdaptConfig:
    """One user's adaptation recipe. Every setting is a live parameter of the adaptation node
    (read when a job starts) and can be overridden per request by the Adapt goal."""
    objective: str = setting(
        "ce", "ce: cross-entropy through the frozen LLM on the prompt the node serves (the "
              "transcript hint included; measured best with the hint); embedlink: the paper's "
              "cheap objective (no LLM pass; measured to worsen the hinted path); embedlink+ce; "
              "hybrid: CE on the cascade's prompt plus the gated audio tokens (projectors "
              "with a gate only)",
        live=True, choices=OBJECTIVES)
    epochs: int = setting(2, "epochs of the objective's main stage (EmbedLink's, or CE's when "
                             "CE is alone)", live=True)
    ce_epochs: int = setting(1, "the CE finish of embedlink+ce", live=True)
    learning_rate: float = setting(3e-4, "adaptation learning rate", live=True)
    batch_size: int = setting(8, "adaptation batch size", live=True)
    val_fraction: float = setting(0.2, "held-out share of the user's utterances", live=True)
    min_utterances: int = setting(6, "fewest usable utterances to adapt on", live=True)
    use_pseudo_labels: bool = setting(True, "also train on uncorrected utterances whose ASR "
                                            "confidence is above pseudo_label_confidence",
                                      live=True)
    pseudo_label_confidence: float = setting(0.8, "ASR confidence above which a transcript "
                                                  "counts as a label", live=True)
    max_utterances: int = setting(0, "train on the newest N usable utterances; 0 = all",
                                  live=True)
    require_improvement: bool = setting(True, "publish only projectors that beat the current "
                                              "one on held-out utterances", live=True)
    lora_rank: int = setting(0, "> 0 with a ce objective: also train a per-user LoRA adapter "
                                "on the LLM, carried in the projector's checkpoint", live=True)
    seed: int = 0

    def __post_init__(self):
        check_choices(self)

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        """The trainer settings of this adaptation recipe (also used by the benchmark)."""
        # ``epochs`` is the objective's main stage: EmbedLink's, or CE's when CE is alone
        ce_epochs = self.epochs if self.objective == "ce" else self.ce_epochs
        return TrainConfig(objective=self.objective, embedlink_epochs=self.epochs,
                           ce_epochs=ce_epochs, lr=self.learning_rate, ce_lr=self.learning_rate,
                           batch_size=self.batch_size, seed=self.seed, lora_rank=self.lora_rank)


@dataclass
class AdaptResult:
    success: bool
    published: bool
    version: str = ""
    message: str = ""
    metrics: dict = field(default_factory=dict)
    checkpoint: bytes = b""
    projector: Projector | None = None


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


def score(assistant, projector: Projector, items: list[FeatureItem],
          cancel: threading.Event | None = None) -> float:
    """WER of the aligned path with ``projector`` on ``items`` (the assistant's own prompt
    and response length, i.e. as the response node would answer)."""
    refs, hyps = [], []
    for it in items:
        if cancel is not None and cancel.is_set():
            raise AdaptationError("cancelled")
        refs.append(it.text)
        hyps.append(assistant.respond_with(projector, it.features, it.transcript).text)
    return wer(refs, hyps)


def adapt_user(store: UtteranceStore, user_id: str, current: Projector, assistant, embeddings,
               asr_model_id: str, config: AdaptConfig,
               progress: Callable[[dict], None] | None = None,
               cancel: threading.Event | None = None, job_id: str | None = None) -> AdaptResult:
    """Train a copy of ``current`` on the user's log; keep it only if it beats ``current``.

    ``job_id``: the job recorded in the store (``UtteranceStore.start_job``); the projector is
    stored only while that job is still running there (not after a rollback or forget-user of
    the user cancelled it)."""
    train, val = user_items(store, user_id, config, asr_model_id)
    result = adapt_projector(train, val, current, assistant, embeddings, config, progress,
                             cancel, user_id)
    if result.success:
        store.add_projector(user_id, result.version, current.version, result.checkpoint,
                            result.metrics, make_current=result.published, job_id=job_id)
        if not result.published:
            result.checkpoint = b""
    return result


def adapt_projector(train: list[FeatureItem], val: list[FeatureItem], current: Projector,
                    assistant, embeddings, config: AdaptConfig,
                    progress: Callable[[dict], None] | None = None,
                    cancel: threading.Event | None = None, user_id: str = "") -> AdaptResult:
    """The adaptation recipe itself (the node's, and `tinyalign adapt`'s): a copy of
    ``current`` trained on ``train`` on the prompt ``assistant`` serves it with, scored on
    ``val`` before and after. ``published``: it beats ``current`` (or improvement is not
    required); ``checkpoint`` holds its bytes either way."""
    cancel = cancel or threading.Event()
    t0 = time.perf_counter()
    report = progress or (lambda p: None)
    # the prompt the new projector trains and validates with, and records
    prompt = assistant.prompt_for(current)
    report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0})
    try:
        before = score(assistant, current, val, cancel) if val else None
    finally:
        assistant.retire(current)     # its LLM adapter, if any, is not needed here any more
    if before is not None:
        report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0,
                "validation_wer": before})

    model = copy.deepcopy(current.model).train()
    uses_llm = config.objective in LLM_OBJECTIVES
    trainer = Trainer(model, config.train_config(), embeddings=embeddings,
                      llm=assistant.llm if uses_llm else None,
                      prompt=prompt if uses_llm else None,
                      progress=lambda p: report({**p, "stage": "training"}), cancel=cancel,
                      show_progress_bar=False)
    result = trainer.fit(train, val)
    if result.cancelled:
        return AdaptResult(False, False, message="cancelled; the current projector is kept")
    metrics = {"train_utterances": len(train), "validation_utterances": len(val),
               "train_s": sum(s.wall_s for s in result.stages)}
    meta = ProjectorMeta(asr_model_id=current.meta.asr_model_id,
                         llm_model_id=current.meta.llm_model_id,
                         projector=model.config.to_dict(), parent_version=current.version,
                         prompt=prompt.config.to_dict(),
                         training={"user_id": user_id, "adapt": config.to_dict(),
                                   "stages": result.summary()},
                         metrics=metrics)
    candidate = Projector(model.eval(), meta, result.adapter)
    report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0})
    try:
        after = score(assistant, candidate, val, cancel) if val else None
    finally:
        assistant.retire(candidate)   # validated here; served by the response node, if at all
    if after is not None:
        report({"stage": "validating", "step": 0, "total_steps": 0, "loss": 0.0, "eta_s": 0.0,
                "validation_wer": after})
    if before is not None:
        metrics.update(wer_before=before, wer_after=after)
    metrics["total_s"] = time.perf_counter() - t0
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
    if cancel.is_set():
        return AdaptResult(False, False, message="cancelled; the current projector is kept")
    return AdaptResult(True, publish, meta.version, msg, metrics, to_bytes(candidate),
                       candidate)
