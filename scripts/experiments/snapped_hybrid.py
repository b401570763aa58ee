"""Experiment (not part of the product): do audio tokens snapped to the LLM's vocabulary help
where the LLM also has the transcript? The audio-only mode gained from snapping (issue 10); the
hybrid (the default aligned mode) and the hinted prompt still take continuous tokens, and the
shipped base's gate calibration shuts its audio out because it makes replies worse.

On the corpus's held-out splits, Whisper's beam-5 transcripts as hints, 40-token replies:
cascade; the hybrid with its learned gate, continuous and snapped (the per-limit table of the
base recipe's calibration for each); the hinted prompt, continuous and snapped.

    source scripts/env.sh && PYTHONPATH=.:scripts/experiments python \
        scripts/experiments/snapped_hybrid.py \
        PROJECTOR.safetensors [N]
"""
import sys
import time

from snapped_audio_tokens import setup   # the same models, projector and corpus
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.metrics import wer
from tinyalign_ros.corpus.base import wer_per_limit

n, asr, llm, proj, corpus = setup(sys.argv)
plain = Assistant(llm, PromptConfig(transcript_hint=False), 40, 2)
hinted = Assistant(llm, PromptConfig(transcript_hint=True), 40, 2)

# the experiment's one change: Assistant.project with the LLM's nearest token embeddings
project = Assistant.project


def snapped_project(self, features, projector):
    return self.llm.snap(project(self, features, projector))


for split in ("eval-sentences", "eval-voice"):
    items = corpus.items(asr.model_id, split, limit=n, with_transcripts=True)
    refs = [it.text for it in items]
    t0 = time.perf_counter()
    cascade = [plain.respond_text(it.transcript).text for it in items]
    out = {}
    for mode in ("continuous", "snapped"):
        Assistant.project = snapped_project if mode == "snapped" else project
        # gate_bias None + confidence None: the learned gate, whatever the confidence
        out[f"hybrid {mode}"] = [plain.respond_hybrid(proj, it.features, it.transcript).text
                                 for it in items]
        out[f"hinted {mode}"] = [hinted.respond_aligned(proj, it.features, it.transcript).text
                                 for it in items]
    Assistant.project = project
    print(f"{split} ({len(items)} utt, {time.perf_counter() - t0:.0f} s): whisper "
          f"{wer(refs, [it.transcript for it in items]):.3f}, cascade {wer(refs, cascade):.3f}, "
          + ", ".join(f"{k} {wer(refs, v):.3f}" for k, v in out.items()), flush=True)
    for mode in ("continuous", "snapped"):
        print(f"  hybrid {mode}, WER per confidence limit: "
              f"{wer_per_limit(items, cascade, out[f'hybrid {mode}'])}", flush=True)
    for i, ref in enumerate(refs[:5]):
        print(f"    REF  {ref}\n    CASC {cascade[i]}\n" + "".join(
            f"    {k[:4].upper()}{k.split()[1][:4].upper()} {v[i]}\n" for k, v in out.items()))
