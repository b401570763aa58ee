"""Response node: speech features -> projector -> instruction-injected frozen LLM -> text.

Subscribes: speech_features (SpeechFeatures), projector_updates (ProjectorUpdate, latched)
Publishes:  response (Response, final), response_partial (Response, partial=True, streamed while
            generating), response_text (std_msgs/String)
Mode: auto (the default: per user, aligned only where that user's projector was validated no
worse than the cascade: core.assistant.routing), aligned (projector -> LLM), cascade (ASR
transcript -> LLM) or both (two Responses; an aligned reply whose audio gate was shut is the
cascade's, so it answers for both). Each Response says which path answered and why.
Each user's own projector is used when one was announced on projector_updates, else the base
(core.assistant.projectors.ProjectorTable). A request whose features another encoder made
than the projector was trained on is answered in cascade mode, with the reason logged.
"""
from __future__ import annotations

import copy
import time

import numpy as np
from rclpy.lifecycle import LifecycleNode
from std_msgs.msg import String

from tinyalign_ros.core.assistant.checkpoint import CheckpointError, from_bytes, load_checkpoint
from tinyalign_ros.core.assistant.llm import llm_id, loaded_llms, resolve_torch_device, shared_llm
from tinyalign_ros.core.assistant.pipeline import Assistant, Reply
from tinyalign_ros.core.assistant.projectors import ProjectorTable
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.assistant.routing import route
from tinyalign_ros.core.models import default_projector, resolve_llm
from tinyalign_ros.core.serving import AssistantModels, Lifecycle, ResponseConfig
from tinyalign_ros.graph import node_settings
from tinyalign_ros.msg import ProjectorUpdate, Response, SpeechFeatures

from .common import (PROJECTOR_QOS, RELIABLE_QOS, Diagnostics, DropOldestQueue, ManagedModels,
                     NodeSettings, UpdateVerifier, features_from_msg, release_memory, run,
                     update_fields)


def stamp_seconds(t) -> float:
    return t.sec + t.nanosec * 1e-9


