"""Adapting the projector and/or the recogniser to one user from the utterances the robot
logged (``AdaptConfig.target``: projector, recognizer or both).

Data: the user's corrected utterances (true text) and, optionally, uncorrected ones whose ASR
confidence is at least ``pseudo_label_confidence`` (their transcript as the label). Validation
uses held-out corrected utterances when there are enough (pseudo-labels only when there are
not), and the new projector is kept as current only if its WER beats the current one's.

The recogniser (Whisper's decoder, a per-user LoRA: recognizer_adapt.py) trains on the user's
corrected utterances whose audio was logged, re-encoded on the padded 30 s window; its adapter
is kept as current only if its held-out WER (decoded with the served beam) beats the user's
current recogniser (their current adapter, else the unadapted decoder). With ``both`` the
recogniser goes first and the projector then trains and validates on the hints (and
pseudo-labels) the recogniser the user is now served with re-decodes.
"""
from __future__ import annotations

import copy
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..assistant.checkpoint import Projector, ProjectorMeta, to_bytes
from ..assistant.routing import ALIGNED_WER, CASCADE_WER
from ..metrics import normalize, wer
from ..settings import check_choices, setting
from ..speech.asr import SERVED_BEAM_SIZE
from .data import FeatureItem, split
from .store import UtteranceStore
from .train import LLM_OBJECTIVES, OBJECTIVES, TrainConfig, Trainer


