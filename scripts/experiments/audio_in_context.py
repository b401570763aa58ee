"""Experiment (not part of the product): does the audio-only mode read its audio better when the
prompt's few-shot turns are spoken too? Each example turn's user content is the projector's
audio tokens for a training utterance, the assistant's its text (in-context examples of what
projected speech means), against the preset's text-only turns.

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/audio_in_context.py \
        PROJECTOR.safetensors [N [SHOTS [MODE]]]

MODE: audio (SHOTS spoken turns only), text+audio (the preset's text turns, then SHOTS spoken).
"""
import random
import sys
import time

import torch

from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PLACEHOLDER, REPEAT_SHOTS, PromptConfig
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.core.models import data_dir
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.corpus.build import Corpus

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
shots = int(sys.argv[3]) if len(sys.argv) > 3 else 6
mode = sys.argv[4] if len(sys.argv) > 4 else "audio"
torch.set_num_threads(2)
asr = AsrFrontEnd(cpu_threads=2)
llm = FrozenLLM(threads=2)
assistant = Assistant(llm, PromptConfig(transcript_hint=False), 40, 2)
proj = load_checkpoint(path, asr.model_id, llm.model_id)
corpus = Corpus(data_dir() / "corpora" / "main")

# the spoken examples: training utterances of 4-12 words, one per voice family where possible
train = corpus.items(asr.model_id, "train", limit=3000)
family_of = {r["id"]: (r["family"], r["augment"]) for r in corpus.plan["rows"]}
rng = random.Random(0)
rng.shuffle(train)
examples, families = [], set()
for it in train:
    words = len(it.text.split())
    family = family_of[it.id]
    if 4 <= words <= 12 and family[0] not in {f for f, _ in families}:
        examples.append(it)
        families.add(family)
    if len(examples) == shots:
        break
print(f"{mode}, {len(examples)} spoken examples: " + " | ".join(e.text for e in examples))

tok = llm.tokenizer
messages = []
if mode == "text+audio":
    for u, a in REPEAT_SHOTS:
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
for e in examples:
    messages += [{"role": "user", "content": PLACEHOLDER}, {"role": "assistant", "content": e.text}]
messages.append({"role": "user", "content": PLACEHOLDER})
pieces = tok.apply_chat_template(messages, tokenize=False,
                                 add_generation_prompt=True).split(PLACEHOLDER)
texts = [llm.embed_ids(tok(p, add_special_tokens=False).input_ids) for p in pieces]
prefix = [texts[0]]
for e, t in zip(examples, texts[1:-1]):
    prefix += [assistant.project(e.features, proj).to(llm.dtype), t]
prefix = torch.cat(prefix)
suffix = texts[-1]
print(f"prefix {prefix.shape[0]} embeddings")

for split in ("eval-sentences", "eval-voice"):
    items = corpus.items(asr.model_id, split, limit=n)
    t0 = time.perf_counter()
    hyps = []
    for it in items:
        embeds = torch.cat([prefix, assistant.project(it.features, proj).to(llm.dtype), suffix])
        hyps.append(llm.generate(embeds.unsqueeze(0), 40, single_line=True, max_repeats=2).text)
    refs = [it.text for it in items]
    empty = sum(not h.strip() for h in hyps)
    print(f"{split}: WER {wer(refs, hyps):.3f}, {empty} empty "
          f"({len(items)} utt, {time.perf_counter() - t0:.0f} s)", flush=True)
    for x, h in list(zip(refs, hyps))[:4]:
        print(f"    REF {x}\n    HYP {h}")
