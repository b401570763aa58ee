"""`tinyalign bench`: one command, one report (results/bench.json, bench.md, PNG plots).

Sections (each documented in its module):
  quality     per user (a real speaker + synthetic hard speakers) and system: Whisper, cascade,
              true-text ceiling, aligned base, adapted on K utterances, with/without the
              transcript hint; held-out sentences in the base voices; 20 robot intents
  cost        EmbedLink vs cross-entropy training, default LLM and a 1 B-class LLM; time to the
              best validation WER when adapting to the real speaker
  footprint   projector variants (full / shared / pruned / int8) and LLM fp32 vs int8
  latency     end of speech -> first token / full response for a 3 s command, by stage
  hint-adaptation  (only when named) the quality section's CE+hint rows again
  adapted-cascade  (in quality; alone only when named) the recogniser adapted per user (a LoRA
              on Whisper's decoder, the adaptation node's recipe): its WER, the adapted cascade,
              and with the adapted projector (bench/recognizer.py)
  design      (not run by default: about an hour) the base recipe's design choices one at a
              time: T and text mapping, padding/masking, depth, loss weights, dropout, time
              masking, amount of speech
  corpus-curve  (not run by default; needs `tinyalign corpus build`) quality against the amount
              of corpus speech, and leave-one-engine-out
``--quick`` runs every section on a few utterances (for CI: it proves the command works; its
numbers are too small to read). Asserts nothing about the numbers.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class BenchConfig:
    threads: int = 2
    repeats: int = 5
    real_pool: int = 100
    real_test: int = 40
    synthetic_users: tuple = ("croaky", "whisper", "slow_telephone")
    synthetic_pool: int = 100
    # 75, not 25: on 25 utterances (~150 words) a recogniser adapter's WER moved by 8 points
    # with nothing but its training length (docs/RECOGNIZER.md, "The refit")
    synthetic_test: int = 75
    heldout_test: int = 40
    heldout_voice: bool = True             # the corpus's held-out voice family as a user
    ks: tuple = (10, 25, 50, 100)
    hint_ks: tuple = (50,)
    recognizer: bool = True                # the adapted cascade rows (bench/recognizer.py)
    recognizer_users: tuple = ()           # the users that get them; () = every user with a pool
    recognizer_epochs: int = 0             # 0: the adaptation node's (AdaptConfig)
    recognizer_lora_on: str = ""           # "": the adaptation node's (AdaptConfig)
    recognizer_memory_users: int = 100     # adapted users the ASR node's table holds
    intents_limit: int = 0                 # 0: all 40 utterances x 2 voices
    # 32, not the served 40 (core.assistant.pipeline.GenerationConfig): every test sentence is
    # far shorter (a repeat ends at its line break), and docs/BENCHMARKS.md was measured at 32
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
    corpus_dir: str = ""                   # built corpus (tinyalign corpus build); "" = default
    curve_sizes: tuple = (2500, 5000, 10000, 20000)
    curve_epochs: int = 8
    curve_leave_out: tuple = ("kokoro", "espeak", "rhvoice")
    curve_eval: int = 100                  # utterances per corpus test split
    curve_layers: int = 1                  # the rows' projector depth
    sections: tuple = ("quality", "cost", "footprint", "recognizer-memory", "latency")
    base_projector: str = ""               # score this checkpoint as the base ("" = the shipped)

    adapt_epochs: int = 0                  # 0: the recipes' (quality.EMBEDLINK_ADAPT's 15,
    hint_adapt_epochs: int = 0             #    HINT_ADAPT's 2); quick mode only

    @classmethod
    def quick(cls) -> "BenchConfig":
        """Every section at its smallest: one user with an adaptation pool (a hard synthetic
        speaker, where recogniser adaptation has something to fix), 2 test utterances per
        user, answers of at most 8 tokens, a few epochs, two design variants (the suite runs
        it; its quality section took 40.5 s instead of 55.5 s with 4 and 16, s16)."""
        return cls(repeats=1, real_pool=0, real_test=2, synthetic_users=("slow_telephone",),
                   synthetic_pool=10, synthetic_test=2, heldout_test=2, ks=(10,), hint_ks=(10,),
                   recognizer_epochs=2, adapt_epochs=3, hint_adapt_epochs=1,
                   heldout_voice=False, intents_limit=2, max_new_tokens=8, cost_utterances=8,
                   cost_epochs=1, one_b=False, convergence_k=8, convergence_val=2,
                   convergence_epochs={"embedlink": 2, "ce": 1}, footprint_corpus=40,
                   footprint_epochs=1, recognizer_memory_users=3, design_corpus=40, design_epochs=1,
                   design_variants=("fixed T=32, padding masked", "time masking 20 %"))

    def recipes(self) -> tuple:
        """(the K sweep's, the CE+hint rows') adaptation recipes, with this run's epochs."""
        import dataclasses

        from .quality import EMBEDLINK_ADAPT, HINT_ADAPT

        sweep, hint = EMBEDLINK_ADAPT, HINT_ADAPT
        if self.adapt_epochs:
            sweep = dataclasses.replace(sweep, epochs=self.adapt_epochs)
        if self.hint_adapt_epochs:
            hint = dataclasses.replace(hint, epochs=self.hint_adapt_epochs)
        return sweep, hint


