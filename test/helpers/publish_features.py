"""Publishes SpeechFeatures (1500 x 384 float32, a known pattern) from its own process until
killed, so the test can check what arrives over DDS in another process."""
import sys

import numpy as np
import rclpy

from tinyalign_ros.msg import SpeechFeatures
from tinyalign_ros.nodes.common import RELIABLE_QOS


def main():
    frames, dim = int(sys.argv[1]), int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("feature_publisher")
    pub = node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
    data = (np.arange(frames * dim, dtype=np.float32) % 997) / 997.0
    count = 0

    def tick():
        nonlocal count
        msg = SpeechFeatures(utterance_id=f"utt-{count}", user_id="alice", frames=frames, dim=dim,
                             transcript="go forward ten meters",
                             confidence=0.75, asr_model_id="whisper-tiny.en:384",
                             audio_duration_s=2.79)
        msg.data = data
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        count += 1

    node.create_timer(0.2, tick)
    print("publishing", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
