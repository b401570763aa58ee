"""Projector updates are authenticated with an HMAC key only the graph's nodes hold."""
import stat

import pytest

from tinyalign_ros.core.signing import SigningError, create_key, read_key, signature, verify


def test_the_key_is_made_once_owner_only(tmp_path):
    path = tmp_path / "keys" / "update.key"
    key = create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert create_key(path) == key == read_key(path)        # never overwritten


def test_a_signature_covers_every_field_and_its_boundaries(tmp_path):
    key, other = create_key(tmp_path / "a.key"), create_key(tmp_path / "b.key")
    fields = ("alice", "v2", "v1", 17, 5, b"\x00checkpoint")
    sig = signature(key, *fields)
    assert verify(key, sig, *fields)
    assert not verify(other, sig, *fields)                    # another key
    assert not verify(key, sig, "alice", "v2", "v1", 17, 5, b"\x00checkpoinT")
    assert not verify(key, sig, "bob", "v2", "v1", 17, 5, b"\x00checkpoint")
    assert signature(key, "ab", "c") != signature(key, "a", "bc")
    assert not verify(key, b"", *fields)                      # unsigned


def test_unusable_keys_are_refused_clearly(tmp_path):
    with pytest.raises(SigningError, match="no update key at .*makes it on its first start"):
        read_key(tmp_path / "missing.key")
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(SigningError, match="hex"):
        read_key(tmp_path / "bad.key")
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(SigningError, match="too short"):
        read_key(tmp_path / "short.key")
