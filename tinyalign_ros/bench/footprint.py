"""Footprint: size for quality, for the projector and the LLM.

Projector variants, all trained here with the same EmbedLink budget on the base recipe's corpus
(so they differ only in the variant): full, cross-layer shared (one layer's weights applied
twice), magnitude-pruned (50 % of every weight matrix, no retraining), int8 storage, pruned+int8.
Scored on held-out sentences by the LLM's WER and by the "read" WER (each projected vector
replaced by its nearest token embedding, no LLM), which tells projector quality apart even when
the LLM's WER is saturated. LLM: fp32 vs int8 dynamic quantization (size, tokens/s, WER).
"""
from __future__ import annotations

import copy
import io
import time

import torch


def read_text(projector, features, table: torch.Tensor, tokenizer) -> str:
    """The projected tokens read back as the nearest token embeddings (cosine)."""
    with torch.no_grad():
        x = torch.as_tensor(features, dtype=torch.float32).unsqueeze(0)
        tokens, mask, _ = projector(x)
        v = torch.nn.functional.normalize(tokens[0][mask[0]], dim=-1)
        ids = (v @ torch.nn.functional.normalize(table, dim=-1).T).argmax(-1)
    return tokenizer.decode(ids.tolist(), skip_special_tokens=True)


def _checkpoint(model, int8: bool) -> bytes:
    """The model as the checkpoint file it would be stored as (sizes and int8 round trips)."""
    from ..core.assistant.checkpoint import to_bytes
    from .quality import as_projector

    return to_bytes(as_projector(model), int8=int8)


def _sizes(model) -> dict:
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"parameters": model.num_parameters(), "nonzero_parameters": nonzero,
            "fp32_bytes": len(_checkpoint(model, int8=False)),
            "int8_bytes": len(_checkpoint(model, int8=True))}


def _int8_roundtrip(model):
    from ..core.assistant.checkpoint import from_bytes

    return from_bytes(_checkpoint(model, int8=True)).model


def projector_variants(train_items, test, systems, embeddings, base, epochs: int,
                       log=print) -> list[dict]:
    from ..core.metrics import wer
    from ..core.assistant.projector import BridgeFormer, ProjectorConfig, magnitude_prune
    from ..core.learning.train import TrainConfig, Trainer
    from .quality import as_projector

    refs = [it.text for it in test]

    def score(name, model, stored: str, train_s=None, projector=None) -> dict:
        """``projector``: the served value of ``model`` (default: trained here, no prompt)."""
        sizes = _sizes(model)
        reads = [read_text(model, it.features, embeddings.weight, embeddings.tokenizer)
                 for it in test]
        row = {"variant": name, "stored": stored, **sizes,
               "file_bytes": sizes["int8_bytes" if stored == "int8" else "fp32_bytes"],
               "wer": round(systems.wer("aligned", test, projector or as_projector(model)), 4),
               "read_wer": round(wer(refs, reads), 4)}
        if train_s is not None:
            row["train_s"] = round(train_s, 1)
        log(f"  footprint {name}: {row['file_bytes'] / 1e6:.2f} MB, WER {row['wer']:.3f}, "
            f"read WER {row['read_wer']:.3f}")
        return row

    rows = [score("shipped base", base.model, "int8", projector=base)]
    trained = {}
    for name, share in (("full", False), ("shared layers", True)):
        torch.manual_seed(0)
        model = BridgeFormer(ProjectorConfig(llm_dim=embeddings.dim, share_layers=share))
        t0 = time.perf_counter()
        Trainer(model, TrainConfig(objective="embedlink", embedlink_epochs=epochs, lr=1e-3),
                embeddings=embeddings, show_progress_bar=False).fit(train_items, [])
        trained[name] = model.eval()
        rows.append(score(name, model, "fp32", time.perf_counter() - t0))
    pruned = copy.deepcopy(trained["full"])
    magnitude_prune(pruned, 0.5)
    rows.append(score("full, pruned 50 %", pruned, "fp32"))
    rows.append(score("full, int8", _int8_roundtrip(trained["full"]), "int8"))
    rows.append(score("shared layers, int8", _int8_roundtrip(trained["shared layers"]), "int8"))
    rows.append(score("full, pruned 50 % + int8", _int8_roundtrip(pruned), "int8"))
    return rows