class ResponseNode(ManagedModels, LifecycleNode):
    def __init__(self):
        super().__init__("response")
        self.p = NodeSettings(self, node_settings("response"))
        self.models = self.p.config(AssistantModels)
        self.diag = Diagnostics(self)
        self.assistant: Assistant | None = None          # loaded by configure
        self.projectors: ProjectorTable | None = None
        self.verifier = UpdateVerifier(self, "projector", update_fields,
                                       lambda: self.p.update_key_file)
        self._updates: dict[str, ProjectorUpdate] = {}   # user -> their current projector
        self.response_pub = self.create_lifecycle_publisher(Response, "response", RELIABLE_QOS)
        self.partial_pub = self.create_lifecycle_publisher(Response, "response_partial",
                                                           RELIABLE_QOS)
        self.text_pub = self.create_lifecycle_publisher(String, "response_text", RELIABLE_QOS)
        self.create_subscription(SpeechFeatures, "speech_features", self.on_features, RELIABLE_QOS)
        self.create_subscription(ProjectorUpdate, "projector_updates", self.on_update,
                                 PROJECTOR_QOS)
        self._queue = DropOldestQueue(
            "llm", self.p.queue_size, self._work,
            on_drop=lambda _: self.get_logger().warning(
                "LLM is behind: dropped the oldest waiting utterance"),
            on_error=lambda item, exc: self.get_logger().error(
                f"answering {item[0].utterance_id!r} failed: {exc!r}"))
        self.responses = 0
        self.init_lifecycle(self.p.config(Lifecycle).autostart)

    def load_models(self) -> None:
        self.diag.set(0, "loading LLM")
        llm_model_id = llm_id(resolve_llm(self.models.llm_model or None))
        self.projectors = ProjectorTable(llm_model_id, resolve_torch_device(self.models.device),
                                         check=self._check_prompt, on_retire=self._retire)
        self._load_base()
        for msg in list(self._updates.values()):
            self._apply_update(msg)
        serving = self.p.config(ResponseConfig)
        if serving.threads > 0:
            import torch
            torch.set_num_threads(serving.threads)
        # shared_llm: one copy per process (the single-process graph shares it with adaptation)
        llm = shared_llm(self.models.llm_model or None, self.models.device, serving.dtype,
                         serving.int8)
        self.assistant = Assistant(llm, self.p.config(PromptConfig), self.p.max_new_tokens,
                                   self.p.max_repeats, self.p.audio_only_tokens)
        self.get_logger().info(f"LLM {llm.model_id} on {llm.device} from {llm.path} "
                               f"({loaded_llms()} LLM(s) loaded in this process)")
        base = self.projectors.base
        self.diag.set(0, "configured", llm=llm.model_id, mode=self.p.mode,
                      base_projector=base.version if base else "none")

    def free_models(self) -> None:
        if self.projectors is not None:
            self.projectors.clear()
        # the LLM goes with the assistant (shared_llm frees it when its last user drops it)
        self.assistant = self.projectors = None

    # ---- projectors
    def _check_prompt(self, projector) -> None:
        self.p.config(PromptConfig).with_recorded(projector.meta.prompt,
                                                  f"projector {projector.version}")

    def _retire(self, projector) -> None:
        assistant = self.assistant
        if assistant is not None:      # waits for a generation that still uses it
            assistant.retire(projector)

    def _load_base(self) -> None:
        path = self.models.projector or default_projector()
        if not path:
            self.get_logger().warning("no base projector: aligned responses need one; answering "
                                      "in cascade mode until a projector update arrives")
            return
        try:
            self.projectors.set_base(load_checkpoint(path, None, self.projectors.llm_model_id),
                                     str(path))
        except Exception as exc:   # CheckpointError; torch's RuntimeError for tampered shapes
            self.get_logger().error(f"base projector unusable, answering in cascade mode until "
                                    f"a projector update arrives: {exc}")
            return
        self.get_logger().info(f"base projector {self.projectors.base.version} from {path}")

    def on_update(self, msg: ProjectorUpdate) -> None:
        if not self.verifier.accept(msg):
            return
        # kept: a latched update arrives once, and configure (again, after a cleanup) needs it
        if len(msg.checkpoint) == 0:
            self._updates.pop(msg.user_id, None)
        else:
            self._updates[msg.user_id] = msg
        with self.models_lock:
            if self.projectors is None:
                self.get_logger().info(f"unconfigured: the projector update for "
                                       f"{msg.user_id!r} is taken at configure")
                return
            self._apply_update(msg)

    def _apply_update(self, msg: ProjectorUpdate) -> None:
        if len(msg.checkpoint) == 0:  # no checkpoint: the user is back on the base projector
            self.projectors.remove(msg.user_id)
            self.get_logger().info(f"user {msg.user_id!r} is back on the base projector")
            return
        try:
            self.projectors.put(msg.user_id, from_bytes(bytes(msg.checkpoint)),
                                f"projector update for {msg.user_id!r}")
        except Exception as exc:   # CheckpointError; torch's RuntimeError for tampered shapes
            self.get_logger().error(f"ignoring projector update for {msg.user_id!r} (the user "
                                    f"keeps the projector they had): {exc}")
            if self._updates.get(msg.user_id) is msg:   # not kept for the next configure
                del self._updates[msg.user_id]
            return
        release_memory()   # the replaced projector's tensors
        self.get_logger().info(f"projector {msg.version} now serves user {msg.user_id!r}")
        chosen = route(self.projectors.get(msg.user_id))
        self.diag.set(0, "ready", **{f"projector_{msg.user_id}": msg.version,
                                     f"auto_{msg.user_id}": f"{chosen.path}: {chosen.reason}"})

    # ---- requests
    def on_features(self, msg: SpeechFeatures) -> None:
        try:
            features = features_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"dropping features {msg.utterance_id!r}: {exc}")
            return
        self._queue.put((msg, features))

    def _work(self, item) -> None:
        msg, features = item
        modes = ("aligned", "cascade") if self.p.mode == "both" else (self.p.mode,)
        with self.models_lock:
            if not self.active or self.assistant is None:
                self.get_logger().warning(f"not answering {msg.utterance_id!r}: "
                                          f"{self.inactive_reason()}",
                                          throttle_duration_sec=5.0)
                return
            prompt = self.p.config(PromptConfig)
            if prompt != self.assistant.prompt.config:   # task or hint changed live
                self.assistant.set_prompt(prompt)
            # mode both answers one mode after the other: each mode's first token leaves out
            # the time spent on the modes before it, so both count from the end of speech as
            # if that mode alone had answered. An aligned reply whose audio gate was shut is
            # the cascade's (the same prompt and tokens): it answers for the cascade too,
            # rather than making the next utterance wait for a second identical generation.
            earlier_s, shut = 0.0, None
            for mode in modes:
                started = time.time()
                try:
                    if mode == "cascade" and shut is not None:
                        self._publish_shut_as_cascade(msg, shut)
                        continue
                    out, reply = self._respond(msg, features, mode, earlier_s)
                    shut = out if reply.gate_shut else None
                except Exception as exc:  # one bad request never kills the node
                    if not self.context.ok():   # Ctrl-C while answering: nothing to say
                        return
                    self.get_logger().error(f"{mode} response to {msg.utterance_id!r} "
                                            f"failed: {exc!r}")
                earlier_s += time.time() - started

    def _projector_for(self, msg: SpeechFeatures):
        """The projector that may read these features, or None (answer in cascade)."""
        try:
            projector = self.projectors.for_features(msg.user_id, msg.asr_model_id)
            if projector is not None:
                self.assistant.prompt_for(projector)   # its prompt fits this node's task
            return projector
        except (CheckpointError, ValueError) as exc:
            self.get_logger().warning(f"[{msg.utterance_id}] answering in cascade mode: {exc}",
                                      throttle_duration_sec=10.0)
            return None

    def _respond(self, msg: SpeechFeatures, features: np.ndarray, mode: str,
                 earlier_s: float = 0.0) -> tuple[Response, Reply]:
        """``earlier_s``: seconds this request spent answering in other modes first (both).
        Returns the published Response and the assistant's Reply."""
        stamped = stamp_seconds(msg.speech_end)
        # unstamped features (not from the ASR node): from when this mode started answering
        speech_end = stamped + earlier_s if stamped else time.time()
        projector = self._projector_for(msg) if mode != "cascade" else None
        if mode == "auto":
            chosen = route(projector)
            mode, reason = chosen.path, chosen.reason
        elif mode == "aligned" and projector is None:
            mode, reason = "cascade", "no projector fits these features"
        else:
            reason = f"mode {mode}"
        if mode == "cascade":
            projector = None
        out = Response(utterance_id=msg.utterance_id, user_id=msg.user_id, mode=mode,
                       reason=reason,
                       transcript=msg.transcript, asr_time_s=msg.asr_time_s,
                       projector_version=projector.version if projector else "")
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

        max_new_tokens = self.p.max_new_tokens
        self.assistant.max_repeats = self.p.max_repeats   # live
        self.assistant.audio_only_tokens = self.p.audio_only_tokens
        if projector is not None:
            # the projector is passed per request: a swap never affects a request in flight
            reply = self.assistant.respond_with(projector, features, msg.transcript, on_token,
                                                max_new_tokens, confidence=msg.confidence)
        else:
            reply = self.assistant.respond_text(msg.transcript, on_token, max_new_tokens)
        t = reply.timings
        if reply.gate_shut:
            out.reason += (f"; audio gate shut (ASR confidence {msg.confidence:.2f} >= "
                           f"{projector.model.config.gate_max_confidence:g}: the cascade's reply)")
        out.text = reply.text
        out.projector_time_s = t["projector_s"]
        out.llm_prefill_time_s = t["prefill_s"]
        out.llm_decode_time_s = t["decode_s"]
        out.tokens = t["tokens"]
        out.first_token_latency_s = (first_token[0] - speech_end) if first_token else 0.0
        self._publish(out)
        self.get_logger().info(f"[{msg.utterance_id}] {mode}: {reply.text!r} (first token "
                               f"{out.first_token_latency_s:.2f} s after speech end, "
                               f"{t['tokens']} tokens)")
        return out, reply

    def _publish_shut_as_cascade(self, msg: SpeechFeatures, aligned: Response) -> None:
        """Mode both: the cascade's Response is the shut-gate aligned one, relabelled."""
        out = copy.deepcopy(aligned)
        out.mode, out.projector_version, out.projector_time_s = "cascade", "", 0.0
        out.reason = ("mode cascade; the same generation as the aligned reply, whose audio "
                      "gate was shut")
        self._publish(out)
        self.get_logger().info(f"[{msg.utterance_id}] cascade: the aligned reply (gate shut)")

    def _publish(self, out: Response) -> None:
        out.header.stamp = self.get_clock().now().to_msg()
        self.response_pub.publish(out)
        self.text_pub.publish(String(data=out.text))
        self.responses += 1

    def close(self) -> None:
        self._queue.close()


def main(args=None) -> int:
    return run(ResponseNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
