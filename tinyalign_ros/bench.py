"""`tinyalign bench`: the numbers of the pipeline on this machine, printed and saved.

Timing (medians of repeated runs, CPU threads as given):
  encoder    a 3 s command: CTranslate2 on the padded 30 s window vs the variable-length encoder
  asr        transcript of the same clip
  projector  one forward pass
  llm        prefill of the injected prompt (few-shot prefix cached vs not), decode tokens/s,
             fp32 and int8
  training   EmbedLink vs cross-entropy on the same real utterances and projector: time per step
             and per epoch, the ratio, and peak memory of each (each trainer in its own process)
Asserts nothing; writes results/bench-core.json and .md.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inference_numbers(threads: int, repeats: int) -> dict:
    import torch

    from .core.asr import AsrFrontEnd
    from .core.audio import load_audio
    from .core.llm import FrozenLLM
    from .core.pipeline import Assistant
    from .core.projector import BridgeFormer, ProjectorConfig

    torch.set_num_threads(threads)
    clip = load_audio("/usr/share/pocketsphinx/test/data/goforward.raw")   # 2.8 s
    out = {"clip_s": round(clip.size / 16000, 2)}
    ct2 = AsrFrontEnd(cpu_threads=threads, encoder="ct2")
    var = AsrFrontEnd(cpu_threads=threads, encoder="var")
    out["encoder_ct2_padded_s"] = _median_time(lambda: ct2.encode(clip), repeats)
    out["encoder_var_s"] = _median_time(lambda: var.encode(clip), repeats)
    out["asr_transcribe_s"] = _median_time(lambda: var.transcribe(clip), repeats)
    feats = var.encode(clip)
    for int8 in (False, True):
        tag = "int8" if int8 else "fp32"
        llm = FrozenLLM(threads=threads, int8=int8)
        assistant = Assistant(llm, max_new_tokens=24)
        assistant.use_projector(BridgeFormer(ProjectorConfig()).eval())
        if not int8:
            out["projector_s"] = _median_time(lambda: assistant.project(feats), repeats)
        tokens = assistant.project(feats)
        suffix = llm.embed_ids(assistant.prompt.suffix_ids())
        full = torch.cat([llm.embed_ids(assistant.prompt.prefix_ids), tokens, suffix])[None]
        out[f"llm_{tag}_prefill_uncached_s"] = _median_time(lambda: llm.prefill(full), repeats)
        out[f"llm_{tag}_prefill_cached_prefix_s"] = _median_time(
            lambda: llm.prefill(torch.cat([tokens, suffix])[None], assistant._prefix_cache),
            repeats)
        gen = assistant.respond_text("please go to the kitchen and bring me the red cup "
                                     "and then come back to the living room",
                                     max_new_tokens=32)
        out[f"llm_{tag}_tokens_per_s"] = gen.generation.tokens_per_s
        out["prompt_prefix_tokens"] = len(assistant.prompt.prefix_ids)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def training_numbers(objective: str, n: int, epochs: int, threads: int) -> dict:
    """One trainer on n real utterances (run in its own process for a clean peak memory)."""
    import torch

    from .core.asr import AsrFrontEnd
    from .core.corpora import asterisk_examples
    from .core.data import encode_examples
    from .core.llm import EmbeddingTable, FrozenLLM
    from .core.models import data_dir
    from .core.projector import BridgeFormer, ProjectorConfig
    from .core.prompt import PromptBuilder
    from .core.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    asr = AsrFrontEnd(cpu_threads=threads)
    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 12][:n]
    items = encode_examples(examples, asr, data_dir() / "cache" / "features")
    del asr
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    projector = BridgeFormer(ProjectorConfig())
    if objective == "embedlink":   # EmbedLink needs only the embedding table
        trainer = Trainer(projector, TrainConfig(objective="embedlink", embedlink_epochs=epochs),
                          embeddings=EmbeddingTable(), show_progress_bar=False)
    else:
        llm = FrozenLLM(threads=threads)
        trainer = Trainer(projector, TrainConfig(objective="ce", ce_epochs=epochs, lr=1e-3),
                          llm=llm, prompt=PromptBuilder(llm.tokenizer), show_progress_bar=False)
    result = trainer.fit(items, [])
    stage = result.stages[0]
    return {"objective": objective, "utterances": len(items), "steps": stage.steps,
            "step_s": round(stage.step_s, 4), "epoch_s": round(stage.epoch_s, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_training_mb": round(rss_before)}


def run(out_dir: Path, threads: int = 2, repeats: int = 5, train_utterances: int = 64,
        train_epochs: int = 2) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"threads": threads, "inference": inference_numbers(threads, repeats)}
    train = {}
    for objective in ("embedlink", "ce"):
        proc = subprocess.run([sys.executable, "-m", "tinyalign_ros.bench", "--train-only",
                               objective, str(train_utterances), str(train_epochs),
                               str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{objective} benchmark failed:\n{proc.stderr[-2000:]}")
        train[objective] = json.loads(proc.stdout.strip().splitlines()[-1])
    train["ce_over_embedlink_per_step"] = round(train["ce"]["step_s"] /
                                                train["embedlink"]["step_s"], 2)
    train["ce_over_embedlink_per_epoch"] = round(train["ce"]["epoch_s"] /
                                                 train["embedlink"]["epoch_s"], 2)
    report["training"] = train
    (out_dir / "bench-core.json").write_text(json.dumps(report, indent=1))
    (out_dir / "bench-core.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    inf, tr = r["inference"], r["training"]
    rows = [("clip length", f"{inf['clip_s']} s"),
            ("encoder, CTranslate2, padded 30 s window", f"{inf['encoder_ct2_padded_s']:.3f} s"),
            ("encoder, variable length (torch)", f"{inf['encoder_var_s']:.3f} s"),
            ("ASR transcript (CTranslate2 int8)", f"{inf['asr_transcribe_s']:.3f} s"),
            ("projector forward", f"{inf['projector_s']:.4f} s"),
            (f"LLM prefill, whole prompt ({inf['prompt_prefix_tokens']}-token few-shot prefix), fp32",
             f"{inf['llm_fp32_prefill_uncached_s']:.3f} s"),
            ("LLM prefill, prefix KV cached, fp32", f"{inf['llm_fp32_prefill_cached_prefix_s']:.3f} s"),
            ("LLM prefill, prefix KV cached, int8", f"{inf['llm_int8_prefill_cached_prefix_s']:.3f} s"),
            ("LLM decode fp32", f"{inf['llm_fp32_tokens_per_s']:.1f} tokens/s"),
            ("LLM decode int8", f"{inf['llm_int8_tokens_per_s']:.1f} tokens/s")]
    for obj in ("embedlink", "ce"):
        t = tr[obj]
        rows.append((f"{obj} training: step / epoch ({t['utterances']} utt., batch 16)",
                     f"{t['step_s']:.3f} s / {t['epoch_s']:.2f} s"))
        rows.append((f"{obj} training: peak RSS of the process", f"{t['peak_rss_mb']} MB"))
    rows.append(("CE / EmbedLink cost per step, per epoch",
                 f"{tr['ce_over_embedlink_per_step']}x, {tr['ce_over_embedlink_per_epoch']}x"))
    lines = [f"| measure ({r['threads']} CPU threads) | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--train-only":
        print(json.dumps(training_numbers(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                          int(sys.argv[5]))))
