"""The adaptation log: durable, bounded, safe against hostile user ids."""
import sqlite3

import numpy as np
import pytest

from tinyalign_ros.core.learning.store import StoreError, UtteranceStore
from tinyalign_ros.core.users import UserIdError


def feats(n=10):
    return np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)


def test_log_correct_and_select(tmp_path):
    store = UtteranceStore(tmp_path)
    store.log("u1", "alice", feats(), "go forward ten meters", 0.9, "asr:8", created=1)
    store.log("u2", "alice", feats(12), "turn lift", 0.4, "asr:8", created=2)
    store.log("u3", "bob", feats(), "hello", 0.9, "asr:8", created=3)
    store.correct("alice", "u2", "turn left")
    all_alice = store.utterances("alice")
    assert [u.utterance_id for u in all_alice] == ["u1", "u2"]
    assert [u.label for u in all_alice] == ["go forward ten meters", "turn left"]
    assert np.allclose(all_alice[1].features(), feats(12), atol=1e-2)
    assert [u.utterance_id for u in store.utterances("alice", corrected_only=True)] == ["u2"]
    assert [u.utterance_id for u in store.utterances("alice", min_confidence=0.95)] == ["u2"]
    with pytest.raises(StoreError, match="no logged utterance"):
        store.correct("bob", "u2", "steal alice's utterance")
    with pytest.raises(StoreError, match="empty"):
        store.correct("alice", "u1", "  ")


def test_survives_reopen_and_uses_wal(tmp_path):
    store = UtteranceStore(tmp_path)
    store.log("u1", "alice", feats(), "hi", 0.9, "asr:8")
    store.close()
    again = UtteranceStore(tmp_path)
    assert again.count("alice") == 1
    mode = sqlite3.connect(tmp_path / "store.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"
    assert not list(tmp_path.rglob(".tmp-*"))       # no temporary file left behind


def test_retention_keeps_corrected_and_newest(tmp_path):
    store = UtteranceStore(tmp_path, max_utterances_per_user=3)
    store.log("old-corrected", "alice", feats(), "a", 0.9, "asr:8", created=0)
    store.correct("alice", "old-corrected", "a!")
    for i in range(1, 6):
        store.log(f"u{i}", "alice", feats(), "x", 0.9, "asr:8", created=i)
    kept = [u.utterance_id for u in store.utterances("alice")]
    assert kept == ["old-corrected", "u4", "u5"]
    files = list((tmp_path / "users" / "alice" / "features").glob("*.npy"))
    assert len(files) == 3


def test_retention_keeps_new_speech_when_every_older_utterance_is_corrected(tmp_path):
    """Once all of a user's utterances are corrected, a new one is still logged (so it can be
    corrected): the oldest corrected one goes instead. The newest tenth of the cap stays while
    its correction may still come."""
    store = UtteranceStore(tmp_path, max_utterances_per_user=20)
    for i in range(20):
        store.log(f"c{i}", "alice", feats(), "x", 0.9, "asr:8", created=i)
        store.correct("alice", f"c{i}", "x!")
    for i in range(3):
        store.log(f"n{i}", "alice", feats(), "y", 0.9, "asr:8", created=100 + i)
    # each new utterance was kept, and the oldest corrected ones went; n0, uncorrected and no
    # longer among the newest two (a tenth of 20), went before any corrected one
    kept = [u.utterance_id for u in store.utterances("alice")]
    assert kept == [f"c{i}" for i in range(2, 20)] + ["n1", "n2"]
    store.correct("alice", "n1", "y!")
    for i in range(3, 5):
        store.log(f"n{i}", "alice", feats(), "y", 0.9, "asr:8", created=100 + i)
    kept = [u.utterance_id for u in store.utterances("alice")]
    assert kept == [f"c{i}" for i in range(3, 20)] + ["n1", "n3", "n4"]
    assert len(list((tmp_path / "users" / "alice" / "features").glob("*.npy"))) == 20


def test_an_utterance_dropped_during_a_job_is_left_out_of_it(tmp_path):
    """A job lists the user's utterances, then reads them for minutes; new speech meanwhile
    makes retention drop the oldest. The job goes on without the dropped one (before: the
    whole job failed with "No such file or directory", seen in make soak)."""
    from tinyalign_ros.core.learning.adapt import AdaptConfig, user_items

    store = UtteranceStore(tmp_path)
    for i in range(8):
        store.log(f"u{i}", "alice", feats(), "x", 0.9, "asr:8", created=i)
        store.correct("alice", f"u{i}", f"x {i}")
    listed = store.utterances

    def utterances_then_retention(*args, **kwargs):
        out = listed(*args, **kwargs)
        out[0].features_path.unlink()
        out[0].audio_path.unlink(missing_ok=True)
        return out
    store.utterances = utterances_then_retention
    train, val = user_items(store, "alice", AdaptConfig(min_utterances=3), "asr:8")
    ids = sorted(it.id for it in train + val)
    assert ids == [f"u{i}" for i in range(1, 8)]


def test_the_projector_step_reads_the_users_newest_utterances_only(tmp_path):
    """A long log does not make a long job: the projector step trains and validates on the
    newest ``max_utterances`` usable utterances (the default 100 of the store's 500); 0 reads
    them all."""
    from tinyalign_ros.core.learning.adapt import AdaptConfig, user_items

    store = UtteranceStore(tmp_path)
    for i in range(130):
        store.log(f"u{i:03d}", "alice", feats(), "x", 0.9, "asr:8", created=i)
        if i % 2:
            store.correct("alice", f"u{i:03d}", f"x {i}")
    assert AdaptConfig().max_utterances == 100
    train, val = user_items(store, "alice", AdaptConfig(), "asr:8")
    assert sorted(it.id for it in train + val) == [f"u{i:03d}" for i in range(30, 130)]
    train, val = user_items(store, "alice", AdaptConfig(max_utterances=0), "asr:8")
    assert len(train + val) == 130


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "..", ""])
def test_hostile_user_ids_touch_no_path(tmp_path, bad):
    store = UtteranceStore(tmp_path)
    with pytest.raises(UserIdError):
        store.log("u1", bad, feats(), "x", 0.9, "asr:8")
    with pytest.raises(UserIdError):
        store.forget(bad)
    assert not (tmp_path.parent / "etc").exists()


