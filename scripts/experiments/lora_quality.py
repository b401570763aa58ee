"""Experiment behind docs/BENCHMARKS.md, not part of the product: LoRA's effect on quality.
The bench's CE-on-hinted-prompt adaptation (K=50, 2 epochs, lr 3e-4) with and without a rank-8
LoRA adapter on the LLM, for the real speaker and croaky.
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/lora_quality.py
"""
import copy, dataclasses, time, torch
from tinyalign_ros.core.asr import AsrFrontEnd
from tinyalign_ros.core.checkpoint import load_checkpoint
from tinyalign_ros.core.llm import FrozenLLM
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.core.pipeline import Assistant
from tinyalign_ros.core.prompt import PromptConfig
from tinyalign_ros.core.train import Trainer
from tinyalign_ros.bench import speakers
from tinyalign_ros.bench.quality import HINT_ADAPT, Systems

torch.set_num_threads(2)
asr = AsrFrontEnd(cpu_threads=2); llm = FrozenLLM(threads=2)
base, _ = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
plain = Assistant(llm, PromptConfig(), 32); hinted = Assistant(llm, PromptConfig(transcript_hint=True), 32)
S = Systems(plain, hinted, 32)
for user in (speakers.real_speaker(asr, 100, 40, 50), speakers.synthetic_speaker("croaky", asr, 100, 25, transcribed_pool=50)):
    for rank in (0, 8):
        cfg = dataclasses.replace(HINT_ADAPT, lora_rank=rank)
        model = copy.deepcopy(base).train()
        t0 = time.perf_counter()
        Trainer(model, cfg.train_config(), llm=llm, prompt=hinted.prompt, show_progress_bar=False).fit(user.pool[:50], [])
        t = time.perf_counter() - t0
        print(f"{user.name} CE+hint K=50 lora_rank={rank}: WER+hint {S.wer('aligned', user.test, model.eval(), hint=True):.3f} "
              f"(trained {t:.1f} s)", flush=True)
