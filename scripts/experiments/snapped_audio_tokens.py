"""Experiment (not part of the product): the audio-only mode with the projector's tokens snapped
to the LLM's nearest token embedding (cosine) before they enter, against the continuous tokens
(the product) and the tokens read back as text with no LLM (the bench's "read WER").

    source scripts/env.sh && PYTHONPATH=. python scripts/experiments/snapped_audio_tokens.py \
        PROJECTOR.safetensors [N]
"""
import sys
import time

import torch

from tinyalign_ros.bench.footprint import read_text
from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import FrozenLLM
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.core.models import data_dir
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.corpus.build import Corpus

def setup(argv):
    """(n, asr, llm, projector, corpus) of ``PROJECTOR.safetensors [N]``, 2 threads (also
    snapped_hybrid.py's)."""
    n = int(argv[2]) if len(argv) > 2 else 100
    torch.set_num_threads(2)
    asr = AsrFrontEnd(cpu_threads=2)
    llm = FrozenLLM(threads=2)
    proj = load_checkpoint(argv[1], asr.model_id, llm.model_id)
    return n, asr, llm, proj, Corpus(data_dir() / "corpora" / "main")


def main():
    n, asr, llm, proj, corpus = setup(sys.argv)
    assistant = Assistant(llm, PromptConfig(transcript_hint=False), 40, 2)
    for split in ("eval-sentences", "eval-voice"):
        items = corpus.items(asr.model_id, split, limit=n)
        t0 = time.perf_counter()
        read = [read_text(proj.model, it.features, llm.embedding.weight, llm.tokenizer)
                for it in items]
        replies = {}
        for mode in ("continuous", "snapped"):   # the product's setting (audio_only_tokens)
            assistant.audio_only_tokens = mode
            replies[mode] = [assistant.respond_aligned(proj, it.features, None).text
                             for it in items]
        continuous, snapped = replies["continuous"], replies["snapped"]
        refs = [it.text for it in items]
        print(f"{split} ({len(items)} utt, {time.perf_counter() - t0:.0f} s): read "
              f"{wer(refs, read):.3f}, continuous {wer(refs, continuous):.3f}, snapped "
              f"{wer(refs, snapped):.3f}", flush=True)
        for x, r, c, s in list(zip(refs, read, continuous, snapped))[:6]:
            print(f"    REF  {x}\n    READ {r}\n    CONT {c}\n    SNAP {s}")


if __name__ == "__main__":
    main()
