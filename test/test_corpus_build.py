"""The corpus step: the text split that keeps test sentences out of training, and a tiny corpus
built with the real espeak-ng engine and the real Whisper encoder, killed half-way and resumed."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinyalign_ros.corpus import engines
from tinyalign_ros.corpus.build import Corpus, CorpusConfig
from tinyalign_ros.corpus.texts import (check_training_texts, is_reserved,
                                        reserved_sentences, text_key, training_texts)


def test_text_split_keeps_test_sentences_out_of_training():
    robot, everyday = training_texts(templated=3000, seed=0)
    assert len(set(robot)) > 1000 and len(set(everyday)) > 5000
    train_keys = {text_key(t) for t in robot + everyday}
    tests = reserved_sentences(200, seed=100)
    assert len(tests) == 200 and all(is_reserved(t) for t in tests)
    assert not train_keys & {text_key(t) for t in tests}
    # punctuation and case do not make a test sentence new
    assert is_reserved(tests[0].upper() + "!") == is_reserved(tests[0])
    with pytest.raises(ValueError, match="test texts"):
        check_training_texts(robot[:5] + [tests[0]])
    from tinyalign_ros.bench.intents import utterances
    with pytest.raises(ValueError, match="test texts"):
        check_training_texts([utterances()[0][1]])


@pytest.fixture(scope="module")
def asr():
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    return AsrFrontEnd(cpu_threads=2)


def _espeak_voices():
    voices = [v for v in engines.available_voices() if v.engine == "espeak"]
    assert len(voices) >= 2, "espeak-ng gives several English voices (make setup installs it)"
    return voices


def test_plan_is_deterministic_and_holds_out_a_family(tmp_path):
    voices = _espeak_voices()
    config = CorpusConfig(utterances=40, eval_utterances=5, held_out_family=voices[0].family,
                          shard_size=10)
    a = Corpus.create(tmp_path / "a", config, voices)
    b = Corpus.create(tmp_path / "b", config, voices)
    assert a.rows == b.rows
    splits = [r["split"] for r in a.rows]
    assert splits.count("train") == 40 and splits.count("eval-voice") == 5
    assert {r["family"] for r in a.rows if r["split"] == "eval-voice"} == {voices[0].family}
    assert voices[0].family not in {r["family"] for r in a.rows if r["split"] != "eval-voice"}
    assert all(is_reserved(r["text"]) for r in a.rows if r["split"] != "train")
    with pytest.raises(ValueError, match="other settings"):
        Corpus.create(tmp_path / "a", CorpusConfig(utterances=41, shard_size=10,
                                                   held_out_family=voices[0].family), voices)
    with pytest.raises(ValueError, match="not installed"):
        Corpus.create(tmp_path / "c", CorpusConfig(held_out_family="nope:nothing"), voices)


def test_build_is_resumable_after_kill(tmp_path, asr):
    """A build process killed mid-way leaves only whole shards; a rerun finishes the rest and
    the result reads back with the real encoder's states."""
    voices = _espeak_voices()
    config = CorpusConfig(utterances=12, eval_utterances=2, held_out_family=voices[0].family,
                          shard_size=4)
    root = tmp_path / "corpus"
    Corpus.create(root, config, voices)
    # the CLI reopens the plan made above
    cmd = [sys.executable, "-m", "tinyalign_ros.cli", "corpus", "build", str(root),
           "--stages", "synth"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any((root / "audio").glob("*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    corpus = Corpus(root)
    written = sorted((root / "audio").glob("*"))
    assert all(not p.name.startswith(".") or p.suffix == ".npz" for p in written)
    whole = [p for p in written if not p.name.startswith(".")]
    assert 1 <= len(whole) <= corpus.shards
    for p in whole:       # every file that has its real name is complete
        with np.load(p) as z:
            assert z["offsets"].size == len(corpus.shard_rows(int(p.stem))) + 1
    mtimes = {p.name: p.stat().st_mtime_ns for p in whole}

    done = corpus.build(["synth", "encode"], asr, log=lambda m: None)
    assert done["synth"] == corpus.shards - len(whole) and done["encode"] == corpus.shards
    for p in whole:       # resumed, not redone
        assert (root / "audio" / p.name).stat().st_mtime_ns == mtimes[p.name]
    assert corpus.build(["synth", "encode"], asr, log=lambda m: None) == {"synth": 0, "encode": 0}

    items = corpus.items(asr.model_id, "train")
    assert len(items) == 12
    assert all(it.features.dtype == np.float16 and it.features.shape[1] == asr.dim
               and it.features.shape[0] > 20 for it in items)
    # the states are the encoder's own for that audio
    index = next(i for i, r in enumerate(corpus.rows) if r["id"] == items[0].id)
    clip = corpus.read_audio(index // config.shard_size)[index % config.shard_size]
    np.testing.assert_allclose(items[0].features.astype(np.float32), asr.encode(clip),
                               atol=2e-2)
    assert len(corpus.items(asr.model_id, "eval-voice")) == 2
    status = corpus.status(asr.model_id)
    assert status["synth"] == status["encode"] == corpus.shards
    out = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "corpus", "status",
                          str(root)], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["synth"] == corpus.shards
    # one shard range only (the CLI's --shards), e.g. the training shards a hybrid stage takes
    last = corpus.shards - 1
    out = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "corpus", "build",
                          str(root), "--stages", "transcribe", "--shards", f"{last}-{last}"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1])["written"] == {"transcribe": 1}
    assert set(corpus.transcripts(asr.model_id)) == {r["id"] for r in corpus.shard_rows(last)}
    with pytest.raises(ValueError, match="this corpus has shards"):
        corpus.build(["transcribe"], asr, shards=[corpus.shards], log=lambda m: None)
    bad = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "corpus", "build",
                          str(root), "--stages", "transcribe", "--shards", "3-1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--shards must be" in bad.stderr


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, asr):
    """16 training utterances over the espeak voices, one held out; 2 per test split, all
    synthesised, encoded and transcribed."""
    voices = _espeak_voices()
    config = CorpusConfig(utterances=16, eval_utterances=2, held_out_family=voices[0].family,
                          shard_size=8)
    corpus = Corpus.create(tmp_path_factory.mktemp("tiny") / "corpus", config, voices)
    corpus.build(["synth", "encode", "transcribe"], asr, log=lambda m: None)
    return corpus


