"""`tinyalign bench`: the intent scorer, the report writer, and the quick mode end to end on
the real default models. Its numbers are too small to read as results; the test checks that
every section ran on real data with the expected users, systems and rows, that every number
is a finite measurement, that what must agree does (the same system scored by two sections,
stages adding up to their total), and that the report and plots were written."""
import json
import math
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
    from tinyalign_ros.corpus.recipe import corpus_texts

    texts = held_out_texts(60)
    assert len(texts) == 60 and len(set(texts)) == 60
    assert not {t.lower() for t in texts} & {t.lower() for t in corpus_texts(1500, 0)}


def test_the_flags_reach_the_bench_config():
    from tinyalign_ros.bench import BenchConfig
    from tinyalign_ros.cli import bench_config, build_parser

    parse = build_parser().parse_args
    assert bench_config(parse(["bench"])) == BenchConfig()
    config = bench_config(parse(["bench", "--sections", "corpus-curve", "--curve-sizes",
                                 "20000", "--curve-leave-out", "--ks", "50", "--threads", "1"]))
    assert config.sections == ("corpus-curve",) and config.curve_sizes == (20000,)
    assert config.curve_leave_out == () and config.ks == config.hint_ks == (50,)
    assert config.threads == 1 and config.curve_epochs == BenchConfig().curve_epochs
    assert bench_config(parse(["bench", "--synthetic-test", "30"])).synthetic_test == 30
    with pytest.raises(SystemExit, match="at least 1"):
        bench_config(parse(["bench", "--synthetic-test", "0"]))
    assert bench_config(parse(["bench", "--recognizer-lora-on", "both_top2"])) \
        .recognizer_lora_on == "both_top2"
    with pytest.raises(SystemExit, match="recognizer_lora_on"):
        bench_config(parse(["bench", "--recognizer-lora-on", "everything"]))


def test_the_targets_say_met_or_by_how_much_they_are_missed():
    from tinyalign_ros.bench.report import target_rows, targets_table

    def user(name, kind, cascade, base, **k50):
        row = {"user": name, "kind": kind, "wer": {"cascade": cascade, "base": base}}
        if k50:
            row.update(wer_served={"served (mode auto) K=50": k50["served"]},
                       served={"50": {"path": k50["path"]}},
                       recognizer_adapt={"50": {"published": k50["published"]}},
                       wer_adapted_cascade={"adapted cascade K=50": k50["adapted"]},
                       wer_both={"adapted rec.+proj. K=50+hint (CE)": k50["both"]},
                       both_train_s={"50": {"recognizer_s": k50["rec_s"],
                                            "projector_s": k50["proj_s"]}})
        return row

    report = {"quality": [
        user("real", "real", 0.04, 0.044, served=0.04, path="cascade", published=False,
             adapted=0.04, both=0.1, rec_s=40.0, proj_s=19.0),
        user("hard", "synthetic", 0.40, 0.41, served=0.30, path="cascade", published=True,
             adapted=0.30, both=0.25, rec_s=50.0, proj_s=20.0),
        user("sentences", "synthetic-base", 0.30, 0.30)],
        "intents": {"accuracy": {"cascade": 0.8, "base": 0.75}},
        "latency": {"command_s": 3.0, "end_of_speech_to_first_token_s": 0.7}}
    k, rows = target_rows(report)
    verdicts = {(row[0][:28], row[1]): row[4] for row in rows}
    assert k == 50 and len(rows) == 12
    assert verdicts[("base, default aligned mode: ", "real")] == "met"   # +0.4 pt
    assert verdicts[("base, default aligned mode: ", "hard")] == \
        "**missed by 0.5 pt**"                                        # +1.0 pt: 0.5 over
    assert verdicts[("base: intent accuracy not be", "intents")] == "**missed by 5.0 pt**"
    assert verdicts[("after K = 50: what mode auto", "real")] == "met"      # the cascade's
    assert verdicts[("after K = 50: what mode auto", "hard")] == "met"      # 0.75x: the limit
    assert verdicts[("after K = 50: the adapted ca", "hard")] == \
        "**missed by 2.0 pt**"                                        # 0.75x > 0.7x
    assert verdicts[("after K = 50: the aligned pa", "hard")] == "met"  # 25 % below 30 %
    assert verdicts[("K = 50: the both job's train", "real")] == "met"      # 59 s
    assert verdicts[("K = 50: the both job's train", "hard")] == "**missed by 10.0 s**"
    assert verdicts[("end of speech to first token", "aligned")] == "met"
    served = next(row for row in rows if row[0].startswith("after K = 50: what") and
                  row[1] == "hard")
    assert served[2] == "30.0 % (adapted cascade; 0.75x)"   # published: the adapted one
    assert targets_table(report)[0] == "### Targets: 8 of 12 met"


