"""Recogniser-like errors in a transcript, at a controlled rate: hints to train the hybrid input
on (issue 11: the projector learns to correct a transcript that is wrong the way recognisers are
wrong). Three kinds, as in WER: substitutions (towards a similar-sounding word: a word of the
vocabulary with the smallest spelling distance, a cheap stand-in for sound), deletions and
insertions (short function words, which recognisers insert most).
"""
from __future__ import annotations

import random
import re
from functools import lru_cache

INSERTIONS = ("the", "a", "and", "to", "of", "in", "it", "is", "uh", "so")


def _distance(a: str, b: str) -> int:
    """Levenshtein distance of two short words."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class HintCorruptor:
    """``corrupt(text, rng)``: the text with errors at ``rate`` per word (substitutions,
    deletions and insertions in the ratio ``mix``), lower-cased like a recogniser's output is
    not: the casing and punctuation of kept words are kept."""

    def __init__(self, vocabulary, rate: float = 0.15, mix: tuple = (0.6, 0.2, 0.2)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.mix = mix
        words = sorted({w.lower() for t in vocabulary for w in re.findall(r"[A-Za-z']+", t)})
        self.by_length: dict[int, list[str]] = {}
        for w in words:
            self.by_length.setdefault(len(w), []).append(w)

    @lru_cache(maxsize=50000)
    def neighbours(self, word: str) -> tuple[str, ...]:
        """Vocabulary words at spelling distance 1-2 (length within 2), nearest first."""
        w = word.lower()
        found = []
        for n in range(max(1, len(w) - 2), len(w) + 3):
            for cand in self.by_length.get(n, ()):
                if cand != w:
                    d = _distance(w, cand)
                    if d <= 2:
                        found.append((d, cand))
        return tuple(c for _, c in sorted(found)[:8])

    def corrupt(self, text: str, rng: random.Random) -> str:
        out = []
        for word in text.split():
            if rng.random() >= self.rate:
                out.append(word)
                continue
            kind = rng.choices(("sub", "del", "ins"), weights=self.mix)[0]
            core = re.sub(r"[^A-Za-z']", "", word)
            if kind == "sub" and core:
                near = self.neighbours(core)
                out.append(word.replace(core, rng.choice(near)) if near else word)
            elif kind == "ins":
                out += [word, rng.choice(INSERTIONS)]
            # "del": the word is left out
        return " ".join(out)
