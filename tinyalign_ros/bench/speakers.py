"""The bench's users: one real speaker and synthetic hard speakers.

Each user's utterances are split by sentence into an adaptation pool and a test set that never
share a sentence; the synthetic users' sentences are also kept out of the base projector's
training text, so "held-out" means held out from everything the projector saw.
"""
from __future__ import annotations

import random
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


def held_out_texts(n: int, seed: int = 100) -> list[str]:
    """n sentences (robot commands and everyday sentences) none of which trained the base."""
    from ..corpus.synth import fortune_sentences, sentences
    from ..corpus.recipe import corpus_texts

    seen = {t.lower() for t in corpus_texts(1500, 0)}
    rng = random.Random(seed)
    fortunes = [t for t in fortune_sentences() if t.lower() not in seen]
    rng.shuffle(fortunes)
    templated = [t for t in sentences(4 * n, seed) if t.lower() not in seen]
    texts = templated[:n - n // 2] + fortunes[:n // 2]
    rng.shuffle(texts)
    return texts


def real_speaker(asr, pool_n: int, test_n: int, transcribed_pool: int = 0) -> BenchUser:
    """Asterisk prompts (one real voice, 8 kHz telephone band), <= 12 words."""
    from ..corpus.corpora import asterisk_examples

    examples = [e for e in asterisk_examples() if len(e.text.split()) <= 12]
    pool_ex, test_ex = split(examples, 0.3, seed=1)
    cache = data_dir() / "cache" / "features"
    return BenchUser("asterisk (real)", "real", _pool(pool_ex[:pool_n], asr, transcribed_pool),
                     encode_examples(test_ex[:test_n], asr, cache, with_transcripts=True))


def _pool(examples, asr, transcribed: int) -> list[FeatureItem]:
    """Pool features; the first ``transcribed`` also with ASR transcripts (for the hint)."""
    cache = data_dir() / "cache" / "features"
    return (encode_examples(examples[:transcribed], asr, cache, with_transcripts=True) +
            encode_examples(examples[transcribed:], asr, cache))


def synthetic_speaker(name: str, asr, pool_n: int, test_n: int, seed: int = 100,
                      transcribed_pool: int = 0) -> BenchUser:
    from ..corpus.synth import HARD_SPEAKERS, make_corpus

    texts = held_out_texts(pool_n + test_n, seed)
    work = data_dir() / "corpora" / f"bench-{name}-{len(texts)}-{seed}"
    examples = load_examples(make_corpus(work, texts, HARD_SPEAKERS[name], seed))
    pool_ex, test_ex = examples[:pool_n], examples[pool_n:]
    cache = data_dir() / "cache" / "features"
    return BenchUser(name, "synthetic", _pool(pool_ex, asr, transcribed_pool),
                     encode_examples(test_ex, asr, cache, with_transcripts=True))


def heldout_base_voices(asr, test_n: int, seed: int = 300) -> BenchUser:
    """New sentences in the base recipe's own clean voices: how well the base generalises to
    sentences, apart from voices."""
    from ..corpus.synth import make_corpus
    from ..corpus.recipe import CONDITIONS

    texts = held_out_texts(test_n, seed)
    work = data_dir() / "corpora" / f"bench-heldout-{len(texts)}-{seed}"
    examples = load_examples(make_corpus(work, texts, CONDITIONS[0], seed))
    return BenchUser("held-out sentences (base voices)", "synthetic-base", [],
                     encode_examples(examples, asr, data_dir() / "cache" / "features",
                                     with_transcripts=True))
