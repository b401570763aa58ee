"""How repeatable is the node's recogniser recipe? (issue 12: the adapted cascade's ratios moved
between bench runs, croaky 15.3 % -> 21.9 %, with no change to the recipe)

For each user: the node's recipe (AdaptConfig defaults: cross-fitted gate, the LoRA targets,
the 50 s training budget) on the first 50 pool utterances, at the given torch thread counts,
time budgets, refit rules (RecognizerAdaptConfig.refit) and epoch counts; prints each fold's
epochs run (and when each ended) and best epoch, the refit's steps, the gate's held-out WERs,
and the test WER at the served beam on the bench's test set (75 utterances; 40 real).

    PYTHONPATH=.:scripts/experiments python scripts/experiments/recognizer_repeat.py \
        croaky,whisper 2,1 50,500 epochs,steps [8,6 (epochs)]
"""
import dataclasses
import json
import sys
import time

import torch

from tinyalign_ros.core.metrics import wer
from recognizer_recipe import items_of   # the bench's users, encoder states cached


def main():
    from tinyalign_ros.core.learning.adapt import AdaptConfig
    from tinyalign_ros.core.learning.recognizer_adapt import crossfit_recognizer, evaluate
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer

    users = sys.argv[1].split(",")
    threads = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "2").split(",")]
    budgets = [float(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "50").split(",")]
    refits = (sys.argv[4] if len(sys.argv) > 4 else "steps").split(",")
    epoch_counts = [int(e) for e in (sys.argv[5] if len(sys.argv) > 5 else "8").split(",")]
    rec = WhisperRecognizer()
    for user in users:
        data = items_of(rec, user)
        for n in threads:
            torch.set_num_threads(n)
            for budget, refit, epochs_max in ((b, r, e) for b in budgets for r in refits
                                              for e in epoch_counts):
                rconf = dataclasses.replace(AdaptConfig().recognizer_config(),
                                            time_budget_s=budget, refit=refit,
                                            epochs=epochs_max)
                history = []
                t0 = time.perf_counter()
                adapter, m = crossfit_recognizer(
                    rec, data["pool"][:50], rconf,
                    progress=lambda h: history.append(dict(h, t=time.perf_counter() - t0)))
                epochs = {p: sum(1 for h in history if h["part"] == p)
                          for p in ("fold 1", "fold 2", "all")}
                row = {"user": user, "threads": n, "budget": budget, "refit": refit,
                       "epochs": epochs_max, "stopped": m.get("stopped"),
                       "epoch_end_s": [round(h["t"], 1) for h in history],
                       "refit_steps": m.get("refit_steps"),
                       "before": round(m["base_val_wer"], 4), "after": round(m["val_wer"], 4),
                       "fold_best": m["fold_best_epochs"], "epochs_run": epochs,
                       "train_s": round(m["train_s"], 1),
                       "job_s": round(time.perf_counter() - t0, 1)}
                worst = []
                if adapter is not None:
                    out = evaluate(rec, data["test"], adapter, beam_size=5)
                    row["test_adapted"] = round(out["wer"], 4)
                    errors = [(wer([it.text], [h]) * len(it.text.split()), it.text, h)
                              for it, h in zip(data["test"], out["hypotheses"])]
                    worst = sorted(errors, reverse=True)[:3]
                print(json.dumps(row), flush=True)
                for e, ref, hyp in worst:   # where the errors are: a loop shows here
                    print(f"    {e:.0f} errors  REF {ref}\n              HYP {hyp}", flush=True)


if __name__ == "__main__":
    main()
