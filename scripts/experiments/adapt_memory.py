#!/usr/bin/env python3
"""Resident memory of one process over repeated adaptation jobs, without ROS (issue 13: is the
adaptation node's growth in `make soak` the recipe's, or the node's?). Logs 60 utterances of
the soak's recording (features of the real encoder, a little noise each), then runs the soak's
job (EmbedLink 2 epochs on the newest 40, scored through the LLM) N times, printing RSS after
each job and release_memory(). Set MALLOC_MMAP_THRESHOLD_ etc. in the environment to compare.

    python scripts/experiments/adapt_memory.py 15
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faults import GOFORWARD  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(jobs: int) -> None:
    import torch

    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.models import default_projector
    from tinyalign_ros.core.assistant.llm import EmbeddingTable, FrozenLLM
    from tinyalign_ros.core.assistant.pipeline import Assistant
    from tinyalign_ros.core.assistant.prompt import PromptConfig
    from tinyalign_ros.core.learning.adapt import AdaptConfig, adapt_user
    from tinyalign_ros.core.learning.store import UtteranceStore
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.nodes.common import release_memory

    torch.set_num_threads(2)
    asr = AsrFrontEnd(cpu_threads=2)
    audio = np.frombuffer(GOFORWARD.read_bytes(), np.int16).astype(np.float32) / 32768
    feats = asr.encode(audio)
    text = asr.transcribe(audio).text
    llm = FrozenLLM(threads=2)
    assistant = Assistant(llm, PromptConfig(transcript_hint=True), max_new_tokens=4)
    emb = EmbeddingTable()
    base = load_checkpoint(default_projector(), asr.model_id, llm.model_id)
    store = UtteranceStore(Path(tempfile.mkdtemp(prefix="adapt-memory-")))
    rng = np.random.default_rng(0)
    for i in range(60):
        store.log(f"u{i}", "soak", feats + 0.01 * rng.standard_normal(feats.shape).astype(
            np.float32), text, 0.95, asr.model_id)
    config = AdaptConfig(objective="embedlink", epochs=2, min_utterances=3, max_utterances=40,
                         require_improvement=False)
    release_memory()
    print(f"before: {rss_mb():.1f} MB", flush=True)
    for j in range(jobs):
        result = adapt_user(store, "soak", base, assistant, emb, asr.model_id, config)
        assert result.success, result.message
        assistant.retire(result.projector)
        result = None
        release_memory()
        print(f"job {j + 1}: {rss_mb():.1f} MB", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
