"""Experiment (issue 11), not part of the product: the shipped base projector plus a scalar gate,
trained with the hybrid objective on N corpus utterances whose hints carry simulated recogniser
errors (core.learning.hints, rate R), then scored against the cascade on the corpus's held-out
splits and the bench's croaky speaker (their real Whisper transcripts as hints).
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/hybrid_corpus.py N R EPOCHS
"""
import copy, json, random, sys, time
import torch
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptBuilder, PromptConfig
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint, Projector
from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
from tinyalign_ros.core.learning.data import split
from tinyalign_ros.core.learning.hints import HintCorruptor
from tinyalign_ros.core.learning.train import TrainConfig, Trainer
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.core.models import data_dir, default_projector
from tinyalign_ros.corpus.build import Corpus
from tinyalign_ros.bench import speakers

N, RATE, EPOCHS = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(2)
t0 = time.time()
asr = AsrFrontEnd(cpu_threads=2)
corpus = Corpus(data_dir() / "corpora" / "main")
items = corpus.items(asr.model_id, "train", limit=N)
rng = random.Random(0)
hints = HintCorruptor([it.text for it in items], RATE)
for it in items:
    it.transcript = hints.corrupt(it.text, rng) if rng.random() > 0.1 else ""
train, val = split(items, 0.05, 0)
print("train", len(train), "val", len(val), "example hint:", repr(train[0].text), "->",
      repr(train[0].transcript), round(time.time() - t0), flush=True)
llm = FrozenLLM(threads=2)
base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
cfg = ProjectorConfig.from_dict({**base.model.config.to_dict(), "gate": "scalar", "gate_init": -4.0})
model = BridgeFormer(cfg)
missing = model.load_state_dict(base.model.state_dict(), strict=False)
print("new params", missing.missing_keys, flush=True)
prompt = PromptBuilder(llm.tokenizer, PromptConfig(transcript_hint=False))
tc = TrainConfig(objective="hybrid", ce_epochs=EPOCHS, lr=2e-4, batch_size=8, threads=2)
res = Trainer(model, tc, llm=llm, prompt=prompt, show_progress_bar=False,
              progress=lambda p: print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()}), flush=True) if "val_loss" in p else None).fit(train, val)
print("trained", res.summary(), "gate", float(torch.sigmoid(model.gate_logit)), flush=True)
proj = Projector(model.eval(), copy.deepcopy(base.meta))
a = Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens=32)
tests = {"croaky": speakers.synthetic_speaker("croaky", asr, 0, 25).test}
for split_name in ("eval-sentences", "eval-voice"):
    got = corpus.items(asr.model_id, split_name, limit=60, with_transcripts=True)
    if got:
        tests[split_name] = got
for name, test in tests.items():
    refs = [it.text for it in test]
    row = {"test": name, "n": len(test),
           "whisper": round(wer(refs, [it.transcript for it in test]), 4),
           "cascade": round(wer(refs, [a.respond_text(it.transcript).text for it in test]), 4),
           "hybrid": round(wer(refs, [a.respond_hybrid(proj, it.features, it.transcript).text for it in test]), 4)}
    print(json.dumps(row), flush=True)
print("wall", round(time.time() - t0), flush=True)
