#!/usr/bin/env python3
"""make faults: bad input against the real node processes over DDS, one case at a time.

Starts asr, response and adaptation as their own processes (real Whisper, real SmolLM2), then
for each case sends the bad input and checks that every node is still running and still serves:
a good recording sent on /audio comes back as features, and good features sent on
/speech_features are answered by the response node and logged by the adaptation node. It prints
what was tried and what happened per case and ends with `N tried, N survived, N lost`
("lost": good utterances sent after a case that were not answered or not logged).

Covered so far: malformed audio chunks and malformed / hostile feature messages (issue 13's
"Audio" and "Messages" groups, without the 10-minute and device cases). Not yet: storage faults,
concurrency, soak. Run from `source scripts/env.sh`.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INSTALL = Path(os.environ.get("TINYALIGN_INSTALL", ROOT / "install"))
LIB = INSTALL / "tinyalign_ros" / "lib" / "tinyalign_ros"
GOFORWARD = Path("/usr/share/pocketsphinx/test/data/goforward.raw")


class Graph:
    def __init__(self, work: Path):
        self.work = work
        self.procs = {}

    def start(self, exe: str, **params):
        cmd = [str(LIB / exe), "--ros-args"] + [a for k, v in params.items()
                                                 for a in ("-p", f"{k}:={v}")]
        log = open(self.work / f"{exe}.log", "wb")
        self.procs[exe] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                           env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def dead(self) -> list[str]:
        return [f"{n} exited {p.returncode}" for n, p in self.procs.items()
                if p.poll() is not None]

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(2)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.msg import AudioChunk, Response, SpeechFeatures
    from tinyalign_ros.nodes.common import AUDIO_SUB_QOS, RELIABLE_QOS

    work = Path(tempfile.mkdtemp(prefix="tinyalign-faults-"))
    store = work / "store"
    graph = Graph(work)
    graph.start("asr_node", cpu_threads=1, user_id="faults")
    graph.start("response_node", threads=1, mode="aligned", max_new_tokens=6, queue_size=16)
    graph.start("adaptation_node", store_dir=str(store), nice=0)

    rclpy.init()
    node = rclpy.create_node("faults")
    features, responses = [], []
    node.create_subscription(SpeechFeatures, "speech_features", features.append, RELIABLE_QOS)
    node.create_subscription(Response, "response", responses.append, RELIABLE_QOS)
    feat_pub = node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
    audio_pub = node.create_publisher(AudioChunk, "audio", AUDIO_SUB_QOS)

    def spin_until(pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred():
            rclpy.spin_once(node, timeout_sec=0.1)
            if graph.dead():
                return False
        return pred()

    print(f"tinyalign_ros faults: logs in {work}, ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}")
    asr = AsrFrontEnd(cpu_threads=1)
    speech = load_audio(GOFORWARD)
    good = asr.process(speech)
    ready = spin_until(lambda: feat_pub.get_subscription_count() >= 2 and
                       audio_pub.get_subscription_count() >= 1 and
                       node.count_publishers("speech_features") >= 2, 180)
    if not ready:
        print("the nodes did not come up:", graph.dead())
        return 1
    time.sleep(2.0)   # models load after the subscriptions exist (autostart)

    def features_msg(uid, user="faults", r=good, **over):
        m = SpeechFeatures(utterance_id=uid, user_id=user, frames=r.frames, dim=r.dim,
                           transcript=r.transcript.text, confidence=0.9,
                           asr_model_id=asr.model_id, audio_duration_s=r.duration_s)
        m.data = r.features.reshape(-1)
        for k, v in over.items():
            setattr(m, k, v)
        return m

    def chunks(audio, rate=16000, channels=1, encoding="F32LE", size=1600):
        for i in range(0, max(len(audio), 1), size * max(channels, 1)):
            msg = AudioChunk(sample_rate=rate, channels=channels, encoding=encoding)
            msg.samples = np.ascontiguousarray(audio[i:i + size * max(channels, 1)], np.float32)
            yield msg

    def play(msgs):
        for m in msgs:
            audio_pub.publish(m)
            time.sleep(0.01)

    probes = [0]
    lost = []

    def still_serving() -> str:
        """A good recording and good features after the case: '' or what failed."""
        probes[0] += 1
        uid = f"probe-{probes[0]}"
        n = len(features)
        play(chunks(np.concatenate([speech, np.zeros(16000, np.float32)])))
        if not spin_until(lambda: any(f.utterance_id.startswith("faults-") for f in
                                      features[n:]), 90):
            lost.append(uid + " (audio)")
            return "the ASR node did not transcribe a good recording"
        feat_pub.publish(features_msg(uid))
        if not spin_until(lambda: any(r.utterance_id == uid for r in responses), 90):
            lost.append(uid)
            return "the response node did not answer good features"
        logged = store / "users" / "faults" / "features" / f"{uid}.npy"
        if not spin_until(logged.is_file, 30):
            lost.append(uid + " (log)")
            return "the adaptation node did not log good features"
        return ""

    zeros = np.zeros(16000 * 5, np.float32)
    square = np.sign(np.sin(np.arange(32000) / 10)).astype(np.float32)
    stereo48 = np.repeat(load_audio(GOFORWARD, 16000), 3)            # crude 48 kHz ...
    stereo48 = np.stack([stereo48, stereo48], 1).reshape(-1)         # ... stereo, interleaved
    nan = speech.copy()
    nan[1000:1100] = np.nan
    big = SpeechFeatures(utterance_id="big", user_id="faults", frames=34000, dim=384,
                         asr_model_id=asr.model_id, transcript="x")
    big.data = np.zeros(34000 * 384, np.float32)                     # 52 MB
    other = asr.process(speech)
    cases = [
        ("audio: 48 kHz stereo (converted, not refused)",
         lambda: play(chunks(np.concatenate([stereo48, np.zeros(96000, np.float32)]),
                             rate=48000, channels=2, size=4800))),
        ("audio: int16 values sent as S16LE",
         lambda: play(chunks(speech * 32767, encoding="S16LE"))),
        ("audio: 8-bit encoding 'U8' (unknown: refused)",
         lambda: play(chunks(speech * 127 + 128, encoding="U8"))),
        ("audio: empty chunks", lambda: play(chunks(np.zeros(0, np.float32)))),
        ("audio: 5 s of digital silence", lambda: play(chunks(zeros))),
        ("audio: 2 s clipped square wave", lambda: play(chunks(square))),
        ("audio: NaN samples", lambda: play(chunks(nan))),
        ("audio: sample_rate 0", lambda: play(chunks(speech[:1600], rate=0))),
        ("audio: channels 0", lambda: play(chunks(speech[:1600], channels=0))),
        ("audio: 3 channels, samples not a multiple of 3",
         lambda: play([AudioChunk(sample_rate=16000, channels=3, encoding="F32LE",
                                  samples=np.zeros(1000, np.float32))])),
        ("features: frames x dim != data length",
         lambda: feat_pub.publish(features_msg("bad-shape", frames=good.frames + 7))),
        ("features: huge frames and dim",
         lambda: feat_pub.publish(features_msg("bad-huge", frames=2**31, dim=2**31))),
        ("features: NaN values", lambda: feat_pub.publish(features_msg(
            "bad-nan", data=np.full(good.frames * good.dim, np.nan, np.float32)))),
        ("features: another encoder (same width, ct2 id)",
         lambda: feat_pub.publish(features_msg("other-encoder",
                                               asr_model_id="whisper-tiny.en:384", r=other))),
        ("features: an unknown user", lambda: feat_pub.publish(features_msg("new-user",
                                                                           user="stranger"))),
        ("features: user id '../../etc'", lambda: feat_pub.publish(features_msg(
            "evil-1", user="../../etc"))),
        ("features: user id 'a/b'", lambda: feat_pub.publish(features_msg("evil-2",
                                                                          user="a/b"))),
        ("features: utterance id '../x'", lambda: feat_pub.publish(features_msg("../x"))),
        ("features: a 52 MB message", lambda: feat_pub.publish(big)),
    ]
    survived = 0
    for name, send in cases:
        t0 = time.monotonic()
        send()
        time.sleep(0.5)
        problem = still_serving()
        dead = graph.dead()
        ok = not problem and not dead
        survived += ok
        print(f"  {'survived' if ok else 'FAILED  '}  {name}  ({time.monotonic() - t0:.1f} s)"
              + (f": {problem} {dead}" if not ok else ""))
    escaped = [p for p in store.rglob("*") if not p.resolve().is_relative_to(store.resolve())]
    if escaped or (store / ".." / "etc").exists():
        print(f"  a user id escaped the store: {escaped}")
        survived = 0
    print(f"{len(cases)} tried, {survived} survived, {len(lost)} lost")
    node.destroy_node()
    rclpy.shutdown()
    graph.stop()
    return 0 if survived == len(cases) and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
