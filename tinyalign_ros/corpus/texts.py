"""Sentence text for corpora and the bench, and the one rule that keeps test text out of training.

Two sources, both offline: robot-assistant sentences from templates (commands, questions,
statements) and everyday sentences from Debian's fortunes packages. Every sentence falls, by a
hash of its normalised words, into the training side or the reserved (test) side
(``is_reserved``): corpora draw only from the training side and the bench draws its synthetic test
sentences only from the reserved side, so no test sentence can reach training whatever the seeds
or sizes. Texts of the real speaker and of the intent set are reserved by name too
(``reserved_fixed_texts``). ``check_training_texts`` enforces it where a corpus is planned.
"""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

#: share of all sentences on the reserved (test) side
RESERVED_PERCENT = 10

VERBS = ["go to", "drive to", "move to", "navigate to", "head to", "come back from",
         "look at", "turn towards", "wait near", "clean", "check", "inspect", "follow me to",
         "take me to", "park near", "patrol", "search", "vacuum", "map", "guard"]
PLACES = ["the kitchen", "the door", "the charging station", "the living room", "the table",
          "the window", "the garage", "the front desk", "room two", "the elevator", "the garden",
          "the office", "the hallway", "the bedroom", "the loading dock", "the stairs",
          "the bathroom", "the balcony", "the basement", "the lab", "the meeting room",
          "the corridor", "the sofa", "the fridge", "the back door", "the reception",
          "room four", "the second floor", "the workshop", "the dining room"]
OBJECTS = ["the red cup", "my keys", "a bottle of water", "the blue box", "the remote control",
           "the green book", "my phone", "the small bag", "two apples", "the screwdriver",
           "the yellow ball", "a towel", "the laptop", "the newspaper", "my glasses",
           "the charger", "a pen", "the white mug", "my wallet", "the first aid kit",
           "the black jacket", "a spoon", "the toolbox", "the plant", "an orange",
           "the umbrella", "my headphones", "the tray", "the medicine", "a blanket"]
ACTIONS = ["bring me", "pick up", "put down", "find", "hand me", "take away", "put away",
           "show me", "fetch", "carry", "look for", "give me"]
NUMBERS = ["one", "two", "three", "four", "five", "ten", "twenty", "fifty", "half a"]
UNITS = ["meters", "steps", "degrees", "minutes", "seconds"]
QUESTIONS = ["what time is it", "where are my keys", "how is the weather today",
             "what is on my calendar", "is the door locked", "how much battery do you have left",
             "who is at the door", "what can you do", "where is the nearest exit",
             "did anyone call me", "what is the temperature in here", "are you listening",
             "how far is the kitchen", "can you hear me", "what did I ask you before",
             "what is the date today", "is it going to rain", "where did you put the box",
             "when is my next meeting", "are the windows closed", "is anyone in the garden",
             "what is your name", "how long until you are charged", "did the mail come"]
STATEMENTS = ["I am going to bed now", "the meeting starts at nine", "it is cold in here",
              "thank you very much", "please be quiet", "I need some help", "that is not right",
              "good morning robot", "I will be back in an hour", "the package arrived today",
              "my name is Alex", "we are out of milk", "the lights are too bright",
              "I feel tired today", "let us start again", "that was perfect",
              "you are blocking the way", "the floor is wet", "dinner is at seven",
              "my friends are coming over", "I dropped something", "it is too loud in here"]
DIRECTIONS = ["turn left", "turn right", "go forward", "go back", "stop", "slow down",
              "speed up", "stop right there", "turn around", "keep going", "back up",
              "move aside"]
DEVICES = ["the lights", "the heating", "the fan", "the radio", "the television",
           "the music", "the alarm", "the coffee machine", "the vacuum", "the camera"]
TIMES = ["in five minutes", "at nine", "tomorrow morning", "after lunch", "tonight",
         "in an hour", "at noon", "on Monday", "later today", "at six thirty"]
TASKS = ["call my sister", "water the plants", "take my pills", "buy milk", "feed the cat",
         "lock the door", "charge my phone", "check the mail", "clean the kitchen",
         "close the windows"]