SYSTEMS = ("whisper", "cascade", "ceiling", "base")


def shipped_base_columns() -> tuple[tuple, bool, float]:
    """The bench's systems for the shipped base: a gated base is served as the hybrid, with
    its audio-only mode beside it; an ungated one with and without the hint. Also whether it
    is gated, and its confidence limit."""
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.models import default_projector

    config = load_checkpoint(default_projector()).model.config
    gated = config.gate != "none"
    last = ("base audio-only", "base audio-only, continuous") if gated else ("base+hint",)
    return (*SYSTEMS, *last), gated, \
        config.gate_max_confidence
FOOTPRINT = ["shipped base", "full", "shared layers",
             "full, pruned 50 %", "full, int8", "shared layers, int8", "full, pruned 50 % + int8"]


def _rate(value) -> bool:
    """A measured rate: a finite number >= 0 (a WER may exceed 1: insertions)."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


@pytest.mark.real_models
@pytest.mark.e2e
def test_quick_bench_writes_every_section_report_and_plots(tmp_path):
    from tinyalign_ros.bench import BenchConfig
    from tinyalign_ros.core.learning.adapt import AdaptConfig

    quick = BenchConfig.quick()
    shared, gated, limit = shipped_base_columns()
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["mode"] == "quick" and not report["errors"]
    assert list(report["section_wall_s"]) == list(quick.sections)

    # quality: every user with its test set and pool, every system, the K sweep and CE+hint
    users = {u["user"]: u for u in report["quality"]}
    (synthetic,) = quick.synthetic_users
    assert set(users) == {"asterisk (real)", synthetic, "held-out sentences (base voices)"}
    k = quick.ks[0]
    pools = {"asterisk (real)": quick.real_pool, synthetic: quick.synthetic_pool,
             "held-out sentences (base voices)": 0}
    tests = {"asterisk (real)": quick.real_test, synthetic: quick.synthetic_test,
             "held-out sentences (base voices)": quick.heldout_test}
    assert any(pools.values())
    for name, user in users.items():
        assert (user["test"], user["pool"]) == (tests[name], pools[name]), name
        adapted = ((f"adapted K={k}",) + (() if gated else (f"adapted K={k}+hint",))
                   if user["pool"] else ())
        assert list(user["wer"]) == [*shared, *adapted], name
        if gated and limit == 0.0:   # its gate shut for every confidence: the cascade's replies
            assert user["wer"]["base"] == user["wer"]["cascade"], name
        assert all(_rate(v) for v in user["wer"].values()), user["wer"]
        if user["pool"]:
            assert list(user["wer_ce_hint"]) == [f"adapted K={k}+hint (CE)"]
            assert _rate(user["wer_ce_hint"][f"adapted K={k}+hint (CE)"])
            assert user["adapt_train_s"][str(k)] > 0 and user["adapt_ce_hint_train_s"][str(k)] > 0
        else:
            assert user["wer_ce_hint"] == {} and user["adapt_train_s"] == {}
            assert "wer_adapted_cascade" not in user   # no pool: no recogniser to adapt

    # the adapted cascade (the recogniser adapted on the same K pool utterances): served
    # transcripts' WER, the cascade on them, and with the adapted projector (the both recipe)
    rec_users = [u for u in users.values() if u["pool"]]
    assert [u["user"] for u in rec_users] == [synthetic]
    for user in rec_users:
        assert user["recognizer_epochs"] == quick.recognizer_epochs
        job = user["recognizer_adapt"][str(k)]
        # the node's cross-fitted gate: every pool utterance is held out once, and the adapter
        # (if the folds' best epochs leave one to refit) trains on all of them
        assert AdaptConfig().recognizer_validation == "crossfit"
        assert (job["train_utterances"], job["validation_utterances"]) == (k, k)
        assert 0 < job["train_s"] <= job["job_s"]
        assert job["bytes"] > 100_000 or (job["bytes"] == 0 and job["best_epoch"] == 0)
        assert user["recognizer_train_s"] == {str(k): job["train_s"]}
        assert user["recognizer_refusals"] == (0 if job["published"] else 1)
        # the gate: published only if it saves enough word errors against what the user is
        # served, on the held-out utterances
        assert job["published"] == (job["bytes"] > 0 and job["gain_words"] >=
                                    AdaptConfig().recognizer_min_gain_words), job
        assert (job["gain_words"] > 0) == (job["val_wer_after"] < job["val_wer_before"])
        rec = user["wer_recognizer"]
        assert list(rec) == ["recognizer (torch, unadapted)", f"recognizer K={k}"]
        assert list(user["wer_adapted_cascade"]) == [f"adapted cascade K={k}"]
        both_key = f"adapted rec.+proj. K={k}+hint (CE)"
        assert list(user["wer_both"]) == [both_key]
        assert all(_rate(v) for part in ("wer_recognizer", "wer_adapted_cascade", "wer_both")
                   for v in user[part].values())
        both_s = user["both_train_s"][str(k)]
        assert both_s["recognizer_s"] == job["train_s"] and both_s["projector_s"] > 0
        assert both_s["recognizer_refused"] == (not job["published"])
        # the both job's projector: trained on 80 % of the K, validated on the rest, and mode
        # auto serves it only where it was published; else the (adapted) cascade answers
        served = user["served"][str(k)]
        assert (served["train_utterances"], served["validation_utterances"]) == (k - 2, 2)
        assert served["path"] == ("aligned" if served["published"] else "cascade"), served
        assert list(user["wer_served"]) == [f"served (mode auto) K={k}"]
        assert user["wer_served"][f"served (mode auto) K={k}"] == (
            user["wer_both"][both_key] if served["published"]
            else user["wer_adapted_cascade"][f"adapted cascade K={k}"])
        if not job["published"]:   # refused: the user keeps faster-whisper, the rows say so
            assert (rec[f"recognizer K={k}"], user["wer_adapted_cascade"][f"adapted cascade K={k}"]
                    ) == (user["wer"]["whisper"], user["wer"]["cascade"])

    # the ceiling is a measurement of the LLM repeating the true text through the prompt: on
    # the real speaker's short telephone prompts it repeats them (docs: 1.4 % WER); a broken
    # prompt or response length shows here first
    assert users["asterisk (real)"]["wer"]["ceiling"] <= 0.25
    intents = report["intents"]
    assert intents["utterances"] == quick.intents_limit
    assert intents["intents"] == quick.intents_limit // 2   # two phrasings per intent, in order
    assert list(intents["accuracy"]) == list(shared)
    if gated and limit == 0.0:
        assert intents["accuracy"]["base"] == intents["accuracy"]["cascade"]
    assert all(0.0 <= v <= 1.0 for v in intents["accuracy"].values())

    # cost: CE runs the LLM, EmbedLink only its embedding table
    cost = report["cost"]
    assert set(cost) == {"default_llm", "convergence"}   # quick: no 1 B model
    el, ce = cost["default_llm"]["embedlink"], cost["default_llm"]["ce"]
    assert el["utterances"] == ce["utterances"] == quick.cost_utterances
    assert 0 < el["step_s"] < ce["step_s"] and el["peak_rss_mb"] < ce["peak_rss_mb"]
    assert el["llm_parameters"] is None and ce["llm_parameters"] > 1e8
    assert [c["objective"] for c in cost["convergence"]] == list(quick.convergence_epochs)
    for conv in cost["convergence"]:
        curve = conv["curve"]
        assert [p["epoch"] for p in curve] == \
            list(range(1, quick.convergence_epochs[conv["objective"]] + 1))
        assert (conv["train_utterances"], conv["validation"]) == \
            (quick.convergence_k, quick.convergence_val)
        assert all(_rate(p["val_wer"]) for p in curve)
        assert all(a["train_s"] < b["train_s"] for a, b in zip(curve, curve[1:]))
        best = min(curve, key=lambda p: p["val_wer"])
        assert (conv["best_val_wer"], conv["time_to_best_s"]) == \
            (best["val_wer"], best["train_s"])

    # footprint: every variant; sizes follow from the variant
    fp = report["footprint"]
    assert fp["test"] == "held-out sentences (base voices)"
    assert fp["test_utterances"] == quick.heldout_test
    sizes = {p["variant"]: p for p in fp["projector"]}
    assert [p["variant"] for p in fp["projector"]] == FOOTPRINT
    assert all(_rate(p["wer"]) and _rate(p["read_wer"]) for p in fp["projector"])
    assert sizes["full, int8"]["file_bytes"] < sizes["full"]["file_bytes"] / 3
    assert sizes["shared layers"]["parameters"] < sizes["full"]["parameters"]
    assert sizes["full, pruned 50 %"]["nonzero_parameters"] < \
        0.6 * sizes["full"]["nonzero_parameters"]
    assert [m["llm"] for m in fp["llm"]] == ["fp32", "int8 dynamic"]
    fp32, int8 = fp["llm"]
    assert int8["bytes"] < fp32["bytes"] / 1.5

    # systems that must agree do: the same base, LLM, prompt and test sentences scored by the
    # quality section, the footprint's shipped-base row, and the footprint's fresh fp32 LLM
    heldout = users["held-out sentences (base voices)"]["wer"]
    assert sizes[FOOTPRINT[0]]["wer"] == heldout["base"] == fp32["base_wer"]
    assert fp32["ceiling_wer"] == heldout["ceiling"]

    # the ASR node's memory per adapted user: the table held an adapter of the node recipe's
    # shape per user, its fp16 tensors (the serialised file adds only a small header)
    mem = report["recognizer_memory"]
    assert (mem["lora_on"], mem["users"]) == (AdaptConfig().recognizer_lora_on,
                                              quick.recognizer_memory_users)
    assert 0.9 * mem["adapter_bytes"] < mem["tensor_bytes_per_user"] <= mem["adapter_bytes"]
    assert mem["first_user_mb"] > 0 and mem["all_users_mb"] >= mem["first_user_mb"] - 1

    # latency: the stages add up to the end-of-speech figures
    lat = report["latency"]
    stages = ("vad_wait_s", "encoder_s", "projector_s", "prefill_s", "first_step_s")
    assert all(lat[s] >= 0 for s in stages) and lat["encoder_s"] > 0
    assert lat["end_of_speech_to_first_token_s"] == \
        pytest.approx(sum(lat[s] for s in stages), abs=2e-3)
    assert lat["end_of_speech_to_full_response_s"] == \
        pytest.approx(lat["end_of_speech_to_first_token_s"] + lat["decode_rest_s"], abs=2e-3)
    assert 0 < lat["vad_early_wait_s"] < lat["vad_wait_s"]
    assert lat["end_of_speech_to_first_token_cascade_s"] == pytest.approx(
        max(lat["vad_wait_s"], lat["vad_early_wait_s"] + lat["encoder_s"] +
            lat["asr_transcript_s"]) + lat["cascade_first_token_s"], abs=2e-3)
    assert lat["prompt_prefix_tokens"] == report["prompt"]["aligned"]["prefix_tokens"]
    assert 0 < lat["tokens"] <= 32

    md = (out / "bench.md").read_text()
    assert f"adapted K={k}+hint (CE)" in md
    for heading in ("Alignment quality", "Adapted cascade", "Robot intents", "Training cost",
                    "Footprint", "ASR node memory per adapted user", "Inference"):
        assert heading in md
    # the adapted-cascade table: one row per user with a pool, refusals marked and counted
    table = md.split("### Adapted cascade")[1].split("###")[0]
    row = next(line for line in table.splitlines() if line.startswith(f"| {synthetic} ("))
    job = users[synthetic]["recognizer_adapt"][str(k)]
    assert (" (refused)" in row) == (not job["published"])
    assert f"refused {0 if job['published'] else 1} of 1 adapters" in table
    # the targets: every user's base row, the intents, the synthetic user's adaptation rows
    # at the quick K, and both paths' first token
    from tinyalign_ros.bench.report import target_rows
    target_k, rows = target_rows(report)
    assert target_k == k and "### Targets: " in md
    assert [row[1] for row in rows] == [*users, "intents", *[synthetic] * 4,
                                        "aligned", "cascade"]
    assert len(report["plots"]) == 4
    for name in report["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --report-only writes the same report again from bench.json, running nothing
    (out / "bench.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--report-only",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "bench.md").read_text() == md
    assert json.loads((out / "bench.json").read_text()) == report
    # with a run's flags it refuses rather than ignore them
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--report-only",
                           "--out", str(out), "--ks", "50", "--quick"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--ks --quick would be ignored" in proc.stderr, proc.stderr
    assert (out / "bench.md").read_text() == md

    # the design section runs only when named, and its results join the existing report
    proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.cli", "bench", "--quick",
                           "--out", str(out), "--sections", "design"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((out / "bench.json").read_text())
    assert merged["quality"] == report["quality"] and merged["latency"] == report["latency"]
    assert set(merged["section_wall_s"]) == {*quick.sections, "design"}
    design = merged["design"]
    assert (design["heldout_utterances"], design["real_utterances"]) == \
        (quick.heldout_test, quick.real_test)
    rows = {v["variant"]: v for v in design["variants"]}
    assert set(rows) == set(quick.design_variants)
    for row in rows.values():
        assert row["train_utterances"] > 0 and row["train_s"] > 0
        assert all(_rate(row[key]) for key in ("val_loss", "heldout_read_wer", "real_read_wer",
                                               "heldout_wer", "heldout_wer_hint"))
    assert rows["time masking 20 %"]["training"] == {"time_mask": 0.2}
    assert rows["fixed T=32, padding masked"]["projector"] == {"pooling": "fixed"}
    assert "Design choices" in (out / "bench.md").read_text()
