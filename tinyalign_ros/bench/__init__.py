"""`tinyalign bench`: one command, one report (results/bench.json, bench.md, PNG plots).

Sections (each documented in its module):
  quality     per user (a real speaker + synthetic hard speakers) and system: Whisper, cascade,
              true-text ceiling, aligned base, adapted on K utterances, with/without the
              transcript hint; held-out sentences in the base voices; 20 robot intents
  cost        EmbedLink vs cross-entropy training, default LLM and a 1 B-class LLM; time to the
              best validation WER when adapting to the real speaker
  footprint   projector variants (full / shared / pruned / int8) and LLM fp32 vs int8
  latency     end of speech -> first token / full response for a 3 s command, by stage
  design      (not run by default: about an hour) the base recipe's design choices one at a
              time: T and text mapping, padding/masking, depth, loss weights, dropout, time
              masking, amount of speech
``--quick`` runs every section on a few utterances (for CI: it proves the command works; its
numbers are too small to read). Asserts nothing about the numbers.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class BenchConfig:
    threads: int = 2
    repeats: int = 5
    real_pool: int = 100
    real_test: int = 40
    synthetic_users: tuple = ("croaky", "whisper", "slow_telephone")
    synthetic_pool: int = 100
    synthetic_test: int = 25
    heldout_test: int = 40
    ks: tuple = (10, 25, 50, 100)
    hint_ks: tuple = (50,)
    intents_limit: int = 0                 # 0: all 40 utterances x 2 voices
    max_new_tokens: int = 32
    cost_utterances: int = 64
    cost_epochs: int = 2
    one_b: bool = True                     # time a 1 B-class LLM too
    one_b_ce_steps: int = 2
    convergence_k: int = 50
    convergence_val: int = 15
    convergence_epochs: dict = field(default_factory=lambda: {"embedlink": 10, "ce": 3})
    footprint_corpus: int = 1500
    footprint_epochs: int = 3
    design_corpus: int = 1500
    design_epochs: int = 8
    design_variants: tuple = ()            # names from design.VARIANTS; () = all
    sections: tuple = ("quality", "cost", "footprint", "latency")

    @classmethod
    def quick(cls) -> "BenchConfig":
        return cls(repeats=2, real_pool=10, real_test=4, synthetic_users=("croaky",),
                   synthetic_pool=10, synthetic_test=4, heldout_test=4, ks=(10,), hint_ks=(10,),
                   intents_limit=6, max_new_tokens=16, cost_utterances=16, cost_epochs=1,
                   one_b=False, convergence_k=10, convergence_val=3,
                   convergence_epochs={"embedlink": 2, "ce": 1}, footprint_corpus=40,
                   footprint_epochs=1, design_corpus=40, design_epochs=1,
                   design_variants=("reference: length pooling, T<=32, 2 layers",
                                    "fixed T=32, padding masked", "time masking 20 %"))


def run(out_dir: Path, config: BenchConfig, mode: str = "full", log=print) -> dict:
    import torch

    from ..core.asr import AsrFrontEnd
    from ..core.checkpoint import load_checkpoint
    from ..core.llm import EmbeddingTable, FrozenLLM
    from ..core.models import default_projector
    from ..core.pipeline import Assistant
    from ..core.prompt import PromptConfig
    from . import cost, design, footprint, latency, quality, speakers

    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    report = {}
    previous = out_dir / "bench.json"
    if set(config.sections) != set(BenchConfig.sections) and previous.is_file():
        # running some sections again: keep the others' results from the last report
        report = json.loads(previous.read_text())
        if report.get("mode") != mode:
            report = {}
    report.update({"mode": mode, "config": asdict(config), "machine": {
        "cpu_threads": config.threads, "platform": platform.platform(),
        "torch": torch.__version__}, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    report.setdefault("section_wall_s", {})
    asr = AsrFrontEnd(cpu_threads=config.threads)
    llm = FrozenLLM(threads=config.threads)
    embeddings = EmbeddingTable()
    base, base_meta = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
    report["base_projector"] = {"version": base_meta.version, "file": str(default_projector()),
                                "metrics": base_meta.metrics}
    plain = Assistant(llm, PromptConfig(), config.max_new_tokens)
    hinted = Assistant(llm, PromptConfig(transcript_hint=True), config.max_new_tokens)
    report["prompt"] = {"prefix_tokens": len(plain.prompt.prefix_ids),
                        "config": plain.prompt.config.to_dict()}
    systems = quality.Systems(plain, hinted, config.max_new_tokens)

    def save():
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        (out_dir / "bench.json").write_text(json.dumps(report, indent=1))

    def bench_users():
        n = max(config.hint_ks, default=0)
        users = [speakers.real_speaker(asr, config.real_pool, config.real_test, n)]
        users += [speakers.synthetic_speaker(name, asr, config.synthetic_pool,
                                             config.synthetic_test, transcribed_pool=n)
                  for name in config.synthetic_users]
        return users + [speakers.heldout_base_voices(asr, config.heldout_test)]

    def quality_section():
        users = bench_users()
        report["quality"] = [quality.user_quality(u, systems, base, embeddings, config.ks,
                                                  config.hint_ks, log) for u in users]
        save()
        report["intents"] = quality.intent_quality(asr, systems, base, limit=config.intents_limit,
                                                   log=log)

    def hint_adaptation_section():
        """Only the CE+hint adaptation rows, added to an existing quality section."""
        if not report.get("quality"):
            raise RuntimeError("run the quality section first")
        rows = {row["user"]: row for row in report["quality"]}
        for user in bench_users():
            if user.name in rows and user.pool:
                rows[user.name].update(quality.hint_adaptation(user, systems, base,
                                                               config.hint_ks, log))

    def cost_section():
        c = report["cost"] = {"default_llm": cost.pair(config.cost_utterances,
                                                       config.cost_epochs, config.threads)}
        log(f"  default LLM: CE/EmbedLink {c['default_llm']['ce_over_embedlink_per_epoch']}x "
            f"per epoch")
        save()
        if config.one_b:
            path = cost.random_llm(cost.ONE_B_SHAPE, "random-llama-1b")
            c["1b_random_llm"] = cost.pair(config.cost_utterances, config.cost_epochs,
                                           config.threads, str(path), config.one_b_ce_steps)
            log(f"  1B LLM: CE/EmbedLink {c['1b_random_llm']['ce_over_embedlink_per_epoch']}x "
                f"per epoch")
            save()
        real = speakers.real_speaker(asr, config.convergence_k, config.convergence_val)
        c["convergence"] = [cost.convergence(base, real, embeddings, llm, plain.prompt, systems,
                                             objective, epochs, config.convergence_val, log)
                            for objective, epochs in config.convergence_epochs.items()]

    def footprint_section():
        from ..recipe import corpus_features

        heldout = speakers.heldout_base_voices(asr, config.heldout_test)
        items = corpus_features(asr, config.footprint_corpus, 0, log=log)
        report["footprint"] = {
            "test": heldout.name, "test_utterances": len(heldout.test),
            "train_utterances": len(items), "epochs": config.footprint_epochs,
            "projector": footprint.projector_variants(items, heldout.test, systems, embeddings,
                                                      base, config.footprint_epochs, log),
            "llm": footprint.llm_variants(heldout.test, base, config.threads,
                                          config.max_new_tokens, log)}

    def latency_section():
        report["latency"] = latency.latency(config.threads, config.repeats, llm, asr)

    def design_section():
        report["design"] = design.design(
            asr, systems, embeddings, speakers.heldout_base_voices(asr, config.heldout_test),
            speakers.real_speaker(asr, 0, config.real_test), config.design_corpus,
            config.design_epochs, config.design_variants, config.threads, log)

    sections = {"quality": quality_section, "hint-adaptation": hint_adaptation_section,
                "cost": cost_section, "footprint": footprint_section,
                "latency": latency_section, "design": design_section}
    unknown = set(config.sections) - set(sections)
    if unknown:
        raise ValueError(f"unknown bench sections {sorted(unknown)}; known: {sorted(sections)}")
    report.setdefault("errors", {})
    for name in config.sections:
        log(f"{name} ...")
        t0 = time.perf_counter()
        report["errors"].pop(name, None)
        try:
            sections[name]()
        except Exception as exc:   # one failed section must not lose the others' hours
            import traceback

            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} FAILED:\n{traceback.format_exc()}")
        report["section_wall_s"][name] = round(time.perf_counter() - t0, 1)
        save()
    from .report import markdown, plots

    report["plots"] = plots(report, out_dir)
    save()
    (out_dir / "bench.md").write_text(markdown(report))
    if report["errors"]:
        raise BenchError(f"sections failed: {report['errors']} (the rest is in {out_dir})")
    return report


class BenchError(RuntimeError):
    pass
