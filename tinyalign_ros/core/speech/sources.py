"""Audio sources for the capture node: files (paced like a live stream) and PortAudio microphones.

Both yield mono float32 chunks at the output rate, so the rest of the graph never sees the
difference between a robot's microphone and a recording.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..settings import check_choices, setting
from .audio import SAMPLE_RATE, AudioError, Resampler, load_audio

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".raw", ".pcm", ".s16")


@dataclass
class CaptureConfig:
    """Where the capture node's audio comes from, and how it is cut into chunks."""
    source: str = setting("microphone", "'microphone' (PyAudio) or 'file'",
                          choices=("microphone", "file"))
    device: str = setting("", "microphone: device index or a substring of its name; "
                              "'' = first input device")
    device_rate: int = setting(0, "microphone: rate to open the device at; 0 = its default "
                                  "(resampled to 16 kHz)")
    channels: int = setting(1, "microphone: channels to record (mixed down to mono)")
    file_path: str = setting("", "file source: an audio file, a folder of them, or a glob")
    file_loop: bool = setting(False, "file source: start over after the last file")
    file_gap_s: float = setting(1.0, "file source: silence played after each file, so VAD "
                                     "ends every utterance")
    raw_sample_rate: int = setting(SAMPLE_RATE, "file source: rate of headerless .raw/.pcm "
                                                "files (s16le mono)")
    playback_speed: float = setting(1.0, "file source: 1.0 = real time, 2.0 = twice as fast")
    file_wait_for_subscriber_s: float = setting(
        10.0, "file source: wait this long for a subscriber before playing, so the start of "
              "the file is not lost to DDS discovery; 0 = no wait")
    file_settle_s: float = setting(
        0.5, "file source: pause after a subscriber appears before playing (the subscriber's "
             "side of the DDS match can finish later; best-effort chunks sent before it are "
             "lost)")
    chunk_ms: int = setting(50, "length of each published chunk in milliseconds (shorter: the "
                                "VAD hears the end of speech sooner)")
    retry_period_s: float = setting(2.0, "microphone: seconds between attempts to open a "
                                         "missing device")
    frame_id: str = setting("microphone", "header.frame_id of the published audio")

    def __post_init__(self):
        check_choices(self)
        if self.chunk_ms <= 0 or self.playback_speed <= 0:
            raise ValueError("chunk_ms and playback_speed must be positive")


def expand_audio_paths(spec: str) -> list[Path]:
    """A file, a folder (its audio files, sorted) or a glob pattern -> the audio files it names."""
    if not spec:
        raise AudioError("no audio file given (set file_path)")
    p = Path(os.path.expanduser(spec))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS)
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(os.path.expanduser(spec))
                       if Path(f).suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise AudioError(f"no audio files at {spec!r} (expected a file, folder or glob of "
                         f"{', '.join(AUDIO_EXTENSIONS)})")
    return files


class FileSource:
    """Plays files as one stream of chunks, with ``gap_s`` of silence after each file so that
    voice-activity detection sees every utterance end. ``loop`` starts over at the end."""

    def __init__(self, spec: str, chunk_frames: int, gap_s: float = 1.0, loop: bool = False,
                 raw_sample_rate: int = SAMPLE_RATE):
        self.files = expand_audio_paths(spec)
        self.chunk_frames, self.gap_s, self.loop = chunk_frames, gap_s, loop
        self.raw_sample_rate = raw_sample_rate
        self._index, self._pos, self._audio = 0, 0, None
        self.finished = False

    def _load_next(self) -> None:
        path = self.files[self._index]
        audio = load_audio(path, self.raw_sample_rate)
        gap = np.zeros(int(self.gap_s * SAMPLE_RATE), np.float32)
        self._audio, self._pos = np.concatenate([audio, gap]), 0

    def read(self) -> np.ndarray | None:
        """The next chunk, or None once every file was played (and loop is off)."""
        if self.finished:
            return None
        if self._audio is None:
            self._load_next()
        chunk = self._audio[self._pos:self._pos + self.chunk_frames]
        self._pos += self.chunk_frames
        if self._pos >= self._audio.size:
            self._audio = None
            self._index += 1
            if self._index == len(self.files):
                self._index = 0
                self.finished = not self.loop
        if chunk.size < self.chunk_frames:
            chunk = np.pad(chunk, (0, self.chunk_frames - chunk.size))
        return chunk


def list_input_devices(pa) -> list[tuple[int, str, int, int]]:
    """(index, name, max input channels, default rate) of every device that can record."""
    out = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get("maxInputChannels", 0)) > 0:
            out.append((i, str(info["name"]), int(info["maxInputChannels"]),
                        int(info["defaultSampleRate"])))
    return out


class MicrophoneError(RuntimeError):
    """No usable microphone; the message lists the input devices that exist."""


