"""Would the default LLM served in bfloat16 lower the graph's memory? This CPU has AMX-BF16,
and SmolLM2's weights are stored in bfloat16. One dtype per run (a fresh process each, so the
peaks compare): the LLM's RSS growth at load, decoding speed on one 32-token reply, and the
ceiling, cascade and base+hint WER on N test utterances of the real speaker, the whisper voice
and held-out sentences (the bench's users), and the process's peak.

    PYTHONPATH=. python scripts/experiments/llm_dtype.py bfloat16 20
    PYTHONPATH=. python scripts/experiments/llm_dtype.py float32 20
"""
import resource
import sys
import time

import torch

from tinyalign_ros.bench import speakers
from tinyalign_ros.bench.cost import rss_mb
from tinyalign_ros.bench.quality import Systems
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.core.speech.asr import AsrFrontEnd


def main(dtype: str, n: int) -> None:
    torch.set_num_threads(2)
    asr = AsrFrontEnd(cpu_threads=2)
    users = [speakers.real_speaker(asr, 0, n), speakers.synthetic_speaker("whisper", asr, 0, n),
             speakers.heldout_base_voices(asr, n)]
    before = rss_mb()
    llm = FrozenLLM(threads=2, dtype=dtype)
    print(f"{dtype}: LLM load +{rss_mb() - before:.0f} MB RSS", flush=True)
    base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
    systems = Systems.on(llm, 32)
    gen = systems.plain.respond_text("please go to the kitchen and bring me the red cup and "
                                     "then come back to the living room", max_new_tokens=32)
    print(f"{dtype}: {gen.generation.tokens_per_s:.2f} tok/s", flush=True)
    for user in users:
        t0 = time.perf_counter()
        row = {s: systems.wer(s, user.test) for s in ("ceiling", "cascade")}
        row["base+hint"] = systems.wer("aligned", user.test, base, hint=True)
        print(f"{dtype}: {user.name} ({len(user.test)}): "
              + ", ".join(f"{k} {v:.3f}" for k, v in row.items())
              + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"{dtype}: peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
