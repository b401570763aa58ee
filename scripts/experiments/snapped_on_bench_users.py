"""Experiment (not part of the product): scripts/experiments/snapped_audio_tokens.py on the
bench's users and test utterances (the quality section's, BenchConfig's defaults): the
audio-only mode with continuous audio tokens (the product) and with each token snapped to the
LLM's nearest token embedding (cosine).

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/snapped_on_bench_users.py \
        [PROJECTOR.safetensors]
"""
import sys
import time

import torch

from tinyalign_ros.bench import BenchConfig, speakers
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.core.speech.asr import AsrFrontEnd

path = sys.argv[1] if len(sys.argv) > 1 else default_projector()
torch.set_num_threads(2)
c = BenchConfig()
asr = AsrFrontEnd(cpu_threads=2)
llm = FrozenLLM(threads=2)
assistant = Assistant(llm, PromptConfig(transcript_hint=False), 32, 2)   # the bench's 32 tokens
proj = load_checkpoint(path, asr.model_id, llm.model_id)

users = [speakers.real_speaker(asr, c.real_pool, c.real_test)]
users += [speakers.synthetic_speaker(n, asr, c.synthetic_pool, c.synthetic_test)
          for n in c.synthetic_users]
users += [speakers.heldout_voice_family(asr, c.synthetic_pool, c.synthetic_test),
          speakers.heldout_base_voices(asr, c.heldout_test)]
for user in users:
    t0 = time.perf_counter()
    replies = {}
    for mode in ("continuous", "snapped"):   # the product's setting, as the bench uses it
        assistant.audio_only_tokens = mode
        replies[mode] = [assistant.respond_aligned(proj, it.features, None).text
                         for it in user.test]
    continuous, snapped = replies["continuous"], replies["snapped"]
    refs = [it.text for it in user.test]
    print(f"{user.name} ({len(refs)} utt, {time.perf_counter() - t0:.0f} s): audio only "
          f"continuous {wer(refs, continuous):.3f}, snapped {wer(refs, snapped):.3f}", flush=True)
