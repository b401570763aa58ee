"""Alignment quality per user and system, the K sweep, the transcript hint, and intents.

Systems, all on the "repeat exactly what was said" task with the same LLM:
  whisper        the ASR transcript itself (no LLM)
  cascade        Whisper transcript as text -> LLM (the serving prompt, no hint)
  ceiling        the TRUE text -> LLM (what the LLM and the serving prompt reach at best)
  base           the default aligned mode with the shipped base projector: for a gated
                 projector the hybrid (the cascade's prompt and transcript plus the audio
                 tokens behind its gate), else audio -> projector -> LLM
  base audio-only  a gated base's audio tokens alone in the injected prompt (the paper's mode),
                 served as the product serves them (GenerationConfig.audio_only_tokens:
                 snapped to the LLM's nearest token embeddings); "..., continuous": unsnapped
  adapted K      the base projector after the adaptation recipe on K of the user's utterances
  ... +hint      the same projector with the ASR transcript injected after the audio tokens
An aligned system is served as the product serves it: with the prompt template its projector
recorded (``Assistant.prompt_for``), which can differ from the serving prompt of the cascade
(the report's ``prompt`` says both).
"""
from __future__ import annotations

import time

from ..core.assistant.checkpoint import Projector, ProjectorMeta
from ..core.learning.adapt import AdaptConfig, trainable_copy
from ..core.learning.train import LLM_OBJECTIVES, Trainer
from ..core.metrics import wer

#: the K sweep: EmbedLink from the base, 15 epochs at 5e-4 (the adaptation node's recipe
#: before CE on the hinted prompt became its default; kept so the sweep stays comparable)
EMBEDLINK_ADAPT = AdaptConfig(objective="embedlink", epochs=15, learning_rate=5e-4)

#: adaptation for the hinted prompt, the adaptation node's default recipe (cross-entropy
#: through the LLM on the hinted prompt, 2 epochs at 3e-4, batches of 8). EmbedLink pulls the
#: tokens towards the text embeddings, which measured worse beside the transcript
#: (docs/BENCHMARKS.md); CE with the hint in the prompt teaches the projector what to add.
HINT_ADAPT = AdaptConfig()


class Systems:
    """Scores the systems on a list of FeatureItems (with transcripts). ``plain``: an
    Assistant without the transcript hint (cascade, ceiling, aligned); ``hinted``: with it."""

    def __init__(self, plain, hinted):
        self.plain, self.hinted = plain, hinted

    @classmethod
    def on(cls, llm, max_new_tokens: int) -> "Systems":
        from ..core.assistant.pipeline import Assistant
        from ..core.assistant.prompt import PromptConfig

        return cls(Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens),
                   Assistant(llm, PromptConfig(transcript_hint=True), max_new_tokens))

    def responses(self, system: str, items, projector: Projector | None = None,
                  hint: bool = False) -> list[str]:
        if system == "whisper":
            return [it.transcript for it in items]
        if system == "cascade":
            return [self.plain.respond_text(it.transcript).text for it in items]
        if system == "ceiling":
            return [self.plain.respond_text(it.text).text for it in items]
        if system == "audio-only":
            return [self.plain.respond_aligned(projector, it.features, None).text for it in items]
        if system == "audio-only-continuous":   # the audio tokens as the projector made them
            served, self.plain.audio_only_tokens = self.plain.audio_only_tokens, "continuous"
            try:
                return self.responses("audio-only", items, projector)
            finally:
                self.plain.audio_only_tokens = served
        if system != "aligned":
            raise ValueError(f"unknown system {system!r}")
        assistant = self.hinted if hint else self.plain
        return [assistant.respond_with(projector, it.features, it.transcript,
                                       confidence=it.confidence).text for it in items]

    def wer(self, system: str, items, projector: Projector | None = None,
            hint: bool = False) -> float:
        return wer([it.text for it in items], self.responses(system, items, projector, hint))


def as_projector(model, parent: Projector | None = None, prompt=None,
                 adapter=None) -> Projector:
    """A BridgeFormer trained here as the value the assistant serves. ``parent``: the projector
    it was adapted from (model ids; its prompt template unless ``prompt``); ``prompt``: the
    PromptBuilder it was trained with, recorded so it is served with it. Neither: a projector
    trained from scratch without a prompt (EmbedLink), served with the serving prompt."""
    if prompt is not None:
        recorded = prompt.config.to_dict()
    else:
        recorded = dict(parent.meta.prompt) if parent is not None else {}
    meta = ProjectorMeta(asr_model_id=parent.meta.asr_model_id if parent else "",
                         llm_model_id=parent.meta.llm_model_id if parent else "",
                         projector=model.config.to_dict(),
                         parent_version=parent.version if parent else "", prompt=recorded)
    return Projector(model, meta, adapter)


def adapt(base: Projector, items, assistant, embeddings, config: AdaptConfig,
          progress=None) -> tuple[Projector, float]:
    """The adaptation node's training step (core.learning.adapt.adapt_user without the store
    and the validation): a copy of ``base`` trained on ``items`` with ``config``, on the prompt
    ``assistant`` serves ``base`` with. Returns (adapted projector, training seconds).
    ``progress(report, model)``: the trainer's progress reports, with the model in training."""
    prompt = assistant.prompt_for(base)
    model = trainable_copy(base, config)
    train_config = config.train_config(gated=model.config.gate != "none")
    uses_llm = train_config.objective in LLM_OBJECTIVES
    t0 = time.perf_counter()
    result = Trainer(model, train_config, embeddings=embeddings,
                     llm=assistant.llm if uses_llm else None,
                     prompt=prompt if uses_llm else None,
                     progress=(lambda p: progress(p, model)) if progress else None,
                     show_progress_bar=False).fit(items, [])
    train_s = time.perf_counter() - t0
    return as_projector(model.eval(), base, prompt, result.adapter), train_s


