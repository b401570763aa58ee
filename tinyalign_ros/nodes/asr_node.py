"""ASR features node: AudioChunk stream -> utterances (Silero VAD) -> Whisper encoder features
and transcript for each one.

Subscribes: audio (AudioChunk, sensor-data QoS), set_user (std_msgs/String: who speaks now)
Publishes:  speech_features (SpeechFeatures), transcript (std_msgs/String), utterance (Utterance)
"""
from __future__ import annotations

import itertools
import queue
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rcl_interfaces.msg import SetParametersResult
from std_msgs.msg import String

from tinyalign_ros.core.audio import SAMPLE_RATE, AudioError, Resampler, check_audio, to_mono
from tinyalign_ros.core.asr import AsrFrontEnd
from tinyalign_ros.core.users import UserIdError, check_user_id
from tinyalign_ros.core.vad import Segment, StreamingVad
from tinyalign_ros.msg import AudioChunk, SpeechFeatures, Utterance

from .common import (AUDIO_SUB_QOS, RELIABLE_QOS, Diagnostics, ModelActivation, Param,
                     declare_parameters, run)

PARAMETERS = (
    Param("whisper_model", "", "CTranslate2 Whisper folder; '' = the bundled tiny.en"),
    Param("device", "auto", "auto, cpu or cuda"),
    Param("compute_type", "default", "CTranslate2 compute type; default = int8 on CPU, float16 on CUDA"),
    Param("cpu_threads", 0, "threads for Whisper on CPU; 0 = CTranslate2's default"),
    Param("beam_size", 1, "Whisper beam size for the transcript"),
    Param("encoder", "var", "features from 'var' (torch, speech frames only, fast) or 'ct2' "
          "(padded 30 s window); must match the projector's"),
    Param("user_id", "default", "who is speaking; settable at run time (parameter or set_user)"),
    Param("vad_threshold", 0.5, "Silero speech probability that starts an utterance"),
    Param("vad_min_silence_s", 0.5, "silence that ends an utterance"),
    Param("vad_pre_roll_s", 0.3, "audio kept from before the speech started"),
    Param("vad_max_utterance_s", 20.0, "longer speech is cut into utterances of this length"),
    Param("vad_min_speech_s", 0.25, "shorter bursts are dropped as noise"),
    Param("max_clipped_fraction", 0.05, "utterances with more full-scale samples are dropped"),
    Param("publish_features", True, "publish encoder features (off: transcripts only)"),
    Param("queue_size", 8, "utterances waiting for ASR before the oldest is dropped"),
    Param("autostart", True, "load Whisper at start; false: wait for ~/set_active true"),
)

_ids = itertools.count(1)


def to_time_msg(t: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(t), nanosec=int((t % 1.0) * 1e9))


