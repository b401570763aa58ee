"""Training and serving the projector on a CUDA device, as on a robot with a GPU (Jetson) or when
the corpus base trains on one. The CPU paths are test_training.py's; these tests need torch to see
a CUDA device and are skipped, with that reason, everywhere else (CI has no GPU): `make test-gpu`
runs them on a GPU machine, and the README records the last run."""
import numpy as np
import pytest
import torch

from tinyalign_ros.core.assistant.checkpoint import Projector, ProjectorMeta, from_bytes, to_bytes
from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
from tinyalign_ros.core.assistant.prompt import PromptBuilder, PromptConfig
from tinyalign_ros.core.learning.train import TrainConfig, Trainer
from test_training import items as training_items, projector   # the same tiny data and model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False)")


def items(hint=False):
    """test_training's utterances; ``hint``: a recogniser's hint, wrong on the last word."""
    out = training_items()
    for it in out if hint else ():
        it.transcript = " ".join(it.text.split()[:-1] + ["banana"])
    return out


def on_cuda(model) -> bool:
    return all(p.device.type == "cuda" for p in model.parameters())


def test_embedlink_alone_trains_on_cuda_unless_told_cpu(tiny_llm_dir):
    emb = EmbeddingTable(tiny_llm_dir)
    cfg = TrainConfig(objective="embedlink", embedlink_epochs=15, batch_size=8, lr=3e-3)
    proj = projector(emb.dim)
    trainer = Trainer(proj, cfg, embeddings=emb, show_progress_bar=False)
    assert trainer.device.type == "cuda"                      # auto: CUDA when torch sees one
    data = items()
    proj.to(trainer.device)
    before = trainer.evaluate(data, trainer.embedlink_loss)
    trainer.fit(data, [])
    after = trainer.evaluate(data, trainer.embedlink_loss)
    assert on_cuda(proj) and after < 0.7 * before, (before, after)
    cpu = projector(emb.dim)
    Trainer(cpu, cfg, embeddings=emb, show_progress_bar=False, device="cpu").fit(data, [])
    assert all(p.device.type == "cpu" for p in cpu.parameters())


@pytest.mark.parametrize("objective", ["embedlink+ce", "hybrid"])
def test_the_projector_trains_beside_a_cuda_llm(tiny_llm_dir, objective):
    """The frozen LLM in float16 on the GPU, the projector in float32 beside it: the CE finish and
    the gated hybrid both lower their loss, and nothing is left on the CPU."""
    llm = FrozenLLM(tiny_llm_dir, device="cuda")
    assert llm.device == "cuda" and llm.dtype == torch.float16
    emb = EmbeddingTable(tiny_llm_dir)
    prompt = PromptBuilder(llm.tokenizer, PromptConfig())
    gate = {"gate": "scalar", "gate_init": -2.0} if objective == "hybrid" else {}
    proj = projector(llm.dim, **gate)
    trainer = Trainer(proj, TrainConfig(objective=objective, embedlink_epochs=4, ce_epochs=8,
                                        lr=1e-2, ce_lr=1e-2, batch_size=8),
                      embeddings=emb, llm=llm, prompt=prompt, show_progress_bar=False)
    loss = trainer.hybrid_loss if objective == "hybrid" else trainer.ce_loss
    data = items(hint=objective == "hybrid")
    proj.to(trainer.device)
    before = trainer.evaluate(data, loss)
    result = trainer.fit(data, [])
    after = trainer.evaluate(data, loss)
    assert on_cuda(proj) and np.isfinite(after) and after < before - 0.1, (before, after)
    assert [s.name for s in result.stages] == objective.replace("embedlink+ce",
                                                                "embedlink ce").split()


def test_a_cuda_trained_projector_serves_and_travels(tiny_llm_dir):
    """Trained on the GPU, it answers through the CUDA LLM, and its checkpoint (the bytes that go
    out on projector_updates) loads on a CPU host with the same weights."""
    from tinyalign_ros.core.assistant.pipeline import Assistant

    llm = FrozenLLM(tiny_llm_dir, device="cuda")
    emb = EmbeddingTable(tiny_llm_dir)
    proj = projector(llm.dim)
    Trainer(proj, TrainConfig(objective="embedlink", embedlink_epochs=2, batch_size=8),
            embeddings=emb, show_progress_bar=False).fit(items(), [])
    meta = ProjectorMeta(asr_model_id="whisper-tiny.en:16", llm_model_id="tiny:32", projector={})
    value = Projector(proj.eval(), meta)
    reply = Assistant(llm, PromptConfig(), max_new_tokens=4).respond_with(value, items()[0].features)
    assert isinstance(reply.text, str) and len(reply.generation.token_ids) > 0
    loaded = from_bytes(to_bytes(value))
    for (k, a), b in zip(proj.state_dict().items(), loaded.model.state_dict().values()):
        assert b.device.type == "cpu" and torch.equal(a.cpu(), b), k
