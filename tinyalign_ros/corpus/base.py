"""The base projector trained on a built multi-voice corpus (`tinyalign make-base-projector
--corpus DIR`; the corpus from `tinyalign corpus build`).

1. the corpus's training split (encoded shards; the held-out voice family never trains), 3 % of
   its sentences held out to pick the best epoch;
2. EmbedLink (no LLM pass) with the design section's picks: length pooling, 1 layer;
3. a cross-entropy finish through the frozen LLM on a slice of the corpus (CE costs ~15x more
   per utterance on 2 cores: bench cost section), on the audio-only prompt;
4. the hybrid stage (issue 11): the same projector plus a scalar gate that starts nearly closed,
   trained with CE on the cascade's prompt and a hint that is wrong the way recognisers are
   (core.learning.hints: the true text with simulated substitutions, deletions and insertions;
   or, for a share ``real_hint_share`` of the utterances the corpus's transcribe stage reached,
   Whisper's own transcript with its own errors; no hint at all for a tenth), the true text as
   the target. The base this makes is the gated projector, so its default aligned mode is the
   cascade plus whatever the audio adds;
5. the gate's confidence limit: on held-out sentences not scored in 6, the recogniser
   confidence at or above which the audio is left out (ProjectorConfig.gate_max_confidence),
   picked from a coarse grid as the one with the lowest WER, the lowest limit (the most
   cascade) among ties: where Whisper is sure of its transcript, the audio mostly misleads;
6. scored on the corpus's held-out sentences and held-out voice family (audio only, with the
   transcript hint, the hybrid, and the cascade beside them, Whisper's real transcripts and
   confidences as the hints), stored int8 with every voice's source and licence in its
   metadata.
``init`` starts from an audio-only projector (its training record is kept in the metadata):
EmbedLink is skipped, and so is the CE finish if the init's record shows one (a projector of
stages 1-3); an EmbedLink-only init (a corpus-curve row) gets the finish here. From a gated one
made by stage 4 (with ``hybrid_utterances`` 0), stages 5 and 6 only.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class BaseRecipe:
    """The defaults are the shipped base's recipe (docs/BENCHMARKS.md, "The shipped base")."""
    embedlink_epochs: int = 8
    train_utterances: int = 0          # the first N training utterances in plan order (0: all)
    ce_utterances: int = 2000          # CE finish on this many training utterances (0: none)
    ce_epochs: int = 1
    layers: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    ce_lr: float = 2e-4
    hybrid_utterances: int = 2000      # the gated hybrid stage on this many (0: no gate)
    hybrid_epochs: int = 1
    hybrid_lr: float = 2e-4
    hint_error_rate: float = 0.2       # simulated recogniser errors per word in training hints
    # the share of the hybrid's hints that are Whisper's own transcript of the utterance, where
    # the corpus has one (`tinyalign corpus build --stages transcribe`); the rest simulated
    real_hint_share: float = 0.8
    gate_init: float = -4.0            # sigmoid(-4) = 0.018: the cascade, nearly
    calibration_utterances: int = 100  # held-out sentences that pick the confidence limit
    init: str = ""                     # an audio-only projector to start from (skips 1-3)
    eval_utterances: int = 100         # per held-out split, scored through the LLM (0: none)
    eval_max_new_tokens: int = 40      # the longest reply scored (the serving default)
    threads: int = 2
    seed: int = 0


