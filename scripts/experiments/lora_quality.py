"""Experiment behind docs/BENCHMARKS.md, not part of the product: LoRA's effect on quality.
The bench's CE-on-hinted-prompt adaptation (HINT_ADAPT: K=50, 2 epochs, lr 3e-4) with and
without a rank-8 LoRA adapter on the LLM, for the real speaker and croaky.
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/lora_quality.py
"""
import dataclasses, torch
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.bench import speakers
from tinyalign_ros.bench.quality import HINT_ADAPT, Systems, adapt

torch.set_num_threads(2)
asr = AsrFrontEnd(cpu_threads=2); llm = FrozenLLM(threads=2); emb = EmbeddingTable()
base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
S = Systems.on(llm, 32)
for user in (speakers.real_speaker(asr, 100, 40, 50), speakers.synthetic_speaker("croaky", asr, 100, 25, transcribed_pool=50)):
    for rank in (0, 8):
        adapted, t = adapt(base, user.pool[:50], S.hinted, emb, dataclasses.replace(HINT_ADAPT, lora_rank=rank))
        print(f"{user.name} CE+hint K=50 lora_rank={rank}: WER+hint {S.wer('aligned', user.test, adapted, hint=True):.3f} "
              f"(trained {t:.1f} s)", flush=True)
        S.hinted.retire(adapted)   # frees its LLM adapter
