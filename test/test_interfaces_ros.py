"""The generated interfaces through real rclpy and Fast DDS, between two processes."""
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import python_subprocess, spin_until

pytestmark = pytest.mark.ros
HELPERS = Path(__file__).parent / "helpers"


def test_all_interfaces_import(installed):
    from tinyalign_ros import core  # noqa: F401  (hand-written and generated modules, one package)
    from tinyalign_ros.action import Adapt as AdaptAction
    from tinyalign_ros.msg import (AudioChunk, AudioInfo, Metric, ProjectorUpdate, Response,
                                   SpeechFeatures, Utterance)
    from tinyalign_ros.srv import Adapt, CorrectTranscript, ForgetUser

    assert {"user_id", "objective"} <= set(Adapt.Request.get_fields_and_field_types())
    assert {"accepted", "job_id", "message"} == set(Adapt.Response.get_fields_and_field_types())
    fb = AdaptAction.Feedback.get_fields_and_field_types()
    assert {"step", "loss", "eta_s", "validation_wer"} <= set(fb)
    assert SpeechFeatures.get_fields_and_field_types()["data"] == "sequence<float>"
    assert ProjectorUpdate.get_fields_and_field_types()["checkpoint"] == "sequence<uint8>"
    for cls in (AudioChunk, AudioInfo, Metric, Response, Utterance, CorrectTranscript.Request,
                ForgetUser.Response):
        cls()


def test_speech_features_1500x384_between_processes(ros_node):
    from tinyalign_ros.msg import SpeechFeatures
    from tinyalign_ros.nodes.common import RELIABLE_QOS

    received = []
    ros_node.create_subscription(SpeechFeatures, "speech_features", received.append, RELIABLE_QOS)
    pub = python_subprocess(HELPERS / "publish_features.py", 1500, 384)
    try:
        ok = spin_until(ros_node, lambda: len(received) >= 2, timeout=30)
        assert ok, f"no SpeechFeatures arrived; publisher said: {pub.poll()}"
    finally:
        pub.send_signal(signal.SIGINT)
        pub.wait(10)
    msg = received[-1]
    expected = (np.arange(1500 * 384, dtype=np.float32) % 997) / 997.0
    data = np.asarray(msg.data, dtype=np.float32)
    assert (msg.frames, msg.dim) == (1500, 384) and data.size == 1500 * 384
    assert np.array_equal(data, expected)
    assert msg.user_id == "alice" and msg.transcript == "go forward ten meters"
    assert msg.asr_model_id == "whisper-tiny.en:384" and abs(msg.confidence - 0.75) < 1e-6
