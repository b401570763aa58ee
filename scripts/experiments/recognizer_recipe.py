"""Which recogniser-adaptation recipe helps the bench's users? (issue 12)

The bench's users (same pools and test sentences as `tinyalign bench`), their padded-window
encoder states cached once under /tmp/recexp; then each variant of RecognizerAdaptConfig trains
on the first K pool utterances (the node's 80/20 split, the node's gate) and decodes the test
utterances greedily. Prints per user: unadapted test WER, the adapted test WER, the held-out
WERs the gate saw, publish, train seconds.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/experiments/recognizer_recipe.py --k 50
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

CACHE = Path("/tmp/recexp3")   # items with the encoder's top inputs, 75 test utterances


def bench_examples(name, pool_n=100, test_n=75):
    """The bench's users (bench.speakers.examples): "real" is the Asterisk speaker (40 test).
    75 synthetic test utterances, as the bench since 2026-12-06 (night); 25 before."""
    from tinyalign_ros.bench import speakers
    if name == "real":
        return speakers.examples(speakers.REAL, pool_n, 40)
    return speakers.examples(name, pool_n, test_n)


def items_of(recognizer, name):
    from tinyalign_ros.core.learning.recognizer_adapt import RecognizerItem
    from tinyalign_ros.core.speech.audio import load_audio
    CACHE.mkdir(exist_ok=True)
    f = CACHE / (name.replace(":", "-") + ".pt")
    if f.is_file():
        return torch.load(f, weights_only=False)
    out = {}
    for split_name, exs in zip(("pool", "test"), bench_examples(name)):
        out[split_name] = []
        for e in exs:
            a = load_audio(e.audio)
            out[split_name].append(RecognizerItem.of_audio(recognizer, a, e.text, str(e.id)))
    torch.save(out, f)
    return out


DEC = ("self_qkv", "self_out", "cross_q", "cross_out", "ffn1", "ffn2")
ENC = ("encoder.top.out", "encoder.top.ffn1", "encoder.top.ffn2")
def speed_items(recognizer, name, factor, pool_n=100):
    """The pool utterances, speed-perturbed by ``factor`` (tempo and pitch, resampled)."""
    import numpy as np

    from tinyalign_ros.core.learning.recognizer_adapt import RecognizerItem
    from tinyalign_ros.core.speech.audio import load_audio
    f = CACHE / f"{name.replace(':', '-')}-speed{factor}.pt"
    if f.is_file():
        return torch.load(f, weights_only=False)
    out = []
    for e in bench_examples(name, pool_n)[0]:
        a = load_audio(e.audio)
        a = np.interp(np.arange(0, a.size - 1, factor), np.arange(a.size), a).astype(np.float32)
        out.append(RecognizerItem.of_audio(recognizer, a, e.text, f"{e.id}-s{factor}"))
    torch.save(out, f)
    return out


# variants that also train on speed-perturbed copies of the training utterances
AUGMENT = {"aug_speed": (0.9, 1.1), "aug_speed_x4": (0.9, 1.1)}

VARIANTS = {
    "node": {},
    "lr5e-4x16": {"learning_rate": 5e-4, "epochs": 16},
    "lr1e-3x12": {"learning_rate": 1e-3, "epochs": 12},
    "cross_only": {"targets": ("cross_q", "cross_out")},
    "no_ffn": {"targets": ("self_qkv", "self_out", "cross_q", "cross_out")},
    "r4": {"rank": 4, "alpha": 8.0},
    "wd0.1": {"weight_decay": 0.1},
    "last_block": {"method": "last_block"},
    "r4_lr1e-3x12": {"rank": 4, "alpha": 8.0, "learning_rate": 1e-3, "epochs": 12},
    # the encoder's last layer (attention output + FFN, frames with audio), alone and beside
    # the decoder's LoRA
    "enc": {"targets": ENC},
    "enc_lr1e-3": {"targets": ENC, "learning_rate": 1e-3},
    "dec+enc": {"targets": DEC + ENC},
    "dec+enc_lr1e-3": {"targets": DEC + ENC, "learning_rate": 1e-3},
    "dec+enc2e-3": {"targets": DEC + ENC, "encoder_learning_rate": 2e-3},
    "dec+enc1e-3": {"targets": DEC + ENC, "encoder_learning_rate": 1e-3},
    "dec+enc2e-3r16": {"targets": DEC + ENC, "encoder_learning_rate": 2e-3, "rank": 16,
                       "alpha": 32.0},
    "aug_speed": {},
    "aug_speed_x4": {"epochs": 4},
}
# variants that, after the gate's run picked the best epoch, train again on all K utterances
# for that many epochs (the gate's decision stays the first run's)
REFIT = {"node+refit": "node", "lr5e-4x16+refit": "lr5e-4x16", "r4+refit": "r4"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--users", default="croaky,whisper,slow_telephone,piper:joe,real")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="/tmp/recexp/results.jsonl")
    ap.add_argument("--wide-test", action="store_true")
    a = ap.parse_args()
    from tinyalign_ros.core.learning.recognizer_adapt import (RecognizerAdaptConfig,
                                                              adapt_recognizer, evaluate,
                                                              split_items)
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer
    rec = WhisperRecognizer()
    for user in a.users.split(","):
        data = items_of(rec, user)
        # test: the bench's test set plus the pool beyond the largest K (less noise)
        tests = data["test"] + data["pool"][a.k:] if a.wide_test else data["test"]
        base = evaluate(rec, tests)["wer"]
        pool = data["pool"][:a.k]
        train, val = split_items(pool, 0.2, 0)
        for v in a.variants.split(","):
            cfg = RecognizerAdaptConfig(**VARIANTS[REFIT.get(v, v)])
            t0 = time.perf_counter()
            fit = train
            if v in AUGMENT:
                ids = {it.id for it in train}
                for factor in AUGMENT[v]:
                    fit = fit + [it for it in speed_items(rec, user, factor)[:a.k]
                                 if it.id.rsplit("-s", 1)[0] in ids]
            adapter, m = adapt_recognizer(rec, fit, cfg, val_items=val)
            if v in REFIT and m["best_epoch"] > 0:
                cfg2 = dataclasses.replace(cfg, epochs=m["best_epoch"])
                adapter, m2 = adapt_recognizer(rec, pool, cfg2, val_items=[])
                m["train_s"] += m2["train_s"]
            test = evaluate(rec, tests, adapter)["wer"]
            row = {"user": user, "k": a.k, "variant": v, "n_test": len(tests), "test_base": round(base, 4),
                   "test_adapted": round(test, 4), "val_base": round(m["base_val_wer"], 4),
                   "val_adapted": round(m["val_wer"], 4), "publish": m["publish"],
                   "best_epoch": m["best_epoch"], "train_s": round(m["train_s"], 1),
                   "job_s": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
