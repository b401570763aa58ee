"""The served transcript at beam 1 and beam 5: WER and time (faster-whisper, the ASR node's
front end, int8 on CPU). The bench's users: test utterances plus the pool beyond the first 50.

    PYTHONPATH=. python scripts/experiments/asr_beam.py
"""
import argparse
import json
import time

from recognizer_recipe import bench_examples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="whisper,croaky,slow_telephone,real")
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.asr import AsrConfig, AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio
    asrs = {b: AsrFrontEnd(AsrConfig(beam_size=b, cpu_threads=a.threads))
            for b in map(int, a.beams.split(","))}
    for user in a.users.split(","):
        pool, test = bench_examples(user)
        exs = test + pool[a.k:]
        audio = [load_audio(e.audio) for e in exs]
        row = {"user": user, "n": len(exs), "audio_s": round(sum(x.size for x in audio) / 16000, 1)}
        for b, asr in asrs.items():
            asr.transcribe(audio[0])   # warm
            t0 = time.perf_counter()
            hyps = [asr.transcribe(x).text for x in audio]
            row[f"beam{b}_wer"] = round(wer([e.text for e in exs], hyps), 4)
            row[f"beam{b}_s_per_utt"] = round((time.perf_counter() - t0) / len(exs), 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
