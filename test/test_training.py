"""Trainers, masks and checkpoints on a tiny random LLM (real SmolLM2 tokenizer, random weights)."""
import dataclasses
import threading

import numpy as np
import pytest
import torch

from tinyalign_ros.core.assistant.checkpoint import (CheckpointError, Projector, ProjectorMeta,
                                                     from_bytes, load_checkpoint,
                                                     save_checkpoint, to_bytes)
from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
from tinyalign_ros.core.assistant.prompt import PromptBuilder, PromptConfig
from tinyalign_ros.core.learning.data import FeatureItem, split
from tinyalign_ros.core.learning.train import TrainConfig, Trainer

TEXTS = ["go forward ten meters", "turn left", "stop", "what time is it",
         "bring me the red cup", "follow me to the kitchen", "open the door please", "sit down"]


def items(n_per_text=2, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k, text in enumerate(TEXTS):
        for j in range(n_per_text):
            frames = rng.integers(20, 60)
            # features that carry the text's identity, so there is something to learn
            base = np.sin(np.arange(frames)[:, None] * (k + 1) * 0.1 + np.arange(dim)[None] * 0.3)
            out.append(FeatureItem((base + 0.1 * rng.standard_normal((frames, dim)))
                                   .astype(np.float32), text, f"{k}-{j}"))
    return out


def projector(llm_dim=32, pooling="length", **kw):
    torch.manual_seed(0)
    return BridgeFormer(ProjectorConfig(asr_dim=16, llm_dim=llm_dim, hidden=32, heads=4,
                                        layers=1, num_tokens=8, dropout=0.0, pooling=pooling, **kw))


@pytest.mark.parametrize("pooling", ["length", "fixed"])
def test_embedlink_loss_goes_down_without_the_llm(tiny_llm_dir, pooling):
    emb = EmbeddingTable(tiny_llm_dir)
    proj = projector(emb.dim, pooling)
    trainer = Trainer(proj, TrainConfig(objective="embedlink", embedlink_epochs=15, batch_size=8,
                                        lr=3e-3), embeddings=emb, show_progress_bar=False)
    data = items()
    before = trainer.evaluate(data, trainer.embedlink_loss)
    result = trainer.fit(data, [])
    after = trainer.evaluate(data, trainer.embedlink_loss)
    assert after < 0.7 * before, (before, after)
    assert result.stages[0].name == "embedlink" and result.stages[0].steps == 15 * 2


def test_embedlink_targets_and_masks(tiny_llm_dir):
    emb = EmbeddingTable(tiny_llm_dir)
    data = items(1)[:2]   # "go forward ten meters", "turn left"
    n = [len(emb.ids(it.text)) for it in data]
    for pooling, pad, expect in (("length", "eos", n), ("fixed", "mask", n),
                                 ("fixed", "eos", [8, 8])):
        tr = Trainer(projector(emb.dim, pooling), TrainConfig(objective="embedlink",
                     pad_target=pad), embeddings=emb)
        targets, mask, lengths = tr.embedlink_targets(data)
        assert mask.sum(1).tolist() == expect and lengths.tolist() == n
        assert torch.equal(targets[0, :n[0]], emb.embed_ids(emb.ids(data[0].text)))
        if pooling == "fixed" and pad == "eos":
            assert torch.equal(targets[1, n[1]], emb.weight[tr.end_id])


def test_time_mask_zeroes_spans_only_while_training(tiny_llm_dir):
    emb = EmbeddingTable(tiny_llm_dir)
    with pytest.raises(ValueError, match="time_mask"):
        TrainConfig(time_mask=1.0)
    tr = Trainer(projector(emb.dim), TrainConfig(objective="embedlink", time_mask=0.4),
                 embeddings=emb)
    from tinyalign_ros.core.learning.train import collate

    x, fmask = collate(items(1, seed=3))
    torch.manual_seed(0)
    tr.projector.train()
    out = tr.augment(x, fmask)
    assert torch.equal(x, collate(items(1, seed=3))[0])      # the batch itself is untouched
    for i, n in enumerate(fmask.sum(1).tolist()):
        zeroed = int((out[i, :n] == 0).all(-1).sum())
        assert 0 < zeroed <= int(n * 0.4)                    # something, never past the budget
        assert torch.equal(out[i, n:], x[i, n:])             # padding stays padding
    assert torch.equal(out[~(out == 0).all(-1)], x[~(out == 0).all(-1)])
    tr.projector.eval()
    assert torch.equal(tr.augment(x, fmask), x)              # never at evaluation


def test_ce_loss_goes_down_and_labels_only_the_answer(tiny_llm_dir):
    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    prompt = PromptBuilder(llm.tokenizer, PromptConfig())
    proj = projector(llm.dim)
    trainer = Trainer(proj, TrainConfig(objective="ce", ce_epochs=8, lr=1e-2, batch_size=8),
                      llm=llm, prompt=prompt, show_progress_bar=False)
    data = items()
    # labels: everything but the answer and its end-of-turn is masked
    captured = {}
    decoder = llm.model.get_decoder()     # the LM head runs apart, on the answer's positions
    original = decoder.forward

    def spy(*args, **kw):
        captured.setdefault("calls", []).append(kw)
        return original(*args, **kw)

    ce_calls = []
    real_ce = torch.nn.functional.cross_entropy

    def ce_spy(logits, target, **kw):
        ce_calls.append(target)
        return real_ce(logits, target, **kw)

    decoder.forward = spy
    torch.nn.functional.cross_entropy = ce_spy
    try:
        trainer.ce_loss(data[:2])
    finally:
        decoder.forward = original
        torch.nn.functional.cross_entropy = real_ce
    call = captured["calls"][-1]                       # the batch pass (after the prefix pass)
    attn = call["attention_mask"]
    targets = ce_calls[-1].tolist()                    # the labelled positions', row by row
    P = len(prompt.prefix_ids)
    # the prefix comes from the shared KV cache: only the rest is fed, and the cache is copied
    assert call["inputs_embeds"].shape[1] == attn.shape[1] - P
    assert trainer._prefix_cache().get_seq_length() == P
    answers = []
    for i, it in enumerate(data[:2]):
        answer = llm.tokenizer(it.text, add_special_tokens=False).input_ids + [trainer.end_id]
        answers += answer
        audio_tokens = min(len(answer) - 1, 8)           # one per text token, at most T
        assert int(attn[i].sum()) == P + audio_tokens + len(prompt.suffix_ids()) + len(answer)
    assert targets == answers
    assert all(not p.requires_grad for p in llm.model.parameters())
    before = trainer.evaluate(data, trainer.ce_loss)
    trainer.fit(data, [])
    after = trainer.evaluate(data, trainer.ce_loss)
    # a random 2-layer LLM reads the audio tokens weakly; a frozen or gradient-less path gives 0
    assert after < before - 0.1, (before, after)


def test_hybrid_objective_trains_the_projector_and_its_gate(tiny_llm_dir):
    """CE on the hybrid input (cascade prompt + transcript + gated audio tokens): the loss
    falls, the gate moves (its gradient reaches it through the attention mask), and a projector
    without a gate is refused."""
    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    prompt = PromptBuilder(llm.tokenizer, PromptConfig())          # hint on: hybrid drops it
    data = items()
    for it in data:                      # a recogniser's hint, wrong on the last word
        it.transcript = " ".join(it.text.split()[:-1] + ["banana"])
    with pytest.raises(ValueError, match="gate"):
        Trainer(projector(llm.dim), TrainConfig(objective="hybrid"), llm=llm, prompt=prompt)
    for gate in ("scalar", "token"):
        proj = projector(llm.dim, gate=gate, gate_init=-2.0)
        trainer = Trainer(proj, TrainConfig(objective="hybrid", ce_epochs=8, lr=1e-2,
                                            batch_size=8), llm=llm, prompt=prompt,
                          show_progress_bar=False)
        assert not trainer.prompt.config.transcript_hint         # the cascade's own prompt
        tokens = torch.zeros(3, llm.dim)
        start = proj.gate_bias(tokens).detach().clone()
        assert torch.allclose(start, torch.nn.functional.logsigmoid(torch.tensor(-2.0)))
        before = trainer.evaluate(data, trainer.hybrid_loss)
        trainer.fit(data, [])
        after = trainer.evaluate(data, trainer.hybrid_loss)
        assert after < before - 0.1, (gate, before, after)
        assert not torch.allclose(proj.gate_bias(tokens), start), gate
    # a projector without a gate is always closed: the hybrid is then the cascade
    assert torch.isinf(projector(llm.dim).gate_bias(torch.zeros(2, llm.dim))).all()


def test_chained_recipe_and_cancel(tiny_llm_dir):
    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    emb = EmbeddingTable(tiny_llm_dir)
    prompt = PromptBuilder(llm.tokenizer, PromptConfig())
    trainer = Trainer(projector(llm.dim), TrainConfig(objective="embedlink+ce", embedlink_epochs=2,
                      ce_epochs=1, batch_size=8), embeddings=emb, llm=llm, prompt=prompt,
                      show_progress_bar=False)
    train, val = split(items(), 0.25)
    assert train and val and not {i.text for i in train} & {i.text for i in val}
    result = trainer.fit(train, val)
    assert [s.name for s in result.stages] == ["embedlink", "ce"]
    assert all(s.best_epoch >= 0 for s in result.stages) and not result.cancelled
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if p["step"] >= 2:
            cancel.set()

    t2 = Trainer(projector(llm.dim), TrainConfig(objective="embedlink", embedlink_epochs=50,
                 batch_size=4), embeddings=emb, progress=progress, cancel=cancel,
                 show_progress_bar=False)
    r2 = t2.fit(train, val)
    assert r2.cancelled and max(p["step"] for p in seen) == 2
    assert {"stage", "step", "total_steps", "loss", "eta_s"} <= set(seen[0])


def meta(**kw):
    base = dict(asr_model_id="whisper-tiny.en:16", llm_model_id="tiny:32", projector={})
    base.update(kw)
    return ProjectorMeta(**base)


def value(model=None, **kw) -> Projector:
    return Projector((model or projector()).eval(), meta(**kw))


def test_checkpoint_round_trip_and_refusals(tmp_path):
    proj = value(training={"examples": 16})
    path = save_checkpoint(proj, tmp_path / "p.safetensors")
    loaded = load_checkpoint(path, "whisper-tiny.en:16", "tiny:32")
    for (k, a), b in zip(proj.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.meta.training == {"examples": 16} and loaded.meta.projector["num_tokens"] == 8
    assert loaded.version == proj.version and loaded.adapter is None
    assert (tmp_path / "p.json").is_file()
    with pytest.raises(CheckpointError, match="asr_model_id differs.*dim 16.*dim 512"):
        load_checkpoint(path, "whisper-base:512", "tiny:32")
    with pytest.raises(CheckpointError, match="asr_model_id differs.*whisper-tiny.en\\+ct2"):
        load_checkpoint(path, "whisper-tiny.en+ct2:16", "tiny:32")   # same width, other encoder
    with pytest.raises(CheckpointError, match="llm_model_id differs"):
        load_checkpoint(path, "whisper-tiny.en:16", "other-llm:32")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_int8_checkpoint_is_smaller_and_close():
    proj = value()
    full, q8 = to_bytes(proj), to_bytes(proj, int8=True)
    assert len(q8) < 0.45 * len(full)
    restored = from_bytes(q8)
    assert restored.meta.int8 and not proj.meta.int8     # serializing leaves the value alone
    x = torch.randn(1, 30, 16)
    a, b = proj.model(x)[0], restored.model(x)[0]
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_a_checkpoints_recorded_prompt_is_applied_or_refused(tiny_llm_dir):
    from tinyalign_ros.core.assistant.pipeline import Assistant

    assistant = Assistant(FrozenLLM(tiny_llm_dir, device="cpu"), PromptConfig(), 3)
    custom = value(projector(32), prompt=PromptConfig(system="Echo.", few_shot=()).to_dict())
    used = assistant.prompt_for(custom).config
    assert used.system == "Echo." and used.few_shot == ()        # its template is applied
    assert used.transcript_hint == assistant.prompt.config.transcript_hint   # the node's switch
    assert assistant.prompt_for(value(projector(32))).config == assistant.prompt.config
    for_reply = value(projector(32), prompt=PromptConfig(task="reply").to_dict())
    with pytest.raises(ValueError, match="trained for the 'reply' task"):
        assistant.check_fits(for_reply)


def test_a_projector_must_beat_the_cascade_by_whole_words():
    """The publishing rule: fewer errors than the current projector, and at least
    min_gain_words fewer than the cascade (the bench's real speaker: a one-word gain on 10
    held-out utterances published a projector 3x the cascade's WER on the next ones)."""
    from tinyalign_ros.core.learning.adapt import AdaptConfig, beats

    assert AdaptConfig().min_gain_words == 2
    assert beats(0.039, 0.020, 0.039, 51, 2) == (False, 1)    # one word: noise
    assert beats(0.039, 0.020, 0.039, 51, 1) == (True, 1)
    assert beats(0.300, 0.100, 0.200, 50, 2) == (True, 5)
    assert beats(0.100, 0.100, 0.300, 50, 2) == (False, 10)   # not better than the current
    assert beats(0.300, 0.200, 0.200, 50, 0) == (False, 0)    # a tie with the cascade


def test_adaptation_keeps_the_current_projector_unless_it_improves(tiny_llm_dir, tmp_path):
    from tinyalign_ros.core.assistant.pipeline import Assistant
    from tinyalign_ros.core.learning.adapt import AdaptationError, AdaptConfig, adapt_user
    from tinyalign_ros.core.learning.store import UtteranceStore

    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    emb = EmbeddingTable(tiny_llm_dir)
    assistant = Assistant(llm, PromptConfig(transcript_hint=True), max_new_tokens=4)
    store = UtteranceStore(tmp_path)
    for it in items(2):
        store.log(it.id, "erin", it.features, it.text, 0.95, "asr:16")
        store.correct("erin", it.id, it.text)
    current = value(projector(llm.dim), version="current")
    # learning rate 0: the "new" projector is the current one, so its WER cannot be lower
    frozen = AdaptConfig(objective="embedlink", epochs=1, learning_rate=0.0, min_utterances=4)
    result = adapt_user(store, "erin", current, assistant, emb, "asr:16", frozen)
    assert result.success and not result.published and "kept the current" in result.message
    assert store.current_projector("erin") is None and len(store.projectors("erin")) == 1
    forced = AdaptConfig(objective="embedlink", epochs=1, learning_rate=0.0, min_utterances=4,
                         require_improvement=False)
    result = adapt_user(store, "erin", current, assistant, emb, "asr:16", forced)
    assert result.published and store.current_projector("erin").version == result.version
    assert result.projector.meta.parent_version == "current" and result.checkpoint
    # it carries its validation against the cascade, which mode auto reads (test_routing)
    validated = from_bytes(result.checkpoint).meta.metrics
    assert validated["validation_aligned_wer"] == result.metrics["wer_after"]
    assert validated["validation_cascade_wer"] == result.metrics["cascade_wer"] >= 0
    # it records the prompt it was validated with: the hinted one this assistant serves
    recorded = from_bytes(result.checkpoint).meta.prompt
    assert PromptConfig(**recorded) == assistant.prompt.config and recorded["transcript_hint"]
    with pytest.raises(AdaptationError, match="at least 100"):
        adapt_user(store, "erin", current, assistant, emb, "asr:16",
                   AdaptConfig(min_utterances=100))


def test_lora_trains_with_ce_travels_in_the_checkpoint_and_is_applied(tiny_llm_dir):
    from tinyalign_ros.core.assistant.lora import PREFIX
    from tinyalign_ros.core.assistant.pipeline import Assistant

    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    prompt = PromptBuilder(llm.tokenizer, PromptConfig())
    proj = projector(llm.dim)
    data = items()
    trainer = Trainer(proj, TrainConfig(objective="ce", ce_epochs=3, lr=1e-2, batch_size=8,
                                        lora_rank=4), llm=llm, prompt=prompt,
                      show_progress_bar=False)
    before = trainer.evaluate(data, trainer.ce_loss)
    adapter = trainer.fit(data, []).adapter
    assert adapter is not None and all(k.startswith(PREFIX) for k in adapter.state)
    assert any(float(v.abs().sum()) > 0 for k, v in adapter.state.items() if "lora_B" in k)
    assert all(not p.requires_grad for p in llm.model.parameters())
    # the checkpoint carries the adapter
    restored = from_bytes(to_bytes(Projector(proj.eval(), meta(version="with-lora"), adapter)))
    assert restored.meta.lora["rank"] == 4 and set(restored.adapter.state) == set(adapter.state)
    # the assistant applies it for this projector only: same audio tokens, different logits
    assistant = Assistant(llm, max_new_tokens=3)
    feats = data[0].features
    plain = Projector(restored.model, restored.meta)           # the same model, no adapter
    logits = {}
    for name, p in (("lora", restored), ("plain", plain)):
        original = llm.model.forward

        def spy(*args, _name=name, **kw):
            out = original(*args, **kw)
            logits.setdefault(_name, out.logits[:, -1].detach().clone())
            return out
        llm.model.forward = spy
        try:
            assistant.respond_with(p, feats)
        finally:
            llm.model.forward = original
    assert not torch.allclose(logits["lora"], logits["plain"], atol=1e-4)
    assert trainer.evaluate(data, trainer.ce_loss) < before   # trainer's own LLM path still works


def test_retired_adapters_are_freed(tiny_llm_dir):
    """Hot-swapping a user's projector frees the adapter of the one it replaces: memory does not
    grow with each adaptation."""
    from tinyalign_ros.core.assistant.checkpoint import LlmAdapter
    from tinyalign_ros.core.assistant.lora import LoraSettings, has_adapters
    from tinyalign_ros.core.assistant.pipeline import Assistant
    from tinyalign_ros.core.assistant.projectors import ProjectorTable

    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    assistant = Assistant(llm, max_new_tokens=2)
    table = ProjectorTable("tiny:32", on_retire=assistant.retire)
    table.set_base(value(projector(llm.dim), llm_model_id="tiny:32"))
    feats = items(1)[0].features
    for version in ("v1", "v2", "v3"):
        trainer = Trainer(projector(llm.dim), TrainConfig(objective="ce", ce_epochs=1,
                          batch_size=8, lora_rank=2), llm=llm,
                          prompt=PromptBuilder(llm.tokenizer, PromptConfig()),
                          show_progress_bar=False)
        adapter = trainer.fit(items(1), []).adapter
        assert isinstance(adapter, LlmAdapter) and isinstance(adapter.settings, LoraSettings)
        table.put("gus", Projector(trainer.projector.eval(),
                                   meta(version=version, llm_model_id="tiny:32"), adapter))
        assistant.respond_with(table.get("gus"), feats)
        assert assistant.loaded_adapters == 1, version
        assert len(llm.model.peft_config) == 1
    table.remove("gus")                       # back on the base: no adapter left at all
    assert assistant.loaded_adapters == 0 and not has_adapters(llm)
    assistant.respond_with(table.get("gus"), feats)
    assert not has_adapters(llm)


def test_adaptation_with_lora_publishes_a_checkpoint_carrying_the_adapter(tiny_llm_dir,
                                                                          tmp_path):
    from tinyalign_ros.core.assistant.lora import has_adapters
    from tinyalign_ros.core.assistant.pipeline import Assistant
    from tinyalign_ros.core.learning.adapt import AdaptConfig, adapt_user
    from tinyalign_ros.core.learning.store import UtteranceStore

    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    assistant = Assistant(llm, max_new_tokens=3)
    base_answer = assistant.respond_text("turn left").generation.token_ids
    store = UtteranceStore(tmp_path)
    for it in items(2):
        store.log(it.id, "finn", it.features, it.text, 0.95, "asr:16")
        store.correct("finn", it.id, it.text)
    config = AdaptConfig(objective="ce", epochs=1, min_utterances=4,
                         require_improvement=False, lora_rank=2)
    result = adapt_user(store, "finn", value(projector(llm.dim), version="base"),
                        assistant, EmbeddingTable(tiny_llm_dir), "asr:16", config)
    assert result.published
    restored = from_bytes(result.checkpoint)
    assert restored.meta.lora["rank"] == 2 and restored.adapter.state
    # the shared LLM is back on its base model for everyone else: no adapter is left loaded
    # (training's and validation's both freed) and the cascade answers token for token as before
    assert not has_adapters(llm) and assistant.loaded_adapters == 0
    assert assistant.respond_text("turn left").generation.token_ids == base_answer


def test_micro_batches_give_the_whole_batchs_gradients(tiny_llm_dir):
    """Gradients added up over micro-batches (less memory) are the whole batch's: with fixed
    pooling every utterance has the same number of target positions, so the weighted sum of the
    parts' losses is exactly the batch's mean."""
    emb = EmbeddingTable(tiny_llm_dir)
    data = items()[:8]
    grads, losses = [], []
    for micro in (0, 1, 3):
        proj = projector(emb.dim, "fixed")
        trainer = Trainer(proj, TrainConfig(objective="embedlink", batch_size=8,
                                            micro_batch=micro), embeddings=emb,
                          show_progress_bar=False)
        losses.append(trainer.backward(data, trainer.embedlink_loss))
        grads.append({n: p.grad.clone() for n, p in proj.named_parameters()
                      if p.grad is not None})
    assert grads[0] and all(g.abs().sum() > 0 for g in grads[0].values())
    for other, loss in zip(grads[1:], losses[1:]):
        assert loss == pytest.approx(losses[0], rel=1e-5)
        for n, g in grads[0].items():
            assert torch.allclose(g, other[n], rtol=1e-4, atol=1e-5 * float(g.abs().max())), n


def test_adapting_a_gated_projector_trains_the_hybrid_it_is_served_as():
    """CE on the prompt a projector is served with: for a gated projector that is the hybrid
    input (the cascade's prompt and transcript plus the gated audio), so the recipe's ce becomes
    the hybrid objective; EmbedLink stays EmbedLink."""
    from tinyalign_ros.core.learning.adapt import AdaptConfig

    assert AdaptConfig().train_config().objective == "ce"
    gated = AdaptConfig(epochs=3).train_config(gated=True)
    assert gated.objective == "hybrid" and gated.ce_epochs == 3 and gated.micro_batch == 2
    assert AdaptConfig(objective="embedlink").train_config(gated=True).objective == "embedlink"


def test_adapting_a_gated_base_opens_its_confidence_limit_for_the_user(tiny_llm_dir, tmp_path):
    """A base whose gate is shut for every confidence (it answers as the cascade) is adapted
    with the user's own audio let in (AdaptConfig.gate_max_confidence); the logged confidences
    reach the validation, where the base scores exactly as the cascade."""
    from tinyalign_ros.core.assistant.pipeline import Assistant
    from tinyalign_ros.core.learning.adapt import AdaptConfig, adapt_user, user_items
    from tinyalign_ros.core.learning.store import UtteranceStore

    llm = FrozenLLM(tiny_llm_dir, device="cpu")
    assistant = Assistant(llm, PromptConfig(), max_new_tokens=4)
    store = UtteranceStore(tmp_path)
    for it in items(2):
        store.log(it.id, "erin", it.features, it.text, 0.9, "asr:16")
        store.correct("erin", it.id, it.text)
    config = AdaptConfig(epochs=1, min_utterances=4, require_improvement=False)
    train, val = user_items(store, "erin", config, "asr:16")
    assert [it.confidence for it in train + val] == [pytest.approx(0.9)] * len(items(2))
    base = value(projector(llm.dim, gate="scalar", gate_max_confidence=0.0), version="base")
    result = adapt_user(store, "erin", base, assistant, EmbeddingTable(tiny_llm_dir), "asr:16",
                        config)
    assert result.metrics["wer_before"] == result.metrics["cascade_wer"]
    adapted = result.projector
    assert adapted.model.config.gate_max_confidence == 1.0
    assert from_bytes(result.checkpoint).model.config.gate_max_confidence == 1.0


def test_a_stopped_training_resumes_where_it_stopped(tiny_llm_dir, tmp_path):
    """Trainer(checkpoint_dir=...): each epoch's state is saved (atomically), so a run that
    was stopped goes on from its last whole epoch in a new Trainer and ends exactly where an
    uninterrupted run ends; a finished stage is not trained again; other settings or other
    utterances are refused with what differs."""
    emb = EmbeddingTable(tiny_llm_dir)
    cfg = TrainConfig(objective="embedlink", embedlink_epochs=4, batch_size=8, lr=3e-3,
                      time_mask=0.2)                  # random masks: the RNGs are resumed too
    data, val = items(), items(seed=1)[:6]

    def train(model, checkpoint_dir=None, **kw):
        return Trainer(model, cfg, embeddings=emb, show_progress_bar=False, device="cpu",
                       checkpoint_dir=checkpoint_dir, **kw).fit(data, val)

    straight = projector(emb.dim)
    train(straight)
    folder = tmp_path / "stages"
    cancel, epochs_seen = threading.Event(), []

    def stop_after_two_epochs(p):      # as a kill after epoch 2 would leave it
        if "val_loss" in p:
            epochs_seen.append(p)
            if len(epochs_seen) == 2:
                cancel.set()
    assert train(projector(emb.dim), folder, cancel=cancel,
                 progress=stop_after_two_epochs).cancelled
    assert (folder / "embedlink.pt").is_file() and not list(folder.glob("*.tmp"))

    resumed, seen = projector(emb.dim), []
    result = train(resumed, folder, progress=seen.append)
    assert seen[0]["resumed_epochs"] == 2
    assert len([p for p in seen if "val_loss" in p]) == 2       # epochs 3 and 4 only
    assert result.stages[0].epochs == 4 and len(result.stages[0].history) == 4
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name

    again, seen = projector(emb.dim), []
    train(again, folder, progress=seen.append)                  # finished: nothing trains
    assert not [p for p in seen if "val_loss" in p]
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in straight.state_dict().items())

    with pytest.raises(ValueError, match="other config"):
        Trainer(projector(emb.dim), dataclasses.replace(cfg, lr=1e-3), embeddings=emb,
                show_progress_bar=False, device="cpu", checkpoint_dir=folder).fit(data, val)
    with pytest.raises(ValueError, match="other train"):
        Trainer(projector(emb.dim), cfg, embeddings=emb, show_progress_bar=False,
                device="cpu", checkpoint_dir=folder).fit(data[:-1], val)
