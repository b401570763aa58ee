"""Alignment quality per user and system, the K sweep, the transcript hint, and intents.

Systems, all on the "repeat exactly what was said" task with the same LLM and prompt:
  whisper        the ASR transcript itself (no LLM)
  cascade        Whisper transcript as text -> LLM
  ceiling        the TRUE text -> LLM (what the LLM and prompt can reach at best)
  base           audio -> shipped base projector -> LLM
  adapted K      the base projector after the adaptation recipe on K of the user's utterances
  ... +hint      the same projector with the ASR transcript injected after the audio tokens
"""
from __future__ import annotations

import copy
import time

from ..core.adapt import AdaptConfig
from ..core.metrics import wer
from ..core.train import Trainer


class Systems:
    """Scores the systems on a list of FeatureItems (with transcripts)."""

    def __init__(self, plain, hinted, max_new_tokens: int = 32):
        self.plain, self.hinted, self.max_new_tokens = plain, hinted, max_new_tokens

    def responses(self, system: str, items, projector=None, hint: bool = False) -> list[str]:
        n = self.max_new_tokens
        if system == "whisper":
            return [it.transcript for it in items]
        if system == "cascade":
            return [self.plain.respond_text(it.transcript, max_new_tokens=n).text for it in items]
        if system == "ceiling":
            return [self.plain.respond_text(it.text, max_new_tokens=n).text for it in items]
        assistant = self.hinted if hint else self.plain
        return [assistant.respond_with(projector, None, it.features, it.transcript,
                                       max_new_tokens=n).text for it in items]

    def wer(self, system: str, items, projector=None, hint: bool = False) -> float:
        return wer([it.text for it in items], self.responses(system, items, projector, hint))


def adapt(base, items, embeddings, config: AdaptConfig | None = None):
    """The adaptation node's recipe on ``items``: (adapted copy, training seconds)."""
    config = config or AdaptConfig()
    model = copy.deepcopy(base).train()
    t0 = time.perf_counter()
    Trainer(model, config.train_config(), embeddings=embeddings,
            show_progress_bar=False).fit(items, [])
    return model.eval(), time.perf_counter() - t0


def user_quality(user, systems: Systems, base, embeddings, ks, hint_ks, log=print) -> dict:
    """WER of every system for one user, and the K sweep."""
    test = user.test
    out = {"user": user.name, "kind": user.kind, "test": len(test), "pool": len(user.pool),
           "wer": {}, "adapt_train_s": {}}
    w = out["wer"]
    for system in ("whisper", "cascade", "ceiling"):
        w[system] = systems.wer(system, test)
    w["base"] = systems.wer("aligned", test, base)
    w["base+hint"] = systems.wer("aligned", test, base, hint=True)
    log(f"  {user.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()))
    for k in ks:
        if k > len(user.pool):
            continue
        model, train_s = adapt(base, user.pool[:k], embeddings)
        out["adapt_train_s"][str(k)] = round(train_s, 2)
        w[f"adapted K={k}"] = systems.wer("aligned", test, model)
        if k in hint_ks:
            w[f"adapted K={k}+hint"] = systems.wer("aligned", test, model, hint=True)
        log(f"  {user.name}: K={k} WER {w[f'adapted K={k}']:.3f} (trained {train_s:.1f} s)")
    out["wer"] = {k: round(v, 4) for k, v in w.items()}
    out.update(hint_adaptation(user, systems, base, hint_ks, log))
    return out


#: adaptation for the hinted prompt: EmbedLink pulls the tokens towards the text embeddings,
#: which measured worse beside the transcript (BENCHMARKS); cross-entropy through the LLM with
#: the hint in the prompt teaches the projector what to add to the transcript.
HINT_ADAPT = AdaptConfig(objective="ce", epochs=2, lr=3e-4, batch_size=8)


def hint_adaptation(user, systems: Systems, base, hint_ks, log=print) -> dict:
    """The base adapted with CE on the hinted prompt, K utterances (with transcripts)."""
    out = {"wer_ce_hint": {}, "adapt_ce_hint_train_s": {}}
    for k in hint_ks:
        if k > len(user.pool):
            continue
        pool = user.pool[:k]   # transcribed (an empty transcript, e.g. whispered speech, is
                               # a real ASR output: the prompt then carries no hint)
        model = copy.deepcopy(base).train()
        t0 = time.perf_counter()
        Trainer(model, HINT_ADAPT.train_config(), llm=systems.hinted.llm,
                prompt=systems.hinted.prompt, show_progress_bar=False).fit(pool, [])
        train_s = time.perf_counter() - t0
        value = systems.wer("aligned", user.test, model.eval(), hint=True)
        out["wer_ce_hint"][f"adapted K={k}+hint (CE)"] = round(value, 4)
        out["adapt_ce_hint_train_s"][str(k)] = round(train_s, 2)
        log(f"  {user.name}: CE+hint K={k} WER {value:.3f} (trained {train_s:.1f} s)")
    return out


def intent_quality(asr, systems: Systems, base, seed: int = 7, limit: int = 0,
                   log=print) -> dict:
    """The 20-intent command set spoken by two espeak voices; accuracy per system."""
    from ..core.data import encode_examples, load_examples
    from ..core.models import data_dir
    from ..core.synth import Speaker, make_corpus
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
    for name, system, hint in (("whisper", "whisper", False), ("cascade", "cascade", False),
                               ("ceiling", "ceiling", False), ("base", "aligned", False),
                               ("base+hint", "aligned", True)):
        acc[name] = round(accuracy(truth, systems.responses(system, items, base, hint)), 4)
    log("  intents: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()))
    return {"utterances": len(items), "intents": len(set(truth)), "accuracy": acc}
