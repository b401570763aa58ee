"""How often does the recogniser gate decide right, and what is the user served? (issue 12)

At K = 50 the node's gate (train on 40, publish if the held-out WER of 10 beats the unadapted
one) decides on 10 utterances: in the bench it refused croaky's adapter (0.206 -> 0.286 on its 10)
although the same recipe measured 0.272 -> 0.237 on 75 test utterances. This compares it with a
two-fold cross-fitted gate: train on each half, decode the other half, publish if the pooled
held-out WER of all K beats the unadapted one; what is published is then trained on all K
(epochs: the folds' mean best epoch).

For each user and draw (a random K of the bench's 100 pool utterances), both gates run on the
same utterances; the test set is the bench's 25 test utterances plus the pool utterances not
drawn (75; 90 for the real speaker). Prints one JSON line per draw and gate: the decision, the
test WER the user is then served (the adapted decoder if published, else the unadapted one) and
of the adapter it trained, training seconds. Encoder states come from recognizer_recipe.py's
cache.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/experiments/recognizer_gate.py --draws 3
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from recognizer_recipe import items_of   # noqa: E402  (the same users and cache)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--users", default="croaky,whisper,slow_telephone,real")
    ap.add_argument("--out", default="/tmp/recexp2/gate.jsonl")
    a = ap.parse_args()
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.learning.recognizer_adapt import (RecognizerAdaptConfig,
                                                              adapt_recognizer,
                                                              crossfit_recognizer, split_items,
                                                              transcribe_items)
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer
    rec = WhisperRecognizer()
    cfg = RecognizerAdaptConfig()

    def decode(items, adapter=None):
        ad = adapter.decoder_adapter() if adapter is not None else None
        return transcribe_items(rec, items, ad)

    def emit(row):
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")

    for user in a.users.split(","):
        data = items_of(rec, user)
        everything = data["pool"] + data["test"]
        plain = dict(zip((it.id for it in everything), decode(everything)))   # unadapted
        for draw in range(a.draws):
            idx = list(range(len(data["pool"])))
            random.Random(1000 + draw).shuffle(idx)
            pool = [data["pool"][i] for i in sorted(idx[:a.k])]
            test = [data["pool"][i] for i in sorted(idx[a.k:])] + data["test"]
            truth = [it.text for it in test]
            test_base = wer(truth, [plain[it.id] for it in test])

            def served(adapter, published):
                trained = wer(truth, decode(test, adapter)) if adapter is not None else test_base
                return (trained if published else test_base), trained

            # the node's split gate
            t0 = time.perf_counter()
            train, val = split_items(pool, cfg.val_fraction, cfg.seed)
            adapter, m = adapt_recognizer(rec, train, cfg, val_items=val)
            publish = m["publish"]
            got, trained = served(adapter, publish)
            emit({"user": user, "draw": draw, "gate": "split", "held_out": len(val),
                  "before": round(m["base_val_wer"], 4), "after": round(m["val_wer"], 4),
                  "publish": publish, "test_base": round(test_base, 4),
                  "test_served": round(got, 4), "test_adapter": round(trained, 4),
                  "train_s": round(m["train_s"], 1), "job_s": round(time.perf_counter() - t0, 1)})

            # two-fold cross-fitting, then a refit on all K (the node's crossfit_recognizer)
            t0 = time.perf_counter()
            final, m = crossfit_recognizer(rec, pool, cfg)
            got, trained = served(final, m["publish"])
            emit({"user": user, "draw": draw, "gate": "crossfit", "held_out": len(pool),
                  "before": round(m["base_val_wer"], 4), "after": round(m["val_wer"], 4),
                  "publish": m["publish"], "fold_epochs": m["fold_best_epochs"],
                  "refit_epochs": m["best_epoch"], "test_base": round(test_base, 4),
                  "test_served": round(got, 4), "test_adapter": round(trained, 4),
                  "train_s": round(m["train_s"], 1),
                  "job_s": round(time.perf_counter() - t0, 1)})

if __name__ == "__main__":
    main()
