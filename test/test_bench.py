"""`tinyalign bench`: the intent scorer, the report writer, and the quick mode end to end on
the real default models (its numbers are too small to mean anything; the test checks that
every section ran on real data and that the report and plots were written)."""
import json
import subprocess
import sys

import pytest


def test_every_intent_phrasing_names_only_its_intent():
    from tinyalign_ros.bench.intents import INTENTS, accuracy, named_intents, utterances

    assert len(INTENTS) == 20
    for intent, text in utterances():
        assert named_intents(text) == {intent}, text
    assert named_intents("Turn left, then stop.") == {"left", "stop"}
    # two intents named is wrong, the right one alone is right, nothing named is wrong
    assert accuracy(["left", "left", "left"], ["turn left and stop", "Turn LEFT.", "hello"]) == \
        pytest.approx(1 / 3)


def test_held_out_texts_never_trained_the_base():
    from tinyalign_ros.bench.speakers import held_out_texts
    from tinyalign_ros.recipe import corpus_texts

    texts = held_out_texts(60)
    assert len(texts) == 60 and len(set(texts)) == 60
    assert not {t.lower() for t in texts} & {t.lower() for t in corpus_texts(1500, 0)}


@pytest.mark.real_models
def test_quick_bench_writes_every_section_report_and_plots(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["mode"] == "quick"
    users = {u["user"]: u for u in report["quality"]}
    assert {"asterisk (real)", "croaky", "held-out sentences (base voices)"} <= set(users)
    real = users["asterisk (real)"]
    assert real["test"] > 0 and real["pool"] > 0
    for system in ("whisper", "cascade", "ceiling", "base", "base+hint", "adapted K=10"):
        assert 0.0 <= real["wer"][system] < 10.0, system
    assert 0.0 <= real["wer_ce_hint"]["adapted K=10+hint (CE)"] < 10.0
    assert real["adapt_ce_hint_train_s"]["10"] > 0
    assert set(report["intents"]["accuracy"]) >= {"whisper", "cascade", "base"}
    cost = report["cost"]["default_llm"]
    assert cost["embedlink"]["step_s"] > 0 and cost["ce"]["step_s"] > 0
    assert cost["embedlink"]["peak_rss_mb"] > 0 and cost["ce"]["peak_rss_mb"] > 0
    assert [c["objective"] for c in report["cost"]["convergence"]] == ["embedlink", "ce"]
    variants = [p["variant"] for p in report["footprint"]["projector"]]
    assert "shared layers" in variants and "full, int8" in variants
    sizes = {p["variant"]: p for p in report["footprint"]["projector"]}
    assert sizes["full, int8"]["file_bytes"] < sizes["full"]["file_bytes"] / 3
    assert sizes["full, pruned 50 %"]["nonzero_parameters"] < \
        0.6 * sizes["full"]["nonzero_parameters"]
    assert [m["llm"] for m in report["footprint"]["llm"]] == ["fp32", "int8 dynamic"]
    lat = report["latency"]
    assert 0 < lat["encoder_s"] < lat["end_of_speech_to_first_token_s"] < \
        lat["end_of_speech_to_full_response_s"]
    md = (out / "bench.md").read_text()
    assert "adapted K=10+hint (CE)" in md and not report["errors"]
    for heading in ("Alignment quality", "Robot intents", "Training cost", "Footprint",
                    "Inference"):
        assert heading in md
    assert len(report["plots"]) == 4
    for name in report["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the design section runs only when named, and its results join the existing report
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--quick",
                           "--out", str(out), "--sections", "design"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((out / "bench.json").read_text())
    assert merged["quality"] == report["quality"] and merged["latency"] == report["latency"]
    rows = {v["variant"]: v for v in merged["design"]["variants"]}
    assert set(rows) == {"reference: length pooling, T<=32, 2 layers",
                         "fixed T=32, padding masked", "time masking 20 %"}
    for row in rows.values():
        assert row["train_utterances"] > 0 and row["train_s"] > 0
        assert 0.0 <= row["heldout_read_wer"] and 0.0 <= row["heldout_wer_hint"] < 10.0
    assert rows["time masking 20 %"]["training"] == {"time_mask": 0.2}
    assert "Design choices" in (out / "bench.md").read_text()
