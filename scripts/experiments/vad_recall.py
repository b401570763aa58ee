"""Does the VAD hear the bench's speakers? (reliability experiment, not part of the product)

The bench scores whole recordings; in the graph every utterance first has to pass the Silero
VAD. Per bench user, the test sentences are streamed through ONE StreamingVad, 1 s of silence
after each (as the capture node's file source plays them), in 50 ms chunks; the VAD's state
carries over, as in the ASR node. Prints, per VAD threshold: sentences with no segment, with
more than one, and the share of each sentence's audio the segments kept.

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/vad_recall.py 0.5,0.35
"""
import sys

import numpy as np


def main():
    from tinyalign_ros.bench import speakers
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.core.speech.vad import StreamingVad

    thresholds = [float(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "0.5").split(",")]
    users = [(speakers.REAL, 60, 40), ("croaky", 30, 25), ("whisper", 30, 25),
             ("slow_telephone", 30, 25), (speakers.HELD_OUT_FAMILY, 30, 25)]
    rng = np.random.default_rng(0)
    if "--noise-only" in sys.argv:
        users = []
    for name, pool_n, test_n in users:
        _, test = speakers.examples(name, pool_n, test_n)
        audios = [load_audio(e.audio) for e in test]
        for th in thresholds:
            vad = StreamingVad(threshold=th)
            missed = split = 0
            kept = []
            pos = 0
            for a in audios:
                stream = np.concatenate([a, np.zeros(16000, np.float32)])
                segs = []
                for i in range(0, stream.size, 800):
                    segs += vad.accept(stream[i:i + 800])
                start, end = pos, pos + a.size
                mine = [s for s in segs if s.end_sample > start and s.start_sample < end]
                missed += not mine
                split += len(mine) > 1
                covered = sum(min(s.speech_end_sample, end) - max(s.start_sample, start)
                              for s in mine)
                kept.append(max(covered, 0) / a.size)
                pos += stream.size
            # noise of the same length between utterances must not trigger
            print(f"{name} ({len(audios)} sentences), threshold {th}: {missed} missed, "
                  f"{split} split, audio kept per sentence median {np.median(kept):.2f}, "
                  f"min {min(kept):.2f}", flush=True)
    # false triggers: 60 s each of non-speech a robot hears (none of it should make a segment)
    t = np.arange(60 * 16000) / 16000
    white = rng.standard_normal(t.size)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(t.size // 2 + 1), 1)),
                        t.size)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(1601) / 1601, mode="same")   # no drift
    motor = sum(np.sin(2 * np.pi * f * t * (1 + 0.02 * np.sin(2 * np.pi * 0.3 * t))) / k
                for k, f in enumerate((120, 240, 360, 480, 600), 1))
    clicks = np.zeros(t.size)
    clicks[rng.integers(0, t.size, 120)] = 1.0
    clicks = np.convolve(clicks, np.exp(-np.arange(400) / 60) * rng.standard_normal(400), "same")
    noises = {"white -40 dBFS": white * 0.01, "white -20 dBFS": white * 0.1,
              "pink -20 dBFS": pink / np.std(pink) * 0.1, "brown -20 dBFS": brown / np.std(brown) * 0.1,
              "motor hum 120 Hz + harmonics": motor / np.abs(motor).max() * 0.3,
              "clicks/knocks": clicks / np.abs(clicks).max() * 0.5}
    for label, noise in noises.items():
        noise = noise.astype(np.float32)
        row = []
        for th in thresholds:
            vad = StreamingVad(threshold=th)
            row.append(sum(len(vad.accept(noise[i:i + 800])) for i in range(0, noise.size, 800)))
        print(f"{label}, 60 s: segments at thresholds {thresholds}: {row}", flush=True)

if __name__ == "__main__":
    main()
