"""Could the cross-fitted refit start from the folds' mean adapter and train fewer steps? The
refit trains on all K utterances from a fresh adapter for as many steps as the folds'
best epochs took (~16 s of a K = 50 job's ~46 s of optimizer steps). Here it starts from the
mean of the two folds' best adapters (same initialisation seed, so their LoRA A matrices
start equal) and trains FRACTION of those steps; 1 = the node's recipe.

    PYTHONPATH=.:scripts/experiments python scripts/experiments/refit_warm.py \
        whisper,croaky,slow_telephone 0.5

Prints per voice: the refit's steps, train_s, held-out WER (unchanged: the folds are the
same), and the test WER at beam 5 on the bench's 75 test utterances.
"""
import dataclasses
import json
import sys
import time

import torch

from recognizer_recipe import items_of
from tinyalign_ros.core.learning import recognizer_adapt as ra
from tinyalign_ros.core.learning.adapt import AdaptConfig
from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer

FRACTION = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
_adapt, _init = ra._adapt, ra._init_params
folds, warm = [], {}


def adapt(recognizer, prep, train_idx, val_idx, config, *args):
    if val_idx:                                   # a fold: keep its best adapter
        adapter, m = _adapt(recognizer, prep, train_idx, val_idx, config, *args)
        folds.append(adapter.tensors)
        return adapter, m
    if FRACTION < 1 and config.max_steps:        # the refit
        warm.update({k: sum(t[k].float() for t in folds) / len(folds) for k in folds[0]})
        config = dataclasses.replace(config, max_steps=max(1, round(config.max_steps * FRACTION)))
    try:
        return _adapt(recognizer, prep, train_idx, val_idx, config, *args)
    finally:
        warm.clear()
        folds.clear()


def init(recognizer, config, gen):
    params = _init(recognizer, config, gen)
    with torch.no_grad():
        for k, p in params.items():
            if k in warm:
                p.copy_(warm[k])
    return params


def main():
    ra._adapt, ra._init_params = adapt, init
    torch.set_num_threads(2)
    rec = WhisperRecognizer()
    config = AdaptConfig().recognizer_config()
    for voice in sys.argv[1].split(","):
        data = items_of(rec, voice)
        t0 = time.perf_counter()
        adapter, m = ra.crossfit_recognizer(rec, data["pool"][:50], config)
        row = {"voice": voice, "fraction": FRACTION, "fold_best": m["fold_best_epochs"],
               "refit_steps_validated": m["refit_steps"],
               "refit_steps_run": [h["steps"] for h in m["history"] if h["part"] == "all"][-1:],
               "train_s": round(m["train_s"], 1), "job_s": round(time.perf_counter() - t0, 1),
               "held_out": round(m["val_wer"], 4)}
        if adapter is not None:
            row["test"] = round(ra.evaluate(rec, data["test"], adapter, beam_size=5)["wer"], 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