def test_full_disk_is_refused_before_writing(tmp_path):
    store = UtteranceStore(tmp_path, min_free_mb=10**12)
    with pytest.raises(StoreError, match="disk nearly full"):
        store.log("u1", "alice", feats(), "x", 0.9, "asr:8")
    assert store.count("alice") == 0


def test_projector_versions_rollback_and_forget(tmp_path):
    store = UtteranceStore(tmp_path)
    store.log("u1", "alice", feats(), "x", 0.9, "asr:8")
    store.add_projector("alice", "v1", "base", b"one", {"wer": 0.5}, make_current=True)
    store.add_projector("alice", "v2", "v1", b"two", {"wer": 0.3}, make_current=True)
    store.add_projector("alice", "v3", "v2", b"worse", {"wer": 0.6}, make_current=False)
    assert store.current_projector("alice").version == "v2"
    assert store.rollback("alice").version == "v1"
    assert store.current_projector("alice").version == "v1"
    assert store.rollback("alice") is None                       # back to the base projector
    with pytest.raises(StoreError, match="no adapted projector"):
        store.rollback("alice")
    assert store.forget("alice") == (1, 3, 0)
    assert not (tmp_path / "users" / "alice").exists() and store.count("alice") == 0


def tone(n=8000, rate=16000):
    t = np.arange(n) / rate
    return (np.sin(2 * np.pi * 220 * t) * 12000).astype(np.int16)


