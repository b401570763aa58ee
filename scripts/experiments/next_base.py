"""Experiment behind docs/BENCHMARKS.md ("the next base recipe"), not part of the product:
the recipe the design section points to (1 layer, 3000 utterances, EmbedLink 12 epochs + CE
finish 1 epoch), scored on the bench's test sets beside the shipped base (~28 min on 2 cores).
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/next_base.py
"""
import json, time, torch
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.learning.data import split
from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
from tinyalign_ros.core.assistant.prompt import PromptBuilder, PromptConfig
from tinyalign_ros.core.learning.train import TrainConfig, Trainer
from tinyalign_ros.corpus.recipe import corpus_features
from tinyalign_ros.bench import speakers
from tinyalign_ros.bench.quality import Systems, as_projector
from tinyalign_ros.bench.footprint import read_text
from tinyalign_ros.core.metrics import wer

torch.set_num_threads(2)
t0 = time.perf_counter()
asr = AsrFrontEnd(cpu_threads=2)
llm = FrozenLLM(threads=2); emb = EmbeddingTable()
users = [speakers.heldout_base_voices(asr, 40), speakers.real_speaker(asr, 0, 40),
         speakers.synthetic_speaker("croaky", asr, 100, 25)]
test_texts = {it.text.lower() for u in users for it in u.test}
items = [it for it in corpus_features(asr, 3000, 0) if it.text.lower() not in test_texts]
train, val = split(items, 0.05, 0)
torch.manual_seed(0)
proj = BridgeFormer(ProjectorConfig(asr_dim=asr.dim, llm_dim=emb.dim, layers=1))
cfg = TrainConfig(objective="embedlink+ce", embedlink_epochs=12, ce_epochs=1, batch_size=16,
                  lr=1e-3, ce_lr=2e-4, seed=0, threads=2)
prompt = PromptBuilder(llm.tokenizer, PromptConfig(transcript_hint=False))   # as the base recipe
res = Trainer(proj, cfg, emb, llm, prompt,
              show_progress_bar=False).fit(train, val)
print(json.dumps(res.summary()), f"trained at {time.perf_counter() - t0:.0f} s", flush=True)
torch.save(proj.state_dict(), "next_base.pt")   # not shipped: see docs/BENCHMARKS.md
base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
S = Systems.on(llm, 32)
nxt = as_projector(proj.eval(), prompt=prompt)   # served with the prompt it was trained with
for u in users:
    for name, m in (("shipped", base), ("next", nxt)):
        reads = [read_text(m.model, it.features, emb.weight, emb.tokenizer) for it in u.test]
        print(f"{u.name} {name}: read {wer([i.text for i in u.test], reads):.3f} "
              f"WER {S.wer('aligned', u.test, m):.3f} +hint {S.wer('aligned', u.test, m, hint=True):.3f}",
              flush=True)
print(f"total {time.perf_counter() - t0:.0f} s")
