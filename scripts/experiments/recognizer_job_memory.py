"""How much a K-utterance recogniser job (the node's recipe: cross-fitted folds, refit, held-out
decodes) grows its process, sampled every 50 ms, and how long it trains.

    PYTHONPATH=.:scripts/experiments python scripts/experiments/recognizer_job_memory.py \
        whisper 50 --micro-batch 4 --decode-batch 2 [--padding-dtype int8] [--progress] \
        [--time-split]

The voice's items come from recognizer_recipe.py's cache (encoded before the start reading), so
the growth is preparing + training + decoding. --progress trims the heap and prints the RSS
floor after each epoch (the trim itself lowers later readings a little).
"""
import argparse
import ctypes
import dataclasses
import threading
import time

import torch

from recognizer_recipe import items_of
from tinyalign_ros.bench.cost import rss_mb
from tinyalign_ros.core.learning import recognizer_adapt as ra
from tinyalign_ros.core.learning.adapt import AdaptConfig
from tinyalign_ros.core.memory import release_memory
from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer



def main():
    p = argparse.ArgumentParser()
    p.add_argument("voice")
    p.add_argument("k", type=int)
    p.add_argument("--micro-batch", type=int, default=0, help="0: the recipe's")
    p.add_argument("--decode-batch", type=int, default=0, help="0: the recipe's")
    p.add_argument("--padding-dtype", default="", help="'': the recipe's (int8 or float16)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--time-split", action="store_true",
                   help="also time the validation losses and the optimizer steps apart")
    args = p.parse_args()
    torch.set_num_threads(2)
    rec = WhisperRecognizer()
    items = items_of(rec, args.voice)["pool"][:args.k]
    config = AdaptConfig().recognizer_config()
    config = dataclasses.replace(config,
                                 micro_batch_size=args.micro_batch or config.micro_batch_size,
                                 decode_batch_size=args.decode_batch or config.decode_batch_size,
                                 padding_dtype=args.padding_dtype or config.padding_dtype)
    release_memory()
    start, samples, done = rss_mb(), [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()

    def progress(h):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"  {h['part']} epoch {h['epoch']}: RSS after a trim {rss_mb():.0f} MB, peak so "
              f"far +{max(samples) - start:.0f} MB", flush=True)

    split = {"validation losses": [0.0, 0], "optimizer steps": [0.0, 0]}
    if args.time_split:
        for name, attr in (("validation losses", "_mean_loss"), ("optimizer steps", "_backward")):
            setattr(ra, attr, timed(getattr(ra, attr), split[name]))
    t0 = time.perf_counter()
    _, m = ra.crossfit_recognizer(rec, items, config,
                                  progress=progress if args.progress else None)
    done.set()
    print(f"{args.voice} K={args.k} micro-batch {config.micro_batch_size} decode batch "
          f"{config.decode_batch_size} padding {config.padding_dtype} beam {config.beam_size}: start {start:.0f} MB, peak "
          f"+{max(samples) - start:.0f} MB, wall {time.perf_counter() - t0:.1f} s, train_s "
          f"{m['train_s']:.1f}, held-out WER {m['val_wer']:.4f} (unadapted "
          f"{m['base_val_wer']:.4f}), fold best epochs {m['fold_best_epochs']}, refit steps "
          f"{m['refit_steps']}", flush=True)
    if args.time_split:
        print("  of train_s: " + ", ".join(f"{n} {t:.1f} s ({c} calls)"
                                          for n, (t, c) in split.items()), flush=True)


def timed(fn, acc: list):
    """``fn``, adding its wall time and call count to ``acc``."""
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t
            acc[1] += 1
    return wrapper


if __name__ == "__main__":
    main()