TARGETS = ("projector", "recognizer", "both")


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
    micro_batch: int = setting(2, "utterances per pass through the LLM within a batch (the "
                                  "same training, less memory: the offline CE recipe on 50 "
                                  "utterances peaked at 3.3 GB with the whole batch of 8, "
                                  "2.6 GB with 2); 0 = the whole batch", live=True)
    val_fraction: float = setting(0.2, "held-out share of the user's utterances", live=True)
    min_utterances: int = setting(6, "fewest usable utterances to adapt on", live=True)
    use_pseudo_labels: bool = setting(True, "also train on uncorrected utterances whose ASR "
                                            "confidence is above pseudo_label_confidence",
                                      live=True)
    pseudo_label_confidence: float = setting(0.8, "ASR confidence above which a transcript "
                                                  "counts as a label", live=True)
    max_utterances: int = setting(
        100, "the projector step trains and validates on the user's newest N usable utterances "
             "(0 = all, up to the store's retention of 500): its time grows with N (2 cores, "
             "tinyalign adapt --target projector: 50 utterances 36 s, 175 utterances 133 s, "
             "whose projector was not better; docs/BENCHMARKS.md). 100 covers every K the bench "
             "measures", live=True)
    require_improvement: bool = setting(True, "publish only projectors that beat the current "
                                              "one on held-out utterances", live=True)
    min_gain_words: int = setting(
        2, "publish a projector only if it makes at least this many fewer word errors than the "
           "cascade on the held-out utterances (and fewer than the current projector); 1: any "
           "gain. A gain of one word on 10 held-out utterances was measured to publish a "
           "projector 3x the cascade's WER on the user's next ones (docs/BENCHMARKS.md)",
        live=True)
    gate_max_confidence: float = setting(
        1.0, "a gated projector's confidence limit once adapted (the base's was picked on other "
             "voices; 1.0: the user's own audio always enters, and validation against the "
             "cascade decides whether it is published)", live=True)
    lora_rank: int = setting(0, "> 0 with a ce objective: also train a per-user LoRA adapter "
                                "on the LLM, carried in the projector's checkpoint", live=True)
    target: str = setting(
        "both", "what a job adapts: projector, recognizer (a per-user LoRA on Whisper, on "
                "corrected utterances with logged audio; served by the ASR node) or both (the "
                "recogniser first, then the projector on the hints the adapted recogniser "
                "gives; without enough logged audio, the projector alone). both: in the bench "
                "the adapted recogniser took the hard voices to 0.51-0.65x the cascade at "
                "K = 50 (four runs), where the projector alone was refused for every user",
        live=True,
        choices=TARGETS)
    recognizer_epochs: int = setting(8, "recogniser adaptation epochs (the best by held-out "
                                        "loss is kept)", live=True)
    recognizer_rank: int = setting(8, "LoRA rank of the recogniser adapter", live=True)
    recognizer_min_gain_words: int = setting(
        2, "publish a recogniser adapter only if it makes at least this many fewer word errors "
           "on the held-out utterances than what the user is served (1: any gain; a gain of "
           "one word on a well-recognised speaker was measured to be noise)", live=True)
    recognizer_validation: str = setting(
        "crossfit", "crossfit: an adapter trained on each half of the utterances decodes the "
                    "other half, the gate judges all of them, and the adapter published trains "
                    "on all (about 2x the training time); split: one adapter on the rest, judged "
                    "on val_fraction of them", live=True, choices=("crossfit", "split"))
    recognizer_lora_on: str = setting(
        "both_top2", "what the recogniser's LoRA adapts: decoder (its linears), encoder_top "
                     "(the encoder's last layer over the frames with audio: acoustics), both, "
                     "encoder_top2 (the encoder's last two layers) or both_top2 (the decoder and "
                     "the encoder's last two layers: in the bench 0.51-0.62x the cascade on the "
                     "synthetic hard voices, against 0.73-0.79x for decoder; docs/RECOGNIZER.md)",
        live=True, choices=("decoder", "encoder_top", "both", "encoder_top2", "both_top2"))
    recognizer_max_utterances: int = setting(
        50, "the recogniser step trains on the user's newest N corrected utterances with audio "
            "(0 = all of them, up to the store's retention): its memory and time grow with N. "
            "K = 50 on 2 cores: ~1 GB more at the job's peak (~12 MB an utterance) and 57-84 s "
            "of training; a larger N wants a larger recognizer_time_budget_s "
            "(docs/RECOGNIZER.md)", live=True)
    recognizer_time_budget_s: float = setting(
        180.0, "a safety limit: recogniser training stops after this many seconds (each "
               "cross-fitted fold after 30 % of it) and the job says so "
               "(recognizer_time_capped). The epochs, not the clock, decide what is trained: "
               "K = 50 trained 45-62 s on 2 idle cores. A budget the job reaches makes the adapter "
               "depend on how busy the machine is (at 50 s, croaky's test WER was 9.1-13.2 % "
               "over three runs; docs/RECOGNIZER.md)", live=True)
    recognizer_beam_size: int = setting(
        SERVED_BEAM_SIZE, "the ASR node's beam_size: the gate decodes held-out utterances the "
                          "way the user is served", live=True)
    whisper_model: str = setting("", "the CTranslate2 Whisper folder the ASR node serves (its "
                                     "decoder is what recogniser adaptation trains); '' = the "
                                     "bundled tiny.en", live=True)
    seed: int = 0

    def __post_init__(self):
        check_choices(self)

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self, gated: bool = False) -> TrainConfig:
        """The trainer settings of this adaptation recipe (also used by the benchmark).
        ``gated``: the projector has a gate, so it is served as the hybrid, and cross-entropy
        on the prompt it is served with is the hybrid objective."""
        objective = "hybrid" if gated and self.objective == "ce" else self.objective
        # ``epochs`` is the objective's main stage: EmbedLink's, or CE's when CE is alone
        ce_epochs = self.epochs if objective in ("ce", "hybrid") else self.ce_epochs
        return TrainConfig(objective=objective, embedlink_epochs=self.epochs,
                           ce_epochs=ce_epochs, lr=self.learning_rate, ce_lr=self.learning_rate,
                           batch_size=self.batch_size, micro_batch=self.micro_batch,
                           seed=self.seed, lora_rank=self.lora_rank)

    def recognizer_config(self):
        """The recogniser adaptation settings of this recipe (recognizer_adapt.py)."""
        from .recognizer_adapt import RecognizerAdaptConfig, lora_targets

        return RecognizerAdaptConfig(rank=self.recognizer_rank, alpha=2.0 * self.recognizer_rank,
                                     epochs=self.recognizer_epochs, batch_size=self.batch_size,
                                     val_fraction=self.val_fraction,
                                     validation=self.recognizer_validation,
                                     targets=lora_targets(self.recognizer_lora_on),
                                     min_utterances=max(1, self.min_utterances - 1),
                                     time_budget_s=self.recognizer_time_budget_s,
                                     require_improvement=self.require_improvement,
                                     beam_size=self.recognizer_beam_size, seed=self.seed)


