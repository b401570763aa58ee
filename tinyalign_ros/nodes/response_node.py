"""Response node: speech features -> projector -> instruction-injected frozen LLM -> text.

Subscribes: speech_features (SpeechFeatures), projector_updates (ProjectorUpdate, latched)
Publishes:  response (Response, final), response_partial (Response, partial=True, streamed while
            generating), response_text (std_msgs/String)
Mode: aligned (projector -> LLM), cascade (ASR transcript -> LLM) or both (two Responses).
Each user's own projector is used when one was announced on projector_updates, else the base.
A new projector is swapped in between requests: a request in flight finishes on the old one.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np
from rclpy.node import Node
from std_msgs.msg import String

from tinyalign_ros.core.checkpoint import CheckpointError
from tinyalign_ros.core.llm import llm_id, loaded_llms, resolve_torch_device, shared_llm
from tinyalign_ros.core.pipeline import Assistant
from tinyalign_ros.core.prompt import PromptConfig
from tinyalign_ros.core.models import default_projector, resolve_llm
from tinyalign_ros.msg import ProjectorUpdate, Response, SpeechFeatures

from .common import (PROJECTOR_QOS, RELIABLE_QOS, Diagnostics, ModelActivation, Param,
                     declare_parameters, features_from_msg, run)

PARAMETERS = (
    Param("llm_model", "", "transformers causal-LM folder; '' = the prepared SmolLM2-135M-Instruct"),
    Param("projector", "", "base projector checkpoint; '' = the one shipped with the package"),
    Param("mode", "aligned", "aligned (projector -> LLM), cascade (transcript -> LLM) or both"),
    Param("task", "repeat", "injected instruction: 'repeat' (echo what was said) or 'reply'"),
    Param("transcript_hint", True, "aligned mode: also inject the ASR transcript as a hint "
                                   "(measured far better than audio tokens alone: BENCHMARKS)"),
    Param("max_new_tokens", 48, "longest response, in tokens"),
    Param("stream_partial", True, "publish partial text on response_partial while generating"),
    Param("device", "auto", "auto, cpu or cuda (float16 on CUDA)"),
    Param("dtype", "auto", "LLM dtype: auto (float16 on CUDA, float32 on CPU), float32, "
          "float16 or bfloat16"),
    Param("int8", False, "int8 dynamic quantization of the LLM (CPU only)"),
    Param("threads", 0, "torch CPU threads; 0 = torch default"),
    Param("queue_size", 4, "utterances waiting for the LLM before the oldest is dropped"),
    Param("autostart", True, "load the LLM at start; false: wait for ~/set_active true"),
)

MODES = ("aligned", "cascade", "both")


def stamp_seconds(t) -> float:
    return t.sec + t.nanosec * 1e-9


class ResponseNode(ModelActivation, Node):
    def __init__(self):
        super().__init__("response")
        self.p = declare_parameters(self, PARAMETERS)
        if self.p.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.p.mode!r}")
        self.diag = Diagnostics(self)
        self.llm_model_id = llm_id(resolve_llm(self.p.llm_model or None))
        self.torch_device = resolve_torch_device(self.p.device)
        self.assistant = None                 # loaded on activation
        self._lock = threading.Lock()        # guards the projector table, not the LLM
        self.base = None                      # (model, meta)
        self.user_projectors: dict[str, tuple] = {}
        self._load_base()
        self.response_pub = self.create_publisher(Response, "response", RELIABLE_QOS)
        self.partial_pub = self.create_publisher(Response, "response_partial", RELIABLE_QOS)
        self.text_pub = self.create_publisher(String, "response_text", RELIABLE_QOS)
        self.create_subscription(SpeechFeatures, "speech_features", self.on_features, RELIABLE_QOS)
        self.create_subscription(ProjectorUpdate, "projector_updates", self.on_update,
                                 PROJECTOR_QOS)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.p.queue_size))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="llm", daemon=True)
        self._worker.start()
        self.responses = 0
        self.init_activation(self.p.autostart)

    def load_models(self) -> None:
        self.diag.set(0, "loading LLM")
        if self.p.threads > 0:
            import torch
            torch.set_num_threads(self.p.threads)
        # shared_llm: one copy per process (the single-process graph shares it with adaptation)
        llm = shared_llm(self.p.llm_model or None, self.p.device, self.p.dtype, self.p.int8)
        self.assistant = Assistant(llm, PromptConfig(task=self.p.task,
                                                     transcript_hint=self.p.transcript_hint),
                                   self.p.max_new_tokens)
        self.get_logger().info(f"LLM {llm.model_id} on {llm.device} from {llm.path} "
                               f"({loaded_llms()} LLM(s) loaded in this process)")
        self.diag.set(0, "ready", llm=llm.model_id, mode=self.p.mode,
                      base_projector=self.base[1].version if self.base else "none")

    def free_models(self) -> None:
        self.assistant = None
        self.diag.set(0, "inactive")

    # ---- projectors
    def _load_base(self) -> None:
        from tinyalign_ros.core.checkpoint import load_checkpoint

        path = self.p.projector or default_projector()
        if not path:
            self.get_logger().warning("no base projector: aligned responses need one; answering "
                                      "in cascade mode until a projector update arrives")
            return
        try:
            model, meta = load_checkpoint(path, None, self.llm_model_id)
        except CheckpointError as exc:
            self.get_logger().error(f"base projector unusable: {exc}")
            return
        self.base = (model.to(self.torch_device), meta)
        self.get_logger().info(f"base projector {meta.version} from {path}")

    def on_update(self, msg: ProjectorUpdate) -> None:
        from tinyalign_ros.core.checkpoint import check_compatible, from_bytes

        if len(msg.checkpoint) == 0:  # no checkpoint: the user is back on the base projector
            with self._lock:
                self.user_projectors.pop(msg.user_id, None)
            self.get_logger().info(f"user {msg.user_id!r} is back on the base projector")
            return
        try:
            model, meta = from_bytes(bytes(msg.checkpoint))
            check_compatible(meta, None, self.llm_model_id, source="projector update")
        except (CheckpointError, ValueError) as exc:
            self.get_logger().error(f"ignoring projector update for {msg.user_id!r}: {exc}")
            return
        with self._lock:
            self.user_projectors[msg.user_id] = (model.to(self.torch_device), meta)
        self.get_logger().info(f"projector {meta.version} now serves user {msg.user_id!r}")
        self.diag.set(0, "ready", **{f"projector_{msg.user_id}": meta.version})

    def projector_for(self, user_id: str):
        with self._lock:
            return self.user_projectors.get(user_id) or self.base

    # ---- requests
    def on_features(self, msg: SpeechFeatures) -> None:
        try:
            features = features_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"dropping features {msg.utterance_id!r}: {exc}")
            return
        item = (msg, features, time.time())
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._queue.get_nowait()
            self._queue.put_nowait(item)
            self.get_logger().warning("LLM is behind: dropped the oldest waiting utterance")

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                msg, features, t_received = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            modes = ("aligned", "cascade") if self.p.mode == "both" else (self.p.mode,)
            with self.models_lock:
                if self.assistant is None:
                    self.get_logger().warning(f"inactive: not answering {msg.utterance_id!r}",
                                              throttle_duration_sec=5.0)
                    continue
                for mode in modes:
                    try:
                        self._respond(msg, features, mode)
                    except Exception as exc:  # one bad request never kills the node
                        if not self.context.ok():   # Ctrl-C while answering: nothing to say
                            return
                        self.get_logger().error(f"{mode} response to {msg.utterance_id!r} "
                                                f"failed: {exc!r}")

    def _respond(self, msg: SpeechFeatures, features: np.ndarray, mode: str) -> None:
        speech_end = stamp_seconds(msg.speech_end) or time.time()
        projector = self.projector_for(msg.user_id) if mode == "aligned" else None
        if mode == "aligned" and projector is None:
            mode = "cascade"
        out = Response(utterance_id=msg.utterance_id, user_id=msg.user_id, mode=mode,
                       transcript=msg.transcript, asr_time_s=msg.asr_time_s)
        out.header.frame_id = msg.header.frame_id
        first_token = []
        partial_text = []

        def on_token(piece: str) -> None:
            if not first_token:
                first_token.append(time.time())
            partial_text.append(piece)
            if self.p.stream_partial:
                partial = Response(utterance_id=msg.utterance_id, user_id=msg.user_id, mode=mode,
                                   text="".join(partial_text).strip(), partial=True,
                                   projector_version=out.projector_version)
                partial.header.stamp = self.get_clock().now().to_msg()
                self.partial_pub.publish(partial)

        if mode == "aligned":
            model, meta = projector
            if model.config.asr_dim != features.shape[1]:
                raise ValueError(f"features are {features.shape[1]}-dim, projector "
                                 f"{meta.version} expects {model.config.asr_dim}")
            out.projector_version = meta.version
            # the projector is passed per request: a swap never affects a request in flight
            reply = self.assistant.respond_with(model, meta, features, msg.transcript, on_token)
        else:
            reply = self.assistant.respond_text(msg.transcript, on_token)
        t = reply.timings
        out.text = reply.text
        out.projector_time_s = t["projector_s"]
        out.llm_prefill_time_s = t["prefill_s"]
        out.llm_decode_time_s = t["decode_s"]
        out.tokens = t["tokens"]
        out.first_token_latency_s = (first_token[0] - speech_end) if first_token else 0.0
        out.header.stamp = self.get_clock().now().to_msg()
        self.response_pub.publish(out)
        self.text_pub.publish(String(data=reply.text))
        self.responses += 1
        self.get_logger().info(f"[{msg.utterance_id}] {mode}: {reply.text!r} (first token "
                               f"{out.first_token_latency_s:.2f} s after speech end, "
                               f"{t['tokens']} tokens)")

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10.0)


def main(args=None) -> int:
    return run(ResponseNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
