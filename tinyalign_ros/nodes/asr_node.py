"""ASR features node: AudioChunk stream -> utterances (Silero VAD) -> Whisper encoder features
and transcript for each one.

Subscribes: audio (AudioChunk, sensor-data QoS), set_user (std_msgs/String: who speaks now),
            recognizer_updates (RecognizerUpdate, latched, signed: per-user recogniser adapters)
Publishes:  speech_features (SpeechFeatures, with the utterance's audio when publish_audio),
            transcript (std_msgs/String), utterance (Utterance)
A user with an adapted recogniser is transcribed by Whisper's decoder in torch with their adapter
(core/speech/recognizers.py); everyone else by faster-whisper.

Speculation: the VAD hands out an utterance early, vad_speculate_after_s into a silence; the
worker transcribes it while the VAD waits out the rest of vad_min_silence_s, and publishes that
result the moment the VAD confirms the same audio. If speech resumes, the early work is dropped.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import NamedTuple

from rclpy.lifecycle import LifecycleNode
from std_msgs.msg import String

from tinyalign_ros.core.serving import Lifecycle
from tinyalign_ros.core.speech.asr import AsrConfig, AsrFrontEnd
from tinyalign_ros.core.speech.recognizers import RecognizerTable
from tinyalign_ros.core.speech.audio import SAMPLE_RATE, AudioError, Resampler, decode_chunk
from tinyalign_ros.core.speech.vad import Segment, StreamingVad, VadConfig
from tinyalign_ros.core.users import UserIdError, check_user_id
from tinyalign_ros.graph import node_settings
from tinyalign_ros.msg import AudioChunk, RecognizerUpdate, SpeechFeatures, Utterance

from .common import (AUDIO_SUB_QOS, PROJECTOR_QOS, RELIABLE_QOS, Diagnostics, DropOldestQueue,
                     ManagedModels, NodeSettings, UpdateVerifier, features_to_msg,
                     recognizer_update_fields, run)

_ids = itertools.count(1)


class _Job(NamedTuple):
    """One item of the ASR worker's queue."""
    segment: Segment
    user_id: str
    t_end: float   # when the speaker stopped (final segments)
    early: bool    # a head start during the VAD's wait, not yet a confirmed utterance
    t_queued: float = 0.0   # when the VAD handed it out (time.time())


def audio_int16(audio):
    """float32 samples in [-1, 1] -> int16 (what SpeechFeatures.audio carries)."""
    import numpy as np

    return (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).round().astype(np.int16)


def to_time_msg(t: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(t), nanosec=int((t % 1.0) * 1e9))