@dataclass
class AdaptResult:
    success: bool
    published: bool
    version: str = ""
    message: str = ""
    metrics: dict = field(default_factory=dict)
    checkpoint: bytes = b""
    projector: Projector | None = None
    recognizer_version: str = ""   # the recogniser adapter this job made ("" = none)


class AdaptationError(RuntimeError):
    pass


def user_items(store: UtteranceStore, user_id: str, config: AdaptConfig,
               asr_model_id: str,
               hint: Callable[[list[tuple[str, str, Callable]]], list[str]] | None = None
               ) -> tuple[list[FeatureItem], list[FeatureItem]]:
    """(train, validation) items of a user; validation prefers corrected utterances.
    ``hint``: the transcripts of logged utterances by the recogniser the user is served with
    now (after recogniser adaptation; redecoded_hints), used as the hints and, for an
    uncorrected utterance, as its pseudo-label; default: the transcripts that were logged."""
    logged = store.utterances(user_id, min_confidence=(config.pseudo_label_confidence
                                                       if config.use_pseudo_labels else None),
                              corrected_only=not config.use_pseudo_labels)
    logged = [u for u in logged if u.asr_model_id == asr_model_id]
    if config.max_utterances:
        logged = logged[-config.max_utterances:]
    features = {}
    for u in logged:
        try:
            features[u.utterance_id] = u.features()
        except FileNotFoundError:   # dropped by retention since the job began (new speech
            pass                    # came in): the job goes on without it
    logged = [u for u in logged if u.utterance_id in features]
    if len(logged) < config.min_utterances:
        raise AdaptationError(f"user {user_id!r} has {len(logged)} usable utterances (corrected, "
                              f"or confident enough for pseudo-labels); at least "
                              f"{config.min_utterances} are needed")
    hints = dict(zip((u.utterance_id for u in logged),
                     hint([(u.utterance_id, u.transcript, u.audio) for u in logged]) if hint
                     else [u.transcript for u in logged]))
    # the logged confidence belongs to the logged transcript, not to a re-recognised hint
    confidence = {u.utterance_id: None if hint else u.confidence for u in logged}
    corrected = [FeatureItem(features[u.utterance_id], u.label, u.utterance_id,
                             hints[u.utterance_id], confidence[u.utterance_id])
                 for u in logged if u.corrected_text is not None]
    pseudo = [FeatureItem(features[u.utterance_id], hints[u.utterance_id], u.utterance_id,
                          hints[u.utterance_id], confidence[u.utterance_id])
              for u in logged if u.corrected_text is None]
    return train_validation(corrected, pseudo, config)


def train_validation(corrected: list[FeatureItem], pseudo: list[FeatureItem],
                     config: AdaptConfig) -> tuple[list[FeatureItem], list[FeatureItem]]:
    """The projector's (train, validation) split: ``val_fraction`` of the corrected items are
    held out when there are at least 4 (pseudo-labels are not the truth), else of all."""
    if len(corrected) >= 4:
        train_c, val = split(corrected, config.val_fraction, config.seed)
        return train_c + pseudo, val
    return split(corrected + pseudo, config.val_fraction, config.seed)


def score(assistant, projector: Projector, items: list[FeatureItem],
          cancel: threading.Event | None = None) -> float:
    """WER of the aligned path with ``projector`` on ``items`` (the assistant's own prompt
    and response length, i.e. as the response node would answer)."""
    refs, hyps = [], []
    for it in items:
        if cancel is not None and cancel.is_set():
            raise AdaptationError("cancelled")
        refs.append(it.text)
        hyps.append(assistant.respond_with(projector, it.features, it.transcript,
                                           confidence=it.confidence).text)
    return wer(refs, hyps)


def score_cascade(assistant, items: list[FeatureItem],
                  cancel: threading.Event | None = None) -> float:
    """WER of the cascade (the item's transcript -> LLM) on ``items``, as the response node
    would answer in cascade mode."""
    refs, hyps = [], []
    for it in items:
        if cancel is not None and cancel.is_set():
            raise AdaptationError("cancelled")
        refs.append(it.text)
        hyps.append(assistant.respond_text(it.transcript).text)
    return wer(refs, hyps)