@dataclass
class BenchContext:
    """What the sections share, loaded once per run: the models, the shipped base projector,
    the scored systems, and the report being written (``save`` writes it after each step)."""
    config: BenchConfig
    out_dir: Path
    report: dict
    asr: Any                     # core.speech.asr.AsrFrontEnd (encoder "var": torch)
    llm: Any                     # core.assistant.llm.FrozenLLM
    embeddings: Any              # core.assistant.llm.EmbeddingTable
    base: Any                    # core.assistant.checkpoint.Projector
    systems: Any                 # quality.Systems
    log: Callable[[str], None] = print
    t_start: float = field(default_factory=time.perf_counter)
    _recognizer: Any = None

    def recognizer(self):
        """Whisper in torch (core.speech.whisper_decoder), the process's shared one (as the
        nodes get it), on the ASR front end's torch encoder; loaded on first use."""
        if self._recognizer is None:
            from ..core.speech.whisper_decoder import shared_recognizer

            self._recognizer = shared_recognizer(encoder=getattr(self.asr, "torch_encoder",
                                                                 None))
        return self._recognizer

    def stamp(self) -> None:
        self.report["wall_s"] = round(time.perf_counter() - self.t_start, 1)

    def save(self) -> None:
        self.stamp()
        (self.out_dir / "bench.json").write_text(json.dumps(self.report, indent=1))

    def users(self) -> list:
        """The quality section's users: the real speaker, the synthetic hard speakers, and
        held-out sentences in the base voices (pools transcribed up to the largest K used)."""
        from . import speakers

        c = self.config
        # transcribed: the hint K's pool, and every K's when the recogniser adapts (its gate
        # compares with the transcripts the user was served)
        n = max((*c.hint_ks, *(c.ks if c.recognizer else ())), default=0)
        users = [speakers.real_speaker(self.asr, c.real_pool, c.real_test, n)]
        users += [speakers.synthetic_speaker(name, self.asr, c.synthetic_pool, c.synthetic_test,
                                             transcribed_pool=n) for name in c.synthetic_users]
        if c.heldout_voice:
            users.append(speakers.heldout_voice_family(self.asr, c.synthetic_pool,
                                                       c.synthetic_test, transcribed_pool=n))
        users.append(speakers.heldout_base_voices(self.asr, c.heldout_test))
        # every transcript is made: training follows, which runs slower beside
        # faster-whisper (AsrFrontEnd.release_transcriber); the adaptation node's process
        # has none
        self.asr.release_transcriber()
        return users

    def heldout(self):
        from . import speakers

        return speakers.heldout_base_voices(self.asr, self.config.heldout_test)


