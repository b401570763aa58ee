"""Capture node: microphone (PyAudio) or audio files -> tinyalign_ros/AudioChunk at 16 kHz mono.

Publishes:  audio (AudioChunk, sensor-data QoS), audio_info (AudioInfo, latched)
"""
from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node

from tinyalign_ros.core.speech.audio import SAMPLE_RATE, AudioError
from tinyalign_ros.core.speech.sources import (RETRY_MAX_S, FileSource, MicrophoneError,
                                                open_microphone)
from tinyalign_ros.graph import node_settings
from tinyalign_ros.msg import AudioChunk, AudioInfo

from .common import LATCHED_QOS, SENSOR_QOS, Diagnostics, NodeSettings, run


class CaptureNode(Node):
    def __init__(self):
        super().__init__("capture")
        self.p = NodeSettings(self, node_settings("capture"))   # CaptureConfig
        self.chunk_frames = max(160, int(SAMPLE_RATE * self.p.chunk_ms / 1000))
        self.pub = self.create_publisher(AudioChunk, "audio", SENSOR_QOS)
        self.info_pub = self.create_publisher(AudioInfo, "audio_info", LATCHED_QOS)
        self.diag = Diagnostics(self)
        self.chunks_sent = 0
        self._stop = threading.Event()
        target = self._file_loop if self.p.source == "file" else self._mic_loop
        self._thread = threading.Thread(target=target, name="capture", daemon=True)
        self._thread.start()

    # -- publishing
    def _publish_info(self, source: str) -> None:
        info = AudioInfo(sample_rate=SAMPLE_RATE, channels=1, encoding="F32LE",
                         chunk_frames=self.chunk_frames, source=source)
        info.header.stamp = self.get_clock().now().to_msg()
        info.header.frame_id = self.p.frame_id
        self.info_pub.publish(info)

    def _publish(self, samples: np.ndarray) -> None:
        msg = AudioChunk(sample_rate=SAMPLE_RATE, channels=1, encoding="F32LE")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p.frame_id
        msg.samples = np.ascontiguousarray(samples, dtype=np.float32)
        try:
            self.pub.publish(msg)
        except Exception:   # noqa: BLE001 - Ctrl-C shut the context down under this thread
            if self.context.ok():
                raise
            self._stop.set()    # the loop ends quietly instead of a traceback at every exit
            return
        self.chunks_sent += 1

    # -- sources (each in its own thread, so pacing and blocking reads never stall the executor)
    def _file_loop(self) -> None:
        try:
            source = FileSource(self.p.file_path, self.chunk_frames, self.p.file_gap_s,
                                self.p.file_loop, self.p.raw_sample_rate)
        except AudioError as exc:
            self.get_logger().error(f"file source: {exc}")
            self.diag.set(2, str(exc))
            return
        self.get_logger().info(f"file source: {len(source.files)} file(s) from "
                               f"{self.p.file_path!r}, speed x{self.p.playback_speed}")
        self._publish_info(f"file:{self.p.file_path}")
        deadline = time.monotonic() + self.p.file_wait_for_subscriber_s
        while self.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            self._stop.wait(0.05)
        if self.pub.get_subscription_count() > 0:
            self._stop.wait(self.p.file_settle_s)
        self.diag.set(0, "playing files", files=len(source.files))
        period = self.chunk_frames / SAMPLE_RATE / max(self.p.playback_speed, 1e-3)
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                chunk = source.read()
            except AudioError as exc:  # one unreadable file must not end the stream
                self.get_logger().error(f"file source: skipping a file: {exc}")
                continue
            if chunk is None:
                break
            self._publish(chunk)
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))
        self.get_logger().info(f"file source finished after {self.chunks_sent} chunks")
        self.diag.set(0, "file source finished", chunks=self.chunks_sent)

    def _mic_loop(self) -> None:
        """Open the device; on failure, or when it goes away mid-stream (OSError from a read,
        what PyAudio raises on an unplug), retry with backoff (retry_period_s doubling up to
        RETRY_MAX_S), with one log line per new error and the state in /diagnostics."""
        last_error, wait, lost, reopened = None, self.p.retry_period_s, 0, 0
        while not self._stop.is_set():
            try:
                mic = open_microphone(self.p.device, self.chunk_frames, self.p.channels,
                                      self.p.device_rate)
            except (MicrophoneError, OSError) as exc:
                if str(exc) != last_error:  # one clear line, not one per retry
                    self.get_logger().error(f"microphone: {exc}; retrying with backoff "
                                            f"({self.p.retry_period_s} s up to "
                                            f"{max(RETRY_MAX_S, self.p.retry_period_s)} s)")
                    last_error = str(exc)
                self.diag.set(2, f"no microphone: {exc}", device_lost=lost, reopened=reopened,
                              retry_in_s=f"{wait:.1f}", chunks=self.chunks_sent)
                self._stop.wait(wait)
                wait = min(wait * 2, max(RETRY_MAX_S, self.p.retry_period_s))
                continue
            if lost:
                reopened += 1
            self.get_logger().info(f"microphone: {mic.name} at {mic.rate} Hz, {mic.channels} ch "
                                   f"-> {SAMPLE_RATE} Hz mono"
                                   + (f" (reopened after a loss, {reopened}x)" if lost else ""))
            self._publish_info(f"microphone:{mic.name}")
            self.diag.set(0, "capturing", device=mic.name, device_rate=mic.rate,
                          device_lost=lost, reopened=reopened, retry_in_s="0")
            last_error, wait = None, self.p.retry_period_s
            try:
                while not self._stop.is_set():
                    samples = mic.read()
                    if samples.size:
                        self._publish(samples)
            except OSError as exc:  # unplugged: go back to waiting for a device
                lost += 1
                self.get_logger().error(f"microphone lost: {exc}; reopening with backoff")
                self.diag.set(2, f"microphone lost: {exc}", device_lost=lost,
                              reopened=reopened, chunks=self.chunks_sent)
            finally:
                mic.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def main(args=None) -> int:
    return run(CaptureNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
