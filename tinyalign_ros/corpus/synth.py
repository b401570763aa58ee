"""Offline synthetic speech corpora: varied sentences spoken by espeak-ng voice variants with
random rate and pitch, and light sox augmentation. Used to train the base projector and to make
"hard" synthetic speakers for the benchmark. Deterministic for a given seed.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VERBS = ["go to", "drive to", "move to", "navigate to", "head to", "come back from",
         "look at", "turn towards", "wait near", "clean", "check", "inspect", "follow me to"]
PLACES = ["the kitchen", "the door", "the charging station", "the living room", "the table",
          "the window", "the garage", "the front desk", "room two", "the elevator", "the garden",
          "the office", "the hallway", "the bedroom", "the loading dock", "the stairs"]
OBJECTS = ["the red cup", "my keys", "a bottle of water", "the blue box", "the remote control",
           "the green book", "my phone", "the small bag", "two apples", "the screwdriver",
           "the yellow ball", "a towel", "the laptop", "the newspaper", "my glasses"]
ACTIONS = ["bring me", "pick up", "put down", "find", "hand me", "take away", "put away", "show me"]
NUMBERS = ["one", "two", "three", "five", "ten", "twenty", "fifty", "half a"]
UNITS = ["meters", "steps", "degrees", "minutes", "seconds"]
QUESTIONS = ["what time is it", "where are my keys", "how is the weather today",
             "what is on my calendar", "is the door locked", "how much battery do you have left",
             "who is at the door", "what can you do", "where is the nearest exit",
             "did anyone call me", "what is the temperature in here", "are you listening",
             "how far is the kitchen", "can you hear me", "what did I ask you before"]
STATEMENTS = ["I am going to bed now", "the meeting starts at nine", "it is cold in here",
              "thank you very much", "please be quiet", "I need some help", "that is not right",
              "good morning robot", "I will be back in an hour", "the package arrived today",
              "my name is Alex", "we are out of milk", "the lights are too bright",
              "I feel tired today", "let us start again"]
DIRECTIONS = ["turn left", "turn right", "go forward", "go back", "stop", "slow down", "speed up",
              "stop right there", "turn around", "keep going"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """n varied robot-assistant sentences (duplicates allowed only when the space runs out)."""
    rng = random.Random(seed)
    makers = [
        lambda: f"{rng.choice(VERBS)} {rng.choice(PLACES)}",
        lambda: f"please {rng.choice(VERBS)} {rng.choice(PLACES)}",
        lambda: f"{rng.choice(ACTIONS)} {rng.choice(OBJECTS)}",
        lambda: f"{rng.choice(ACTIONS)} {rng.choice(OBJECTS)} from {rng.choice(PLACES)}",
        lambda: f"{rng.choice(DIRECTIONS)} {rng.choice(NUMBERS)} {rng.choice(UNITS)}",
        lambda: f"{rng.choice(DIRECTIONS)} and then {rng.choice(DIRECTIONS)}",
        lambda: rng.choice(QUESTIONS),
        lambda: rng.choice(STATEMENTS),
        lambda: f"{rng.choice(STATEMENTS)} so {rng.choice(ACTIONS)} {rng.choice(OBJECTS)}",
        lambda: f"can you {rng.choice(ACTIONS)} {rng.choice(OBJECTS)}",
        lambda: f"after that {rng.choice(VERBS)} {rng.choice(PLACES)} and wait",
    ]
    seen, out = set(), []
    tries = 0
    while len(out) < n:
        s = rng.choice(makers)()
        tries += 1
        if s in seen and tries < 50 * n:
            continue
        seen.add(s)
        out.append(s)
    return out


ESPEAK_VOICES = ["en", "en-us", "en-gb", "en+m1", "en+m2", "en+m3", "en+m4", "en+m5", "en+m7",
                 "en+f1", "en+f2", "en+f3", "en+f4", "en-us+m3", "en-us+f2", "en-gb+m3",
                 "en-gb+f3", "en-gb-scotland", "en-gb-x-rp", "en+klatt", "en+klatt2",
                 "en-us+klatt3"]


@dataclass
class Speaker:
    """How one synthetic speaker sounds: espeak voice + rate/pitch ranges + sox effects."""
    name: str
    voices: tuple = tuple(ESPEAK_VOICES)
    rate: tuple = (130, 200)       # words per minute
    pitch: tuple = (30, 70)
    sox_effects: tuple = ()        # e.g. ("tempo", "0.8") or ("sinc", "300-3400")
    noise: float = 0.0             # white noise amplitude added by sox


HARD_SPEAKERS = {
    "croaky": Speaker("croaky", voices=("en+croak",), rate=(120, 150), pitch=(10, 30)),
    "whisper": Speaker("whisper", voices=("en+whisper",), rate=(130, 160), pitch=(40, 60)),
    "slow_telephone": Speaker("slow_telephone", voices=("en-us+m3",), rate=(90, 110),
                              sox_effects=("sinc", "300-3400")),
    "noisy": Speaker("noisy", voices=("en+f3",), rate=(150, 180), noise=0.03),
}


def require_tools() -> None:
    for tool, pkg in (("espeak-ng", "espeak-ng"), ("sox", "sox")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install {pkg} (make setup does)")


def synthesize(text: str, out: Path, speaker: Speaker, rng: random.Random) -> None:
    voice = rng.choice(speaker.voices)
    rate = rng.randint(*speaker.rate)
    pitch = rng.randint(*speaker.pitch)
    raw = out.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(raw),
                    text], check=True, capture_output=True)
    effects = ["rate", "16000", *speaker.sox_effects]
    cmd = ["sox", str(raw), "-c", "1", "-b", "16", str(out)] + effects
    if speaker.noise > 0:
        noise = out.with_suffix(".noise.wav")
        subprocess.run(["sox", str(raw), "-c", "1", "-b", "16", str(out)] + effects, check=True,
                       capture_output=True)
        subprocess.run(["sox", str(out), str(noise), "synth", "whitenoise", "vol",
                        str(speaker.noise)], check=True, capture_output=True)
        mixed = out.with_suffix(".mix.wav")
        subprocess.run(["sox", "-m", str(out), str(noise), str(mixed)], check=True,
                       capture_output=True)
        mixed.replace(out)
        noise.unlink()
    else:
        subprocess.run(cmd, check=True, capture_output=True)
    raw.unlink()


def make_corpus(out_dir: str | Path, texts: list[str], speaker: Speaker, seed: int = 0,
                progress=None) -> Path:
    """Speak every text into out_dir/NNNNN.wav and write out_dir/data.jsonl. Idempotent."""
    require_tools()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i, text in enumerate(texts):
        wav = out / f"{i:05d}.wav"
        state = rng.random()  # keep the stream of choices independent of what is cached
        if not wav.is_file():
            synthesize(text, wav, speaker, random.Random(state))
        rows.append({"audio": wav.name, "text": text, "id": f"{speaker.name}-{i:05d}"})
        if progress:
            progress(i + 1, len(texts))
    manifest = out / "data.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
