"""The adapted cascade: the recogniser adapted per user, beside the projector's rows.

For each user with an adaptation pool, on the same pool and test utterances as the quality
section's other rows:
  recogniser (torch, unadapted)  Whisper's decoder in torch at the served beam, no adapter: the
                                 starting point of adaptation (tiny.en agrees with
                                 faster-whisper float32; the "whisper" column is the ASR node's
                                 faster-whisper int8)
  recogniser K                   the transcript the user is served after recogniser adaptation on
                                 the first K pool utterances: the adaptation node's recipe and
                                 settings (core.learning.adapt.adapt_recognizer_items: a fresh
                                 LoRA, ``val_fraction`` held out, the best epoch by held-out
                                 loss, published only if its held-out WER (served beam) is below
                                 the served one). Published: the test utterances decoded with
                                 the adapter at the served beam, as the ASR node serves an adapted
                                 user; refused: the user keeps faster-whisper, i.e. the
                                 "whisper" column (the row says "refused")
  adapted cascade K              that transcript -> LLM (the cascade's prompt)
  adapted rec.+proj. K+hint (CE) the ``both`` job's projector step at the K's of
                                 ``hint_ks``, as the node runs it (served_combination): the base
                                 adapted with ``hint_recipe`` (quality.HINT_ADAPT, the node's
                                 recipe) on 80 % of the K pool utterances with the hints the
                                 new recogniser gives on them held out (cross-fitted: the fold
                                 adapter that did not train on an utterance transcribes it; the
                                 logged transcripts when it was refused),
                                 validated on the other 20 % against the current projector and
                                 the cascade on those hints, and scored in the aligned mode with
                                 the served recogniser's test transcripts as hints
  served (mode auto) K           what the user is answered with after that job: the combination
                                 where its projector was published (it beat the adapted cascade
                                 on the held-out utterances), else the adapted cascade
Times: the recogniser job's training (precompute + epochs, as RecognizerAdapter records
``train_s``; re-encoding the audio and the held-out WER decode are reported apart), and for the
combination the recogniser's plus the projector's.
"""
from __future__ import annotations

import dataclasses
import time

from ..core.learning.adapt import AdaptConfig
from ..core.metrics import wer

#: the adaptation node's recogniser recipe (AdaptConfig's defaults: rank 8, 8 epochs, 20 %
#: held out, the improvement gate, the 180 s safety limit on training)
NODE_RECIPE = AdaptConfig(target="recognizer")


def recognizer_items(recognizer, items, audio_paths, depth: int = 2) -> list:
    """RecognizerItems (padded-window encoder states, fp16, and the inputs of the encoder's
    last ``depth`` layers) of FeatureItems whose audio files are ``audio_paths`` (as the
    adaptation node re-encodes logged audio)."""
    from ..core.learning.recognizer_adapt import RecognizerItem
    from ..core.speech.audio import load_audio

    out = []
    for it, path in zip(items, audio_paths):
        # served: what the ASR front end gave, even if empty; None where it was not
        # transcribed (no confidence)
        out.append(RecognizerItem.of_audio(recognizer, load_audio(path), it.text, it.id,
                                           it.transcript if it.confidence is not None else None,
                                           depth))
    return out


