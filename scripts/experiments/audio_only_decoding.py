"""Experiment (not part of the product): where does the paper's audio-only mode lose its words?
Scores a projector's audio-only replies on the corpus's held-out splits and splits the WER
into substitutions / deletions / insertions, with the loop guard at MAX_REPEATS (0: off).

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/audio_only_decoding.py \
        PROJECTOR.safetensors [N [MAX_REPEATS]]
"""
import json
import sys
import time

import jiwer
import torch

from tinyalign_ros.bench.quality import Systems
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.metrics import normalize, wer
from tinyalign_ros.core.models import data_dir
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.corpus.build import Corpus

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.set_num_threads(2)
asr = AsrFrontEnd(cpu_threads=2)
llm = FrozenLLM(threads=2)
systems = Systems.on(llm, 32)
systems.plain.max_repeats = repeats   # the audio-only replies come from the plain assistant
print(f"max_repeats {repeats}")
proj = load_checkpoint(path, asr.model_id, llm.model_id)
corpus = Corpus(data_dir() / "corpora" / "main")
out = {}
for split in ("eval-sentences", "eval-voice"):
    items = corpus.items(asr.model_id, split, limit=n, with_transcripts=True)
    t0 = time.perf_counter()
    hyps = [systems.plain.respond_aligned(proj, it.features, None).text for it in items]
    refs = [it.text for it in items]
    r = jiwer.process_words([normalize(x) for x in refs],
                            [normalize(h) or "<empty>" for h in hyps])
    words = sum(len(normalize(x).split()) for x in refs)
    print(f"{split}: WER {wer(refs, hyps):.3f} = sub {r.substitutions / words:.3f} "
          f"del {r.deletions / words:.3f} ins {r.insertions / words:.3f} "
          f"({len(items)} utt, {time.perf_counter() - t0:.0f} s)", flush=True)
    ratio = [len(normalize(h).split()) / max(1, len(normalize(x).split()))
             for x, h in zip(refs, hyps)]
    print(f"  reply/ref word ratio: median {sorted(ratio)[len(ratio)//2]:.2f}, "
          f">1.5: {sum(x > 1.5 for x in ratio)}", flush=True)
    empty = sum(not h.strip() for h in hyps)
    print(f"  empty replies: {empty} of {len(hyps)}", flush=True)
    out[split] = {"refs": refs, "hyps": hyps}
    for x, h in list(zip(refs, hyps))[:8]:
        print(f"    REF {x}\n    HYP {h}")
json.dump(out, open(f"/work/runs/audio_only_{path.split('/')[-1]}_{repeats}.json", "w"))
