"""Real recorded speech with transcripts from Debian packages (installed by make setup).

  asterisk   asterisk-core-sounds-en(-wav): ~560 prompts by one real speaker (Allison Smith),
             8 kHz telephone band: a realistic user to personalise to.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from ..core.learning.data import Example

ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ASTERISK_WAV = Path("/usr/share/asterisk/sounds/en")


def asterisk_examples(max_words: int = 40) -> list[Example]:
    """Prompts that have both a recording and a spoken-text transcript (no [tone] markers)."""
    if not ASTERISK_TEXT.is_file():
        raise FileNotFoundError(f"{ASTERISK_TEXT} missing: apt-get install asterisk-core-sounds-en"
                                " asterisk-core-sounds-en-wav (make setup does)")
    out = []
    with gzip.open(ASTERISK_TEXT, "rt", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = re.sub(r"\s+", " ", text).strip()
            wav = ASTERISK_WAV / f"{name.strip()}.wav"
            if not text or "[" in text or not wav.is_file():
                continue
            if len(text.split()) > max_words:
                continue
            out.append(Example(wav, text, name.strip()))
    return out