@pytest.mark.real_models
def test_base_recipe_on_a_tiny_corpus_then_its_gated_hybrid_stage(tmp_path, asr, tiny_corpus):
    """`make-base-projector --corpus` on a 16-utterance espeak corpus with the real encoder and
    LLM: first audio-only (no gate; stopped after its CE epoch, then run again, which resumes
    from the saved stages), then `--init` from it runs only the hybrid stage and ships a
    gated projector whose held-out numbers (Whisper's real transcripts as hints) are what mode
    auto weighs, with the confidence limit of its gate picked on held-out sentences; a gated
    projector is refused as the start of a hybrid stage, and calibrated and scored again
    without one; an EmbedLink-only init gets the CE finish. The hybrid's hints are Whisper's own
    transcripts here (real_hint_share 1)."""
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.assistant.routing import ALIGNED_WER, CASCADE_WER
    import torch

    from tinyalign_ros.corpus.base import GATE_CONFIDENCE_GRID, BaseRecipe, make_base_projector

    root = tiny_corpus.root
    small = dict(embedlink_epochs=1, ce_utterances=8, batch_size=8, eval_max_new_tokens=6)
    recipe = BaseRecipe(hybrid_utterances=0, eval_utterances=0, **small)

    class Stopped(Exception):
        pass

    def stop_when_the_ce_epoch_ends(line):    # as a kill would stop it, after a saved epoch
        if '"stage": "ce"' in line and "val_loss" in line:
            raise Stopped
    with pytest.raises(Stopped):
        make_base_projector(root, tmp_path / "a.safetensors", recipe,
                            log=stop_when_the_ce_epoch_ends)
    stages = tmp_path / "a.safetensors.stages"
    assert sorted(p.name for p in stages.iterdir()) == ["ce.pt", "embedlink.pt"]
    lines = []
    audio_only = make_base_projector(root, tmp_path / "a.safetensors", recipe, log=lines.append)
    assert lines[0].startswith(f"resuming from the stages saved in {stages}: ce, embedlink")
    assert not [m for m in lines if "val_loss" in m]         # both stages were done: none ran
    assert not stages.exists()                                # written: nothing to resume
    first = load_checkpoint(tmp_path / "a.safetensors")
    assert first.model.config.gate == "none" and "eval-sentences" not in audio_only
    assert set(first.meta.training["stages"]) == {"embedlink", "finish_ce"}
    lines = []
    metrics = make_base_projector(root, tmp_path / "h.safetensors",
                                  BaseRecipe(hybrid_utterances=8, eval_utterances=1,
                                             real_hint_share=1.0,
                                             init=str(tmp_path / "a.safetensors"), **small),
                                  log=lines.append)
    assert any(m.endswith("EmbedLink skipped, the CE finish skipped") for m in lines)
    # every utterance is transcribed: all but the hint-free tenth train on Whisper's own hint
    hints = next(m for m in lines if m.startswith("hybrid hints:")).split()
    used, total, available = int(hints[2]), int(hints[4]), int(hints[-2].strip("("))
    assert available == total and 0 < used <= total
    gated = load_checkpoint(tmp_path / "h.safetensors")
    assert gated.model.config.gate == "scalar" and 0.0 < metrics["gate"] < 0.5
    assert set(gated.meta.training["stages"]) == {"hybrid_hybrid"}
    assert gated.meta.training["init"]["version"] == first.version
    for split in ("eval-sentences", "eval-voice"):
        row = metrics[split]
        assert row["utterances"] == 1
        assert {"whisper", "audio_only", "with_hint", "cascade", "hybrid"} <= set(row)
    assert metrics[ALIGNED_WER] == metrics["eval-sentences"]["hybrid"]
    assert metrics[CASCADE_WER] == metrics["eval-sentences"]["cascade"]
    assert {s["licence"] for s in gated.meta.training["sources"]} == {"GPL-3.0 (engine output)"}
    # the gate's confidence limit, picked on the held-out sentences the scoring leaves out
    calibration = metrics["gate_calibration"]
    assert calibration["utterances"] == 1 and calibration["picked"] in GATE_CONFIDENCE_GRID
    assert gated.model.config.gate_max_confidence == calibration["picked"]
    with pytest.raises(ValueError, match="already has a gate"):
        make_base_projector(root, tmp_path / "x.safetensors",
                            BaseRecipe(init=str(tmp_path / "h.safetensors"), **small),
                            log=lambda m: None)
    # a gated base with no hybrid stage to run: calibrated and scored again, weights kept
    again = make_base_projector(root, tmp_path / "c.safetensors",
                                BaseRecipe(hybrid_utterances=0, eval_utterances=1,
                                           init=str(tmp_path / "h.safetensors"), **small),
                                log=lambda m: None)
    rescored = load_checkpoint(tmp_path / "c.safetensors")
    assert again["gate_calibration"]["utterances"] == 1
    assert rescored.meta.training["init"]["version"] == gated.version
    assert torch.equal(rescored.model.gate_logit, gated.model.gate_logit)
    # an EmbedLink-only init (a corpus-curve row, say) gets the CE finish it never had
    make_base_projector(root, tmp_path / "e.safetensors",
                        BaseRecipe(hybrid_utterances=0, eval_utterances=0,
                                   **{**small, "ce_utterances": 0}), log=lambda m: None)
    assert set(load_checkpoint(tmp_path / "e.safetensors").meta.training["stages"]) == {
        "embedlink"}
    lines = []
    make_base_projector(root, tmp_path / "f.safetensors",
                        BaseRecipe(hybrid_utterances=0, eval_utterances=0,
                                   init=str(tmp_path / "e.safetensors"), **small),
                        log=lines.append)
    assert any(m.endswith("EmbedLink skipped, the CE finish runs") for m in lines)
    finished = load_checkpoint(tmp_path / "f.safetensors")
    assert set(finished.meta.training["stages"]) == {"finish_ce"}
    assert finished.meta.training["stages"]["finish_ce"]["steps"] > 0