def test_audio_is_kept_beside_the_features_and_goes_with_them(tmp_path):
    store = UtteranceStore(tmp_path, max_utterances_per_user=2)
    store.log("u1", "alice", feats(), "x", 0.9, "asr:8", created=1, audio=tone())
    store.log("u2", "alice", feats(), "y", 0.9, "asr:8", created=2)        # an older node: none
    store.log("u3", "alice", feats(), "z", 0.9, "asr:8", created=3, audio=tone(4000, 8000),
              sample_rate=8000)
    # retention dropped u1 (oldest uncorrected): its audio file went with its features
    assert not (tmp_path / "users" / "alice" / "audio" / "u1.wav").exists()
    by_id = {u.utterance_id: u for u in store.utterances("alice")}
    assert set(by_id) == {"u2", "u3"}
    assert not by_id["u2"].has_audio and by_id["u2"].audio() is None
    a = by_id["u3"].audio()                                  # resampled to 16 kHz, float
    assert a.dtype == np.float32 and abs(a.size - 8000) < 200 and 0.3 < np.abs(a).max() < 0.4
    for bad, rate, why in ((np.zeros(10, np.float32), 16000, "int16"),
                           (np.zeros((2, 10), np.int16), 16000, "mono"),
                           (np.zeros(0, np.int16), 16000, "mono"),
                           (tone(), 100, "not plausible")):
        with pytest.raises(StoreError, match=why):
            store.log("u9", "alice", feats(), "w", 0.9, "asr:8", audio=bad, sample_rate=rate)
    assert "u9" not in {u.utterance_id for u in store.utterances("alice")}
    assert store.forget("alice") == (2, 0, 0)
    assert not (tmp_path / "users" / "alice").exists()


def test_recognizer_versions_rollback_and_forget_beside_projectors(tmp_path):
    store = UtteranceStore(tmp_path)
    store.add_projector("alice", "p1", "base", b"proj", {}, make_current=True)
    store.add_recognizer("alice", "r1", "", b"one", {"recognizer_wer_after": 0.2}, True)
    store.add_recognizer("alice", "r2", "r1", b"two", {}, make_current=True)
    store.add_recognizer("bob", "rb", "", b"bob", {}, make_current=True)
    assert store.current_recognizer("alice").version == "r2"
    assert store.current_projector("alice").version == "p1"       # kinds are apart
    assert store.rollback("alice", "recognizer").version == "r1"
    assert store.current_projector("alice").version == "p1"
    assert store.rollback("alice", "recognizer") is None
    with pytest.raises(StoreError, match="no adapted recognizer"):
        store.rollback("alice", "recognizer")
    with pytest.raises(StoreError, match="kind must be"):
        store.rollback("alice", "llm")
    assert (tmp_path / "users" / "alice" / "recognizers" / "r2.safetensors").read_bytes() == b"two"
    assert store.users() == ["alice", "bob"]
    assert store.forget("alice") == (0, 1, 2)
    assert not (tmp_path / "users" / "alice").exists()
    assert [r.version for r in store.recognizers("bob")] == ["rb"]