class MicrophoneSource:
    """PortAudio capture at the device's own rate, resampled to 16 kHz mono."""

    def __init__(self, device: str, chunk_frames: int, channels: int = 1, device_rate: int = 0):
        import pyaudio

        self._pa = pyaudio.PyAudio()
        try:
            devices = list_input_devices(self._pa)
            listing = "; ".join(f"[{i}] {n} ({c} ch, {r} Hz)" for i, n, c, r in devices) or "none"
            index, name, max_ch, default_rate = self._choose(device, devices, listing)
            self.channels = min(channels, max_ch)
            self.rate = device_rate or default_rate
            self.name = name
            if not self._pa.is_format_supported(
                    self.rate, input_device=index, input_channels=self.channels,
                    input_format=pyaudio.paFloat32):
                raise MicrophoneError(f"device [{index}] {name} does not support {self.rate} Hz "
                                      f"x {self.channels} ch; input devices: {listing}")
            self._resampler = Resampler(self.rate, SAMPLE_RATE)
            self.chunk_frames = chunk_frames
            device_frames = max(1, int(round(chunk_frames * self.rate / SAMPLE_RATE)))
            self._stream = self._pa.open(format=pyaudio.paFloat32, channels=self.channels,
                                         rate=self.rate, input=True, input_device_index=index,
                                         frames_per_buffer=device_frames)
            self._device_frames = device_frames
        except Exception:
            self._pa.terminate()
            raise

    @staticmethod
    def _choose(device: str, devices, listing):
        if not devices:
            raise MicrophoneError("no audio input device found (no sound card, or /dev/snd not "
                                  "passed into the container); use source:=file to run from "
                                  "a recording")
        if device == "":
            return devices[0]
        if device.strip().isdigit():
            for d in devices:
                if d[0] == int(device):
                    return d
            raise MicrophoneError(f"no input device with index {device}; input devices: {listing}")
        matches = [d for d in devices if device.lower() in d[1].lower()]
        if not matches:
            raise MicrophoneError(f"no input device matches {device!r}; input devices: {listing}")
        return matches[0]

    def read(self) -> np.ndarray:
        raw = self._stream.read(self._device_frames, exception_on_overflow=False)
        data = np.frombuffer(raw, dtype=np.float32)
        mono = data.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else data
        return self._resampler(mono)

    def close(self) -> None:
        try:
            self._stream.stop_stream()
            self._stream.close()
        finally:
            self._pa.terminate()


# A missing or lost microphone is retried after retry_period_s, the wait doubling per failed
# attempt up to this bound (and back to retry_period_s once the device opens).
RETRY_MAX_S = 30.0

# Test-only: a microphone that can be unplugged, for machines without a sound card (make faults).
SIM_MICROPHONE_ENV = "TINYALIGN_SIM_MICROPHONE"


class SimulatedMicrophone:
    """Stands in for :class:`MicrophoneSource` when ``$TINYALIGN_SIM_MICROPHONE`` names a
    control file (test only; never set in normal use). The "device" is plugged in while that
    file exists; it plays the audio file named in it (looped; empty: quiet noise) paced at real
    time. It fails the way PyAudio does on an unplug: opening with no device raises
    MicrophoneError (PortAudio then lists no input device), and a read after the device went
    away raises ``OSError(-9999, 'Unanticipated host error')`` (what PyAudio's
    ``Stream.read`` raises when ALSA loses the device)."""

    def __init__(self, control: str, chunk_frames: int):
        import time

        self._control, self._time = Path(control), time
        if not self._control.exists():
            raise MicrophoneError("no audio input device found (simulated: "
                                  f"{self._control} absent)")
        spec = self._control.read_text().strip()
        audio = load_audio(spec) if spec else \
            (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 1e-3).astype(np.float32)
        self._audio, self._pos = audio.astype(np.float32), 0
        self.chunk_frames, self.name, self.rate, self.channels = chunk_frames, "simulated", \
            SAMPLE_RATE, 1
        self._next = time.monotonic()

    def read(self) -> np.ndarray:
        self._next += self.chunk_frames / SAMPLE_RATE            # a device read blocks ...
        self._time.sleep(max(0.0, self._next - self._time.monotonic()))   # ... one chunk long
        if not self._control.exists():
            raise OSError(-9999, "Unanticipated host error")
        idx = (self._pos + np.arange(self.chunk_frames)) % self._audio.size
        self._pos = (self._pos + self.chunk_frames) % self._audio.size
        return self._audio[idx]

    def close(self) -> None:
        pass


def open_microphone(device: str, chunk_frames: int, channels: int = 1, device_rate: int = 0):
    """The PortAudio microphone, or the simulated one when ``$TINYALIGN_SIM_MICROPHONE`` is set."""
    control = os.environ.get(SIM_MICROPHONE_ENV, "")
    if control:
        return SimulatedMicrophone(control, chunk_frames)
    return MicrophoneSource(device, chunk_frames, channels, device_rate)