def beats(before: float, after: float, cascade: float, words: int,
          min_gain_words: int) -> tuple[bool, int]:
    """Whether a new projector may be published, and its gain: on the held-out utterances
    (``words`` reference words) it must make fewer word errors than the current projector and
    at least ``min_gain_words`` (>= 1) fewer than the cascade."""
    gain = round((cascade - after) * words)
    return after < before and gain >= max(min_gain_words, 1), gain


def adapt_user(store: UtteranceStore, user_id: str, current: Projector, assistant, embeddings,
               asr_model_id: str, config: AdaptConfig,
               progress: Callable[[dict], None] | None = None,
               cancel: threading.Event | None = None, job_id: str | None = None,
               hint: Callable[[list[tuple[str, str, Callable]]], list[str]] | None = None
               ) -> AdaptResult:
    """Train a copy of ``current`` on the user's log; keep it only if it beats ``current``.

    ``job_id``: the job recorded in the store (``UtteranceStore.start_job``); the projector is
    stored only while that job is still running there (not after a rollback or forget-user of
    the user cancelled it). ``hint``: see ``user_items``."""
    train, val = user_items(store, user_id, config, asr_model_id, hint)
    result = adapt_projector(train, val, current, assistant, embeddings, config, progress,
                             cancel, user_id)
    if result.success:
        store.add_projector(user_id, result.version, current.version, result.checkpoint,
                            result.metrics, make_current=result.published, job_id=job_id)
        if not result.published:
            result.checkpoint = b""
    return result


def trainable_copy(current: Projector, config: AdaptConfig):
    """A copy of ``current``'s model in training mode, as the recipe adapts it: a gated one
    with the user's own audio let in (``config.gate_max_confidence``; the base's limit was
    picked on other voices)."""
    model = copy.deepcopy(current.model).train()
    if model.config.gate != "none":
        model.config.gate_max_confidence = config.gate_max_confidence
    return model


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

    model = trainable_copy(current, config)
    train_config = config.train_config(gated=model.config.gate != "none")
    uses_llm = train_config.objective in LLM_OBJECTIVES
    trainer = Trainer(model, train_config, embeddings=embeddings,
                      llm=assistant.llm if uses_llm else None,
                      prompt=prompt if uses_llm else None,
                      progress=lambda p: report({**p, "stage": "training"}), cancel=cancel,
                      show_progress_bar=False, device=str(assistant.llm.device))
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
    cascade = None
    if before is not None:
        # the cascade on the same utterances: mode auto serves this projector only if it is no
        # worse (core.assistant.routing reads these metrics from the checkpoint)
        cascade = score_cascade(assistant, val, cancel)
        metrics.update(wer_before=before, wer_after=after, cascade_wer=cascade)
        metrics.update({ALIGNED_WER: after, CASCADE_WER: cascade})
    metrics["total_s"] = time.perf_counter() - t0
    improved = before is None
    if before is not None:
        words = sum(len(normalize(it.text).split()) for it in val)
        improved, gain = beats(before, after, cascade, words, config.min_gain_words)
        metrics["gain_words"] = gain
    publish = improved or not config.require_improvement
    if before is None:
        msg = "no held-out utterances: published without validation"
    elif improved:
        msg = (f"WER {before:.3f} -> {after:.3f} (cascade {cascade:.3f}) on {len(val)} "
               f"held-out utterances")
    elif publish:
        msg = (f"published without improvement (require_improvement off): WER "
               f"{before:.3f} -> {after:.3f}, cascade {cascade:.3f}")
    else:
        msg = (f"kept the current projector: new WER {after:.3f} does not beat both the "
               f"current {before:.3f} and the cascade {cascade:.3f} (by at least "
               f"{max(config.min_gain_words, 1)} words: {gain}) on {len(val)} held-out "
               f"utterances")
    if cancel.is_set():
        return AdaptResult(False, False, message="cancelled; the current projector is kept")
    return AdaptResult(True, publish, meta.version, msg, metrics, to_bytes(candidate),
                       candidate)


# -- the recogniser ----------------------------------------------------------------------------


