"""Authenticated projector updates: any process on the DDS domain can publish on
``projector_updates``, so each update carries an HMAC-SHA256 over its content made with a secret
key that only the adaptation node and the response nodes hold (a file, 0600). A response node
drops an update whose signature is missing or wrong, and one older than the last it took for
that user (a replayed update would roll the user back).

The key file is made by the adaptation node on first start if it does not exist; nodes on other
hosts get a copy of it (scp), like any deployment secret.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32


class SigningError(ValueError):
    """No usable key: the message says which file and what to do."""


def default_key_file() -> Path:
    from .models import data_dir

    return data_dir() / "update.key"


def key_path(setting: str) -> Path:
    return Path(setting).expanduser() if setting else default_key_file()


def create_key(path: Path) -> bytes:
    """The key in ``path``, made (random, owner-only) if the file does not exist yet."""
    if path.is_file():
        return read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
    return read_key(path)


def read_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise SigningError(f"no update key at {path}: the adaptation node makes it on its first "
                           f"start; on another host copy it there (update_key_file)") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SigningError(f"{path} does not hold a hex key") from None
    if len(key) < 16:
        raise SigningError(f"{path}: key too short ({len(key)} bytes; at least 16)")
    return key


def signature(key: bytes, *fields) -> bytes:
    """HMAC-SHA256 over the fields, each length-prefixed (no two field lists collide)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for field in fields:
        data = field if isinstance(field, (bytes, bytearray)) else str(field).encode()
        mac.update(len(data).to_bytes(8, "little"))
        mac.update(data)
    return mac.digest()


def verify(key: bytes, sig: bytes, *fields) -> bool:
    return hmac.compare_digest(signature(key, *fields), bytes(sig))