class AsrNode(ModelActivation, Node):
    def __init__(self):
        super().__init__("asr")
        self.p = declare_parameters(self, PARAMETERS)
        self.user_id = check_user_id(self.p.user_id)
        self.diag = Diagnostics(self)
        self.asr = self.vad = None
        self._resampler: Resampler | None = None
        self.features_pub = self.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
        self.transcript_pub = self.create_publisher(String, "transcript", RELIABLE_QOS)
        self.utterance_pub = self.create_publisher(Utterance, "utterance", RELIABLE_QOS)
        self.create_subscription(AudioChunk, "audio", self.on_audio, AUDIO_SUB_QOS)
        self.create_subscription(String, "set_user", self.on_set_user, RELIABLE_QOS)
        self.add_on_set_parameters_callback(self.on_parameters)
        self.utterances = 0
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.p.queue_size))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="asr", daemon=True)
        self._worker.start()
        self.init_activation(self.p.autostart)

    def load_models(self) -> None:
        self.diag.set(0, "loading Whisper")
        self.asr = AsrFrontEnd(self.p.whisper_model or None, self.p.device, self.p.compute_type,
                               self.p.cpu_threads, self.p.beam_size, self.p.encoder)
        self.vad = StreamingVad(self.p.vad_threshold, self.p.vad_min_silence_s,
                                self.p.vad_pre_roll_s, self.p.vad_max_utterance_s,
                                self.p.vad_min_speech_s)
        self.get_logger().info(f"Whisper {self.asr.model_id} on {self.asr.device} "
                               f"({self.asr.compute_type}) from {self.asr.model_path}")
        self.diag.set(0, "listening", asr_model=self.asr.model_id, device=self.asr.device)

    def free_models(self) -> None:
        self.asr = self.vad = None
        self.diag.set(0, "inactive")

    # -- who is speaking
    def on_set_user(self, msg: String) -> None:
        try:
            self.user_id = check_user_id(msg.data)
            self.get_logger().info(f"user is now {self.user_id!r}")
        except UserIdError as exc:
            self.get_logger().error(f"set_user: {exc}")

    def on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for prm in params:
            if prm.name == "user_id":
                try:
                    self.user_id = check_user_id(prm.value)
                except UserIdError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    # -- audio in: cheap work only (resample + VAD); ASR runs in the worker thread
    def on_audio(self, msg: AudioChunk) -> None:
        try:
            if msg.sample_rate <= 0 or msg.channels <= 0:
                raise AudioError(f"bad chunk header: {msg.sample_rate} Hz, {msg.channels} ch")
            samples = np.asarray(msg.samples, dtype=np.float32)
            if msg.encoding.upper() == "S16LE":
                samples = samples / 32768.0
            mono = to_mono(samples, msg.channels)
            if not np.all(np.isfinite(mono)):
                raise AudioError("chunk holds NaN/inf samples")
        except AudioError as exc:
            self.get_logger().warning(f"dropping audio chunk: {exc}", throttle_duration_sec=5.0)
            return
        if not self.active:
            return  # inactive: the stream is not listened to
        if self._resampler is None or self._resampler.rate_in != msg.sample_rate:
            if self._resampler is not None:
                self.get_logger().info(f"audio rate changed to {msg.sample_rate} Hz")
                self.vad.reset()
            self._resampler = Resampler(msg.sample_rate, SAMPLE_RATE)
        audio = self._resampler(mono)
        with self.models_lock:
            if self.vad is None:
                return
            segments = self.vad.accept(audio)
        for segment in segments:
            self._enqueue(segment)

    def _enqueue(self, segment: Segment) -> None:
        item = (segment, self.user_id, time.time())
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._queue.get_nowait()
            self._queue.put_nowait(item)
            self.dropped += 1
            self.get_logger().warning("ASR is behind: dropped the oldest waiting utterance")

    # -- ASR worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                segment, user_id, t_end = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                with self.models_lock:
                    if self.asr is None:
                        continue   # deactivated while the utterance waited
                    self._process(segment, user_id, t_end)
            except AudioError as exc:
                self.get_logger().warning(f"dropping utterance: {exc}")
            except Exception as exc:  # never let one utterance kill the node
                self.get_logger().error(f"ASR failed on an utterance: {exc!r}")

    def _process(self, segment: Segment, user_id: str, t_end: float) -> None:
        check_audio(segment.audio, max_clipped_fraction=self.p.max_clipped_fraction)
        result = self.asr.process(segment.audio)
        utterance_id = f"{user_id}-{int(t_end * 1000)}-{next(_ids):04d}"
        stamp = self.get_clock().now().to_msg()

        utt = Utterance(utterance_id=utterance_id, user_id=user_id, sample_rate=SAMPLE_RATE)
        utt.header.stamp = stamp
        utt.samples = segment.audio
        self.utterance_pub.publish(utt)

        if self.p.publish_features:
            feats = SpeechFeatures(utterance_id=utterance_id, user_id=user_id,
                                   frames=result.frames, dim=result.dim,
                                   valid_frames=result.frames,
                                   transcript=result.transcript.text,
                                   confidence=float(result.transcript.confidence),
                                   asr_model_id=self.asr.model_id,
                                   audio_duration_s=float(result.duration_s),
                                   asr_time_s=float(sum(result.timings.values())))
            feats.header.stamp = stamp
            feats.speech_end = to_time_msg(t_end)
            feats.data = result.features.reshape(-1)
            self.features_pub.publish(feats)
        self.transcript_pub.publish(String(data=result.transcript.text))
        self.utterances += 1
        self.get_logger().info(
            f"[{utterance_id}] {segment.duration_s:.1f} s -> {result.transcript.text!r} "
            f"(conf {result.transcript.confidence:.2f}, encode {result.timings['encode_s']:.2f} s, "
            f"transcribe {result.timings['transcribe_s']:.2f} s)")
        self.diag.set(0, "listening", utterances=self.utterances, dropped=self.dropped)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)


def main(args=None) -> int:
    return run(AsrNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
