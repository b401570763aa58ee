"""Word error rate with Whisper's English text normaliser, so that "I'm" vs "I am" or "ten" vs
"10" are not counted as errors (the normaliser ships inside transformers; no download)."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})  # British->American spelling map is not needed here


def normalize(text: str) -> str:
    return " ".join(_normalizer()(text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (errors / reference words) after normalisation. 0.0 for no reference words."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references vs {len(hypotheses)} hypotheses")
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    if not pairs:
        return 0.0
    out = jiwer.process_words([r for r, _ in pairs], [h if h else "<empty>" for _, h in pairs])
    errors = out.substitutions + out.deletions + out.insertions
    return errors / sum(len(r.split()) for r, _ in pairs)