def make_base_projector(corpus_dir: str | Path, out: str | Path, recipe: BaseRecipe | None = None,
                        log=print, stages_dir: str | Path | None = None) -> dict:
    """``stages_dir`` (default ``<out>.stages``): each training stage's state after every epoch,
    so a run that was stopped (kill, reboot, end of a session) goes on from its last whole
    epoch when run again with the same recipe and corpus; removed once ``out`` is written."""
    import shutil

    import torch

    from ..core.assistant.checkpoint import (Projector, ProjectorMeta, load_checkpoint,
                                             save_checkpoint)
    from ..core.assistant.llm import EmbeddingTable, FrozenLLM
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.assistant.prompt import PromptBuilder, PromptConfig
    from ..core.assistant.routing import ALIGNED_WER, CASCADE_WER, VALIDATION_UTTERANCES
    from ..core.learning.data import split
    from ..core.learning.train import TrainConfig, Trainer
    from ..core.speech.asr import AsrFrontEnd
    from .build import Corpus

    r = recipe or BaseRecipe()
    t_start = time.perf_counter()
    stages_dir = Path(stages_dir) if stages_dir else Path(out).with_name(Path(out).name +
                                                                        ".stages")
    if stages_dir.is_dir() and any(stages_dir.glob("*.pt")):
        log(f"resuming from the stages saved in {stages_dir}: "
            f"{', '.join(sorted(p.stem for p in stages_dir.glob('*.pt')))}")
    init_gated = bool(r.init) and load_checkpoint(r.init).model.config.gate != "none"
    if init_gated and r.hybrid_utterances:   # checked before the models load
        raise ValueError(f"{r.init} already has a gate: init takes an audio-only projector "
                         "(or a gated one with hybrid_utterances 0: calibrated and scored)")
    torch.set_num_threads(r.threads)
    corpus = Corpus(corpus_dir)
    asr = AsrFrontEnd(cpu_threads=r.threads)
    items = corpus.items(asr.model_id, "train", limit=r.train_utterances or None)
    if not items:
        raise ValueError(f"{corpus_dir}: no encoded training utterances (tinyalign corpus build)")
    if any(not v["permissive"] for v in corpus.plan["voices"] if not v["held_out"]):
        raise ValueError(f"{corpus_dir} trains on non-permissive voices: not for the shipped "
                         "base (build it without --all-licences)")
    train, val = split(items, 0.03, r.seed)
    log(f"corpus: {len(train)} training, {len(val)} validation utterances")

    torch.manual_seed(r.seed)
    emb = EmbeddingTable()
    llm = FrozenLLM(threads=r.threads)
    prompt_cfg = PromptConfig(transcript_hint=False)   # audio only; the hint is a serving switch

    def progress(p):
        if "val_loss" in p:
            log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                            for k, v in p.items()}))
    stages, init_record = {}, None
    finish = bool(r.ce_utterances and r.ce_epochs)
    if r.init:
        start = load_checkpoint(r.init, asr.model_id, llm.model_id)
        model, init_record = start.model, {"version": start.version, **start.meta.training}
        # a finish is run once: an init made by this recipe's stages 1-3 already had it
        had_finish = any(k.startswith("finish_") for k in start.meta.training.get("stages", {}))
        finish = finish and not had_finish and not init_gated
        log(f"starting from {r.init} ({start.version}): EmbedLink skipped, the CE finish "
            f"{'runs' if finish else 'skipped'}")
    else:
        model = BridgeFormer(ProjectorConfig(asr_dim=asr.dim, llm_dim=emb.dim, layers=r.layers))
        cfg = TrainConfig(objective="embedlink", embedlink_epochs=r.embedlink_epochs,
                          batch_size=r.batch_size, lr=r.lr, seed=r.seed, threads=r.threads)
        result = Trainer(model, cfg, emb, progress=progress, show_progress_bar=False,
                         device=str(llm.device), checkpoint_dir=stages_dir).fit(train, val)
        stages.update(result.summary())
    if finish:
        ce_cfg = TrainConfig(objective="ce", ce_epochs=r.ce_epochs, batch_size=r.batch_size,
                             lr=r.ce_lr, seed=r.seed, threads=r.threads)
        result = Trainer(model, ce_cfg, emb, llm, PromptBuilder(llm.tokenizer, prompt_cfg),
                         progress=progress, show_progress_bar=False,
                         checkpoint_dir=stages_dir).fit(train[:r.ce_utterances], val[:200])
        stages.update({f"finish_{k}": v for k, v in result.summary().items()})
    audio_only = Projector(model.eval(), ProjectorMeta(
        asr_model_id=asr.model_id, llm_model_id=emb.model_id,
        projector=model.config.to_dict(), prompt=prompt_cfg.to_dict()))
    gated = model if init_gated else None
    if not init_gated and r.hybrid_utterances and r.hybrid_epochs:
        real = corpus.transcripts(asr.model_id) if r.real_hint_share else {}
        gated, result = hybrid_stage(model, train, val, llm, prompt_cfg, r, progress,
                                     stages_dir, real, log)
        stages.update({f"hybrid_{k}": v for k, v in result.summary().items()})

    shipped = gated or model
    meta = ProjectorMeta(asr_model_id=asr.model_id, llm_model_id=emb.model_id,
                         projector=shipped.config.to_dict(), prompt=prompt_cfg.to_dict())
    projector = Projector(shipped.eval(), meta)
    calibration = None
    if gated is not None and r.calibration_utterances:
        held = corpus.items(asr.model_id, "eval-sentences", with_transcripts=True,
                            limit=r.eval_utterances + r.calibration_utterances)
        calibration = calibrate_gate(projector, held[r.eval_utterances:], llm,
                                     r.eval_max_new_tokens, log)
    metrics = evaluate(audio_only, corpus, asr, llm, r.eval_utterances,
                       hybrid=projector if gated is not None else None,
                       max_new_tokens=r.eval_max_new_tokens)
    if "eval-sentences" in metrics:   # what mode auto weighs for users with no projector yet
        held_out = metrics["eval-sentences"]
        metrics.update({ALIGNED_WER: held_out["hybrid" if gated is not None else "audio_only"],
                        CASCADE_WER: held_out["cascade"],
                        VALIDATION_UTTERANCES: held_out["utterances"]})
    if gated is not None:
        metrics["gate"] = round(float(torch.sigmoid(gated.gate_logit.detach())), 4)
        metrics["gate_calibration"] = calibration
    metrics["wall_s"] = round(time.perf_counter() - t_start, 1)
    voices = [v for v in corpus.plan["voices"] if not v["held_out"]]
    meta.training = {"recipe": "tinyalign make-base-projector --corpus", **asdict(r),
                     "corpus": corpus.status(asr.model_id), "train": len(train),
                     "validation": len(val), "stages": stages, "init": init_record,
                     "sources": [{k: v[k] for k in ("family", "licence")} for v in voices],
                     "voice_catalogue": "tinyalign_ros/corpus/VOICES.md"}
    meta.metrics = metrics
    save_checkpoint(projector, Path(out), int8=True)
    shutil.rmtree(stages_dir, ignore_errors=True)     # written: nothing left to resume
    log(json.dumps(metrics))
    return metrics


