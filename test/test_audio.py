"""Audio input contracts: conversion instead of rejection, clear errors for unusable audio."""
import numpy as np
import pytest

from conftest import GOFORWARD, LIBRIVOX
from tinyalign_ros.core.speech.audio import (AudioError, Resampler, check_audio, load_audio, resample,
                                      to_mono)
from tinyalign_ros.core.speech.sources import FileSource, MicrophoneError, MicrophoneSource, \
    expand_audio_paths
from tinyalign_ros.core.users import UserIdError, check_user_id


def tone(rate, seconds=1.0, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_keeps_duration_and_pitch(rate):
    out = resample(tone(rate), rate, 16000)
    assert abs(out.size - 16000) <= 64
    spectrum = np.abs(np.fft.rfft(out[1000:15000]))
    peak_hz = np.argmax(spectrum) * 16000 / (15000 - 1000)
    assert abs(peak_hz - 440) < 5


def test_streaming_resampler_matches_whole_signal():
    x = tone(48000, 2.0)
    r = Resampler(48000)
    parts = [r(x[i:i + 4800]) for i in range(0, x.size, 4800)] + [r.flush()]
    streamed = np.concatenate(parts)
    whole = resample(x, 48000)
    assert abs(streamed.size - whole.size) <= 32
    n = min(streamed.size, whole.size)
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_to_mono_interleaved_and_errors():
    stereo = np.array([1, 3, 1, 3], np.float32)
    assert np.allclose(to_mono(stereo, 2), [2, 2])
    with pytest.raises(AudioError, match="multiple of 2"):
        to_mono(np.zeros(3, np.float32), 2)
    with pytest.raises(AudioError, match="channels"):
        to_mono(np.zeros(4, np.float32), 0)


@pytest.mark.parametrize("audio,rate,match", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.array([0.1, np.nan] * 4000, np.float32), 16000, "NaN"),
    (np.full(16000, 1.0, np.float32), 16000, "clipped"),
    (np.full(16000, 3000.0, np.float32), 16000, "int16"),
    (np.zeros(800, np.float32), 16000, "too short"),
    (np.zeros(16000, np.float32), 44100, "resample"),
    (np.zeros((2, 16000), np.float32), 16000, "mono"),
])
def test_check_audio_rejects_with_reason(audio, rate, match):
    with pytest.raises(AudioError, match=match):
        check_audio(audio, rate)


def test_check_audio_accepts_speech():
    report = check_audio(load_audio(GOFORWARD))
    assert 2.5 < report.duration_s < 3.0 and 0 < report.rms < report.peak <= 1.0


def test_load_audio_formats():
    raw = load_audio(GOFORWARD)                      # headerless s16le
    wav = load_audio(sorted(LIBRIVOX.glob("*.wav"))[0])
    assert raw.dtype == np.float32 and wav.dtype == np.float32
    assert raw.ndim == wav.ndim == 1 and wav.size > 16000
    with pytest.raises(AudioError, match="not found"):
        load_audio("/nonexistent.wav")


def test_load_audio_corrupt_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(bad)


def test_file_source_plays_all_files_with_gaps(tmp_path):
    src = FileSource(str(LIBRIVOX), chunk_frames=1600, gap_s=0.5)
    assert len(src.files) == 5
    chunks = []
    while (c := src.read()) is not None:
        chunks.append(c)
    total = sum(load_audio(f).size + 8000 for f in src.files)
    assert all(c.size == 1600 for c in chunks)
    assert abs(len(chunks) * 1600 - total) < 1600 * 5
    assert src.finished and src.read() is None


def test_expand_audio_paths_errors(tmp_path):
    with pytest.raises(AudioError, match="no audio files"):
        expand_audio_paths(str(tmp_path))
    with pytest.raises(AudioError, match="no audio file given"):
        expand_audio_paths("")
    assert len(expand_audio_paths(str(LIBRIVOX / "*.wav"))) == 5


def test_missing_microphone_is_a_clear_error():
    # No sound card on CI machines: the error must list what exists and suggest the file source.
    try:
        mic = MicrophoneSource("", 1600)
    except MicrophoneError as exc:
        assert "no audio input device" in str(exc) and "source:=file" in str(exc)
    else:  # a machine with a microphone: it must deliver 16 kHz chunks
        chunk = mic.read()
        mic.close()
        assert chunk.ndim == 1
    with pytest.raises(MicrophoneError, match="input devices|no audio input"):
        MicrophoneSource("no-such-device-name-xyz", 1600)


@pytest.mark.parametrize("bad", ["../../etc", "", "a/b", ".hidden", "x" * 65, "a..b", "é"])
def test_user_id_rejects_unsafe(bad):
    with pytest.raises(UserIdError):
        check_user_id(bad)


def test_user_id_accepts_normal():
    assert check_user_id("alice_01.robot-2") == "alice_01.robot-2"
