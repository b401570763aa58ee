"""Experiment behind docs/BENCHMARKS.md ("A per-user confidence limit for the adapted hybrid"),
not part of the product: would a gated base, adapted on a user's K = 50 utterances with the
node's recipe (HINT_ADAPT: CE on the hybrid input), beat the cascade if the user's own audio
entered only below a per-user confidence limit (as the base's limit is picked on held-out
sentences, core.corpus.base.calibrate_gate)?

For each bench speaker: adapt on pool[:40], pick the limit on pool[40:50] (the user's own
held-out corrected utterances, as the node would have them), score every limit on the 25 test
utterances (the oracle) and the picked one. Same users, test utterances and reply length as
`tinyalign bench`.
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/user_gate_limit.py \
        /work/runs/base20k-ce.safetensors croaky whisper slow_telephone
"""
import sys
import time

import torch

from tinyalign_ros.bench import speakers
from tinyalign_ros.bench.quality import HINT_ADAPT, Systems, adapt
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.corpus.base import pick_limit, wer_per_limit

base_path, names = sys.argv[1], sys.argv[2:] or ["croaky", "whisper", "slow_telephone"]
torch.set_num_threads(2)
asr = AsrFrontEnd(cpu_threads=2)
llm = FrozenLLM(threads=2)
systems = Systems.on(llm, 32)
base = load_checkpoint(base_path, asr.model_id, llm.model_id)
emb = EmbeddingTable()


for name in names:
    t0 = time.perf_counter()
    user = (speakers.real_speaker(asr, 100, 40, 50) if name == "asterisk" else
            speakers.synthetic_speaker(name, asr, 100, 25, transcribed_pool=50))
    train, held = user.pool[:40], user.pool[40:50]
    adapted, train_s = adapt(base, train, systems.hinted, emb, HINT_ADAPT)
    adapted.model.config.gate_max_confidence = 1.0      # every reply with the audio in
    rows = {}
    for split, items in (("held", held), ("test", user.test)):
        cascade = [systems.plain.respond_text(it.transcript).text for it in items]
        hybrid = [systems.plain.respond_hybrid(adapted, it.features, it.transcript,
                                               confidence=it.confidence).text for it in items]
        rows[split] = wer_per_limit(items, cascade, hybrid)
    picked = pick_limit(rows["held"])
    print(f"{name}: trained {train_s:.1f} s on {len(train)}; held-out ({len(held)}) WER by "
          f"limit {rows['held']}; picked {picked}; test ({len(user.test)}) cascade "
          f"{rows['test'][0.0]:.3f}, audio always in {rows['test'][1.0]:.3f}, picked "
          f"{rows['test'][picked]:.3f}, best {min(rows['test'].values()):.3f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"  test WER by limit {rows['test']}", flush=True)