def _module_bytes(model) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def llm_variants(test, base, threads: int, max_new_tokens: int, log=print) -> list[dict]:
    """The LLM fp32 and int8, each scored like the quality section (no hint): its fp32 row
    repeats the quality section's ceiling and base WER on the same test."""
    from ..core.assistant.llm import FrozenLLM
    from .quality import Systems

    rows = []
    for int8 in (False, True):
        llm = FrozenLLM(threads=threads, int8=int8)
        systems = Systems.on(llm, max_new_tokens)
        assistant = systems.plain
        gen = assistant.respond_text("please go to the kitchen and bring me the red cup and "
                                     "then come back to the living room", max_new_tokens=32)
        row = {"llm": "int8 dynamic" if int8 else "fp32", "bytes": _module_bytes(llm.model),
               "tokens_per_s": round(gen.generation.tokens_per_s, 2),
               "ceiling_wer": round(systems.wer("ceiling", test), 4),
               "base_wer": round(systems.wer("aligned", test, base), 4)}
        log(f"  LLM {row['llm']}: {row['bytes'] / 1e6:.0f} MB, {row['tokens_per_s']} tok/s, "
            f"ceiling WER {row['ceiling_wer']:.3f}, base aligned WER {row['base_wer']:.3f}")
        rows.append(row)
        del llm, assistant, systems
    return rows


def recognizer_users(lora_on: str, users: int, audio_path: str, threads: int,
                     log=print) -> dict:
    """The ASR node's memory for adapted users: its RecognizerTable holding ``users`` adapters
    of the node recipe's shape (LoRA on ``lora_on``, rank 8, fp16 as published), each user's
    path run once on the audio file (so every lazily made state exists). The shared torch
    decoder is counted apart: it loads with the first adapter and goes with the last.
    Measured in a fresh process, so that the RSS growth is the table's, not memory that an
    earlier section freed and the allocator hands out again."""
    from .cost import in_subprocess

    out = in_subprocess("tinyalign_ros.bench.footprint", "recognizer-users", lora_on, users,
                        audio_path, threads)
    log(f"  ASR node, adapted users ({lora_on}): adapter {out['adapter_bytes'] / 1e3:.0f} KB, "
        f"{out['tensor_bytes_per_user'] / 1e6:.2f} MB of tensors and {out['per_user_mb']:.2f} MB "
        f"RSS per user ({users} users: +{out['all_users_mb']:.1f} MB, the first with the shared "
        f"decoder +{out['first_user_mb']:.1f} MB)")
    return out


def _recognizer_users_here(lora_on: str, users: int, audio_path: str, threads: int) -> dict:
    """recognizer_users' measurement, in this (fresh) process."""
    from ..core.learning.adapt import AdaptConfig
    from ..core.learning.recognizer_adapt import random_adapter
    from ..core.speech.audio import load_audio
    from ..core.speech.recognizers import RecognizerTable
    from ..core.speech.whisper_decoder import WhisperRecognizer
    from ..core.memory import release_memory
    from .cost import rss_mb

    def live_mb() -> float:
        """RSS once freed memory is given back: what is held, not what the allocator kept
        from an utterance's transient buffers."""
        release_memory()
        return rss_mb()

    torch.set_num_threads(threads)
    recognizer = WhisperRecognizer()     # the encoder the ASR node shares with its table
    audio = load_audio(audio_path)
    config = AdaptConfig(recognizer_lora_on=lora_on).recognizer_config()
    # random weights: the memory of a trained adapter, and a real path through it
    data = random_adapter(recognizer, config, seed=0, scale=0.01).to_bytes()
    table = RecognizerTable()
    table.attach(recognizer.model_path, recognizer.encoder)
    recognizer.transcribe(audio)    # the encoder's first-run allocations (the ASR node's too)
    start = live_mb()
    table.put("user-0", data, "v0")
    for _ in range(2):    # the second time, the first one's transient buffers are reused
        table.transcriber("user-0")(audio)
    first = live_mb()
    for i in range(1, users):
        table.put(f"user-{i}", data, f"v{i}")
        table.transcriber(f"user-{i}")(audio)
    rss = live_mb()
    return {"lora_on": lora_on, "users": users, "adapter_bytes": len(data),
            "tensor_bytes_per_user": table.nbytes("user-0"),
            "first_user_mb": round(first - start, 1),
            "per_user_mb": round((rss - first) / max(1, users - 1), 3),
            "all_users_mb": round(rss - start, 1)}


if __name__ == "__main__":
    import json
    import sys

    what, *args = sys.argv[1:]
    if what != "recognizer-users":
        raise SystemExit(f"usage: python -m tinyalign_ros.bench.footprint recognizer-users "
                         f"LORA_ON USERS AUDIO THREADS (got {what!r})")
    print(json.dumps(_recognizer_users_here(args[0], int(args[1]), args[2], int(args[3]))))
