"""The ASR front end and VAD on the real default Whisper (tiny.en) and real recorded speech."""
import numpy as np
import pytest

from conftest import GOFORWARD, LIBRIVOX, librivox_references
from tinyalign_ros.core.speech.asr import AsrFrontEnd
from tinyalign_ros.core.speech.audio import load_audio
from tinyalign_ros.core.models import ModelNotFoundError, resolve_whisper
from tinyalign_ros.core.speech.vad import StreamingVad

pytestmark = pytest.mark.real_models


@pytest.fixture(scope="module")
def asr():
    return AsrFrontEnd(cpu_threads=2)


def words(text):
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def test_goforward_transcript_and_features(asr):
    result = asr.process(load_audio(GOFORWARD))
    assert words(result.transcript.text) in (["go", "forward", "10", "meters"],
                                             ["go", "forward", "ten", "meters"])
    assert 0.3 < result.transcript.confidence <= 1.0
    # 2.79 s of audio -> one encoder frame per 20 ms, padding dropped
    assert result.features.shape == (140, 384) and result.features.dtype == np.float32
    assert np.all(np.isfinite(result.features)) and result.features.std() > 0.1
    assert asr.model_id == "whisper-tiny.en+var:384"


def test_a_released_transcriber_is_loaded_again_when_needed(asr):
    """release_transcriber (called before training, which runs slower beside faster-whisper)
    frees the CTranslate2 model; the next transcript loads it again and is the same."""
    import gc
    import weakref

    audio = load_audio(GOFORWARD)
    before = asr.transcribe(audio).text
    gone = weakref.ref(asr.model)
    asr.release_transcriber()
    gc.collect()
    assert gone() is None                        # nothing else held it
    assert asr.transcribe(audio).text == before
    assert asr.model is not None and asr.model is asr.model


def test_the_clipping_limit_is_the_front_ends_setting(asr):
    """max_clipped_fraction above the 0.05 default must take effect (the ASR node sets it from
    its parameter; the front end used to re-check with the default)."""
    from tinyalign_ros.core.speech.audio import AudioError

    audio = load_audio(GOFORWARD).copy()
    loud = np.argsort(-np.abs(audio))[:int(0.10 * audio.size)]     # 10 % of samples clipped
    audio[loud] = np.sign(audio[loud])
    with pytest.raises(AudioError, match="clipped"):
        asr.process(audio)
    tolerant = AsrFrontEnd(asr.config, max_clipped_fraction=0.2)
    assert tolerant.process(audio).features.shape[0] == 140


def test_ct2_features_are_those_of_the_padded_window():
    """ct2 encoder: dropping the padding frames must not change the frames that are kept."""
    from faster_whisper.audio import pad_or_trim

    asr = AsrFrontEnd(cpu_threads=2, encoder="ct2")
    assert asr.model_id == "whisper-tiny.en:384"
    audio = load_audio(GOFORWARD)
    mel = asr.model.feature_extractor(audio)
    full = np.asarray(asr.model.encode(pad_or_trim(mel)))[0]
    assert full.shape == (1500, 384)
    assert np.allclose(asr.encode(audio), full[:140], atol=1e-5)


def test_torch_encoder_rebuilt_from_ct2_weights_matches_ct2():
    """The variable-length encoder is Whisper's own: on the padded window it gives CTranslate2's
    float32 output; on the unpadded audio, close but not equal states (hence its own model id)."""
    from faster_whisper.audio import pad_or_trim

    from tinyalign_ros.core.speech.whisper_encoder import TorchWhisperEncoder

    ct2 = AsrFrontEnd(cpu_threads=2, encoder="ct2", compute_type="float32")
    enc = TorchWhisperEncoder.from_ct2(ct2.model_path)
    mel = ct2.model.feature_extractor(load_audio(GOFORWARD))
    reference = np.asarray(ct2.model.encode(pad_or_trim(mel)))[0]
    assert np.abs(enc.encode(pad_or_trim(mel)) - reference).max() < 2e-3
    var = enc.encode(mel)
    assert var.shape == (140, 384)
    cos = np.sum(var * reference[:140], 1) / np.linalg.norm(var, axis=1) / \
        np.linalg.norm(reference[:140], axis=1)
    assert 0.85 < cos.mean() < 0.999


