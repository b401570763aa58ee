"""The bench's users: one real speaker and synthetic hard speakers.

Each user's utterances are split by sentence into an adaptation pool and a test set that never
share a sentence; the synthetic users' sentences are also kept out of the base projector's
training text, so "held-out" means held out from everything the projector saw.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..core.learning.data import FeatureItem, encode_examples, load_examples, split
from ..core.models import data_dir

#: the synthetic hard speakers of core.synth, in report order
HARD = ("croaky", "whisper", "slow_telephone", "noisy")


@dataclass
class BenchUser:
    name: str
    kind: str                                   # "real" or "synthetic"
    pool: list[FeatureItem] = field(default_factory=list)
    test: list[FeatureItem] = field(default_factory=list)
    # the audio files of pool and test, in their order (the recogniser re-encodes them)
    pool_audio: list = field(default_factory=list)
    test_audio: list = field(default_factory=list)


def held_out_texts(n: int, seed: int = 100) -> list[str]:
    """n test sentences (corpus.texts' reserved side: robot commands and everyday sentences)."""
    from ..corpus.recipe import corpus_texts
    from ..corpus.texts import reserved_sentences, text_key

    # the shipped base's older recipe drew from both sides of the split: keep its text out too
    seen = {text_key(t) for t in corpus_texts(1500, 0)}
    return [t for t in reserved_sentences(n + 50, seed) if text_key(t) not in seen][:n]


def corpus_dir(name: str, texts: list[str], seed: int):
    """Where a bench speaker's synthesized clips live: named by its texts too, so clips made for
    other sentences are never reused."""
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:8]
    return data_dir() / "corpora" / f"bench-{name}-{len(texts)}-{seed}-{digest}"


#: the corpus's held-out voice family (corpus.build.CorpusConfig): never in any training corpus
HELD_OUT_FAMILY = "piper:joe"
REAL = "asterisk (real)"


def examples(name: str, pool_n: int, test_n: int, seed: int | None = None) -> tuple[list, list]:
    """A bench user's (pool, test) Examples (audio files + true text), before any encoding:
    ``name`` is REAL (Asterisk prompts, one real voice, 8 kHz telephone band, <= 12 words), a
    synthetic hard speaker of HARD, or HELD_OUT_FAMILY (a voice no corpus trains on, all its
    augmentations too). ``seed`` picks the synthetic users' sentences (default: the bench's)."""
    if name == REAL:
        from ..corpus.corpora import asterisk_examples

        real = [e for e in asterisk_examples() if len(e.text.split()) <= 12]
        pool_ex, test_ex = split(real, 0.3, seed=1)
        return pool_ex[:pool_n], test_ex[:test_n]
    if name == HELD_OUT_FAMILY:
        from ..corpus.build import speak_to_folder

        seed = 400 if seed is None else seed
        texts = held_out_texts(pool_n + test_n, seed)
        work = corpus_dir(HELD_OUT_FAMILY.replace(":", "-"), texts, seed)
        made = load_examples(speak_to_folder(work, texts, HELD_OUT_FAMILY, seed))
    else:
        from ..corpus.synth import HARD_SPEAKERS, make_corpus

        seed = 100 if seed is None else seed
        texts = held_out_texts(pool_n + test_n, seed)
        work = corpus_dir(name, texts, seed)
        made = load_examples(make_corpus(work, texts, HARD_SPEAKERS[name], seed))
    return made[:pool_n], made[pool_n:]


def _user(name: str, kind: str, pool_ex, test_ex, asr, transcribed_pool: int) -> BenchUser:
    cache = data_dir() / "cache" / "features"
    return BenchUser(name, kind, _pool(pool_ex, asr, transcribed_pool),
                     encode_examples(test_ex, asr, cache, with_transcripts=True),
                     [e.audio for e in pool_ex], [e.audio for e in test_ex])


def _pool(pool_ex, asr, transcribed: int) -> list[FeatureItem]:
    """Pool features; the first ``transcribed`` also with ASR transcripts (for the hint)."""
    cache = data_dir() / "cache" / "features"
    return (encode_examples(pool_ex[:transcribed], asr, cache, with_transcripts=True) +
            encode_examples(pool_ex[transcribed:], asr, cache))


def real_speaker(asr, pool_n: int, test_n: int, transcribed_pool: int = 0) -> BenchUser:
    return _user(REAL, "real", *examples(REAL, pool_n, test_n), asr, transcribed_pool)


def synthetic_speaker(name: str, asr, pool_n: int, test_n: int, seed: int = 100,
                      transcribed_pool: int = 0) -> BenchUser:
    return _user(name, "synthetic", *examples(name, pool_n, test_n, seed), asr,
                 transcribed_pool)


def heldout_voice_family(asr, pool_n: int, test_n: int, seed: int = 400,
                         transcribed_pool: int = 0) -> BenchUser:
    """How the base generalises to a new voice, and how adaptation helps it."""
    return _user(f"held-out voice ({HELD_OUT_FAMILY})", "synthetic-heldout-voice",
                 *examples(HELD_OUT_FAMILY, pool_n, test_n, seed), asr, transcribed_pool)


def heldout_base_voices(asr, test_n: int, seed: int = 300) -> BenchUser:
    """New sentences in the base recipe's own clean voices: how well the base generalises to
    sentences, apart from voices."""
    from ..corpus.synth import make_corpus
    from ..corpus.recipe import CONDITIONS

    texts = held_out_texts(test_n, seed)
    work = corpus_dir("heldout", texts, seed)
    made = load_examples(make_corpus(work, texts, CONDITIONS[0], seed))
    return _user("held-out sentences (base voices)", "synthetic-base", [], made, asr, 0)
