"""Does beam search change the adapted cascade's ratio? (issue 12: the whisper voice at 0.76x)

For each bench user (same pools and test sentences as `tinyalign bench`): the node's recogniser
recipe (AdaptConfig defaults, cross-fitted gate) trains on the first K pool utterances; the test
utterances are then decoded by the unadapted and the adapted decoder, greedy and with beam 5.
Prints the recogniser WERs (no LLM) and each decode's seconds.

    PYTHONPATH=. python scripts/experiments/recognizer_beam.py --k 50
"""
import argparse
import json
import time

from recognizer_recipe import items_of   # the same users and cache as the recipe experiment


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--users", default="whisper,croaky,slow_telephone,real")
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--wide-test", action="store_true",
                    help="test on the bench's test set plus the pool beyond K (less noise)")
    ap.add_argument("--out", default="/tmp/recexp/beam.jsonl")
    a = ap.parse_args()
    from tinyalign_ros.core.learning.adapt import AdaptConfig, adapt_recognizer_items
    from tinyalign_ros.core.learning.recognizer_adapt import evaluate
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer

    rec = WhisperRecognizer()
    for user in a.users.split(","):
        data = items_of(rec, user)
        tests = data["test"] + data["pool"][a.k:] if a.wide_test else data["test"]
        t0 = time.perf_counter()
        result = adapt_recognizer_items(rec, data["pool"][:a.k], None, AdaptConfig(),
                                        user_id=f"beam-{user}")
        row = {"user": user, "k": a.k, "n_test": len(tests), "published": result.published,
               "job_s": round(time.perf_counter() - t0, 1)}
        for beam in (int(b) for b in a.beams.split(",")):
            for name, adapter in (("unadapted", None), ("adapted", result.adapter)):
                if name == "adapted" and adapter is None:
                    continue
                t1 = time.perf_counter()
                row[f"{name}_beam{beam}"] = round(
                    evaluate(rec, tests, adapter, beam_size=beam)["wer"], 4)
                row[f"{name}_beam{beam}_s"] = round(time.perf_counter() - t1, 1)
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