def test_longer_than_30s_is_handled(asr):
    files = sorted(LIBRIVOX.glob("*.wav"))
    audio = np.concatenate([load_audio(f) for f in files] * 2)
    assert audio.size / 16000 > 30
    feats = asr.encode(audio)
    assert abs(feats.shape[0] - audio.size / 16000 / 0.02) < 4
    assert len(words(asr.transcribe(audio).text)) > 60


def test_vad_segments_real_speech():
    refs = librivox_references()
    files = sorted(LIBRIVOX.glob("*.wav"))[:3]
    silence = np.zeros(16000, np.float32)
    stream = np.concatenate([np.concatenate([load_audio(f), silence]) for f in files])
    vad = StreamingVad()
    segments = []
    for i in range(0, stream.size, 1600):       # 100 ms chunks
        segments += vad.accept(stream[i:i + 1600])
    assert vad.flush() is None
    assert len(segments) == 3, [s.duration_s for s in segments]
    for seg, f in zip(segments, files):
        assert abs(seg.duration_s - load_audio(f).size / 16000) < 1.0
        assert refs[f.stem]


def test_vad_early_segments_match_the_utterances_they_announce():
    """Each utterance is announced speculate_after_s into its final silence with the same audio
    and positions; a pause shorter than min_silence_s inside speech announces one that never
    comes (the bench's real recordings, with a 0.3 s gap spliced into the first one)."""
    files = sorted(LIBRIVOX.glob("*.wav"))[:2]
    first, second = (load_audio(f) for f in files)
    gap, silence = np.zeros(4800, np.float32), np.zeros(16000, np.float32)
    stream = np.concatenate([first[:first.size // 2], gap, first[first.size // 2:], silence,
                             second, silence])
    early = []
    vad = StreamingVad(on_early=early.append, speculate_after_s=0.15, min_silence_s=0.5)
    assert vad.early_windows == 5
    segments = []
    for i in range(0, stream.size, 1600):
        segments += vad.accept(stream[i:i + 1600])
    assert len(segments) == 2, [s.duration_s for s in segments]
    confirmed = {s.key: s for s in segments}
    announced = [e for e in early if e.key in confirmed]
    assert len(announced) == 2                      # both utterances were announced early
    for e in announced:
        s = confirmed[e.key]
        assert np.array_equal(e.audio, s.audio) and e.speech_end_sample == s.speech_end_sample
    # the spliced pause announced an utterance that speech then continued
    assert any(e.end_sample < segments[0].end_sample and e.start_sample ==
               segments[0].start_sample for e in early)
    for s in segments:   # the speaker stopped inside the segment, before its kept silence
        assert s.start_sample < s.speech_end_sample <= s.end_sample
        assert s.end_sample - s.speech_end_sample <= 3 * 512
    # without a callback, or with speculation off, nothing is announced
    assert StreamingVad().early_windows == 0
    assert StreamingVad(on_early=early.append, speculate_after_s=0).early_windows == 0


def test_vad_ignores_silence_and_noise():
    rng = np.random.default_rng(0)
    vad = StreamingVad()
    assert vad.accept(np.zeros(48000, np.float32)) == []
    assert vad.accept((0.01 * rng.standard_normal(48000)).astype(np.float32)) == []
    assert vad.flush() is None


def test_vad_cuts_at_max_length():
    audio = load_audio(sorted(LIBRIVOX.glob("*.wav"))[0])   # 7 s of continuous speech
    vad = StreamingVad(max_utterance_s=2.0)
    segments = vad.accept(audio)
    assert segments and all(s.forced_end and s.duration_s <= 2.05 for s in segments)


def test_bad_whisper_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not hold a CTranslate2 Whisper"):
        resolve_whisper(tmp_path)