@dataclass
class RecognizerResult:
    success: bool
    published: bool
    version: str = ""
    parent_version: str = ""
    message: str = ""
    metrics: dict = field(default_factory=dict)
    data: bytes = b""              # the new adapter's bytes (published or not)
    adapter: object = None         # RecognizerAdapter the user is served with after the job
                                   # (the new one if published, else their current one or None)
    items: list = field(default_factory=list)   # the RecognizerItems it trained and validated on
    # utterance id -> the published adapter's held-out transcript of it (cross-fitted: by the
    # fold adapter that did not train on it): what it gives on speech it has not seen
    held_out: dict = field(default_factory=dict)


class _Cancelled(Exception):
    pass


def newest_for_recognizer(utterances: list, config: AdaptConfig) -> list:
    """The utterances (oldest first) the recogniser step trains on: the newest
    ``max_utterances``, and of those the newest ``recognizer_max_utterances`` (0: no limit)."""
    for cap in (config.max_utterances, config.recognizer_max_utterances):
        if cap:
            utterances = utterances[-cap:]
    return utterances


def recognizer_items(store: UtteranceStore, user_id: str, config: AdaptConfig, recognizer,
                     cancel: threading.Event | None = None, report=None,
                     current=None) -> list:
    """The user's corrected utterances with logged audio, as RecognizerItems (the audio
    re-encoded on the padded 30 s window; an utterance longer than one window is left out),
    keeping what the configured LoRA targets and the user's ``current`` adapter (a
    RecognizerAdapter, which the gate decodes with) need."""
    from .recognizer_adapt import encode_items, item_depth

    corrected = store.utterances(user_id, corrected_only=True)
    usable = newest_for_recognizer([u for u in corrected if u.has_audio], config)
    rconf = config.recognizer_config()
    need = rconf.min_utterances + 1
    if 0 < config.recognizer_max_utterances < need:
        raise AdaptationError(
            f"recognizer_max_utterances {config.recognizer_max_utterances} is below the {need} "
            f"utterances recogniser adaptation needs: raise it, or 0 for "
            f"no limit")
    depth = item_depth(rconf.targets, current.decoder_adapter() if current is not None else None)
    if len(usable) < need:
        raise AdaptationError(
            f"user {user_id!r} has {len(usable)} corrected utterances with logged audio (of "
            f"{len(corrected)} corrected); recogniser adaptation needs at least {need} (the "
            f"ASR node's publish_audio must be on when they are spoken)")
    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise _Cancelled

    progress = None if report is None else (
        lambda done, total: report({"stage": "recognizer_encoding", "step": done,
                                    "total_steps": total, "loss": 0.0, "eta_s": 0.0}))
    return encode_items(recognizer, [(u.audio, u.label, u.utterance_id, u.transcript)
                                     for u in usable], depth, check_cancel, progress)


def recognizer_version(user_id: str, data: bytes) -> str:
    return (f"rec-{user_id}-{time.strftime('%Y%m%d-%H%M%S')}-"
            f"{hashlib.sha256(data).hexdigest()[:8]}")


def served_wer(recognizer, val: list, current, unadapted_wer: float,
               beam_size: int, batch_size: int) -> tuple[float, str]:
    """The held-out WER a new adapter must beat, and what it is of: the user's current adapter
    ("adapter"); without one, the transcripts the user was served when the utterances were
    logged ("served": faster-whisper as the ASR node runs it, which is what refusing keeps);
    where some were logged without one, the unadapted torch decoder ("unadapted")."""
    from .recognizer_adapt import evaluate

    if current is not None:
        return (evaluate(recognizer, val, current, beam_size=beam_size,
                         batch_size=batch_size)["wer"], "adapter")
    if val and all(it.served is not None for it in val):
        return wer([it.text for it in val], [it.served for it in val]), "served"
    return unadapted_wer, "unadapted"