def load(out_dir: Path, config: BenchConfig, mode: str, log=print) -> BenchContext:
    """Load the models and the base projector; start the report (from the previous one when
    only some sections run again, so the others' results are kept)."""
    import torch

    from ..core.assistant.checkpoint import load_checkpoint
    from ..core.assistant.llm import EmbeddingTable, FrozenLLM
    from ..core.models import default_projector
    from ..core.speech.asr import AsrFrontEnd
    from .quality import Systems

    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    report = {}
    previous = out_dir / "bench.json"
    if set(config.sections) != set(BenchConfig.sections) and previous.is_file():
        report = json.loads(previous.read_text())
        if report.get("mode") != mode:
            report = {}
    report.update({"mode": mode, "config": asdict(config), "machine": {
        "cpu_threads": config.threads, "platform": platform.platform(),
        "torch": torch.__version__}, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    report.setdefault("section_wall_s", {})
    report.setdefault("errors", {})
    asr = AsrFrontEnd(cpu_threads=config.threads)
    llm = FrozenLLM(threads=config.threads)
    base_file = config.base_projector or default_projector()
    base = load_checkpoint(base_file, asr.model_id, llm.model_id)
    systems = Systems.on(llm, config.max_new_tokens)
    report["base_projector"] = {"version": base.version, "file": str(base_file),
                                "metrics": base.meta.metrics}
    aligned = systems.plain.prompt_for(base)
    report["prompt"] = {"prefix_tokens": len(systems.plain.prompt.prefix_ids),
                        "config": systems.plain.prompt.config.to_dict(),
                        # the base is served with the template it recorded (see quality)
                        "aligned": {"prefix_tokens": len(aligned.prefix_ids),
                                    "config": aligned.config.to_dict()}}
    return BenchContext(config, out_dir, report, asr, llm, EmbeddingTable(), base, systems, log,
                        t_start)


# ---- sections: each fills its part of ctx.report (documented in its module)

def quality_section(ctx: BenchContext) -> None:
    """WER per user and system, the K sweep and the CE+hint rows; then the robot intents."""
    from . import quality

    c = ctx.config
    ctx.report["quality"] = []
    for user in ctx.users():
        sweep, hint = c.recipes()
        row = quality.user_quality(user, ctx.systems, ctx.base, ctx.embeddings, c.ks, c.hint_ks,
                                   ctx.log, sweep, hint)
        ctx.report["quality"].append(row)
        if _wants_recognizer(ctx, user):
            row.update(_recognizer_rows(ctx, user, row))
        ctx.save()
    ctx.report["intents"] = quality.intent_quality(ctx.asr, ctx.systems, ctx.base,
                                                   limit=c.intents_limit, log=ctx.log)


def hint_adaptation_section(ctx: BenchContext) -> None:
    """Only the CE+hint adaptation rows, measured again into an existing quality section."""
    from . import quality

    if not ctx.report.get("quality"):
        raise RuntimeError("run the quality section first")
    rows = {row["user"]: row for row in ctx.report["quality"]}
    for user in ctx.users():
        if user.name in rows and user.pool:
            rows[user.name].update(quality.hint_adaptation(
                user, ctx.systems, ctx.base, ctx.embeddings, ctx.config.hint_ks, ctx.log,
                ctx.config.recipes()[1]))


def _wants_recognizer(ctx: BenchContext, user) -> bool:
    c = ctx.config
    return bool(c.recognizer and user.pool and
                (not c.recognizer_users or user.name in c.recognizer_users))


def _recognizer_rows(ctx: BenchContext, user, row: dict) -> dict:
    from .recognizer import recognizer_quality

    c = ctx.config
    return recognizer_quality(user, row, ctx.recognizer(), ctx.systems, ctx.base,
                              ctx.embeddings, c.ks, c.hint_ks, c.recognizer_epochs, ctx.log,
                              c.recipes()[1], c.recognizer_lora_on)


def adapted_cascade_section(ctx: BenchContext) -> None:
    """Only the adapted-cascade rows (bench/recognizer.py), measured again into an existing
    quality section (after its hint-adaptation rows, which a refused recogniser reuses)."""
    if not ctx.report.get("quality"):
        raise RuntimeError("run the quality section first")
    rows = {row["user"]: row for row in ctx.report["quality"]}
    for user in ctx.users():
        if user.name in rows and _wants_recognizer(ctx, user):
            rows[user.name].update(_recognizer_rows(ctx, user, rows[user.name]))
            ctx.save()


def cost_section(ctx: BenchContext) -> None:
    """EmbedLink vs cross-entropy training time and memory (default LLM, a 1 B-class LLM), and
    the time to the best validation WER adapting the base to the real speaker."""
    from . import cost, speakers

    c = ctx.config
    out = ctx.report["cost"] = {"default_llm": cost.pair(c.cost_utterances, c.cost_epochs,
                                                         c.threads)}
    ctx.log(f"  default LLM: CE/EmbedLink {out['default_llm']['ce_over_embedlink_per_epoch']}x "
            f"per epoch")
    ctx.save()
    if c.one_b:
        path = cost.random_llm(cost.ONE_B_SHAPE, "random-llama-1b")
        out["1b_random_llm"] = cost.pair(c.cost_utterances, c.cost_epochs, c.threads, str(path),
                                         c.one_b_ce_steps)
        ctx.log(f"  1B LLM: CE/EmbedLink {out['1b_random_llm']['ce_over_embedlink_per_epoch']}x"
                f" per epoch")
        ctx.save()
    real = speakers.real_speaker(ctx.asr, c.convergence_k, c.convergence_val)
    ctx.asr.release_transcriber()       # as in BenchContext.users
    out["convergence"] = [cost.convergence(ctx.base, real, ctx.embeddings, ctx.systems,
                                           objective, epochs, c.convergence_val, ctx.log)
                          for objective, epochs in c.convergence_epochs.items()]


def footprint_section(ctx: BenchContext) -> None:
    """Projector variants (full / shared / pruned / int8) and the LLM fp32 vs int8: size for
    quality on held-out sentences."""
    from ..corpus.recipe import corpus_features
    from . import footprint

    c, heldout = ctx.config, ctx.heldout()
    items = corpus_features(ctx.asr, c.footprint_corpus, 0, log=ctx.log)
    ctx.report["footprint"] = {
        "test": heldout.name, "test_utterances": len(heldout.test),
        "train_utterances": len(items), "epochs": c.footprint_epochs,
        "projector": footprint.projector_variants(items, heldout.test, ctx.systems,
                                                  ctx.embeddings, ctx.base, c.footprint_epochs,
                                                  ctx.log),
        "llm": footprint.llm_variants(heldout.test, ctx.base, c.threads, c.max_new_tokens,
                                      ctx.log)}


def recognizer_memory_section(ctx: BenchContext) -> None:
    """The ASR node's memory per adapted user (an adapter of the node recipe's shape), each
    user's transcript made once from a held-out utterance; in a fresh process."""
    from ..core.learning.adapt import AdaptConfig
    from . import footprint

    c = ctx.config
    ctx.report["recognizer_memory"] = footprint.recognizer_users(
        c.recognizer_lora_on or AdaptConfig().recognizer_lora_on, c.recognizer_memory_users,
        str(ctx.heldout().test_audio[0]), c.threads, ctx.log)


def latency_section(ctx: BenchContext) -> None:
    """End of speech -> first token / full response for a 3 s command, by stage."""
    from . import latency

    ctx.report["latency"] = latency.latency(ctx.config.threads, ctx.config.repeats, ctx.llm,
                                            ctx.asr)


def design_section(ctx: BenchContext) -> None:
    """The base recipe's design choices one at a time (about an hour; only when named)."""
    from . import design, speakers

    c = ctx.config
    ctx.report["design"] = design.design(
        ctx.asr, ctx.systems, ctx.embeddings, ctx.heldout(),
        speakers.real_speaker(ctx.asr, 0, c.real_test), c.design_corpus, c.design_epochs,
        c.design_variants, c.threads, ctx.log)


def corpus_curve_section(ctx: BenchContext) -> None:
    """Quality against the amount of corpus speech, and leave-one-engine-out (only when
    named; needs `tinyalign corpus build`)."""
    from ..core.models import data_dir
    from ..corpus.build import Corpus
    from . import curve, speakers

    c = ctx.config
    corpus = Corpus(c.corpus_dir or data_dir() / "corpora" / "main")
    ctx.report["corpus_curve"] = curve.corpus_curve(
        corpus, ctx.asr, ctx.systems, ctx.embeddings,
        speakers.real_speaker(ctx.asr, 0, c.real_test), c.curve_sizes, c.curve_epochs,
        c.curve_leave_out, c.curve_eval, c.threads, c.curve_layers, ctx.log)


#: the --sections names, in the order a full report lists them
SECTIONS: dict[str, Callable[[BenchContext], None]] = {
    "quality": quality_section, "hint-adaptation": hint_adaptation_section,
    "adapted-cascade": adapted_cascade_section,
    "cost": cost_section, "footprint": footprint_section,
    "recognizer-memory": recognizer_memory_section, "latency": latency_section,
    "design": design_section, "corpus-curve": corpus_curve_section}


def run_section(ctx: BenchContext, name: str) -> None:
    """One section; a failure is recorded in the report, not raised (one failed section must
    not lose the others' hours)."""
    import traceback

    ctx.log(f"{name} ...")
    t0 = time.perf_counter()
    ctx.report["errors"].pop(name, None)
    try:
        SECTIONS[name](ctx)
    except Exception as exc:
        ctx.report["errors"][name] = f"{type(exc).__name__}: {exc}"
        ctx.log(f"  {name} FAILED:\n{traceback.format_exc()}")
    ctx.report["section_wall_s"][name] = round(time.perf_counter() - t0, 1)
    ctx.save()


def run(out_dir: Path, config: BenchConfig, mode: str = "full", log=print) -> dict:
    """Run ``config.sections`` into out_dir/bench.json, bench.md and the plots; BenchError
    (after writing everything) when a section failed."""
    unknown = set(config.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown bench sections {sorted(unknown)}; known: {sorted(SECTIONS)}")
    ctx = load(out_dir, config, mode, log)
    for name in config.sections:
        run_section(ctx, name)
    ctx.stamp()
    write_report(ctx.report, out_dir)
    if ctx.report["errors"]:
        raise BenchError(f"sections failed: {ctx.report['errors']} (the rest is in {out_dir})")
    return ctx.report


def write_report(report: dict, out_dir: Path) -> None:
    """The plots, bench.json and bench.md of ``report`` in out_dir."""
    from .report import markdown, plots

    report["plots"] = plots(report, out_dir)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1))
    (out_dir / "bench.md").write_text(markdown(report))


def render(out_dir: Path) -> dict:
    """bench.md and the plots again from out_dir/bench.json, nothing run (after the report's
    code changed, or to read an older run with today's tables)."""
    path = out_dir / "bench.json"
    if not path.is_file():
        raise BenchError(f"no bench report in {out_dir} (bench.json): run tinyalign bench "
                         f"--out {out_dir} first")
    report = json.loads(path.read_text())
    write_report(report, out_dir)
    return report


class BenchError(RuntimeError):
    pass