def recognizer_quality(user, row: dict, recognizer, systems, base, embeddings, ks, hint_ks,
                       epochs: int = 0, log=print, hint_recipe=None, lora_on: str = "") -> dict:
    """The adapted-cascade numbers of one user (``row``: its quality row, for the whisper and
    cascade columns and the CE+hint row reused when the recogniser is refused). ``epochs``:
    the recogniser's (0: the node's); ``hint_recipe``: the projector's (quality.HINT_ADAPT, as
    the CE+hint row); ``lora_on``: the recogniser's LoRA targets ("": the node's)."""
    from ..core.learning.adapt import AdaptationError, adapt_recognizer_items
    from ..core.learning.recognizer_adapt import item_depth, transcribe_items
    from .quality import HINT_ADAPT

    hint_recipe = hint_recipe or HINT_ADAPT
    config = NODE_RECIPE if not epochs else dataclasses.replace(NODE_RECIPE,
                                                                recognizer_epochs=epochs)
    if lora_on:
        config = dataclasses.replace(config, recognizer_lora_on=lora_on)
    ks = [k for k in ks if k <= len(user.pool)]
    out = {"wer_recognizer": {}, "wer_adapted_cascade": {}, "wer_both": {},
           "recognizer_adapt": {}, "recognizer_train_s": {}, "both_train_s": {},
           "recognizer_refusals": 0, "recognizer_epochs": config.recognizer_epochs,
           "recognizer_lora_on": config.recognizer_lora_on}
    if not ks:
        return out
    refs = [it.text for it in user.test]
    beam = config.recognizer_beam_size     # decoded as the ASR node serves
    t0 = time.perf_counter()
    depth = item_depth(config.recognizer_config().targets)
    pool = recognizer_items(recognizer, user.pool[:max(ks)], user.pool_audio, depth)
    test = recognizer_items(recognizer, user.test, user.test_audio, depth)
    out["recognizer_encode_s"] = round(time.perf_counter() - t0, 2)
    out["wer_recognizer"]["recognizer (torch, unadapted)"] = round(
        wer(refs, transcribe_items(recognizer, test, beam_size=beam)), 4)
    for k in ks:
        t1 = time.perf_counter()
        try:
            result = adapt_recognizer_items(recognizer, pool[:k], None, config,
                                            user_id=f"bench-{user.name}")
        except AdaptationError as exc:    # too few utterances for the recipe: not adapted
            result, reason = None, str(exc)
        published = result is not None and result.published
        if published:
            adapter = result.adapter.decoder_adapter()
            transcripts = transcribe_items(recognizer, test, adapter, beam_size=beam)
            rec_wer = wer(refs, transcripts)
            cascade = wer(refs, [systems.plain.respond_text(t).text for t in transcripts])
        else:   # the user keeps faster-whisper: the whisper and cascade columns
            rec_wer, cascade = row["wer"]["whisper"], row["wer"]["cascade"]
            out["recognizer_refusals"] += 1
        m = result.metrics if result is not None else {}
        out["recognizer_adapt"][str(k)] = {
            "published": published,
            "message": result.message if result is not None else reason,
            "train_utterances": m.get("recognizer_train_utterances"),
            "validation_utterances": m.get("recognizer_validation_utterances"),
            "val_wer_before": _r(m.get("recognizer_wer_before")),
            "val_wer_after": _r(m.get("recognizer_wer_after")),
            "gain_words": m.get("recognizer_gain_words"),
            "best_epoch": m.get("recognizer_best_epoch"),
            "time_capped": bool(m.get("recognizer_time_capped")),
            "train_s": _r(m.get("recognizer_train_s"), 2),
            "job_s": _r(m.get("recognizer_total_s"), 2),   # + the held-out WER decode
            "bytes": m.get("recognizer_bytes")}
        if result is not None:
            out["recognizer_train_s"][str(k)] = round(m["recognizer_train_s"], 2)
        label = "" if published else " (refused)"
        out["wer_recognizer"][f"recognizer K={k}"] = round(rec_wer, 4)
        out["wer_adapted_cascade"][f"adapted cascade K={k}"] = round(cascade, 4)
        log(f"  {user.name}: recogniser K={k}{label} WER {rec_wer:.3f}, adapted cascade "
            f"{cascade:.3f} (recogniser trained {m.get('recognizer_train_s', 0):.1f} s; "
            f"{time.perf_counter() - t1:.1f} s in all)")
        if k not in hint_ks:
            continue
        # the projector's hints: each pool utterance as the new adapter transcribes it held
        # out (redecoded_hints, as the node's both job); refused: the logged ones
        hints = ([result.held_out[it.id] for it in pool[:k]] if published else None)
        both = served_combination(user, k, hints, transcripts if published else None, systems,
                                  base, embeddings, hint_recipe, config)
        key = f"adapted rec.+proj. K={k}+hint (CE)"
        out["wer_both"][key] = both["wer"]
        # mode auto: the combination where it won its validation, else the (adapted) cascade
        out.setdefault("wer_served", {})[f"served (mode auto) K={k}"] = (
            both["wer"] if both["path"] == "aligned" else round(cascade, 4))
        out.setdefault("served", {})[str(k)] = {x: both[x] for x in (
            "path", "reason", "published", "message", "train_utterances",
            "validation_utterances")}
        out["both_train_s"][str(k)] = {"recognizer_s": _r(m.get("recognizer_train_s"), 2),
                                       "projector_s": both["train_s"],
                                       "recognizer_refused": not published}
        log(f"  {user.name}: adapted recogniser + projector K={k} WER {both['wer']:.3f} "
            f"(projector trained {both['train_s']:.1f} s; {both['message']}); mode auto serves "
            f"the {both['path']} path")
    return out


def served_combination(user, k: int, hints, transcripts, systems, base, embeddings,
                       recipe: AdaptConfig, config: AdaptConfig) -> dict:
    """The ``both`` job's projector step as the adaptation node runs it (adapt_projector on
    user_items' split, train_validation): the base trained on 1 - val_fraction of the K pool
    utterances with the hints the user's recogniser gives (``hints``: the new adapter's
    held-out transcripts, without a confidence, as redecoded_hints; None: refused, the logged
    transcripts), validated on the rest against the current projector and the cascade on the
    same hints. Scored on the test utterances with the served recogniser's transcripts
    (``transcripts``; None: the logged ones), and routed as mode auto routes it: a projector
    that is not published leaves the user on the base, whose gate shuts for a transcript with
    a confidence, i.e. the cascade."""
    from ..core.assistant.routing import route
    from ..core.learning.adapt import adapt_projector, train_validation

    items = user.pool[:k]
    if hints is not None:
        items = [dataclasses.replace(it, transcript=h, confidence=None)
                 for it, h in zip(items, hints)]
    train, val = train_validation(items, [], config)     # every pool utterance is corrected
    result = adapt_projector(train, val, base, systems.hinted, embeddings, recipe)
    test = user.test if transcripts is None else [
        dataclasses.replace(it, transcript=t) for it, t in zip(user.test, transcripts)]
    try:
        value = systems.wer("aligned", test, result.projector, hint=True)
    finally:
        systems.hinted.retire(result.projector)
    chosen = (route(result.projector) if result.published else
              dataclasses.replace(route(None), reason="not published: the base (its gate shut) "
                                                      "and so the cascade"))
    return {"wer": round(value, 4), "path": chosen.path, "reason": chosen.reason,
            "published": result.published, "message": result.message,
            "train_utterances": len(train), "validation_utterances": len(val),
            "train_s": round(result.metrics["train_s"], 2)}


def _r(v, digits: int = 4):
    return None if v is None else round(float(v), digits)
