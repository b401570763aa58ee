"""How early should the VAD hand an utterance out? (latency experiment, not part of the product)

Streams recordings through the VAD as the capture node plays them (1 s gaps, 50 ms chunks) and
replays the ASR worker's queue on the VAD's events: each early segment occupies the worker for
the ASR time of its audio (``asr_s``: a fixed cost plus a cost per second, fitted to the demo's
logs), unless a newer early one already superseded it when the worker got to it; the final
segment uses its early result, or waits for the worker and transcribes. Prints, per
vad_speculate_after_s: the median and max of end of speech -> transcript ready, and the stale
head starts per utterance.

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/speculation_sim.py 0.35
"""
import sys

import numpy as np


def asr_s(duration_s: float) -> float:
    return 0.45 + 0.03 * duration_s   # encode + beam-5 transcript on 2 cores (demo logs)


def simulate(events):
    """events: ("early"|"final", key, t, duration_s[, speech_end_t]) in stream time."""
    free_at, results, latencies, stale = 0.0, {}, [], 0
    queue = list(events)
    for i, e in enumerate(queue):
        kind, key, t, dur = e[:4]
        start = max(free_at, t)
        if kind == "early":
            newer = [x for x in queue[i + 1:] if x[0] == "early" and x[2] <= start]
            if newer:
                continue                  # superseded before the worker got to it
            free_at = start + asr_s(dur)
            results[key] = free_at
            continue
        if key in results:
            ready = max(results[key], t)
        else:
            ready = start + asr_s(dur)
            free_at = ready
        latencies.append(ready - e[4])
        stale += sum(1 for k in results if k != key)
        results = {}
    return latencies, stale


def main():
    from tinyalign_ros.bench import speakers
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.core.speech.vad import StreamingVad

    threshold = float(sys.argv[1]) if len(sys.argv) > 1 else 0.35
    import scripts.demo as demo   # the demo's six recordings, in its playing order
    sets = {"demo recordings": [load_audio(p) for p in sorted(
        [*(demo.SPEECH / "librivox").glob("*.wav"), demo.SPEECH / "goforward.raw"],
        key=lambda p: p.name)]}
    for name, n in ((speakers.REAL, 40), ("croaky", 25), ("slow_telephone", 25)):
        sets[name] = [load_audio(e.audio) for e in speakers.examples(name, 60, n)[1]]
    for label, audios in sets.items():
        stream = np.concatenate([np.concatenate([a, np.zeros(16000, np.float32)])
                                 for a in audios])
        for spec in (0.1, 0.15, 0.2, 0.25, 0.0):
            events = []
            vad = StreamingVad(threshold=threshold, speculate_after_s=spec or 0.0,
                               on_early=(lambda s: events.append(
                                   ("early", s.key, vad.samples_seen / 16000, s.duration_s)))
                               if spec else None)
            for i in range(0, stream.size, 800):
                for s in vad.accept(stream[i:i + 800]):
                    events.append(("final", s.key, vad.samples_seen / 16000, s.duration_s,
                                   s.speech_end_sample / 16000))
            lat, stale = simulate(events)
            print(f"{label} ({len(lat)} utt.), speculate {spec or 'off'}: end of speech -> "
                  f"transcript median {np.median(lat):.2f} s, 90th pct "
                  f"{np.percentile(lat, 90):.2f} s, max {max(lat):.2f} s; stale head starts "
                  f"{stale}", flush=True)


if __name__ == "__main__":
    main()
