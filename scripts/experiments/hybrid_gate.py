"""Experiment behind docs/BENCHMARKS.md ("Gated hybrid input, first try"), not part of the
product: the cascade's prompt and Whisper's transcript plus the shipped base projector's audio
tokens behind one learned scalar attention gate (core.assistant.llm.Gate), both trained with
cross-entropy on one hard speaker's K = 50 utterances (their real Whisper errors as the hint,
the true text as the target), scored on 25 test utterances after each epoch (~6 min, 1 thread).
    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/hybrid_gate.py croaky 3 -4
arguments: speaker (bench hard speaker), epochs, initial gate logit.
"""
import copy, sys, time, random
import numpy as np, torch, torch.nn.functional as F
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.core.assistant.llm import FrozenLLM, Gate
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.models import default_projector
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.bench import speakers

speaker = sys.argv[1] if len(sys.argv) > 1 else "croaky"
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
GATE0 = float(sys.argv[3]) if len(sys.argv) > 3 else -4.0
torch.set_num_threads(1)
asr = AsrFrontEnd(cpu_threads=1)
t0 = time.time()
user = speakers.synthetic_speaker(speaker, asr, 50, 25, transcribed_pool=50)
print("data", len(user.pool), len(user.test), round(time.time() - t0), flush=True)
llm = FrozenLLM(threads=1)
llm.model.config._attn_implementation = "eager"
a = Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens=32)
base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
proj = copy.deepcopy(base)
model = proj.model
gate_logit = torch.nn.Parameter(torch.tensor(GATE0))
b = a.text_prompt
with torch.no_grad():
    prefix_kv = llm.model(input_ids=torch.tensor([b.prefix_ids]), use_cache=True).past_key_values
end_id = llm.tokenizer.convert_tokens_to_ids("<|im_end|>")

def loss_one(it):
    x = torch.as_tensor(np.asarray(it.features, np.float32)).unsqueeze(0)
    tokens, mask, _ = model(x)
    audio = tokens[0][mask[0]]
    k = audio.shape[0]
    ids = llm.tokenizer(it.transcript, add_special_tokens=False).input_ids
    ans = llm.tokenizer(it.text, add_special_tokens=False).input_ids + [end_id]
    suffix = b.suffix_ids(None)
    emb = llm.embedding
    rest = emb(torch.tensor(ids + suffix + ans)).detach()
    seq = torch.cat([audio, rest]).unsqueeze(0)
    gate = Gate(0, F.logsigmoid(gate_logit).expand(k), torch.linspace(0, max(len(ids) - 1, 0), k).round())
    past = copy.deepcopy(prefix_kv)
    P = past.get_seq_length()
    kw = gate.prefill_inputs(P, seq.shape[1], "cpu", torch.float32)
    out = llm.model(inputs_embeds=seq, past_key_values=past, use_cache=True, **kw)
    n_ans = len(ans)
    logits = out.logits[0, -n_ans - 1:-1]
    return F.cross_entropy(logits, torch.tensor(ans))

def evaluate(items, bias_fn):
    model.eval()
    hyps = []
    for it in items:
        if bias_fn is None:
            hyps.append(a.respond_text(it.transcript).text)
        else:
            hyps.append(a.respond_hybrid(proj, it.features, it.transcript, gate_bias=bias_fn()).text)
    return round(wer([it.text for it in items], hyps), 4), hyps

test = user.test
print("whisper", round(wer([i.text for i in test], [i.transcript for i in test]), 4))
print("cascade", evaluate(test, None)[0], flush=True)
print("hybrid base, gate", GATE0, evaluate(test, lambda: float(F.logsigmoid(gate_logit)))[0], flush=True)
opt = torch.optim.AdamW([{'params': list(model.parameters()), 'lr': 3e-4}, {'params': [gate_logit], 'lr': 0.05}], weight_decay=0.0)
for g in opt.param_groups: pass
rng = random.Random(0)
train = list(user.pool)
for ep in range(EPOCHS):
    model.train(); rng.shuffle(train); t1 = time.time(); tot = 0
    for it in train:
        loss = loss_one(it)
        opt.zero_grad(); loss.backward(); opt.step(); tot += float(loss)
    print(f"epoch {ep} loss {tot/len(train):.3f} gate {float(torch.sigmoid(gate_logit)):.4f} {time.time()-t1:.0f}s", flush=True)
    w, hyps = evaluate(test, lambda: float(F.logsigmoid(gate_logit)))
    print("hybrid adapted", w, flush=True)
