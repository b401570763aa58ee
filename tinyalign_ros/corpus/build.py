"""`tinyalign corpus build DIR`: a large multi-voice speech corpus, synthesised, augmented and
encoded in shards, resumable at any point.

  plan.json             what every utterance is (text, voice, augmentation, seed), fixed once;
  audio/NNNN.npz        the shard's 16 kHz int16 speech (stage "synth");
  features/ASR/NNNN.npz the shard's encoder states, float16 (stage "encode");
  transcripts/ASR/NNNN.json  the recogniser's transcript of each utterance (stage "transcribe").
Every file is written whole (temporary name, then rename), so a job killed at any moment loses at
most the shard it was on, and a rerun picks up where it stopped. Several processes may work on one
corpus at once with --part i/n (shard k is theirs when k % n == i).

Splits: "train" (training sentences, training voices), "eval-sentences" (reserved sentences,
training voices) and "eval-voice" (reserved sentences, the held-out voice family, which never
trains). Sentences obey corpus.texts' split, checked when the plan is made.
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

PLAN_VERSION = 1
SPLITS = ("eval-sentences", "eval-voice", "train")


@dataclass
class CorpusConfig:
    utterances: int = 20000           # training utterances
    eval_utterances: int = 200        # per evaluation split
    held_out_family: str = "piper:joe"
    robot_share: float = 0.5          # share of robot-assistant sentences (the rest everyday text)
    clean_share: float = 0.4          # share without augmentation
    permissive_only: bool = True      # only voices whose licence allows shipping what they train
    shard_size: int = 250
    seed: int = 0


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:80]


def make_plan(config: CorpusConfig, voices: list | None = None) -> dict:
    """Every utterance of the corpus, deterministic for (config, installed voices)."""
    from . import augment, engines
    from .texts import check_training_texts, reserved_sentences, training_texts

    voices = voices if voices is not None else engines.available_voices(config.permissive_only)
    held = [v for v in voices if v.family == config.held_out_family]
    train_voices = [v for v in voices if v.family != config.held_out_family]
    if not held:
        raise ValueError(f"held-out voice family {config.held_out_family!r} is not installed "
                         f"(have: {', '.join(v.family for v in voices)}; run "
                         "scripts/setup-corpus.sh)")
    if not train_voices:
        raise ValueError("no training voices installed: run scripts/setup-corpus.sh")
    rng = random.Random(config.seed)

    # texts: robot and everyday sentences interleaved by robot_share; each list cycles when spent
    n = config.utterances
    robot, everyday = training_texts(templated=int(n * config.robot_share * 0.8) + 100,
                                     seed=config.seed)
    texts, ri, ei = [], 0, 0
    for _ in range(n):
        if rng.random() < config.robot_share:
            texts.append(robot[ri % len(robot)])
            ri += 1
        else:
            texts.append(everyday[ei % len(everyday)])
            ei += 1
    check_training_texts(texts)

    # voices: each engine an equal share, each voice an equal share of its engine's
    by_engine: dict[str, list] = {}
    for v in train_voices:
        by_engine.setdefault(v.engine, []).append(v)
    engine_names = sorted(by_engine)

    def pick_voice():
        return rng.choice(by_engine[rng.choice(engine_names)])

    others = [k for k in augment.KINDS if k != "clean"]

    def pick_augment():
        return "clean" if rng.random() < config.clean_share else rng.choice(others)

    rows = []

    def add(split, text, voice):
        rows.append({"id": f"{split}-{len(rows):06d}", "split": split, "text": text,
                     "family": voice.family, "engine": voice.engine,
                     "augment": pick_augment(), "seed": rng.getrandbits(32)})

    eval_texts = reserved_sentences(2 * config.eval_utterances, seed=config.seed + 500)
    for text in eval_texts[:config.eval_utterances]:
        add("eval-sentences", text, pick_voice())
    for text in eval_texts[config.eval_utterances:]:
        add("eval-voice", text, rng.choice(held))
    for text in texts:
        add("train", text, pick_voice())
    return {"version": PLAN_VERSION, "config": asdict(config),
            "voices": [{"family": v.family, "engine": v.engine, "name": v.name,
                        "licence": v.licence, "permissive": v.permissive,
                        "held_out": v.family == config.held_out_family} for v in voices],
            "distinct_training_sentences": len(set(texts)), "rows": rows}


def speak_to_folder(out_dir: str | os.PathLike, texts: list[str], family: str, seed: int = 0,
                    clean_share: float = 0.4) -> Path:
    """A small set of clips of one voice family (with the corpus's augmentations) as
    out_dir/NNNNN.wav + data.jsonl, for bench speakers; clips already there are kept."""
    import wave

    from . import augment, engines

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    voice = engines.get_voice(family)
    reason = engines.missing(voice)
    if reason:
        raise RuntimeError(f"voice {family}: {reason}")
    others = [k for k in augment.KINDS if k != "clean"]
    rng = random.Random(seed)
    rows = []
    for i, text in enumerate(texts):
        utt_rng = random.Random(rng.getrandbits(32))
        kind = "clean" if utt_rng.random() < clean_share else utt_rng.choice(others)
        wav = out / f"{i:05d}.wav"
        if not wav.is_file():
            audio, _ = augment.augment(engines.synthesize(voice, text, utt_rng), utt_rng, kind)
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()

            def write(p, pcm=pcm):
                with wave.open(str(p), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(engines.SAMPLE_RATE)
                    w.writeframes(pcm)
            _atomic_write(wav, write)
        rows.append({"audio": wav.name, "text": text, "id": f"{family}-{i:05d}", "augment": kind})
    manifest = out / "data.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


class Corpus:
    """A corpus folder: its plan, which shards each stage has written, and readers."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        plan_path = self.root / "plan.json"
        if not plan_path.is_file():
            raise FileNotFoundError(f"{plan_path} missing: run `tinyalign corpus build "
                                    f"{self.root}` first")
        self.plan = json.loads(plan_path.read_text())
        if self.plan.get("version") != PLAN_VERSION:
            raise ValueError(f"{plan_path}: plan version {self.plan.get('version')}, this code "
                             f"reads {PLAN_VERSION}")
        self.rows = self.plan["rows"]
        self.shard_size = self.plan["config"]["shard_size"]

    @classmethod
    def create(cls, root: str | os.PathLike, config: CorpusConfig, voices=None) -> "Corpus":
        root = Path(root)
        if (root / "plan.json").is_file():
            corpus = cls(root)
            if corpus.plan["config"] != asdict(config):
                raise ValueError(f"{root} holds a corpus planned with other settings "
                                 f"({corpus.plan['config']}); use another folder")
            return corpus
        plan = make_plan(config, voices)
        _atomic_write(root / "plan.json", lambda p: p.write_text(json.dumps(plan)))
        return cls(root)

    # ---- shards
    @property
    def shards(self) -> int:
        return -(-len(self.rows) // self.shard_size)

    def shard_rows(self, k: int) -> list[dict]:
        return self.rows[k * self.shard_size:(k + 1) * self.shard_size]

    def audio_path(self, k: int) -> Path:
        return self.root / "audio" / f"{k:04d}.npz"

    def features_path(self, k: int, asr_id: str) -> Path:
        return self.root / "features" / _slug(asr_id) / f"{k:04d}.npz"

    def transcripts_path(self, k: int, asr_id: str) -> Path:
        return self.root / "transcripts" / _slug(asr_id) / f"{k:04d}.json"

    # ---- stages
    def synth_shard(self, k: int) -> dict:
        from . import augment, engines
        voices = {v["family"]: v for v in self.plan["voices"]}
        clips, failed, audio_s = [], [], 0.0
        for row in self.shard_rows(k):
            v = voices[row["family"]]
            rng = random.Random(row["seed"])
            try:
                audio = engines.synthesize(engines.Voice(v["engine"], v["name"], v["licence"],
                                                         v["permissive"]), row["text"], rng)
                audio, _ = augment.augment(audio, rng, row["augment"])
                audio = np.clip(np.nan_to_num(audio), -1.0, 1.0)
                if audio.size < 1600:
                    raise RuntimeError(f"{audio.size} samples")
            except Exception as exc:  # one bad sentence or voice hiccup costs one utterance
                failed.append({"id": row["id"], "error": str(exc)[:300]})
                audio = np.zeros(0, np.float32)
            clips.append((audio * 32767).astype(np.int16))
            audio_s += audio.size / engines.SAMPLE_RATE
        offsets = np.cumsum([0] + [c.size for c in clips]).astype(np.int64)
        _atomic_write(self.audio_path(k), lambda p: np.savez(
            p, audio=np.concatenate(clips) if clips else np.zeros(0, np.int16), offsets=offsets,
            failed=np.array(json.dumps(failed))))
        return {"audio_s": audio_s, "failed": len(failed)}

    def read_audio(self, k: int) -> list[np.ndarray | None]:
        """Float32 clips of shard k in plan order; None where synthesis failed."""
        with np.load(self.audio_path(k)) as z:
            audio, offsets = z["audio"], z["offsets"]
        return [audio[a:b].astype(np.float32) / 32767 if b > a else None
                for a, b in zip(offsets[:-1], offsets[1:])]

    def encode_shard(self, k: int, asr) -> dict:
        clips = self.read_audio(k)
        feats = [asr.encode(c).astype(np.float16) if c is not None
                 else np.zeros((0, asr.dim), np.float16) for c in clips]
        offsets = np.cumsum([0] + [f.shape[0] for f in feats]).astype(np.int64)
        _atomic_write(self.features_path(k, asr.model_id), lambda p: np.savez(
            p, features=np.concatenate(feats), offsets=offsets))
        return {"frames": int(offsets[-1])}

    def transcribe_shard(self, k: int, asr) -> dict:
        out = []
        for row, clip in zip(self.shard_rows(k), self.read_audio(k)):
            t = asr.transcribe(clip) if clip is not None else None
            out.append({"id": row["id"], "transcript": t.text if t else "",
                        "confidence": round(t.confidence, 4) if t else 0.0})
        _atomic_write(self.transcripts_path(k, asr.model_id),
                      lambda p: p.write_text(json.dumps(out)))
        return {}

    def build(self, stages: Iterable[str], asr=None, part: tuple[int, int] = (0, 1),
              splits: Iterable[str] = SPLITS, log: Callable[[str], None] = print,
              stop: Callable[[], bool] = lambda: False,
              shards: Iterable[int] | None = None) -> dict:
        """Runs the named stages over this process's shards that hold any of ``splits`` (and
        are among ``shards``, if given), skipping what is already written."""
        stages = tuple(stages)
        unknown = set(stages) - {"synth", "encode", "transcribe"}
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}: synth, encode, transcribe")
        if ("encode" in stages or "transcribe" in stages) and asr is None:
            raise ValueError("encode and transcribe need an ASR front end")
        i, n = part
        splits = set(splits)
        if shards is not None:
            shards = sorted(set(shards))
            if shards and not 0 <= shards[0] <= shards[-1] < self.shards:
                raise ValueError(f"shards {shards[0]}-{shards[-1]}: this corpus has shards "
                                 f"0-{self.shards - 1}")
        mine = [k for k in (range(self.shards) if shards is None else shards) if k % n == i
                and any(r["split"] in splits for r in self.shard_rows(k))]
        done = {s: 0 for s in stages}
        t_start = time.perf_counter()
        for count, k in enumerate(mine, 1):
            if stop():
                log("stopped on request")
                break
            for stage in stages:
                path = (self.audio_path(k) if stage == "synth" else
                        self.features_path(k, asr.model_id) if stage == "encode" else
                        self.transcripts_path(k, asr.model_id))
                if path.is_file():
                    continue
                if stage != "synth" and not self.audio_path(k).is_file():
                    continue  # another process synthesises it; a later run encodes it
                t0 = time.perf_counter()
                info = getattr(self, f"{stage}_shard")(k) if stage == "synth" else \
                    getattr(self, f"{stage}_shard")(k, asr)
                dt = time.perf_counter() - t0
                done[stage] += 1
                rt = f", {info['audio_s'] / dt:.1f}x real time" if "audio_s" in info else ""
                failed = f", {info['failed']} failed" if info.get("failed") else ""
                log(f"shard {k} ({self.shard_rows(k)[0]['split']}) {stage}: "
                    f"{len(self.shard_rows(k))} utt in {dt:.0f} s{rt}{failed} "
                    f"[{count}/{len(mine)} shards of this part, "
                    f"{time.perf_counter() - t_start:.0f} s]")
        return done

    # ---- reading
    def status(self, asr_id: str | None = None) -> dict:
        def count(paths):
            return sum(p.is_file() for p in paths)
        ks = range(self.shards)
        out = {"root": str(self.root), "utterances": len(self.rows), "shards": self.shards,
               "synth": count(self.audio_path(k) for k in ks),
               "distinct_training_sentences": self.plan["distinct_training_sentences"],
               "voices": sum(not v["held_out"] for v in self.plan["voices"]),
               "engines": len({v["engine"] for v in self.plan["voices"] if not v["held_out"]}),
               "held_out_family": self.plan["config"]["held_out_family"]}
        if asr_id:
            out["encode"] = count(self.features_path(k, asr_id) for k in ks)
            out["transcribe"] = count(self.transcripts_path(k, asr_id) for k in ks)
        return out

    def shard_transcripts(self, k: int, asr_id: str) -> dict[str, dict] | None:
        """Utterance id -> {"transcript", "confidence"} of shard k; None if not transcribed."""
        path = self.transcripts_path(k, asr_id)
        if not path.is_file():
            return None
        return {t["id"]: t for t in json.loads(path.read_text())}

    def transcripts(self, asr_id: str) -> dict[str, str]:
        """Utterance id -> the recogniser's transcript, for every shard transcribed so far."""
        out = {}
        for k in range(self.shards):
            out.update((i, t["transcript"]) for i, t in
                       (self.shard_transcripts(k, asr_id) or {}).items())
        return out

    def items(self, asr_id: str, split: str = "train", limit: int | None = None,
              families: set | None = None, exclude_families: set | None = None,
              with_transcripts: bool = False) -> list:
        """FeatureItems (float16 features) of a split, in plan order, from encoded shards only."""
        from ..core.learning.data import FeatureItem

        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        out = []
        for k in range(self.shards):
            rows = self.shard_rows(k)
            if not any(r["split"] == split for r in rows):
                continue
            path = self.features_path(k, asr_id)
            if not path.is_file():
                continue
            with np.load(path) as z:
                feats, offsets = z["features"], z["offsets"]
            trans = self.shard_transcripts(k, asr_id) if with_transcripts else {}
            if trans is None:
                continue
            for j, row in enumerate(rows):
                if row["split"] != split or offsets[j + 1] == offsets[j]:
                    continue
                if families is not None and row["family"] not in families:
                    continue
                if exclude_families and row["family"] in exclude_families:
                    continue
                t = trans.get(row["id"], {})
                out.append(FeatureItem(feats[offsets[j]:offsets[j + 1]], row["text"], row["id"],
                                       t.get("transcript", ""), t.get("confidence")))
                if limit and len(out) >= limit:
                    return out
        return out
