"""Training cost: EmbedLink vs the cross-entropy baseline on the same utterances and projector.

Each trainer runs in its own process so that its peak memory is its own (VmHWM, reset once the
utterances are encoded and Whisper is freed: the trainer's model(s) + the interpreter). Measured with the
default LLM and with a randomly initialised 1 B-class Llama of the same vocabulary (timing
only: its weights are noise, its cost is real). For the 1 B model CE runs a few steps and its
epoch time is steps-per-epoch x the measured step time (said so in the report).
Also: wall time to the best validation WER for each objective when adapting the base projector
to the real speaker, validation WER measured after every epoch (that time excluded).
"""
from __future__ import annotations

import gc
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

# a Llama-3.2-1B-like shape over SmolLM2's vocabulary: 1.07 B parameters
ONE_B_SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                   num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True)


def random_llm(shape: dict, name: str) -> Path:
    """A randomly initialised LLM folder (config + weights + the default LLM's tokenizer)."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..core.models import data_dir, resolve_llm

    out = data_dir() / "cache" / name
    if (out / "model.safetensors").is_file() or list(out.glob("model-*.safetensors")):
        return out
    src = resolve_llm()
    config = AutoConfig.from_pretrained(str(src), local_files_only=True)
    for k, v in shape.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    for f in src.iterdir():   # tokenizer files and chat template: everything but the model
        if f.is_file() and not (tmp / f.name).exists() and f.suffix != ".safetensors":
            shutil.copy(f, tmp / f.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def rss_mb(field: str = "VmRSS", pid: int | str = "self") -> float:
    """A process's resident memory from /proc/PID/status, in MB: VmRSS (now) or VmHWM (its
    peak since exec or the last reset_peak_rss)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM: reset at exec, unlike ru_maxrss, which a
    child inherits from its parent's size at fork on Linux)."""
    try:
        return round(rss_mb("VmHWM"))
    except (OSError, RuntimeError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def reset_peak_rss() -> None:
    try:   # Linux >= 4.0: "5" resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def training_numbers(objective: str, n: int, epochs: int, threads: int, llm_path: str = "",
                     max_steps: int = 0) -> dict:
    """One trainer on n real utterances (Asterisk prompts), from a fresh projector."""
    import torch

    from ..core.speech.asr import AsrFrontEnd
    from ..corpus.corpora import asterisk_examples
    from ..core.learning.data import encode_examples
    from ..core.assistant.llm import EmbeddingTable, FrozenLLM
    from ..core.models import data_dir
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig
    from ..core.assistant.prompt import PromptBuilder, PromptConfig
    from ..core.learning.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    asr = AsrFrontEnd(cpu_threads=threads)
    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 12][:n]
    items = encode_examples(examples, asr, data_dir() / "cache" / "features")
    del asr
    gc.collect()
    reset_peak_rss()   # the peak from here on is the trainer's (+ this interpreter), not Whisper's
    llm_path = llm_path or None
    rss_before = peak_rss_mb()
    torch.manual_seed(0)
    if objective == "embedlink":   # EmbedLink needs only the embedding table
        emb = EmbeddingTable(llm_path)
        projector = BridgeFormer(ProjectorConfig(llm_dim=emb.dim))
        trainer = Trainer(projector, TrainConfig(objective="embedlink", embedlink_epochs=epochs,
                                                 max_steps=max_steps),
                          embeddings=emb, show_progress_bar=False)
        params = None
    else:
        llm = FrozenLLM(llm_path, threads=threads)
        projector = BridgeFormer(ProjectorConfig(llm_dim=llm.dim))
        trainer = Trainer(projector, TrainConfig(objective="ce", ce_epochs=epochs, lr=1e-3,
                                                 max_steps=max_steps),
                          llm=llm, prompt=PromptBuilder(llm.tokenizer,
                                                        PromptConfig(transcript_hint=False)),
                          show_progress_bar=False)
        params = sum(p.numel() for p in llm.model.parameters())
    result = trainer.fit(items, [])
    stage = result.stages[0]
    steps_per_epoch = math.ceil(len(items) / 16)
    measured_epoch = stage.steps >= steps_per_epoch
    return {"objective": objective, "utterances": len(items), "steps": stage.steps,
            "llm_parameters": params, "step_s": round(stage.step_s, 4),
            "epoch_s": round(stage.epoch_s if measured_epoch else stage.step_s * steps_per_epoch,
                             3),
            "epoch_measured": measured_epoch,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_training_mb": round(rss_before)}


def in_subprocess(module: str, *args) -> dict:
    """``python -m module args...`` in a fresh process (its memory its own); the JSON object its
    last line of output prints."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {module} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pair(n: int, epochs: int, threads: int, llm_path: str = "", ce_max_steps: int = 0) -> dict:
    def trainer(objective, max_steps):    # each in a fresh process: its memory its own
        return in_subprocess("tinyalign_ros.bench.cost", objective, n, epochs, threads,
                             llm_path, max_steps)

    out = {"embedlink": trainer("embedlink", 0), "ce": trainer("ce", ce_max_steps)}
    out["ce_over_embedlink_per_step"] = round(out["ce"]["step_s"] / out["embedlink"]["step_s"], 2)
    out["ce_over_embedlink_per_epoch"] = round(out["ce"]["epoch_s"] /
                                               out["embedlink"]["epoch_s"], 2)
    return out


def convergence(base, user, embeddings, systems, objective: str, epochs: int,
                val_n: int, log=print) -> dict:
    """Adapt ``base`` to ``user`` with one objective (the K sweep's recipe, quality.
    EMBEDLINK_ADAPT, with this objective and number of epochs; no hint); validation WER after
    every epoch, its time excluded."""
    import dataclasses

    from .quality import EMBEDLINK_ADAPT, adapt, as_projector

    val = user.test[:val_n]
    config = dataclasses.replace(EMBEDLINK_ADAPT, objective=objective, epochs=epochs)
    curve, paused = [], [0.0]
    t0 = time.perf_counter()

    def on_epoch(p, model):
        if "val_loss" not in p:
            return
        t_eval = time.perf_counter()
        was_training = model.training
        model.eval()
        curve.append({"epoch": len(curve) + 1,
                      "train_s": round(t_eval - t0 - paused[0], 2),
                      "val_wer": round(systems.wer("aligned", val, as_projector(model, base)),
                                       4)})
        model.train(was_training)
        paused[0] += time.perf_counter() - t_eval

    adapt(base, user.pool, systems.plain, embeddings, config, progress=on_epoch)
    if not curve:
        raise RuntimeError(f"convergence {objective}: the trainer reported no epoch")
    best = min(curve, key=lambda c: c["val_wer"])
    log(f"  convergence {objective}: best val WER {best['val_wer']:.3f} after "
        f"{best['train_s']:.1f} s of training (epoch {best['epoch']})")
    return {"objective": objective, "train_utterances": len(user.pool), "validation": len(val),
            "curve": curve, "best_val_wer": best["val_wer"], "time_to_best_s": best["train_s"]}


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(training_numbers(a[0], int(a[1]), int(a[2]), int(a[3]),
                                      a[4] if len(a) > 4 else "",
                                      int(a[5]) if len(a) > 5 else 0)))
