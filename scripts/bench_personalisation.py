#!/usr/bin/env python3
"""Personalisation on a real speaker (Asterisk prompts, one voice, telephone band).

Splits the prompts by sentence into an adaptation pool and a test set that share no sentence,
then prints the WER of the "repeat exactly" task for: Whisper alone, the cascade (Whisper text ->
LLM), the true-text ceiling, the aligned path with the shipped base projector, and after
adapting the base projector on K utterances of the speaker. Asserts nothing.

    source scripts/env.sh && python scripts/bench_personalisation.py --k 50
"""
from __future__ import annotations

import argparse
import copy
import json
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=50, help="adaptation utterances")
    parser.add_argument("--test", type=int, default=40, help="held-out test utterances")
    parser.add_argument("--objective", default="embedlink",
                        choices=("embedlink", "ce", "embedlink+ce"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from tinyalign_ros.core.asr import AsrFrontEnd
    from tinyalign_ros.core.checkpoint import load_checkpoint
    from tinyalign_ros.core.corpora import asterisk_examples
    from tinyalign_ros.core.data import encode_examples, split
    from tinyalign_ros.core.llm import EmbeddingTable, FrozenLLM
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.models import data_dir, default_projector
    from tinyalign_ros.core.pipeline import Assistant
    from tinyalign_ros.core.train import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    asr = AsrFrontEnd(cpu_threads=args.threads)
    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 12]
    items = encode_examples(examples, asr, data_dir() / "cache" / "features",
                            with_transcripts=True)
    pool, test = split(items, 0.3, seed=1)
    test = test[:args.test]
    llm = FrozenLLM(threads=args.threads)
    base, _ = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
    assistant = Assistant(llm, max_new_tokens=40)
    refs = [it.text for it in test]

    def aligned(model):
        return wer(refs, [assistant.respond_with(model, None, it.features).text for it in test])

    rows = {"whisper": wer(refs, [it.transcript for it in test]),
            "cascade": wer(refs, [assistant.respond_text(it.transcript).text for it in test]),
            "ceiling_true_text": wer(refs, [assistant.respond_text(it.text).text for it in test]),
            "aligned_base": aligned(base)}
    adapted = copy.deepcopy(base)
    t0 = time.perf_counter()
    Trainer(adapted, TrainConfig(objective=args.objective, embedlink_epochs=args.epochs,
                                 ce_epochs=1, lr=5e-4, ce_lr=2e-4, batch_size=8),
            EmbeddingTable(), llm, assistant.prompt, show_progress_bar=False).fit(
        pool[:args.k], [])
    rows[f"adapt_train_s_k{args.k}"] = time.perf_counter() - t0
    rows[f"aligned_adapted_k{args.k}"] = aligned(adapted)
    print(json.dumps({"test": len(test), "k": args.k, "objective": args.objective,
                      **{k: round(v, 4) for k, v in rows.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
