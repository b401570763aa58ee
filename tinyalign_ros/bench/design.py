"""Design choices of the base recipe, measured one at a time.

Every variant changes one setting of a reference projector and is trained from scratch with the
same EmbedLink budget on the base recipe's corpus (the same 5 % validation split picks its best
epoch), so the rows differ only in that setting:
  T and text -> tokens   "length" pooling (as many tokens as the text has, count predicted) vs
                         "fixed" T = 32 with the padding trained towards end-of-turn or masked
  depth                  1, 2 (reference), 4 transformer layers
  loss weights           MSE only, cosine x4, length loss x10
  regularisation         dropout 0.3; time masking of the encoder frames (augmentation)
  speech                 half the corpus, double the corpus (new synthesized sentences)
Scored on held-out sentences in the base voices (read WER: nearest token embedding, no LLM;
aligned WER and aligned+hint WER through the LLM) and on the real speaker's test prompts (read
WER). Not in the default sections (about an hour): ``tinyalign bench --sections design``.
"""
from __future__ import annotations

import time

import torch

#: (name, projector settings, training settings, corpus size relative to the reference)
VARIANTS = (
    ("reference: length pooling, T<=32, 2 layers", {}, {}, 1.0),
    ("fixed T=32, padding -> end-of-turn", {"pooling": "fixed"}, {"pad_target": "eos"}, 1.0),
    ("fixed T=32, padding masked", {"pooling": "fixed"}, {"pad_target": "mask"}, 1.0),
    ("1 layer", {"layers": 1}, {}, 1.0),
    ("4 layers", {"layers": 4}, {}, 1.0),
    ("MSE only (cosine weight 0)", {}, {"cos_weight": 0.0}, 1.0),
    ("cosine weight 4", {}, {"cos_weight": 4.0}, 1.0),
    ("length loss weight 1.0", {}, {"length_weight": 1.0}, 1.0),
    ("dropout 0.3", {"dropout": 0.3}, {}, 1.0),
    ("time masking 20 %", {}, {"time_mask": 0.2}, 1.0),
    ("half the speech", {}, {}, 0.5),
    ("double the speech", {}, {}, 2.0),
)


def variants(names: tuple = ()) -> tuple:
    if not names:
        return VARIANTS
    known = {v[0] for v in VARIANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown design variants {unknown}; known: {sorted(known)}")
    return tuple(v for v in VARIANTS if v[0] in names)


def design(asr, systems, embeddings, heldout, real, corpus: int, epochs: int,
           names: tuple = (), threads: int = 2, log=print) -> dict:
    from ..core.learning.data import split
    from ..core.metrics import wer
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.learning.train import TrainConfig, Trainer
    from ..corpus.recipe import corpus_features
    from .footprint import read_text
    from .quality import as_projector

    test_texts = {it.text.lower() for it in heldout.test + real.test}
    corpora = {}

    def corpus_items(scale: float):
        n = max(int(round(corpus * max(scale, 1.0))), 2)
        if n not in corpora:
            items = [it for it in corpus_features(asr, n, 0, log=log)
                     if it.text.lower() not in test_texts]   # never train on a test sentence
            corpora[n] = split(items, 0.05, 0)
        train, val = corpora[n]
        if scale < 1.0:
            train = train[:max(int(len(train) * scale), 1)]
        return train, val

    def read_wer(model, items) -> float:
        hyps = [read_text(model, it.features, embeddings.weight, embeddings.tokenizer)
                for it in items]
        return round(wer([it.text for it in items], hyps), 4)

    rows = []
    for name, projector_settings, train_settings, scale in variants(names):
        train, val = corpus_items(scale)
        torch.manual_seed(0)
        model = BridgeFormer(ProjectorConfig(asr_dim=asr.dim, llm_dim=embeddings.dim,
                                             **projector_settings))
        cfg = TrainConfig(objective="embedlink", embedlink_epochs=epochs, lr=1e-3, seed=0,
                          threads=threads, **train_settings)
        t0 = time.perf_counter()
        result = Trainer(model, cfg, embeddings=embeddings, show_progress_bar=False).fit(train,
                                                                                         val)
        stage = result.stages[0]
        served = as_projector(model.eval())   # trained without a prompt: the serving one
        row = {"variant": name, "projector": projector_settings, "training": train_settings,
               "train_utterances": len(train), "train_s": round(time.perf_counter() - t0, 1),
               "best_epoch": stage.best_epoch, "val_loss": round(stage.best_val_loss, 4),
               "parameters": model.num_parameters(),
               "heldout_read_wer": read_wer(model, heldout.test),
               "real_read_wer": read_wer(model, real.test),
               "heldout_wer": round(systems.wer("aligned", heldout.test, served), 4),
               "heldout_wer_hint": round(systems.wer("aligned", heldout.test, served,
                                                     hint=True), 4)}
        log(f"  design {name}: {len(train)} utt, {row['train_s']} s, val {row['val_loss']}, "
            f"read WER held-out {row['heldout_read_wer']:.3f} real {row['real_read_wer']:.3f}, "
            f"WER {row['heldout_wer']:.3f}, +hint {row['heldout_wer_hint']:.3f}")
        rows.append(row)
    return {"corpus": corpus, "epochs": epochs, "heldout": heldout.name,
            "heldout_utterances": len(heldout.test), "real": real.name,
            "real_utterances": len(real.test), "variants": rows}
