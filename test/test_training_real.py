"""Training on the real default models and real recorded speech (short runs)."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.real_models


def write_jsonl(path, examples):
    path.write_text("".join(json.dumps({"audio": str(e.audio), "text": e.text}) + "\n"
                            for e in examples))
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def real_items():
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.corpus.corpora import asterisk_examples
    from tinyalign_ros.core.learning.data import encode_examples

    asr = AsrFrontEnd(cpu_threads=2)
    examples = [e for e in asterisk_examples() if 2 <= len(e.text.split()) <= 10][:40]
    return asr, examples, encode_examples(examples, asr)


def test_short_embedlink_run_lowers_validation_loss(real_items):
    import torch

    from tinyalign_ros.core.learning.data import split
    from tinyalign_ros.core.assistant.llm import EmbeddingTable
    from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
    from tinyalign_ros.core.learning.train import TrainConfig, Trainer

    _, _, items = real_items
    train, val = split(items, 0.25, seed=0)
    emb = EmbeddingTable()
    torch.manual_seed(0)
    proj = BridgeFormer(ProjectorConfig(asr_dim=384, llm_dim=emb.dim, layers=1))
    trainer = Trainer(proj, TrainConfig(objective="embedlink", embedlink_epochs=6, batch_size=8),
                      embeddings=emb, show_progress_bar=False)
    before = trainer.evaluate(val, trainer.embedlink_loss)
    result = trainer.fit(train, val)
    after = trainer.evaluate(val, trainer.embedlink_loss)
    assert after < 0.9 * before, (before, after)
    assert result.stages[0].best_val_loss == pytest.approx(after, rel=1e-4)


def test_cached_transcripts_keep_their_confidence(real_items, tmp_path):
    """The feature cache keeps each transcript's confidence (the gate of a gated projector
    weighs it); an entry cached before confidences were kept is transcribed again."""
    from tinyalign_ros.core.learning.data import encode_examples

    asr, examples, _ = real_items
    first = encode_examples(examples[:2], asr, tmp_path, with_transcripts=True)
    assert all(0.0 < it.confidence <= 1.0 and it.transcript for it in first)
    old = next(tmp_path.glob("*.json"))
    old.write_text(json.dumps({"transcript": "stale"}))    # the old format
    again = encode_examples(examples[:2], asr, tmp_path, with_transcripts=True)
    assert [(it.transcript, it.confidence) for it in again] == \
        [(it.transcript, it.confidence) for it in first]
    assert "confidence" in json.loads(old.read_text())


def test_cli_train_then_eval_on_real_speech(real_items, tmp_path):
    _, examples, _ = real_items
    data = write_jsonl(tmp_path / "data.jsonl", examples[:16])
    ckpt = tmp_path / "p.safetensors"
    out = run_cli("train", "--data", data, "--out", ckpt, "--embedlink-epochs", "2",
                  "--layers", "1", "--objective", "embedlink", "--cache", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["embedlink"]["steps"] > 0 and summary["embedlink"]["epochs"] == 2
    assert ckpt.is_file() and "ce" not in summary
    out = run_cli("eval", "--data", data, "--projector", ckpt, "--limit", "3", "--cascade",
              "--max-new-tokens", "12", "--cache", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    # the cascade repeats Whisper's transcript of a clear real speaker (4-5 % WER in the bench)
    assert row["examples"] == 3 and row["wer_whisper"] <= 0.3 and row["wer_cascade"] <= 0.5
    assert set(row) == {"examples", "wer_whisper", "wer_aligned", "wer_cascade"}


def test_cli_lora_on_the_real_llm_then_respond(real_items, tmp_path):
    """CE + LoRA on SmolLM2-135M: the checkpoint carries the adapter and respond applies it."""
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint

    _, examples, _ = real_items
    data = write_jsonl(tmp_path / "data.jsonl", examples[:8])
    ckpt = tmp_path / "lora.safetensors"
    out = run_cli("train", "--data", data, "--out", ckpt, "--objective", "ce", "--ce-epochs", "1",
              "--layers", "1", "--lora-rank", "4", "--val-fraction", "0",
              "--cache", tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-2000:]
    projector = load_checkpoint(ckpt)
    assert projector.meta.lora["rank"] == 4 and len(projector.adapter.state) > 0
    assert projector.meta.training["config"]["ce_epochs"] == 1
    out = run_cli("respond", examples[0].audio, "--projector", ckpt, "--mode", "aligned",
              "--max-new-tokens", "8")
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["aligned"].strip() and row["timings"]["tokens"] > 0
