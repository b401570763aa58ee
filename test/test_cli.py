"""The tinyalign command, as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOFORWARD, LIB_DIR


def run_cli(*args, exe=None):
    cmd = [str(exe)] if exe else [sys.executable, "-m", "tinyalign_ros.cli"]
    return subprocess.run(cmd + list(map(str, args)), capture_output=True, text=True, timeout=300)


@pytest.mark.real_models
def test_transcribe_json(installed):
    out = run_cli("transcribe", GOFORWARD, "--json", "--threads", "2", exe=LIB_DIR / "tinyalign")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["text"].lower().startswith("go forward") and row["features"] == [140, 384]


def test_bad_input_is_one_clear_line(tmp_path):
    out = run_cli("transcribe", tmp_path / "missing.wav")
    assert out.returncode == 2 and "audio file not found" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("transcribe", GOFORWARD, "--whisper-model", tmp_path)
    assert out.returncode == 2 and "does not hold a CTranslate2 Whisper model" in out.stderr


def test_every_subcommand_prints_its_help():
    """Every flag's help renders (argparse %-formats it: a stray "%" in a setting's help once
    made `tinyalign adapt --help` end in a TypeError)."""
    import argparse

    from tinyalign_ros.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "adapt" in subparsers.choices
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        assert f"usage: tinyalign {name}" in text, name
    assert "30 % of it" in subparsers.choices["adapt"].format_help()


def test_prepare_models_is_idempotent():
    out = run_cli("prepare-models")
    assert out.returncode == 0, out.stderr
    assert "Whisper:" in out.stdout and "LLM:" in out.stdout


@pytest.mark.real_models
def test_respond_with_the_shipped_base_projector(installed):
    """The real default models and the base projector in the repository answer a recording."""
    from tinyalign_ros.core.models import default_projector

    assert default_projector(), "tinyalign_ros/data/base_projector.safetensors is missing"
    out = run_cli("respond", GOFORWARD, "--projector", default_projector(), "--mode", "both",
                  "--max-new-tokens", "16", exe=LIB_DIR / "tinyalign")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["aligned"].strip() and row["cascade"].strip()
    assert row["transcript"].lower().startswith("go forward")
    assert row["timings"]["tokens"] > 0


@pytest.mark.real_models
def test_adapt_runs_the_nodes_recipe_offline(installed, tmp_path):
    """`tinyalign adapt`: a user's recordings in, the adaptation recipe (AdaptConfig, the
    node's own) on the shipped base; a checkpoint only when it may be published."""
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.learning.adapt import AdaptConfig
    from tinyalign_ros.core.models import default_projector
    from tinyalign_ros.corpus.corpora import asterisk_examples

    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 8][:8]
    data = tmp_path / "user.jsonl"
    data.write_text("".join(json.dumps({"audio": str(e.audio), "text": e.text}) + "\n"
                            for e in examples))
    out = tmp_path / "alice.safetensors"
    # the recogniser on the newest 7: the oldest utterance's hint is decoded by its adapter
    res = run_cli("adapt", "--data", data, "--out", out, "--epochs", 1,
                  "--no-require-improvement", "--recognizer-max-utterances", 7,
                  "--user", "alice", "--threads", 2, exe=LIB_DIR / "tinyalign")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["published"] and row["out"] == str(out)
    assert row["metrics"]["train_utterances"] + row["metrics"]["validation_utterances"] == 8
    adapted = load_checkpoint(out)
    base = load_checkpoint(default_projector())
    assert adapted.meta.parent_version == base.version and adapted.version == row["version"]
    recorded = adapted.meta.training["adapt"]
    assert recorded["epochs"] == 1 and recorded["objective"] == AdaptConfig().objective
    assert adapted.meta.training["user_id"] == "alice"
    # the default target, both: the recogniser first, its adapter beside the projector
    assert recorded["target"] == AdaptConfig().target == "both"
    rec = row["recognizer"]
    assert rec["published"] and rec["out"] == str(tmp_path / "alice.recognizer.safetensors")
    assert Path(rec["out"]).is_file()
    assert rec["metrics"]["recognizer_train_utterances"] == 7
    # the projector's hints as the node's both job makes them: held out by the cross-fitted
    # folds where the recogniser trained, decoded by its new adapter for the one older
    assert row["hints"] == {"held_out": 7, "decoded": 1}
    # too few utterances: one clear line, nothing written
    res = run_cli("adapt", "--data", data, "--out", tmp_path / "x.safetensors", "--limit", 3,
                  exe=LIB_DIR / "tinyalign")
    assert res.returncode == 2 and "at least 6 are needed" in res.stderr
    assert "recogniser not adapted" in res.stderr     # both: too few for either
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.real_models
def test_adapt_target_recognizer_writes_a_recogniser_adapter(installed, tmp_path):
    """`tinyalign adapt --target recognizer`: the node's recogniser recipe offline (a LoRA on
    Whisper's decoder and the encoder's last two layers, held-out gate against --recognizer or
    the unadapted decoder)."""
    from tinyalign_ros.core.learning.recognizer_adapt import RecognizerAdapter
    from tinyalign_ros.corpus.corpora import asterisk_examples

    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 8][:8]
    data = tmp_path / "user.jsonl"
    data.write_text("".join(json.dumps({"audio": str(e.audio), "text": e.text}) + "\n"
                            for e in examples))
    res = run_cli("adapt", "--data", data, "--target", "recognizer", exe=LIB_DIR / "tinyalign")
    assert res.returncode == 2 and "--recognizer-out is needed" in res.stderr
    out = tmp_path / "alice.rec.safetensors"
    res = run_cli("adapt", "--data", data, "--target", "recognizer", "--recognizer-out", out,
                  "--recognizer-epochs", 1, "--no-require-improvement", "--user", "alice",
                  "--threads", 2, exe=LIB_DIR / "tinyalign")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout.strip().splitlines()[-1])["recognizer"]
    assert row["published"] and row["out"] == str(out) and row["version"].startswith("rec-alice")
    m = row["metrics"]
    # cross-fitted (the default): every utterance held out once, the adapter trained on all 8
    assert m["recognizer_crossfit"] == 1.0
    assert m["recognizer_train_utterances"] == m["recognizer_validation_utterances"] == 8
    assert {"recognizer_wer_before", "recognizer_wer_after"} <= set(m)
    # the gate's before is what the ASR front end serves (transcribed here, logged by the node)
    assert m["recognizer_before_served"] == 1.0
    adapter = RecognizerAdapter.from_bytes(out.read_bytes())
    assert adapter.metadata["user_id"] == "alice" and adapter.metadata["rank"] == 8
    # the default both_top2: decoder (~496 KB) + the encoder's last two layers (~149 KB), fp16
    assert 600_000 < out.stat().st_size < 700_000
