"""The base projector's recipe: `tinyalign make-base-projector` (also `make base-projector`).

1. text: robot-assistant sentences from templates + everyday sentences from Debian's fortunes;
2. speech: espeak-ng voice variants at random rate/pitch, in five conditions (clean, telephone
   band, fast, slow, noisy), all offline;
3. features: the variable-length Whisper tiny.en encoder, cached;
4. training: EmbedLink, then a short cross-entropy finish through the frozen LLM;
5. the checkpoint, stored int8, with its metadata and a held-out evaluation.
Deterministic for a seed (up to thread scheduling in torch).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from .synth import Speaker, make_corpus, sentences
from .texts import fortune_sentences

CONDITIONS = (
    Speaker("clean", rate=(130, 210), pitch=(20, 80)),
    Speaker("telephone", rate=(130, 200), sox_effects=("sinc", "300-3400")),
    Speaker("fast", rate=(200, 260)),
    Speaker("slow", rate=(100, 130)),
    Speaker("noisy", rate=(140, 200), noise=0.02),
)


def corpus_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    fortunes = fortune_sentences()
    rng.shuffle(fortunes)
    templated = sentences(n - n // 2, seed)
    texts = templated + fortunes[:n // 2]
    rng.shuffle(texts)
    return texts


def corpus_features(asr, n: int = 1500, seed: int = 0, work: Path | None = None,
                    log=print) -> list:
    """The recipe's corpus, synthesized (once) and encoded (cached): FeatureItems."""
    from ..core.learning.data import encode_examples, load_examples
    from ..core.models import data_dir

    t0 = time.perf_counter()
    work = work or data_dir() / "corpora" / f"base-{n}-{seed}"
    texts = corpus_texts(n, seed)
    per = -(-len(texts) // len(CONDITIONS))
    examples = []
    for i, speaker in enumerate(CONDITIONS):
        chunk = texts[i * per:(i + 1) * per]
        manifest = make_corpus(work / speaker.name, chunk, speaker, seed + i)
        examples += load_examples(manifest)
    log(f"corpus: {len(examples)} utterances in {work} ({time.perf_counter() - t0:.0f} s)")
    t1 = time.perf_counter()
    items = encode_examples(examples, asr, data_dir() / "cache" / "features")
    log(f"features: {len(items)} x {asr.model_id} ({time.perf_counter() - t1:.0f} s)")
    return items


def make_base_projector(out: Path, n: int = 1500, epochs: int = 12, ce_epochs: int = 1,
                        threads: int = 2, seed: int = 0, work: Path | None = None,
                        log=print) -> dict:
    import torch

    from ..core.speech.asr import AsrFrontEnd
    from ..core.assistant.checkpoint import Projector, ProjectorMeta, save_checkpoint
    from ..core.learning.data import split
    from ..core.assistant.llm import EmbeddingTable, FrozenLLM
    from ..core.metrics import wer
    from ..core.assistant.pipeline import Assistant
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.assistant.prompt import PromptBuilder, PromptConfig
    from ..core.learning.train import TrainConfig, Trainer

    t_start = time.perf_counter()
    torch.set_num_threads(threads)
    asr = AsrFrontEnd(cpu_threads=threads)
    items = corpus_features(asr, n, seed, work, log)
    train, val = split(items, 0.05, seed)

    torch.manual_seed(seed)
    emb = EmbeddingTable()
    llm = FrozenLLM(threads=threads)
    # audio only: the corpus has no ASR transcripts to hint with (the recorded template serves
    # with or without the hint: transcript_hint is a serving switch)
    prompt_cfg = PromptConfig(transcript_hint=False)
    model = BridgeFormer(ProjectorConfig(asr_dim=asr.dim, llm_dim=emb.dim))
    cfg = TrainConfig(objective="embedlink+ce" if ce_epochs else "embedlink",
                      embedlink_epochs=epochs, ce_epochs=ce_epochs, batch_size=16, lr=1e-3,
                      ce_lr=2e-4, seed=seed, threads=threads)
    result = Trainer(model, cfg, emb, llm, PromptBuilder(llm.tokenizer, prompt_cfg),
                     progress=lambda p: log(json.dumps({k: (round(v, 4) if isinstance(v, float)
                                                            else v) for k, v in p.items()}))
                     if "val_loss" in p else None).fit(train, val)
    meta = ProjectorMeta(asr_model_id=asr.model_id, llm_model_id=emb.model_id,
                         projector=model.config.to_dict(), prompt=prompt_cfg.to_dict())
    projector = Projector(model.eval(), meta)
    assistant = Assistant(llm, prompt_cfg)   # served response length (GenerationConfig)
    assistant.use_projector(projector)
    held = val[:60]
    hyps = [assistant.respond_features(it.features).text for it in held]
    ceiling = [assistant.respond_text(it.text).text for it in held]
    metrics = {"heldout_utterances": len(held),
               "heldout_wer_aligned": round(wer([i.text for i in held], hyps), 4),
               "heldout_wer_true_text_ceiling": round(wer([i.text for i in held], ceiling), 4),
               "wall_s": round(time.perf_counter() - t_start, 1)}
    meta.training = {"recipe": "tinyalign make-base-projector", "utterances": n, "seed": seed,
                     "train": len(train), "validation": len(val),
                     "conditions": [c.name for c in CONDITIONS], "config": cfg.to_dict(),
                     "stages": result.summary()}
    meta.metrics = metrics
    save_checkpoint(projector, out, int8=True)
    log(json.dumps(metrics))
    return metrics