def adapt_recognizer_items(recognizer, items: list, current, config: AdaptConfig,
                           progress: Callable[[dict], None] | None = None,
                           cancel: threading.Event | None = None, user_id: str = "",
                           parent_version: str = "") -> RecognizerResult:
    """The recogniser recipe (the node's and `tinyalign adapt --target recognizer`'s): a fresh
    LoRA on ``items``, validated on held-out utterances (``recognizer_validation``: cross-fitted
    over all of them, or a held-out share); published only if its held-out WER (at the served
    beam) is below what the user is served now (``served_wer``)."""
    from .recognizer_adapt import adapt_recognizer, crossfit_recognizer, split_items

    cancel = cancel or threading.Event()
    report = progress or (lambda p: None)
    rconf = config.recognizer_config()
    crossfit = rconf.validation == "crossfit"
    total = 3 * rconf.epochs if crossfit else rconf.epochs   # 2 folds + the refit (at most)
    done = [0]

    def on_epoch(h):
        if cancel.is_set():
            raise _Cancelled
        done[0] += 1
        report({"stage": "recognizer_training", "step": done[0], "total_steps": total,
                "loss": h["train_loss"], "eta_s": 0.0})

    t0 = time.perf_counter()
    train, val = (items, items) if crossfit else split_items(items, rconf.val_fraction,
                                                             rconf.seed)
    # the unadapted decoder's held-out transcripts are the gate's "before" only for a user
    # without an adapter some of whose utterances were logged without a transcript
    unadapted = current is None and not all(it.served is not None for it in val)
    try:
        if crossfit:
            adapter, m = crossfit_recognizer(recognizer, items, rconf, progress=on_epoch,
                                             decode_unadapted=unadapted)
        else:
            adapter, m = adapt_recognizer(recognizer, train, rconf, val_items=val,
                                          progress=on_epoch, decode_unadapted=unadapted)
    except _Cancelled:
        return RecognizerResult(False, False, message="cancelled; the current recogniser is "
                                                      "kept", adapter=current)
    if "val_wer" not in m:        # too few utterances to train and validate on
        raise AdaptationError(f"recogniser adaptation refused: {m.get('reason')}")
    report({"stage": "recognizer_validating", "step": 0, "total_steps": 0, "loss": 0.0,
            "eta_s": 0.0, "validation_wer": m["val_wer"]})
    before, versus = served_wer(recognizer, val, current, m.get("base_val_wer"),
                                rconf.beam_size, rconf.decode_batch_size)
    after = m["val_wer"]
    words = sum(len(normalize(it.text).split()) for it in val)
    gain = round((before - after) * words)         # word errors saved on the held-out set
    improved = adapter is not None and gain >= max(config.recognizer_min_gain_words, 1)
    publish = adapter is not None and (improved or not config.require_improvement)
    data, version = b"", ""
    if adapter is not None:       # None: cross-fitting never beat the unadapted loss
        adapter.metadata.update(user_id=user_id, parent_version=parent_version,
                                adapt={k: v for k, v in config.to_dict().items()
                                       if k.startswith("recognizer_") or k in (
                                           "val_fraction", "min_utterances", "batch_size",
                                           "seed")})
        data = adapter.to_bytes()
        version = recognizer_version(user_id or "offline", data)
    metrics = {"recognizer_wer_before": before,
               # 1: "before" is the transcripts the user was served (logged), not a decode
               "recognizer_before_served": float(versus == "served"),
               "recognizer_wer_after": after, "recognizer_gain_words": float(gain),
               "recognizer_train_s": m["train_s"],
               "recognizer_total_s": time.perf_counter() - t0,
               "recognizer_bytes": len(data), "recognizer_best_epoch": m["best_epoch"],
               # 1: training (a fold or the refit) stopped at recognizer_time_budget_s
               "recognizer_time_capped": float(m.get("stopped") == "time_budget"),
               "recognizer_train_utterances": len(train),
               "recognizer_validation_utterances": len(val),
               "recognizer_crossfit": float(crossfit),
               "recognizer_published": float(publish)}
    if "base_val_wer" in m:        # decoded only where it is the "before"
        metrics["recognizer_wer_base"] = m["base_val_wer"]
    who = {"adapter": "the user's current adapter", "served": "the recogniser the user is "
           "served", "unadapted": "the unadapted recogniser"}[versus]
    how = "cross-fitted " if crossfit else ""
    if improved:
        msg = (f"recogniser WER {before:.3f} -> {after:.3f} on {len(val)} {how}held-out "
               f"utterances (before: {who})")
    elif publish:
        msg = (f"recogniser published without improvement (require_improvement off): WER "
               f"{before:.3f} -> {after:.3f}")
    else:
        msg = (f"kept {who}: the new adapter's WER {after:.3f} against {before:.3f} on "
               f"{len(val)} {how}held-out utterances saves {gain} word errors, fewer than "
               f"{max(config.recognizer_min_gain_words, 1)}")
    if cancel.is_set():
        return RecognizerResult(False, False, message="cancelled; the current recogniser is "
                                                      "kept", adapter=current)
    hyps = m.get("hypotheses") or m.get("val_hypotheses") or []
    held_out = {it.id: h for it, h in zip(val, hyps)} if publish else {}
    return RecognizerResult(True, publish, version, parent_version, msg, metrics, data,
                            adapter if publish else current, items, held_out)


