"""Does Whisper need its padded 30 s window? (latency experiment, not part of the product)

The ASR node's transcript costs ~0.45 s for a 2-3 s command on 2 cores, most of it CTranslate2's
encoder on the 30 s window (3000 mel frames), of which ~90 % is padding. CTranslate2 accepts
fewer frames. This decodes the bench users' test utterances (and pool utterances, for more words)
three ways with the same beam-5 generate call: the full 3000-frame window (what faster-whisper
does), and windows cut to the audio + P seconds of the same padding; prints WER and time.

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/short_window.py
"""
import sys
import time

import numpy as np


def main():
    import ctranslate2

    from tinyalign_ros.bench import speakers
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio

    pads = [float(p) for p in (sys.argv[1] if len(sys.argv) > 1 else "1,2").split(",")]
    asr = AsrFrontEnd(cpu_threads=2)
    model, fe, tok = asr.model.model, asr.model.feature_extractor, asr.model.hf_tokenizer
    prompt = [tok.token_to_id(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]

    def decode(audio, pad_s):
        padded = np.concatenate([audio, np.zeros(int(30 * 16000), np.float32)])
        mel = fe(padded)[:, :3000] if pad_s is None else \
            fe(padded)[:, :int((audio.size / 16000 + pad_s) * 100) // 2 * 2]
        t0 = time.perf_counter()
        r = model.generate(ctranslate2.StorageView.from_array(mel[None].astype(np.float32)),
                           [prompt], beam_size=5, max_length=int(audio.size / 16000 * 8) + 16 + 2,
                           suppress_blank=True, suppress_tokens=[-1])
        dt = time.perf_counter() - t0
        ids = [i for i in r[0].sequences_ids[0] if i < tok.token_to_id("<|endoftext|>")]
        return tok.decode(ids).strip(), dt

    users = [(speakers.REAL, 60, 40), ("croaky", 30, 25), ("whisper", 30, 25),
             ("slow_telephone", 30, 25), (speakers.HELD_OUT_FAMILY, 30, 25)]
    for name, pool_n, test_n in users:
        pool, test = speakers.examples(name, pool_n, test_n)
        exs = test + pool
        refs = [e.text for e in exs]
        audios = [load_audio(e.audio) for e in exs]
        row = {}
        for pad in [None] + pads:
            hyps, times = zip(*(decode(a, pad) for a in audios))
            key = "30 s" if pad is None else f"+{pad:g} s"
            row[key] = (wer(refs, list(hyps)), float(np.median(times)))
        fw = [asr.transcribe(a).text for a in audios]
        print(f"{name} ({len(exs)} utt., median {np.median([a.size for a in audios]) / 16000:.1f} s): "
              f"faster-whisper {wer(refs, fw):.3f}; " +
              "; ".join(f"{k} WER {w:.3f} ({t:.3f} s)" for k, (w, t) in row.items()), flush=True)


if __name__ == "__main__":
    main()