def hybrid_stage(model, train, val, llm, prompt_cfg, r: BaseRecipe, progress,
                 stages_dir: Path | None = None, real: dict | None = None, log=print):
    """Stage 4: a copy of ``model`` with a scalar gate (nearly closed), trained with the hybrid
    objective on hints with recogniser errors: simulated, or (``real``: utterance id ->
    Whisper's transcript) Whisper's own for ``r.real_hint_share`` of the utterances it has.
    Returns (gated model, TrainResult)."""
    import dataclasses
    import random

    import torch

    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.assistant.prompt import PromptBuilder
    from ..core.learning.hints import HintCorruptor
    from ..core.learning.train import TrainConfig, Trainer

    cfg = ProjectorConfig.from_dict({**model.config.to_dict(), "gate": "scalar",
                                     "gate_init": r.gate_init})
    gated = BridgeFormer(cfg)
    gated.load_state_dict(model.state_dict(), strict=False)   # all but the new gate
    rng = random.Random(r.seed)
    hints = HintCorruptor([it.text for it in train], r.hint_error_rate)

    real = real or {}
    used = []

    def hint(it) -> str:
        if rng.random() < 0.1:
            return ""
        # no draw without real transcripts: the simulated-only recipe's hints stay as they were
        if it.id in real and r.real_hint_share and rng.random() < r.real_hint_share:
            used.append(it.id)
            return real[it.id]
        return hints.corrupt(it.text, rng)

    def hinted(items):   # copies: the corpus items stay as they are
        return [dataclasses.replace(it, transcript=hint(it)) for it in items]
    train_items, val_items = hinted(train[-r.hybrid_utterances:]), hinted(val[:200])
    if r.real_hint_share:
        log(f"hybrid hints: {len(used)} of {len(train_items) + len(val_items)} are Whisper's own "
            f"transcripts ({sum(it.id in real for it in train_items + val_items)} available)")
    torch.manual_seed(r.seed)
    tc = TrainConfig(objective="hybrid", ce_epochs=r.hybrid_epochs, lr=r.hybrid_lr,
                     batch_size=8, seed=r.seed, threads=r.threads)
    result = Trainer(gated, tc, llm=llm, prompt=PromptBuilder(llm.tokenizer, prompt_cfg),
                     progress=progress, show_progress_bar=False,
                     checkpoint_dir=stages_dir).fit(train_items, val_items)
    return gated.eval(), result


