"""The corpus curve: how the base projector's quality grows with the amount of speech, and what
each engine adds (``tinyalign bench --sections corpus-curve``; needs a built corpus).

Every row trains a projector from scratch with the same recipe and budget (EmbedLink, 1 layer,
length pooling: the design section's picks; ``layers`` re-checks the depth at this scale) on
the first n training utterances of the corpus (the plan interleaves voices, so every prefix is
balanced), or on all of it minus one engine.
Scored on the corpus's held-out sentences (eval-sentences: training voices), its held-out voice
family (eval-voice) and the real speaker: "read" WER (each projected vector read as its nearest
token embedding, no LLM) and the paper's audio-only WER through the LLM.

Each finished row is kept in ``<corpus>/curve/`` (keyed by everything that makes it), with its
projector, and the row being trained saves its state after every epoch, so the section, hours
long on 2 cores, goes on from its last whole epoch when run again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time

import torch

RECIPE = {"projector": {"layers": 1}, "lr": 1e-3, "batch_size": 16}


def train_rows(items, engine_of: dict, n: int | None = None, exclude_engines: set = frozenset()):
    """(train, val): the first n items (after dropping excluded engines), 3 % of sentences
    held for picking the best epoch."""
    from ..core.learning.data import split

    items = [it for it in items if engine_of[it.id] not in exclude_engines]
    return split(items[:n] if n else items, 0.03, 0)


def recipe(layers: int = 1) -> dict:
    """The rows' recipe with another projector depth (1 is RECIPE itself, so its rows keep
    their cache keys)."""
    return {**RECIPE, "projector": {**RECIPE["projector"], "layers": layers}}


def corpus_curve(corpus, asr, systems, embeddings, real, sizes: tuple, epochs: int,
                 leave_out: tuple = (), eval_n: int = 100, threads: int = 2,
                 layers: int = 1, log=print) -> dict:
    from ..core.assistant.checkpoint import Projector, ProjectorMeta, save_checkpoint
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.assistant.prompt import PromptConfig
    from ..core.learning.train import TrainConfig, Trainer
    from ..core.metrics import wer
    from .footprint import read_text
    from .quality import as_projector

    rec = recipe(layers)
    engine_of = {r["id"]: r["engine"] for r in corpus.rows}
    unknown = set(leave_out) - set(engine_of.values())
    if unknown:
        raise ValueError(f"corpus {corpus.root} has no engine {sorted(unknown)} to leave out "
                         f"(its engines: {sorted(set(engine_of.values()))})")
    train_all = corpus.items(asr.model_id, "train")
    tests = {"eval-sentences": corpus.items(asr.model_id, "eval-sentences", limit=eval_n,
                                            with_transcripts=True),
             "eval-voice": corpus.items(asr.model_id, "eval-voice", limit=eval_n,
                                        with_transcripts=True),
             "real": real.test}
    for name, items in tests.items():
        if not items:
            raise ValueError(f"corpus {corpus.root}: no encoded and transcribed {name} "
                             "utterances (run `tinyalign corpus build --stages synth encode "
                             "transcribe`)")

    def read_wer(model, items) -> float:
        hyps = [read_text(model, it.features, embeddings.weight, embeddings.tokenizer)
                for it in items]
        return round(wer([it.text for it in items], hyps), 4)

    # a size within 1 % of the corpus is the whole corpus (a few utterances may fail to
    # synthesise: 19,999 of 20,000 here)
    fits = [n for n in sizes if n <= len(train_all) * 1.01]
    depth = f", {layers} layers" if layers != 1 else ""
    plan = [(f"{n} utterances{depth}", n, None) for n in fits]
    plan += [(f"all but {e}{depth}", None, frozenset({e})) for e in leave_out]
    skipped = [n for n in sizes if n not in fits]
    rows = []
    cache = corpus.root / "curve"
    cache.mkdir(exist_ok=True)
    for label, n, exclude in plan:
        train, val = train_rows(train_all, engine_of, n, exclude or frozenset())
        key = hashlib.sha256(json.dumps(
            [asr.model_id, embeddings.dim, epochs, rec, eval_n,
             sorted(it.id for it in train), {k: [it.id for it in v] for k, v in tests.items()}],
            sort_keys=True, default=str).encode()).hexdigest()[:16]
        kept = cache / f"{key}.json"
        if kept.is_file():
            rows.append(json.loads(kept.read_text()))
            log(f"  curve {label}: kept from {kept}")
            continue
        torch.manual_seed(0)
        model = BridgeFormer(ProjectorConfig(asr_dim=asr.dim, llm_dim=embeddings.dim,
                                             **rec["projector"]))
        cfg = TrainConfig(objective="embedlink", embedlink_epochs=epochs, lr=rec["lr"],
                          batch_size=rec["batch_size"], seed=0, threads=threads)
        t0 = time.perf_counter()
        # each epoch's state too: a row of the whole corpus is an hour on 2 cores
        stages = cache / f"{key}.stages"
        resumed = stages.is_dir()
        stage = Trainer(model, cfg, embeddings=embeddings, show_progress_bar=False,
                        checkpoint_dir=stages).fit(train, val).stages[0]
        served = as_projector(model.eval())
        row = {"label": label, "train_utterances": len(train),
               "distinct_sentences": len({it.text for it in train}),
               "engines": sorted({engine_of[it.id] for it in train}),
               # a resumed row's train_s counts this run's epochs only
               "train_s": round(time.perf_counter() - t0, 1), "resumed": resumed,
               "best_epoch": stage.best_epoch,
               "val_loss": round(stage.best_val_loss, 4)}
        for name, items in tests.items():
            row[f"{name}_read_wer"] = read_wer(model, items)
            row[f"{name}_wer"] = round(systems.wer("aligned", items, served), 4)
        log(f"  curve {label}: {len(train)} utt, {row['train_s']} s, " + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if k.endswith("wer")))
        # the row's projector too: the full-corpus row is an audio-only base that
        # `tinyalign make-base-projector --init` can finish (the hybrid stage) without
        # training EmbedLink again
        row["projector"] = str(save_checkpoint(Projector(model.eval(), ProjectorMeta(
            asr_model_id=asr.model_id, llm_model_id=embeddings.model_id,
            projector=model.config.to_dict(),
            prompt=PromptConfig(transcript_hint=False).to_dict(),
            training={"corpus": str(corpus.root), "curve_row": label, "epochs": epochs,
                      "train_utterances": len(train)})), kept.with_suffix(".safetensors")))
        kept.with_suffix(".tmp").write_text(json.dumps(row))
        kept.with_suffix(".tmp").rename(kept)
        shutil.rmtree(stages, ignore_errors=True)
        rows.append(row)
    cascade = {name: round(systems.wer("cascade", items), 4) for name, items in tests.items()}
    return {"corpus": str(corpus.root), "epochs": epochs, "recipe": rec,
            "train_available": len(train_all), "sizes_skipped": skipped,
            "test_utterances": {k: len(v) for k, v in tests.items()},
            "cascade_wer": cascade, "rows": rows}