def templated_sentences(n: int, seed: int = 0) -> list[str]:
    """n distinct robot-assistant sentences (repeats only once the template space runs out)."""
    rng = random.Random(seed)
    c = rng.choice
    makers = [
        lambda: f"{c(VERBS)} {c(PLACES)}",
        lambda: f"please {c(VERBS)} {c(PLACES)}",
        lambda: f"{c(ACTIONS)} {c(OBJECTS)}",
        lambda: f"{c(ACTIONS)} {c(OBJECTS)} from {c(PLACES)}",
        lambda: f"{c(DIRECTIONS)} {c(NUMBERS)} {c(UNITS)}",
        lambda: f"{c(DIRECTIONS)} and then {c(DIRECTIONS)}",
        lambda: c(QUESTIONS),
        lambda: c(STATEMENTS),
        lambda: f"{c(STATEMENTS)} so {c(ACTIONS)} {c(OBJECTS)}",
        lambda: f"can you {c(ACTIONS)} {c(OBJECTS)}",
        lambda: f"after that {c(VERBS)} {c(PLACES)} and wait",
        lambda: f"turn {c(('on', 'off'))} {c(DEVICES)}",
        lambda: f"turn {c(('on', 'off'))} {c(DEVICES)} in {c(PLACES)}",
        lambda: f"remind me to {c(TASKS)} {c(TIMES)}",
        lambda: f"set a timer for {c(NUMBERS)} {c(('minutes', 'seconds'))}",
        lambda: f"is {c(OBJECTS)} in {c(PLACES)}",
        lambda: f"where is {c(OBJECTS)}",
        lambda: f"put {c(OBJECTS)} on {c(PLACES)}",
    ]
    seen, out, tries = set(), [], 0
    while len(out) < n:
        s = c(makers)()
        tries += 1
        if s in seen and tries < 50 * n:
            continue
        seen.add(s)
        out.append(s)
    return out


FORTUNES = Path("/usr/share/games/fortunes")


def fortune_sentences(max_words: int = 14, min_words: int = 3) -> list[str]:
    """Everyday English sentences from Debian's fortunes packages (quotes, jokes, sayings),
    for text variety beyond the robot templates. Only plain sentences without digits."""
    out, seen = [], set()
    files = sorted(f for f in FORTUNES.glob("*") if f.is_file() and not f.suffix
                   and not f.name.startswith(("art", "ascii", "off"))) if FORTUNES.is_dir() else []
    for f in files:
        text = f.read_text(errors="ignore")
        for block in text.split("\n%\n"):
            block = " ".join(block.split())
            for sent in re.split(r"(?<=[.!?])\s+", block):
                sent = sent.strip(" \"'-")
                words = sent.split()
                if not (min_words <= len(words) <= max_words):
                    continue
                if not re.fullmatch(r"[A-Za-z ,.'?!;:-]+", sent) or "--" in sent or ".." in sent:
                    continue
                if any(len(w) > 1 and w.isupper() for w in re.findall(r"[A-Za-z]+", sent)):
                    continue  # shouting and acronyms are spoken oddly
                if sent.lower() not in seen:
                    seen.add(sent.lower())
                    out.append(sent)
    return out


def text_key(text: str) -> str:
    """What makes two sentences the same: their lower-case words, punctuation ignored."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def is_reserved(text: str) -> bool:
    """True for the test side of the split (a fixed hash of the normalised words)."""
    h = int(hashlib.sha1(text_key(text).encode()).hexdigest()[:8], 16)
    return h % 100 < RESERVED_PERCENT


def reserved_fixed_texts() -> set[str]:
    """Keys of test texts that are fixed rather than drawn: the intent set and the real speaker's
    prompts (when installed)."""
    from ..bench.intents import utterances
    keys = {text_key(t) for _, t in utterances()}
    try:
        from .corpora import asterisk_examples
        keys |= {text_key(e.text) for e in asterisk_examples()}
    except FileNotFoundError:
        pass
    return keys


def check_training_texts(texts: list[str]) -> None:
    """Refuses a training text list that holds any test text."""
    fixed = reserved_fixed_texts()
    bad = [t for t in texts if is_reserved(t) or text_key(t) in fixed]
    if bad:
        raise ValueError(f"{len(bad)} training texts are test texts, e.g. {bad[:3]}")


def training_texts(templated: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(templated, everyday) sentences on the training side, each list shuffled by seed."""
    fixed = reserved_fixed_texts()

    def keep(t):
        return not is_reserved(t) and text_key(t) not in fixed
    rng = random.Random(seed)
    robot = [t for t in templated_sentences(templated, seed) if keep(t)]
    everyday = [t for t in fortune_sentences() if keep(t)]
    rng.shuffle(everyday)
    return robot, everyday


def reserved_sentences(n: int, seed: int = 100) -> list[str]:
    """n reserved sentences, half robot commands and half everyday, shuffled by seed."""
    rng = random.Random(seed)
    robot = [t for t in templated_sentences(20 * n + 200, seed) if is_reserved(t)]
    everyday = [t for t in fortune_sentences() if is_reserved(t)]
    rng.shuffle(everyday)
    texts = robot[:n - n // 2] + everyday[:n // 2]
    if len(texts) < n:
        raise ValueError(f"only {len(texts)} reserved sentences for {n} requested")
    rng.shuffle(texts)
    return texts
