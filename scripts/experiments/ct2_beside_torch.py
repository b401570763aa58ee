"""Does faster-whisper in the same process slow torch training down? (issue 11: the training
time at K = 50; `tinyalign adapt` and the single-process graph train beside faster-whisper)

Each run is a fresh process: it makes (or reuses) 50 croaky utterances (espeak), prepares them
as the recogniser's cross-fitted recipe does, maybe loads and uses faster-whisper first, then
times one fold's training (25 utterances, 3 epochs) and counts each thread's CPU time.

    PYTHONPATH=. python scripts/experiments/ct2_beside_torch.py [REPEATS]

Modes: fresh (no faster-whisper), loaded (loaded, never used), used (20 transcripts at 2
CTranslate2 threads, kept), used-1 (the same at 1 thread), released (used at 2, then
AsrFrontEnd.release_transcriber).
"""
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("/tmp/ct2_beside_torch")
MODES = ("fresh", "loaded", "used", "used-1", "released")


def cpu_ticks() -> int:
    import os
    total = 0
    for t in os.listdir("/proc/self/task"):
        try:
            f = open(f"/proc/self/task/{t}/stat").read().split(")")[-1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total


def one(mode: str) -> dict:
    import dataclasses
    import os

    import torch

    from tinyalign_ros.core.learning import recognizer_adapt as ra
    from tinyalign_ros.core.learning.adapt import AdaptConfig
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer
    from tinyalign_ros.corpus.synth import HARD_SPEAKERS, make_corpus, sentences

    manifest = make_corpus(OUT / "croaky50", sentences(50, seed=21), HARD_SPEAKERS["croaky"],
                           seed=7)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    audio = [load_audio(OUT / "croaky50" / r["audio"]) for r in rows]
    torch.set_num_threads(2)
    if mode != "fresh":
        from tinyalign_ros.core.speech.asr import AsrFrontEnd
        asr = AsrFrontEnd(cpu_threads=2, transcriber_threads=1 if mode == "used-1" else 2)
        if mode != "loaded":
            for a in audio[:20]:
                asr.transcribe(a)
        if mode == "released":
            asr.release_transcriber()
    rec = WhisperRecognizer(threads=2)
    items = [ra.RecognizerItem.of_audio(rec, a, r["text"], r["id"]) for a, r in zip(audio, rows)]
    config = AdaptConfig().recognizer_config()
    prep = ra._Prepared(rec, items, config, ra._start_layer(rec, config))
    _, fold = ra.split_items(list(range(len(items))), 0.5, config.seed)
    ticks, t0 = cpu_ticks(), time.perf_counter()
    ra._adapt(rec, prep, fold, [], dataclasses.replace(config, epochs=3), None, False,
              time.perf_counter())
    wall = time.perf_counter() - t0
    return {"mode": mode, "train_s": round(wall, 2),
            "cpu_s": round((cpu_ticks() - ticks) / os.sysconf("SC_CLK_TCK"), 2)}


def main():
    if len(sys.argv) > 1 and sys.argv[1] in MODES:
        print(json.dumps(one(sys.argv[1])), flush=True)
        return
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    for _ in range(repeats):
        for mode in MODES:   # interleaved, so a slow spell of the machine hits every mode
            out = subprocess.run([sys.executable, __file__, mode], capture_output=True,
                                 text=True)
            print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else
                  f"{mode}: failed {out.stderr[-500:]}", flush=True)


if __name__ == "__main__":
    main()
