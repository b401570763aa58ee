"""The corpus text-to-speech engines (tinyalign_ros.corpus.engines) and augmentations, on the
REAL engines. All but espeak-ng come from scripts/setup-corpus.sh, which CI does not run: their
tests skip there. espeak-ng is installed by scripts/setup.sh, so its tests always run."""
import random

import numpy as np
import pytest

from tinyalign_ros.corpus import engines as E
from tinyalign_ros.corpus.augment import KINDS, augment

TEXT = "please turn left and go to the kitchen"
SETUP = "run scripts/setup-corpus.sh"
# one voice per engine and code path (festival: diphone and HTS)
CASES = ["espeak:en-us", "espeak:en-gb-scotland", "mbrola:us1", "kokoro:blend",
         "kokoro:jm_kumo", "hibari:heart", "piper:joe", "rhvoice:slt", "festival:kal",
         "festival:slt", "pico:en-US"]


def voice_or_skip(family: str) -> E.Voice:
    voice = E.get_voice(family)
    why = E.missing(voice)
    if why is not None:
        if voice.engine == "espeak":
            pytest.fail(f"espeak-ng must be installed (scripts/setup.sh): {why}")
        pytest.skip(f"{voice.engine} is not installed ({why}): {SETUP}")
    return voice


def check_audio(audio: np.ndarray, min_s: float, max_s: float) -> None:
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert min_s < audio.size / E.SAMPLE_RATE < max_s
    peak = float(np.max(np.abs(audio)))
    assert 0.85 <= peak <= 0.95  # peak-normalised to 0.9, never clipped
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.02  # not silent


@pytest.mark.parametrize("family", CASES)
def test_engine_speaks_16k_float32(family):
    voice = voice_or_skip(family)
    audio = E.synthesize(voice, TEXT, random.Random(0))
    check_audio(audio, 1.0, 6.0)  # 7 words at 0.85-1.15x a normal rate
    assert voice in E.available_voices()


def test_espeak_variation_comes_from_rng():
    voice = voice_or_skip("espeak:en-us")
    a = E.synthesize(voice, TEXT, random.Random(3))
    assert np.array_equal(a, E.synthesize(voice, TEXT, random.Random(3)))
    others = [E.synthesize(voice, TEXT, random.Random(s)) for s in (4, 5)]
    assert any(o.size != a.size or not np.allclose(o, a) for o in others)


def test_catalogue_licences_and_permissive_flags():
    cat = E._catalogue()
    assert len({v.family for v in cat}) == len(cat)
    for v in cat:
        assert v.family == f"{v.engine}:{v.name}" and v.licence
        non_commercial = (v.engine == "mbrola"
                          or v.family in ("rhvoice:lyubov", "rhvoice:evgeniy-eng",
                                          "festival:rab", "festival:don"))
        assert v.permissive is (not non_commercial), v
    lic = {v.family: v.licence for v in cat}
    assert lic["kokoro:blend"] == lic["hibari:heart"] == lic["pico:en-US"] == "Apache-2.0"
    assert lic["piper:joe"] == "CC0-1.0" and lic["rhvoice:slt"] == "LGPL-2.1+"
    assert lic["festival:kal"] == "BSD-like" and lic["mbrola:us1"] == "non-commercial"
    assert lic["espeak:en-us"].startswith("GPL-3.0")
    with pytest.raises(Exception):
        cat[0].name = "x"  # frozen


def test_available_voices_filters_and_has_espeak_accents():
    every = E.available_voices()
    free = E.available_voices(permissive_only=True)
    assert set(free) <= set(every) and all(v.permissive for v in free)
    assert all(not v.permissive for v in set(every) - set(free))
    accents = {v.name for v in every if v.engine == "espeak"}
    assert {"en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"} <= accents


def test_missing_engine_is_a_clear_error():
    ghost = E.Voice("rhvoice", "no-such-voice", "LGPL-2.1+", True)
    assert ghost not in E.available_voices()
    with pytest.raises(RuntimeError, match="rhvoice.*(not installed|setup-corpus)"):
        E.synthesize(ghost, TEXT, random.Random(0))


def test_subprocess_timeout_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(E, "TIMEOUT_S", 0.2)
    with pytest.raises(RuntimeError, match="timed out"):
        E._run("test", ["sleep", "5"])


@pytest.fixture(scope="module")
def speech():
    voice = voice_or_skip("espeak:en-us")
    return E.synthesize(voice, TEXT, random.Random(1))


@pytest.mark.parametrize("kind", KINDS)
def test_augment_kind(speech, kind):
    out, what = augment(speech, random.Random(2), kind)
    assert what.startswith(kind)
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    assert 0.85 < out.size / speech.size < 1.25
    assert 0.1 < float(np.max(np.abs(out))) <= 1.0
    again, what2 = augment(speech, random.Random(2), kind)
    assert what2 == what and np.allclose(again, out)


def test_augment_draws_every_kind_and_rejects_unknown(speech):
    rng = random.Random(0)
    drawn = {augment(speech[:4000], rng)[1].split()[0] for _ in range(40)}
    assert drawn == set(KINDS)
    with pytest.raises(ValueError):
        augment(speech, rng, "underwater")
