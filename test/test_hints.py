"""Simulated recogniser errors for hybrid training: controlled rate, deterministic for a seed,
substitutions towards near words of the vocabulary."""
import random

import pytest

from tinyalign_ros.core.learning.hints import HintCorruptor
from tinyalign_ros.core.metrics import wer

TEXTS = ["turn off the lights in room two", "bring me the red cup from the kitchen",
         "light the fire and fight the night", "where is the charger", "go to the door"]


def test_rate_sets_the_error_rate_and_a_seed_fixes_the_errors():
    assert HintCorruptor(TEXTS, 0.0).corrupt(TEXTS[1], random.Random(0)) == TEXTS[1]
    h = HintCorruptor(TEXTS, 0.3)
    a = [h.corrupt(t, random.Random(7)) for t in TEXTS * 20]
    b = [h.corrupt(t, random.Random(7)) for t in TEXTS * 20]
    assert a == b
    rng = random.Random(0)
    rates = [wer(TEXTS * 40, [HintCorruptor(TEXTS, r).corrupt(t, rng) for t in TEXTS * 40])
             for r in (0.1, 0.3, 0.6)]
    assert 0.03 < rates[0] < rates[1] < rates[2], rates
    with pytest.raises(ValueError):
        HintCorruptor(TEXTS, 1.5)


def test_substitutions_go_to_near_words_of_the_vocabulary():
    h = HintCorruptor(TEXTS, 1.0, mix=(1, 0, 0))
    assert h.neighbours("lights")[0] == "light"
    assert set(h.neighbours("night")) >= {"light", "fight"}
    vocabulary = {w for t in TEXTS for w in t.split()}
    out = h.corrupt("light the night", random.Random(0)).split()
    # every word substituted, each by a near word of the vocabulary
    assert len(out) == 3 and all(w in vocabulary for w in out)
    assert all(o != w and o in h.neighbours(w) for o, w in zip(out, ["light", "the", "night"]))