#: the confidence limits tried (0: always the cascade; 1: the audio always enters)
GATE_CONFIDENCE_GRID = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def wer_per_limit(items, cascade: list[str], hybrid: list[str]) -> dict[float, float]:
    """WER of ``items`` for each confidence limit of the grid, given each item's cascade and
    hybrid reply: at or above the limit the cascade's reply is served, below it the hybrid's."""
    from ..core.metrics import wer

    refs = [it.text for it in items]
    return {limit: round(wer(refs, [c if it.confidence >= limit else h
                                    for it, c, h in zip(items, cascade, hybrid)]), 4)
            for limit in GATE_CONFIDENCE_GRID}


def pick_limit(table: dict[float, float]) -> float:
    """The limit with the lowest WER; among ties the lowest (the most cascade)."""
    return min(table, key=lambda limit: (table[limit], limit))


def calibrate_gate(projector, items, llm, max_new_tokens: int = 40, log=print) -> dict | None:
    """Stage 5: sets the gated ``projector``'s gate_max_confidence (its model config and its
    metadata) to the grid value with the lowest WER on ``items`` (held-out utterances with the
    recogniser's transcripts and confidences), the lowest among ties. Each utterance is
    answered twice (cascade, and the hybrid with the learned gate alone); every limit is then
    a choice between the two. Returns {"utterances", "wer" per limit, "picked"}; None (the
    limit left as it is) without items."""
    from ..core.assistant.pipeline import Assistant
    from ..core.assistant.prompt import PromptConfig

    items = [it for it in items if it.confidence is not None]
    if not items:
        log("gate calibration skipped: no held-out utterances with confidences")
        return None
    plain = Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens=max_new_tokens)
    cascade = [plain.respond_text(it.transcript).text for it in items]
    hybrid = [plain.respond_hybrid(projector, it.features, it.transcript).text for it in items]
    table = wer_per_limit(items, cascade, hybrid)
    picked = pick_limit(table)
    projector.model.config.gate_max_confidence = picked
    projector.meta.projector["gate_max_confidence"] = picked
    log(f"gate confidence limit {picked} on {len(items)} held-out utterances; WER per limit: "
        f"{table}")
    return {"utterances": len(items), "wer": {str(k): v for k, v in table.items()},
            "picked": picked}


def evaluate(projector, corpus, asr, llm, n: int, hybrid=None, max_new_tokens: int = 40) -> dict:
    """Audio-only, hinted and cascade WER of the repeat task on the corpus's held-out splits
    (and the gated ``hybrid``'s, if given); the hints are Whisper's real transcripts."""
    from ..core.assistant.pipeline import Assistant
    from ..core.assistant.prompt import PromptConfig
    from ..core.metrics import wer

    plain = Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens=max_new_tokens)
    hinted = Assistant(llm, PromptConfig(transcript_hint=True), max_new_tokens=max_new_tokens)
    out = {}
    for split in ("eval-sentences", "eval-voice") if n > 0 else ():
        items = corpus.items(asr.model_id, split, limit=n, with_transcripts=True)
        if not items:
            continue
        refs = [it.text for it in items]
        row = {
            "utterances": len(items),
            "whisper": round(wer(refs, [it.transcript for it in items]), 4),
            "audio_only": round(wer(refs, [plain.respond_aligned(projector, it.features).text
                                           for it in items]), 4),
            "with_hint": round(wer(refs, [hinted.respond_aligned(projector, it.features,
                                                                 it.transcript).text
                                          for it in items]), 4),
            "cascade": round(wer(refs, [plain.respond_text(it.transcript).text
                                        for it in items]), 4)}
        if hybrid is not None:
            row["hybrid"] = round(wer(refs, [plain.respond_hybrid(hybrid, it.features,
                                                                  it.transcript,
                                                                  confidence=it.confidence).text
                                             for it in items]), 4)
        out[split] = row
    return out