def user_quality(user, systems: Systems, base: Projector, embeddings, ks, hint_ks,
                 log=print, sweep: AdaptConfig = EMBEDLINK_ADAPT,
                 hint_recipe: AdaptConfig = HINT_ADAPT) -> dict:
    """WER of every system for one user, and the K sweep (``sweep``: EMBEDLINK_ADAPT; the
    CE+hint rows: ``hint_recipe``, HINT_ADAPT; other epochs only in quick mode)."""
    test = user.test
    out = {"user": user.name, "kind": user.kind, "test": len(test), "pool": len(user.pool),
           "wer": {}, "adapt_train_s": {}}
    w = out["wer"]
    for system in ("whisper", "cascade", "ceiling"):
        w[system] = systems.wer(system, test)
    w["base"] = systems.wer("aligned", test, base)
    if base.model.config.gate != "none":   # the default mode is the hybrid: the paper's too
        w["base audio-only"] = systems.wer("audio-only", test, base)
        w["base audio-only, continuous"] = systems.wer("audio-only-continuous", test, base)
    else:
        w["base+hint"] = systems.wer("aligned", test, base, hint=True)
    log(f"  {user.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()))
    for k in ks:
        if k > len(user.pool):
            continue
        adapted, train_s = adapt(base, user.pool[:k], systems.plain, embeddings, sweep)
        out["adapt_train_s"][str(k)] = round(train_s, 2)
        w[f"adapted K={k}"] = systems.wer("aligned", test, adapted)
        if k in hint_ks and base.model.config.gate == "none":   # a gated one has no other
            w[f"adapted K={k}+hint"] = systems.wer("aligned", test, adapted, hint=True)
        log(f"  {user.name}: K={k} WER {w[f'adapted K={k}']:.3f} (trained {train_s:.1f} s)")
    out["wer"] = {k: round(v, 4) for k, v in w.items()}
    out.update(hint_adaptation(user, systems, base, embeddings, hint_ks, log, hint_recipe))
    return out


def hint_adaptation(user, systems: Systems, base: Projector, embeddings, hint_ks,
                    log=print, recipe: AdaptConfig = HINT_ADAPT) -> dict:
    """The base adapted with ``recipe`` (HINT_ADAPT: CE on the hinted prompt), K utterances
    (with transcripts), scored with the hint."""
    out = {"wer_ce_hint": {}, "adapt_ce_hint_train_s": {}}
    for k in hint_ks:
        if k > len(user.pool):
            continue
        pool = user.pool[:k]   # transcribed (an empty transcript, e.g. whispered speech, is
                               # a real ASR output: the prompt then carries no hint)
        adapted, train_s = adapt(base, pool, systems.hinted, embeddings, recipe)
        try:
            value = systems.wer("aligned", user.test, adapted, hint=True)
        finally:
            systems.hinted.retire(adapted)   # its LLM adapter, if the recipe trains one
        out["wer_ce_hint"][f"adapted K={k}+hint (CE)"] = round(value, 4)
        out["adapt_ce_hint_train_s"][str(k)] = round(train_s, 2)
        log(f"  {user.name}: CE+hint K={k} WER {value:.3f} (trained {train_s:.1f} s)")
    return out


def intent_quality(asr, systems: Systems, base: Projector, seed: int = 7, limit: int = 0,
                   log=print) -> dict:
    """The 20-intent command set spoken by two espeak voices; accuracy per system."""
    from ..core.learning.data import encode_examples, load_examples
    from ..core.models import data_dir
    from ..corpus.synth import Speaker, make_corpus
    from .intents import accuracy, utterances

    pairs = utterances()
    examples = []
    for i, voice in enumerate(("en-us", "en+f3")):
        speaker = Speaker(f"intent-{voice}", voices=(voice,), rate=(140, 180))
        manifest = make_corpus(data_dir() / "corpora" / f"bench-intents-{voice}-{seed}",
                               [t for _, t in pairs], speaker, seed + i)
        examples += load_examples(manifest)
    truth = [intent for intent, _ in pairs] * 2
    if limit:   # encode and transcribe only what is scored
        examples, truth = examples[:limit], truth[:limit]
    items = encode_examples(examples, asr, data_dir() / "cache" / "features",
                            with_transcripts=True)
    acc = {}
    last = ((("base audio-only", "audio-only", False),
             ("base audio-only, continuous", "audio-only-continuous", False))
            if base.model.config.gate != "none" else (("base+hint", "aligned", True),))
    for name, system, hint in (("whisper", "whisper", False), ("cascade", "cascade", False),
                               ("ceiling", "ceiling", False), ("base", "aligned", False), *last):
        acc[name] = round(accuracy(truth, systems.responses(system, items, base, hint)), 4)
    log("  intents: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()))
    return {"utterances": len(items), "intents": len(set(truth)), "accuracy": acc}