def adapt_user_recognizer(store: UtteranceStore, user_id: str, recognizer, config: AdaptConfig,
                          progress: Callable[[dict], None] | None = None,
                          cancel: threading.Event | None = None,
                          job_id: str | None = None) -> RecognizerResult:
    """adapt_recognizer_items on the user's log; the adapter is stored (current only when
    published; only while ``job_id`` still runs, as projectors)."""
    from .recognizer_adapt import RecognizerAdapter

    cancel = cancel or threading.Event()
    record = store.current_recognizer(user_id)
    current = None
    if record is not None:
        try:
            current = RecognizerAdapter.from_bytes(record.path.read_bytes())
            current.check_base(recognizer)
        except Exception as exc:    # unreadable or of another model: compared with the base
            raise AdaptationError(f"{user_id}'s current recogniser adapter {record.version} "
                                  f"is unusable ({exc}); roll it back first") from exc
    try:
        items = recognizer_items(store, user_id, config, recognizer, cancel, progress, current)
    except _Cancelled:
        return RecognizerResult(False, False, message="cancelled; the current recogniser is "
                                                      "kept", adapter=current)
    result = adapt_recognizer_items(recognizer, items, current, config, progress, cancel,
                                    user_id, record.version if record else "")
    if result.success and result.data:   # a refused adapter is stored too (not current)
        store.add_recognizer(user_id, result.version, result.parent_version, result.data,
                             result.metrics, make_current=result.published, job_id=job_id)
    return result


def redecoded_hints(recognizer, result: RecognizerResult, beam_size: int, cancel=None):
    """``hint`` for user_items after a recogniser step: for a list of (utterance id, logged
    transcript, load_audio) of logged utterances, the transcript of each by the adapter the
    user is served with now (``result.adapter``; None: the logged faster-whisper transcripts
    stay). An utterance the new adapter was validated on gets its held-out transcript
    (``result.held_out``: every utterance when cross-fitted, the held-out share with
    ``split``): the refit adapter has all but learned its training utterances by heart, so its
    own transcripts of them are far better than the ones it gives on new speech, and a
    projector trained and validated on them is judged against a cascade it will not meet
    (docs/BENCHMARKS.md, "The adapted cascade for K = 10 / 25 / 50 / 100"). Encoder states
    computed for training are reused; the others are encoded (encode_items) and decoded
    ``DECODE_BATCH`` at a time (a long log holds hundreds). One whose audio is gone or longer
    than a window keeps its logged transcript."""
    from ..speech.whisper_encoder import encoder_depth
    from .recognizer_adapt import DECODE_BATCH, encode_items, transcribe_items

    adapter = result.adapter
    if adapter is None:
        return None
    ad = adapter.decoder_adapter()
    # encoder states kept only for what has no held-out transcript (~2.4 MB an utterance)
    known = {it.id: it for it in result.items if it.id not in result.held_out}

    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise AdaptationError("cancelled")

    def hints(utterances: list[tuple[str, str, Callable]]) -> list[str]:
        out = [result.held_out.get(id, transcript) for id, transcript, _ in utterances]
        todo = [i for i, (id, _, _) in enumerate(utterances) if id not in result.held_out]
        for s in range(0, len(todo), DECODE_BATCH):
            chunk = todo[s:s + DECODE_BATCH]
            check_cancel()
            new = encode_items(recognizer, [(utterances[i][2], "", utterances[i][0], None)
                                            for i in chunk if utterances[i][0] not in known],
                               encoder_depth(ad), check_cancel)
            items = {**known, **{it.id: it for it in new}}
            decode = [i for i in chunk if utterances[i][0] in items]
            texts = transcribe_items(recognizer, [items[utterances[i][0]] for i in decode], ad,
                                     beam_size=beam_size)
            for i, text in zip(decode, texts):
                out[i] = text
        return out
    return hints
