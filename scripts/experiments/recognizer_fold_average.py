"""Can the cross-fitted folds' adapters stand in for the refit on all utterances? (issue 11: the
default Adapt job trains longer than 60 s at K = 50; the refit is about a third of the recogniser's
training)

For each user: the node's recipe on the first 50 pool utterances, as crossfit_recognizer runs it
(one preparation, two folds, the refit); then the folds' best-epoch adapters merged into one
whose change is the mean of theirs (the LoRA pairs stacked: rank 2r, B halved). Prints the refit's
and the merge's test WER at the served beam (75 test utterances) and the time each path trains.

    PYTHONPATH=.:scripts/experiments python scripts/experiments/recognizer_fold_average.py \
        croaky,whisper,slow_telephone
"""
import dataclasses
import sys
import time

import torch

from recognizer_recipe import items_of   # the bench's users, encoder states cached


def merged(adapters):
    """One adapter whose change is the mean of ``adapters``' (LoRA pairs stacked along the rank)."""
    from tinyalign_ros.core.learning.recognizer_adapt import RecognizerAdapter
    first = adapters[0]
    tensors = {}
    for name in first.tensors:
        parts = [a.tensors[name].float() for a in adapters]
        if name.endswith(".lora_a"):
            tensors[name] = torch.cat(parts, 0).half()
        else:
            tensors[name] = (torch.cat(parts, 1) / len(parts)).half()
    meta = dict(first.metadata, rank=first.metadata["rank"] * len(adapters),
                alpha=first.scale * first.metadata["rank"] * len(adapters))
    return RecognizerAdapter(first.method, tensors, meta)


def main():
    from tinyalign_ros.core.learning import recognizer_adapt as ra
    from tinyalign_ros.core.learning.adapt import AdaptConfig
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer

    torch.set_num_threads(2)
    rec = WhisperRecognizer()
    config = AdaptConfig().recognizer_config()
    for user in sys.argv[1].split(","):
        data = items_of(rec, user)
        items, test = data["pool"][:50], data["test"][:75]
        t0 = time.perf_counter()
        prep = ra._Prepared(rec, list(items), config, ra._start_layer(rec, config))
        prepare_s = time.perf_counter() - t0
        first, second = ra.split_items(list(range(len(items))), 0.5, config.seed)
        fold_config = dataclasses.replace(config, min_utterances=1)
        folds, fold_s, steps = [], 0.0, []
        for train, held in ((second, first), (first, second)):
            ad, m = ra._adapt(rec, prep, train, held, fold_config, None, False,
                              time.perf_counter())
            fold_s += m["train_s"]
            folds.append(ad)
            steps.append(m["best_steps"])
        t1 = time.perf_counter()
        refit, m = ra._adapt(rec, prep, list(range(len(items))), [], dataclasses.replace(
            config, max_steps=round(sum(steps) / 2)), None, True, time.perf_counter())
        refit_s = time.perf_counter() - t1
        for name, ad in (("refit", refit), ("fold mean", merged(folds)),
                         ("fold 1", folds[0]), ("fold 2", folds[1])):
            w = ra.evaluate(rec, test, ad, beam_size=5)["wer"]
            print(f"{user}: {name}: test WER {100 * w:.2f} %", flush=True)
        print(f"{user}: prepare {prepare_s:.1f} s, folds {fold_s:.1f} s, refit {refit_s:.1f} s "
              f"({round(sum(steps) / 2)} steps)", flush=True)


if __name__ == "__main__":
    main()