@pytest.mark.real_models
def test_corpus_curve_rows_are_kept_and_their_projectors_load(asr, tiny_corpus):
    """The bench's corpus-curve section on the tiny corpus with the real encoder and LLM: a
    row per size that fits (a larger one is listed as skipped), scored on both test splits and
    the real speaker; each finished row and its projector are kept in <corpus>/curve (the
    per-epoch state is gone once the row is), so a second run trains nothing; the kept
    projector loads against the same models."""
    from tinyalign_ros.bench import speakers
    from tinyalign_ros.bench.curve import corpus_curve
    from tinyalign_ros.bench.quality import Systems
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM

    llm, emb = FrozenLLM(threads=2), EmbeddingTable()
    systems = Systems.on(llm, 6)
    real = speakers.real_speaker(asr, 0, 1)
    args = (tiny_corpus, asr, systems, emb, real, (6, 12, 10_000), 1)
    lines = []
    first = corpus_curve(*args, eval_n=1, log=lines.append)
    assert [r["train_utterances"] for r in first["rows"]] == [5, 11]    # 3 % held for the epoch
    assert first["sizes_skipped"] == [10_000]
    for row in first["rows"]:
        for split in ("eval-sentences", "eval-voice", "real"):
            assert row[f"{split}_wer"] >= 0 and row[f"{split}_read_wer"] >= 0
        kept = load_checkpoint(row["projector"], asr.model_id, llm.model_id)
        assert kept.meta.training["train_utterances"] == row["train_utterances"]
    assert len(list((tiny_corpus.root / "curve").glob("*.json"))) == 2
    assert not list((tiny_corpus.root / "curve").glob("*.stages"))   # epochs: row written
    assert not any(row["resumed"] for row in first["rows"])
    lines.clear()
    again = corpus_curve(*args, eval_n=1, log=lines.append)
    assert again["rows"] == first["rows"]
    assert sum("kept from" in m for m in lines) == 2 and not any("utt," in m for m in lines)