class AsrNode(ManagedModels, LifecycleNode):
    def __init__(self):
        super().__init__("asr")
        self.p = NodeSettings(self, node_settings("asr"), self.on_settings)
        self.user_id = check_user_id(self.p.user_id)
        self.diag = Diagnostics(self)
        self.asr = self.vad = None
        # the VAD has its own lock, so it keeps listening in real time while the worker transcribes
        self.vad_lock = threading.Lock()
        self._resampler: Resampler | None = None
        self._early = None   # (key, AsrResult) of the last early segment transcribed
        self._vad_epoch = 0   # counts VAD resets: part of the key
        self._latest_early = None   # key of the newest early segment
        self.features_pub = self.create_lifecycle_publisher(SpeechFeatures, "speech_features",
                                                            RELIABLE_QOS)
        self.transcript_pub = self.create_lifecycle_publisher(String, "transcript", RELIABLE_QOS)
        self.utterance_pub = self.create_lifecycle_publisher(Utterance, "utterance", RELIABLE_QOS)
        self.create_subscription(AudioChunk, "audio", self.on_audio, AUDIO_SUB_QOS)
        self.create_subscription(String, "set_user", self.on_set_user, RELIABLE_QOS)
        # per-user recogniser adapters, kept across cleanup/configure (they are small)
        self.recognizers = RecognizerTable()
        self.verifier = UpdateVerifier(self, "recogniser", recognizer_update_fields,
                                       lambda: self.p.update_key_file)
        self.create_subscription(RecognizerUpdate, "recognizer_updates", self.on_recognizer_update,
                                 PROJECTOR_QOS)
        self.utterances = self.dropped = self.early_transcribed = self.early_used = 0
        self._queue = DropOldestQueue(
            "asr", self.p.queue_size, self._work,
            on_drop=self._on_drop,
            on_error=lambda _, exc: self.get_logger().error(f"ASR failed on an utterance: "
                                                             f"{exc!r}"))
        self.init_lifecycle(self.p.config(Lifecycle).autostart)

    def load_models(self) -> None:
        self.diag.set(0, "loading Whisper")
        self.asr = AsrFrontEnd(self.p.config(AsrConfig))
        with self.vad_lock:
            self.vad = StreamingVad(self.p.config(VadConfig), on_early=self._on_early)
        self.get_logger().info(f"Whisper {self.asr.model_id} on {self.asr.device} "
                               f"({self.asr.compute_type}) from {self.asr.model_path}")
        encoder = self.asr.torch_encoder if self.asr.device == "cpu" else None
        for error in self.recognizers.attach(self.asr.model_path, encoder, self.asr.beam_size):
            self.get_logger().error(f"dropping a recogniser adapter that does not fit "
                                    f"{self.asr.model_id}: {error}")
        self.diag.set(0, "configured", asr_model=self.asr.model_id, device=self.asr.device)

    def free_models(self) -> None:
        self.recognizers.detach()
        with self.vad_lock:
            self.asr = self.vad = None
            self._early = None

    # -- recogniser updates
    def on_recognizer_update(self, msg: RecognizerUpdate) -> None:
        try:
            check_user_id(msg.user_id)
        except UserIdError as exc:
            self.get_logger().warning(f"ignoring recogniser update: {exc}")
            return
        if not self.verifier.accept(msg):
            return
        if len(msg.adapter) == 0:
            if self.recognizers.remove(msg.user_id):
                self.get_logger().info(f"user {msg.user_id!r} is back on the base recogniser")
            return
        try:
            self.recognizers.put(msg.user_id, bytes(msg.adapter), msg.version)
        except Exception as exc:   # ValueError; torch's errors for tampered tensors
            self.get_logger().error(f"ignoring recogniser update {msg.version!r} for "
                                    f"{msg.user_id!r} (the user keeps the recogniser they had): "
                                    f"{exc}")
            return
        kb = self.recognizers.nbytes(msg.user_id) / 1024
        self.get_logger().info(f"recogniser {msg.version} now serves user {msg.user_id!r} "
                               f"({kb:.0f} KB of adapter; {len(self.recognizers.adapters)} "
                               f"adapted user(s))")
        self.diag.set(0, self.diag.message, **{f"recognizer_{msg.user_id}": msg.version})

    def stop_serving(self) -> None:
        with self.models_lock, self.vad_lock:  # an utterance cut by the deactivation is not
            if self.vad is not None:              # finished later
                self._reset_vad()

    # -- who is speaking
    def on_set_user(self, msg: String) -> None:
        try:
            self.user_id = check_user_id(msg.data)
            self.get_logger().info(f"user is now {self.user_id!r}")
        except UserIdError as exc:
            self.get_logger().error(f"set_user: {exc}")

    def on_settings(self, changed: list[str], values: dict) -> None:
        """Live parameters (ValueError refuses the change)."""
        if "user_id" in changed:
            try:
                self.user_id = check_user_id(values["user_id"])
            except UserIdError as exc:
                raise ValueError(str(exc)) from exc

    # -- audio in: cheap work only (decode, resample, VAD); ASR runs in the worker thread
    def on_audio(self, msg: AudioChunk) -> None:
        try:
            mono = decode_chunk(msg.samples, msg.encoding, msg.channels, msg.sample_rate)
        except AudioError as exc:
            self.get_logger().warning(f"dropping audio chunk: {exc}", throttle_duration_sec=5.0)
            return
        if not self.active:
            return  # not active: the stream is not listened to
        with self.vad_lock:
            if self.vad is None:
                return
            if self._resampler is None or self._resampler.rate_in != msg.sample_rate:
                if self._resampler is not None:
                    self.get_logger().info(f"audio rate changed to {msg.sample_rate} Hz")
                    self._reset_vad()
                self._resampler = Resampler(msg.sample_rate, SAMPLE_RATE)
            segments = self.vad.accept(self._resampler(mono))
            seen = self.vad.samples_seen
        now = time.time()   # this chunk's last sample arrived just now
        for segment in segments:
            # when the speaker stopped (the latency reference: the VAD's wait counts)
            t_end = now - (seen - segment.speech_end_sample) / SAMPLE_RATE
            self._queue.put(_Job(segment, self.user_id, t_end, early=False, t_queued=now))

    def _reset_vad(self) -> None:   # under vad_lock: stream positions start again at 0
        self.vad.reset()
        self._vad_epoch += 1
        self._early = None

    def _on_drop(self, job: _Job) -> None:
        if not job.early:   # an early segment is only a head start: dropped quietly
            self.dropped += 1
            self.get_logger().warning("ASR is behind: dropped the oldest waiting utterance")

    def _on_early(self, segment: Segment) -> None:   # inside vad.accept, under vad_lock
        self._latest_early = segment.key
        self._queue.put(_Job(segment, self.user_id, 0.0, early=True))

    # -- ASR worker
    def _work(self, job: _Job) -> None:
        segment, user_id, t_end, early, t_queued = job
        t_start = time.time()
        with self.models_lock:
            if self.asr is None or not self.active:
                return   # deactivated while the utterance waited
            try:
                if early:
                    # a newer early segment waits (speech went on after this pause): this
                    # head start could only delay it
                    if segment.key == self._latest_early:
                        self._transcribe_early(segment, user_id)
                else:
                    # where the time went, for the log: the VAD's wait, then this queue
                    waits = (t_queued - t_end, t_start - t_queued)
                    self._process(segment, user_id, t_end, waits)
            except AudioError as exc:
                if not early:
                    self.get_logger().warning(f"dropping utterance: {exc}")

    def _result_key(self, segment: Segment, user_id: str) -> tuple:
        return (self._vad_epoch, segment.key, user_id, self.recognizers.version(user_id))

    def _transcribe_early(self, segment: Segment, user_id: str) -> None:
        with self.vad_lock:
            key = self._result_key(segment, user_id)
        result = self.asr.process(segment.audio, transcribe=self.recognizers.transcriber(user_id))
        with self.vad_lock:
            self._early = (key, result)
        self.early_transcribed += 1

    def _process(self, segment: Segment, user_id: str, t_end: float, waits: tuple) -> None:
        # a user with an adapted recogniser: their adapter on the torch decoder; else faster-whisper
        recognizer_version = self.recognizers.version(user_id)
        with self.vad_lock:
            early, self._early = self._early, None
            key = self._result_key(segment, user_id)
        ahead = early is not None and early[0] == key
        if ahead:
            result = early[1]   # the same audio, transcribed during the VAD's wait
            self.early_used += 1
        else:
            result = self.asr.process(segment.audio,   # checks the audio, by the node's limits
                                      transcribe=self.recognizers.transcriber(user_id))
        utterance_id = f"{user_id}-{int(t_end * 1000)}-{next(_ids):04d}"
        stamp = self.get_clock().now().to_msg()

        utt = Utterance(utterance_id=utterance_id, user_id=user_id, sample_rate=SAMPLE_RATE)
        utt.header.stamp = stamp
        utt.samples = segment.audio
        self.utterance_pub.publish(utt)

        if self.p.publish_features:
            feats = features_to_msg(result, utterance_id, user_id, self.asr.model_id,
                                    asr_time_s=float(sum(result.timings.values())),
                                    recognizer_version=recognizer_version,
                                    speech_end=to_time_msg(t_end))
            feats.header.stamp = stamp
            if self.p.publish_audio:   # for recogniser adaptation (the adaptation node logs it)
                feats.audio = audio_int16(segment.audio)
                feats.audio_sample_rate = SAMPLE_RATE
            self.features_pub.publish(feats)
        self.transcript_pub.publish(String(data=result.transcript.text))
        self.utterances += 1
        self.get_logger().info(
            f"[{utterance_id}] {segment.duration_s:.1f} s -> {result.transcript.text!r} "
            f"{'(recogniser ' + recognizer_version + ') ' if recognizer_version else ''}"
            f"(conf {result.transcript.confidence:.2f}, encode {result.timings['encode_s']:.2f} s, "
            f"transcribe {result.timings['transcribe_s']:.2f} s"
            f"{', during the VAD wait' if ahead else ''}; VAD wait {waits[0]:.2f} s, queued "
            f"{waits[1]:.2f} s, published {time.time() - t_end:.2f} s after speech end)")
        self.diag.set(0, "listening", utterances=self.utterances, dropped=self.dropped,
                      early_transcribed=self.early_transcribed, early_used=self.early_used)

    def close(self) -> None:
        self._queue.close(timeout=5.0)


def main(args=None) -> int:
    return run(AsrNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
