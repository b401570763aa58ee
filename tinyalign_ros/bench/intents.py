"""A small robot command set: 20 intents, two phrasings each, spoken by synthetic voices.

A response "names" an intent when it contains all of that intent's keywords (as words, after
the WER normaliser); it is right when it names the true intent and no other. So a system is
scored on whether what the LLM heard carries the command, not on verbatim repetition.
"""
from __future__ import annotations

import re

from ..core.metrics import normalize

#: (intent, keywords, phrasings)
INTENTS = (
    ("stop", ("stop",), ("stop now", "please stop moving")),
    ("forward", ("forward",), ("go forward", "move forward a little")),
    ("backward", ("backward",), ("drive backward", "move backward please")),
    ("left", ("left",), ("turn left", "take a left turn")),
    ("right", ("right",), ("turn right", "make a right turn")),
    ("kitchen", ("kitchen",), ("go to the kitchen", "take me to the kitchen")),
    ("charging", ("charging",), ("go to the charging station", "return to your charging dock")),
    ("battery", ("battery",), ("how much battery do you have", "check your battery level")),
    ("time", ("time",), ("what time is it", "tell me the time")),
    ("weather", ("weather",), ("how is the weather", "what is the weather like outside")),
    ("lights", ("lights",), ("turn on the lights", "switch the lights on")),
    ("music", ("music",), ("play some music", "put on some music")),
    ("volume", ("volume",), ("turn the volume down", "lower the volume")),
    ("door", ("door",), ("open the door", "is the front door open")),
    ("follow", ("follow",), ("follow me", "please follow me around")),
    ("water", ("water",), ("bring me a glass of water", "I would like some water")),
    ("cup", ("cup",), ("pick up the cup", "hand me the red cup")),
    ("photo", ("photo",), ("take a photo", "snap a photo of this")),
    ("help", ("help",), ("I need help", "call for help")),
    ("dance", ("dance",), ("do a dance", "can you dance for me")),
)


def utterances() -> list[tuple[str, str]]:
    """(intent, text) for every phrasing."""
    return [(name, text) for name, _, phrasings in INTENTS for text in phrasings]


def named_intents(response: str) -> set[str]:
    words = normalize(response)
    return {name for name, keys, _ in INTENTS
            if all(re.search(rf"\b{re.escape(k)}", words) for k in keys)}


def accuracy(intents: list[str], responses: list[str]) -> float:
    if not intents:
        return float("nan")
    return sum(named_intents(r) == {i} for i, r in zip(intents, responses)) / len(intents)