def test_export_user_log_to_mcap(tmp_path):
    from mcap_ros2.reader import read_ros2_messages

    from tinyalign_ros.cli import main

    store = UtteranceStore(tmp_path / "store")
    store.log("u1", "alice", feats(10), "go forward", 0.9, "asr:8", created=100.5)
    store.log("u2", "alice", feats(12), "turn lift", 0.4, "asr:8", created=101.0)
    store.log("u3", "bob", feats(), "not alice", 0.9, "asr:8", created=102.0)
    store.correct("alice", "u2", "turn left")
    store.add_projector("alice", "v1", "base", b"checkpoint-bytes", {"wer_after": 0.3}, True)
    store.log("u4", "alice", feats(), "with audio", 0.9, "asr:8", created=103.0,
              audio=np.arange(-500, 500, dtype=np.int16))
    store.add_recognizer("alice", "r1", "", b"adapter-bytes", {"recognizer_wer_after": 0.1}, True)
    store.close()
    out = tmp_path / "alice.mcap"
    assert main(["export", "--user", "alice", "--out", str(out),
                 "--store", str(tmp_path / "store")]) == 0
    msgs = {}
    for m in read_ros2_messages(str(out)):
        msgs.setdefault(m.channel.topic, []).append(m.ros_msg)
    feats_msgs = msgs["/speech_features"]
    assert [m.utterance_id for m in feats_msgs] == ["u1", "u2", "u4"]  # bob's are not exported
    assert list(feats_msgs[2].audio) == list(range(-500, 500))
    assert feats_msgs[2].audio_sample_rate == 16000 and len(feats_msgs[0].audio) == 0
    rec = msgs["/recognizer_updates"][0]
    assert rec.version == "r1" and bytes(rec.adapter) == b"adapter-bytes"
    assert (feats_msgs[1].frames, feats_msgs[1].dim) == (12, 8)
    assert np.allclose(np.array(feats_msgs[1].data).reshape(12, 8), feats(12), atol=1e-2)
    assert feats_msgs[0].header.stamp.sec == 100
    assert [m.data for m in msgs["/corrections"]] == ['{"utterance_id": "u2", "text": "turn left"}']
    upd = msgs["/projector_updates"][0]
    assert upd.version == "v1" and bytes(upd.checkpoint) == b"checkpoint-bytes"
    assert main(["export", "--user", "../../etc", "--out", str(out),
                 "--store", str(tmp_path / "store")]) == 2


def test_jobs_killed_mid_run_are_abandoned_at_recovery(tmp_path):
    store = UtteranceStore(tmp_path)
    store.start_job("j1", "alice")
    store.start_job("j2", "bob")
    store.finish_job("j2", "done", "ok")
    (tmp_path / "users" / "alice" / "features").mkdir(parents=True)
    (tmp_path / "users" / "alice" / "features" / ".tmp-half").write_bytes(b"half")
    store.close()                                  # the process "dies" with j1 running
    again = UtteranceStore(tmp_path)
    assert again.job("j1").state == "running"      # a reader (export) changes nothing
    abandoned, removed = again.recover()
    assert [j.job_id for j in abandoned] == ["j1"] and len(removed) == 1
    assert [j.state for j in again.jobs()] == ["abandoned", "done"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_cancelled_job_stores_no_projector(tmp_path):
    store = UtteranceStore(tmp_path)
    store.add_projector("alice", "v1", "", b"one", {}, make_current=True)
    store.start_job("j1", "alice")
    assert store.rollback("alice") is None         # rollback cancels alice's running job
    assert store.job("j1").state == "cancelled"
    with pytest.raises(StoreError, match="may not store"):
        store.add_projector("alice", "v2", "v1", b"two", {}, make_current=True, job_id="j1")
    assert [p.version for p in store.projectors("alice")] == ["v1"]
    assert not (tmp_path / "users" / "alice" / "projectors" / "v2.safetensors").exists()
    store.finish_job("j1", "done")                 # a cancelled job stays cancelled
    assert store.job("j1").state == "cancelled"
    store.start_job("j2", "bob")
    store.forget("bob")
    with pytest.raises(StoreError, match="may not store"):
        store.add_projector("bob", "b1", "", b"x", {}, make_current=True, job_id="j2")
    assert not (tmp_path / "users" / "bob").exists()


def test_forget_leaves_no_trace_in_the_database_files(tmp_path):
    store = UtteranceStore(tmp_path)
    store.log("u1", "zed-4d2c", feats(), "secret phrase 4d2c", 0.9, "asr:8")
    store.correct("zed-4d2c", "u1", "secret phrase 4d2c corrected")
    store.start_job("j1", "zed-4d2c")
    store.log("u2", "amy", feats(), "amy stays", 0.9, "asr:8")

    def traces():
        return [p.name for p in tmp_path.rglob("*") if p.is_file() and
                (b"4d2c" in p.read_bytes())]
    assert traces()                                # the check can fail
    store.forget("zed-4d2c")
    assert traces() == [] and store.count("amy") == 1
