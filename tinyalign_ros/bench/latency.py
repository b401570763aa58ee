"""Inference: from the end of speech to the first response token and to the whole response,
for a ~3 s spoken command (a real recording), split into its stages.

  vad wait      audio time from the end of the last voiced window (the graph's speech_end) to
                the VAD's decision that speech ended (its min_silence_s; a parameter), plus
                its compute on the last window
  encoder       the variable-length Whisper encoder (aligned path) / CTranslate2 padded window
  asr           the faster-whisper transcript (the ASR node makes it for logs, hints and the
                cascade; the aligned path does not need to wait for it). The ASR node starts it
                on the VAD's early segment (vad_speculate_after_s into the silence), so for the
                paths that need it (cascade, hybrid) it overlaps the rest of the VAD's wait
  projector     BridgeFormer
  prefill       the audio tokens + prompt suffix after the cached few-shot prefix
  first token   prefill + the first greedy step; decode = the rest of the response
Medians of repeated runs, in one process (the graph adds DDS transport: see make demo).
"""
from __future__ import annotations

import statistics
import time

import numpy as np

COMMAND = "/usr/share/pocketsphinx/test/data/goforward.raw"   # 2.8 s, real speech


def _median(fn, repeats: int):
    fn()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def vad_end_delay(audio: np.ndarray) -> dict:
    """Stream the command + 1.5 s of silence through the VAD (the ASR node's defaults) in 32 ms
    chunks; how long after the end of the last voiced window (audio time) the early segment
    and the utterance are out, and the VAD's compute per chunk."""
    from ..core.speech.audio import SAMPLE_RATE
    from ..core.speech.vad import WINDOW, StreamingVad

    early_at = []
    vad = StreamingVad(on_early=lambda seg: early_at.append((fed, seg)))
    stream = np.concatenate([audio, np.zeros(int(1.5 * SAMPLE_RATE), np.float32)])
    compute = []
    for i in range(0, stream.size, WINDOW):
        fed = i + WINDOW
        t0 = time.perf_counter()
        segments = vad.accept(stream[i:i + WINDOW])
        compute.append(time.perf_counter() - t0)
        if segments:
            seg = segments[0]
            early_fed = [f for f, e in early_at if e.key == seg.key]
            if not early_fed:
                raise RuntimeError("the VAD closed an utterance it never announced early")
            end = seg.speech_end_sample
            return {"vad_wait_s": round((fed - end) / SAMPLE_RATE, 3),
                    "vad_early_wait_s": round((early_fed[0] - end) / SAMPLE_RATE, 3),
                    "vad_window_compute_s": round(statistics.median(compute), 5),
                    "segment_s": round(seg.duration_s, 2)}
    raise RuntimeError("the VAD never closed the utterance")


def latency(threads: int, repeats: int, llm=None, asr=None) -> dict:
    """``llm`` / ``asr`` (a variable-length AsrFrontEnd): reuse the caller's, if loaded.
    The aligned path measured is the audio-only one (no transcript hint), which need not wait
    for the ASR transcript; with the hint (the serving default) a response waits for it too:
    add ``asr_transcript_s`` to the encoder's time."""
    import torch

    from ..core.assistant.checkpoint import load_checkpoint
    from ..core.assistant.llm import FrozenLLM
    from ..core.assistant.lora import no_adapter
    from ..core.assistant.pipeline import Assistant
    from ..core.assistant.prompt import PromptConfig
    from ..core.models import default_projector
    from ..core.speech.asr import AsrFrontEnd
    from ..core.speech.audio import load_audio

    torch.set_num_threads(threads)
    audio = load_audio(COMMAND)
    out = {"command_s": round(audio.size / 16000, 2), "threads": threads}
    out.update(vad_end_delay(audio))
    var = asr if asr is not None and asr.encoder == "var" else \
        AsrFrontEnd(cpu_threads=threads, encoder="var")
    ct2 = AsrFrontEnd(cpu_threads=threads, encoder="ct2")
    out["encoder_s"], feats = _median(lambda: var.encode(audio), repeats)
    out["encoder_ct2_padded_s"], _ = _median(lambda: ct2.encode(audio), repeats)
    out["asr_transcript_s"], _ = _median(lambda: var.transcribe(audio), repeats)
    llm = llm or FrozenLLM(threads=threads)
    assistant = Assistant(llm, PromptConfig(transcript_hint=False), max_new_tokens=32)
    base = load_checkpoint(default_projector(), var.model_id, llm.model_id)
    prompt = assistant.prompt_for(base)   # the prompt the base is served with
    out["projector_s"], tokens = _median(lambda: assistant.project(feats, base), repeats)
    with llm.lock, no_adapter(llm):
        # the prefix's KV cache, as the assistant keeps it (computed once per prompt)
        _, prefix_cache = llm.prefill(llm.embed_ids(prompt.prefix_ids).unsqueeze(0))
        suffix = llm.embed_ids(prompt.suffix_ids())
        middle = torch.cat([tokens, suffix])[None]
        out["prefill_s"], _ = _median(lambda: llm.prefill(middle, prefix_cache), repeats)
        full = torch.cat([llm.embed_ids(prompt.prefix_ids), tokens, suffix])[None]
        out["prefill_uncached_prefix_s"], _ = _median(lambda: llm.prefill(full), repeats)
    out["prompt_prefix_tokens"] = len(prompt.prefix_ids)
    # a fixed-length response so decode speed is comparable: the cascade's on the true text
    _, reply = _median(lambda: assistant.respond_text(
        "please go to the kitchen and bring me the red cup", max_new_tokens=32), repeats)
    g = reply.generation
    out["first_step_s"] = round(g.first_token_s - g.prefill_s, 4)
    out["tokens"] = len(g.token_ids)
    out["tokens_per_s"] = round(g.tokens_per_s, 2)
    out["decode_rest_s"] = round(g.decode_s - out["first_step_s"], 3)
    out["end_of_speech_to_first_token_s"] = round(
        out["vad_wait_s"] + out["encoder_s"] + out["projector_s"] + out["prefill_s"] +
        out["first_step_s"], 3)
    out["end_of_speech_to_full_response_s"] = round(
        out["end_of_speech_to_first_token_s"] + out["decode_rest_s"], 3)
    # the cascade (and any path that waits for the transcript): the ASR node's work (features +
    # transcript) starts on the early segment, and the response waits for whichever of it and
    # the VAD's decision comes last; then the text prompt's prefill and first step
    out["cascade_first_token_s"] = round(g.first_token_s, 4)
    out["end_of_speech_to_first_token_cascade_s"] = round(
        max(out["vad_wait_s"], out["vad_early_wait_s"] + out["encoder_s"] +
            out["asr_transcript_s"]) + out["cascade_first_token_s"], 3)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
